"""Data: import a dataset, browse samples with mask overlays, class frequencies, problems, augmentation, split."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import _ui
from segcore import visualize as viz
from segcore.config import AugmentConfig, SplitConfig
from segcore.data import augment, imports, uploads
from segcore.labels import Labels
from segcore.data import split as split_mod
from segcore.data.dataset import Problem
from segcore.data.options import ENCODINGS, ImportOptions, form_options
from segcore.safetext import markdown_text

ws = _ui.workspace()
st.title("Data")


# --------------------------------------------------------------------------- import


@st.cache_data(ttl=30, max_entries=16, show_spinner="Looking at the folder…")
def _detect(folder: str) -> tuple[str, dict]:
    return imports.detect_layout(folder, ws)


def _brief(details: dict) -> str:
    """A short line of what the layout detection saw (counts and folder names only)."""
    parts = [f"{k.replace('_', ' ')}: {v}" for k, v in details.items() if isinstance(v, (int, float, str)) and len(str(v)) < 60]
    return markdown_text(", ".join(parts[:5]))


def _options_form() -> dict:
    """The import options as typed or uploaded in the form (never a path on the server)."""
    with st.expander("Import options (optional)", icon=":material/tune:"):
        c = st.columns(2)
        classes_text = c[0].text_area(
            "Class names, one a line, background first", key="import_classes", height=100,
            help="For index masks: in the order of the mask values (0, 1, 2, ...). Leave empty to name classes from the data.",
        )
        classes_upload = c[0].file_uploader("…or upload a class list (.txt, one name a line)", type=["txt"], key="import_classes_upload")
        colors_text = c[1].text_area(
            "Colour table (JSON)", key="import_colors", height=100, placeholder='{"background": [0, 0, 0], "road": [128, 64, 128]}',
            help="For colour-coded masks: each class and its mask colour, in class order.",
        )
        colors_upload = c[1].file_uploader("…or upload a colour table (.json)", type=["json"], key="import_colors_upload")
        c = st.columns(4)
        ignore_text = c[0].text_input("Void mask values", key="import_ignore", placeholder="255", help="Mask values that mark pixels not to score, comma separated.")
        encoding = c[1].selectbox("Mask encoding", list(ENCODINGS), key="import_encoding", format_func=lambda e: "detect" if e == "auto" else e)
        multilabel = c[2].selectbox(
            "Overlapping classes", ["auto", "yes", "no"], key="import_multilabel",
            format_func={"auto": "multilabel if they overlap", "yes": "always multilabel", "no": "later class wins"}.get,
            help="For one mask folder per class.",
        )
        invert = c[3].checkbox("Invert binary masks", key="import_invert", help="The bright mask value is the background.")
        class0 = st.radio(
            "Class 0 is", ["auto", "background", "class"], horizontal=True, key="import_class0",
            format_func={
                "auto": "detect (background when so named or binary)",
                "background": "the background (left out of means)",
                "class": "a real class, e.g. Sky (counted in means)",
            }.get,
            help="Means over classes (evaluation, the best checkpoint, health checks) leave class 0 out only when it is the background.",
        )
        extra_text = st.text_area(
            "Other options (JSON, optional)", key="import_options", height=68,
            placeholder='{"merge": {"lesion_a": "lesion"}, "trimap_boundary": "ignore"}',
            help=f"Any of {', '.join(ImportOptions.names())}; see docs/data.md. Unknown names are refused.",
        )
    if classes_upload is not None:
        if classes_text.strip():
            raise ValueError("Class names: both typed and uploaded; give one of them")
        classes_text = imports.read_class_list(uploads.upload_text(uploads.UploadedFile(classes_upload.name, classes_upload.getvalue()), "class list"))
        classes_text = "\n".join(classes_text)
    if colors_upload is not None:
        if colors_text.strip():
            raise ValueError("Colour table: both typed and uploaded; give one of them")
        colors_text = uploads.upload_text(uploads.UploadedFile(colors_upload.name, colors_upload.getvalue()), "colour table")
    return {
        "classes_text": classes_text, "colors_text": colors_text, "ignore_text": ignore_text, "mask_encoding": encoding,
        "invert": invert, "multilabel": {"auto": None, "yes": True, "no": False}[multilabel], "class0": class0,
        "extra_text": extra_text,
    }


def import_section(expanded: bool) -> None:
    with st.expander("Import a dataset", expanded=expanded, icon=":material/upload:"):
        source_kind = st.radio("Source", ["Upload a .zip", "A folder on the server"], horizontal=True, key="import_source")
        upload, folder, source_path = None, "", None
        if source_kind == "Upload a .zip":
            upload = st.file_uploader("Zip of images and masks", type=["zip"], key="import_zip")
        else:
            try:
                roots = ws.import_roots()
            except ValueError as exc:  # a damaged server.json: said once, and only this panel is closed
                st.error(f"Importing from server folders is unavailable: {markdown_text(exc)}. "
                         "Whoever runs the server can fix or remove that file.")
                roots = None
        if source_kind != "Upload a .zip" and roots is not None:
            folder = st.text_input(
                "Folder in the import folders", key="import_folder", placeholder="my_dataset",
                help="A folder, .zip or COCO .json inside one of the import folders; a name relative to them or a full path.",
            )
            st.caption(
                "The dashboard imports server folders only from the import folders: "
                + ", ".join(markdown_text(r) for r in roots)
                + ". Copy a dataset there, or upload a .zip (docs/security.md says how to add import folders)."
            )
            if folder:
                with _ui.friendly_errors("use this folder"):
                    source_path = ws.import_source(folder)
        layouts = dict(imports.LAYOUTS)
        layout_names = ["auto"] + [n for n in layouts if n != "auto"]
        cols = st.columns([2, 2, 1])
        default_name = uploads.suggest_name(upload.name if upload is not None else (source_path.name if source_path else ""))
        name = cols[0].text_input("Dataset name", value=default_name, key=f"import_name_{default_name}")
        layout = cols[1].selectbox(
            "Layout", layout_names, key="import_layout",
            format_func=lambda n: "detect automatically" if n == "auto" else f"{n}: {layouts.get(n, '')}"[:90],
        )
        strict = cols[2].checkbox("Strict", key="import_strict", help="Refuse the whole import if any file has a problem.")
        version = cols[2].checkbox("New version if the name exists", key="import_version", help="Import as name-2, name-3... instead of refusing.")
        if source_path is not None and layout == "auto":
            with _ui.friendly_errors("recognise the layout of this folder"):
                detected, details = _detect(str(source_path))
                st.caption(f"Detected layout: **{detected}** ({layouts.get(detected, '')})" + (f" · {_brief(details)}" if details else ""))
        options, options_error = None, None
        try:
            options = form_options(**_options_form())
        except ValueError as exc:
            options_error = str(exc)
        if options_error:
            st.error(f"Import options: {markdown_text(options_error)}")
        ready = (upload is not None or source_path is not None) and name and options is not None
        if st.button("Import", type="primary", key="import_go", **_ui.permit("import", disabled=not ready)):
            bar = st.progress(0.0, text="Importing…")
            how = {"name": name, "layout": layout, "options": options, "strict": strict, "workspace": ws,
                   "on_exists": "version" if version else "error", "actor": _ui.actor()}  # fmt: skip

            def show(p: uploads.ImportProgress) -> None:
                bar.progress(p.fraction, text=p.message)

            try:
                with _ui.friendly_errors(f"import {getattr(upload, 'name', None) or folder}"):
                    if upload is not None:
                        files = [uploads.UploadedFile(upload.name, upload.getbuffer())]
                        report = uploads.import_upload(files, **how, progress=show)
                    else:
                        report = imports.import_dataset(source_path, **how, progress=uploads.progress_records(show))
                    st.session_state["import_report"] = report.to_dict()
                    if report.ok:
                        st.session_state["dataset"] = report.dataset.name
                        st.query_params["dataset"] = st.session_state["dataset"]
            finally:
                bar.empty()
        last = st.session_state.get("import_report")
        if last:
            if last.get("ok"):
                st.success(f"Imported **{markdown_text(last.get('name') or st.session_state.get('dataset'))}**; {len(last.get('problems') or [])} problem(s) noted below.")
            else:
                st.error(f"Import failed: {markdown_text(last.get('error') or 'see the problems below')}")
            problems = [Problem.from_dict(p) for p in last.get("problems") or []]
            if problems:
                _problems_table(problems)


def _problems_table(problems: list[Problem] | tuple[Problem, ...]) -> None:
    """The problems as a table that wraps long messages instead of cutting them off."""
    st.table(viz.problems_frame(problems).set_index("severity"))


infos = _ui.datasets(ws)
import_section(expanded=not infos)
if not infos:
    st.info("No datasets yet. Import one above (a zip or a server folder), or create the demo with `python -m segcore demo`.")
    st.stop()

info = _ui.select_dataset(ws)
key = _ui.dataset_key(info)
root = str(ws.root)
ds = _ui.open_dataset(root, info.name, key)
colors = viz.class_colors(info.classes)

stats = info.image_size_stats or {}
m = st.columns([1, 1, 2, 1])
m[0].metric("Samples", len(info.samples))
label_meaning = Labels.of_dataset(info)
m[1].metric("Classes", len(label_meaning.real_class_names),
            help=f"The classes scored and painted: {label_meaning.class0_sentence()}.")
m[2].metric("Mode", info.mode, help="binary: one class; multiclass: exclusive classes; multilabel: classes may overlap.")
m[3].metric("Problems", len(info.problems))
src = info.source or {}
st.caption(
    f"{ {1: 'Grey', 3: 'RGB'}.get(info.channels, info.channels)} images · "
    + ("generated by segcore (synthetic shapes)" if src.get("layout") == "demo" else f"imported from {markdown_text(src.get('path', '?'))} ({markdown_text(src.get('layout', '?'))} layout)")
    + (f" · {viz.size_summary(stats)}" if viz.size_summary(stats) else "")
    + (f" · version {info.content_hash.split(':')[-1][:8]}" if info.content_hash else "")
)
if viz.imported_by_text(src):
    st.caption(markdown_text(viz.imported_by_text(src)))

tabs = st.tabs(
    ["Samples", "Class frequencies", f"Problems ({len(info.problems)})", "Augmentation", "Split"],
    key="data_tab", on_change="rerun",
)

# --------------------------------------------------------------------------- samples
with tabs[0]:
    if tabs[0].open is not False:
        st.markdown(_ui.class_legend(info), unsafe_allow_html=True)
        c = st.columns([2, 1, 1])
        opacity = c[0].slider("Mask opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
        per_page = 12
        pages = max(1, -(-len(ds.ids) // per_page))
        page_no = c[1].number_input(f"Page (of {pages})", 1, pages, 1, key="sample_page")
        outline = c[2].toggle("Outlines", key="outline", help="Draw class boundaries at full strength.")
        ids = ds.ids[(page_no - 1) * per_page : page_no * per_page]
        grid = st.columns(4)
        for i, sid in enumerate(ids):
            image, mask = _ui.sample_pair(root, info.name, key, sid)
            grid[i % 4].image(viz.overlay(image, mask, colors, opacity, info.ignore_index, outline, unpainted=Labels.of_dataset(info).unpainted), caption=sid, width="stretch")
        st.divider()
        sid = st.selectbox("Look closer at one sample", ds.ids, index=ds.ids.index(ids[0]) if ids else 0, key="closer")
        image, mask = _ui.sample_pair(root, info.name, key, sid, 512)
        c = st.columns(3)
        c[0].image(image, caption=f"{sid}: image", width="stretch")
        c[1].image(viz.colorize_mask(mask, colors, info.ignore_index), caption="mask", width="stretch")
        c[2].image(viz.overlay(image, mask, colors, opacity, info.ignore_index, outline, unpainted=Labels.of_dataset(info).unpainted), caption=f"overlay at {opacity:.0%}", width="stretch")

# --------------------------------------------------------------------------- class frequencies
with tabs[1]:
    if tabs[1].open:
        if len(info.class_pixel_fraction) != info.num_classes:
            st.info("This dataset's record has no class pixel counts (it was imported by an older version).")
        else:
            df = viz.class_frequency_frame(info.class_names, info.class_pixel_fraction, colors)
            warning = viz.imbalance_warning(info.class_names, info.class_pixel_fraction)
            if warning:
                st.warning(markdown_text(warning))
            else:
                st.success("Classes are reasonably balanced.")
            st.plotly_chart(viz.class_frequency_figure(df), key="freq_chart")
            st.dataframe(df[["class", "percent"]], hide_index=True, column_config={"percent": st.column_config.NumberColumn("% of pixels", format="%.3f")})

# --------------------------------------------------------------------------- problems
with tabs[2]:
    if tabs[2].open:
        if not info.problems:
            st.success("The importer found no problems in this dataset.")
        else:
            errors = sum(p.severity == "error" for p in info.problems)
            st.markdown(
                f"The importer found **{len(info.problems)}** problem(s): {errors} made it skip samples, "
                f"{len(info.problems) - errors} were noted and the samples kept."
            )
            _problems_table(info.problems)
            for p in info.problems:
                if len(p.files) > 3:
                    with st.expander(f"Every file of {markdown_text(p.kind)} ({len(p.files)})"):
                        st.code("\n".join(p.files), language=None)

# --------------------------------------------------------------------------- augmentation
with tabs[3]:
    if tabs[3].open:
        st.caption("What training batches look like: image and mask are transformed together. Void (grey) marks pixels from outside the image.")
        d = AugmentConfig()
        c = st.columns(4)
        sid = c[0].selectbox("Sample", ds.ids, key="aug_sample")
        rotate = c[1].slider("Rotation (°)", 0.0, 90.0, float(d.rotate_degrees), 5.0, key="aug_rotate")
        zoom = c[2].slider("Zoom", 0.0, 0.5, float(d.zoom), 0.05, key="aug_zoom")
        shift = c[3].slider("Shift", 0.0, 0.3, float(d.shift), 0.05, key="aug_shift")
        c = st.columns(5)
        hflip = c[0].checkbox("Horizontal flip", d.hflip, key="aug_hflip")
        vflip = c[1].checkbox("Vertical flip", d.vflip, key="aug_vflip")
        transpose = c[2].checkbox("Transposition", d.transpose, key="aug_transpose",
                                  help="rows for columns; square images and training windows only")
        brightness = c[3].slider("Brightness", 0.0, 0.5, float(d.brightness), 0.05, key="aug_bright")
        contrast = c[4].slider("Contrast", 0.0, 0.5, float(d.contrast), 0.05, key="aug_contrast")
        cfg = AugmentConfig(enabled=True, hflip=hflip, vflip=vflip, transpose=transpose, rotate_degrees=rotate,
                            zoom=zoom, shift=shift, brightness=brightness, contrast=contrast)
        image, mask = _ui.sample_pair(root, info.name, key, sid)
        cols = st.columns(4)
        cols[0].image(viz.overlay(image, mask, colors, 0.5, info.ignore_index, unpainted=Labels.of_dataset(info).unpainted), caption="original", width="stretch")
        with _ui.friendly_errors("augment this sample"):
            for i in range(7):
                img_a, mask_a = augment.augment_pair(image, mask, cfg, augment.sample_rng(0, i, 0))
                cols[(i + 1) % 4].image(viz.overlay(img_a, mask_a, colors, 0.5, info.ignore_index, unpainted=Labels.of_dataset(info).unpainted), caption=f"draw {i + 1}", width="stretch")

# --------------------------------------------------------------------------- split
with tabs[4]:
    if tabs[4].open:
        d = SplitConfig()
        subsets = {s.id: s.subset for s in info.samples}
        has_subsets = any(subsets.values())
        methods = ["random", "subset"] if has_subsets else ["random"]
        c = st.columns(4)
        method = c[0].selectbox("Method", methods, key="split_method", help="'subset' keeps the dataset's own train/test folders.")
        val = c[1].slider("Validation fraction", 0.0, 0.5, d.val_fraction, 0.05, key="split_val")
        test = c[2].slider("Test fraction", 0.0, 0.5, d.test_fraction, 0.05, key="split_test", disabled=method == "subset")
        seed = c[3].number_input("Seed", 0, 2**31 - 1, d.seed, key="split_seed")
        with _ui.friendly_errors("split this dataset"):
            split = split_mod.split_ids(ds.ids, SplitConfig(method=method, val_fraction=val, test_fraction=test, seed=int(seed)), subsets)
            parts = split.to_dict()
            c = st.columns(3)
            for col, (part, ids) in zip(c, parts.items()):
                col.metric(part, len(ids), f"{len(ids) / len(ds.ids):.0%}", delta_color="off", delta_arrow="off")
                col.dataframe(pd.DataFrame({"id": ids}), hide_index=True, height=220)
            note = viz.subset_split_note(info.samples) if method == "subset" else None
            if note:
                st.warning(note)
            st.caption("The Train page uses these same settings; the same settings always give the same split.")
