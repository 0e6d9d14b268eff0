"""Predict: a finished run's model on uploaded images or dataset samples: overlay, per-class heatmaps,
class areas, and the mask as a PNG to download; or a folder or zip of images at once, one zip of masks back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

from app_pages import _ui
from segcore import runs as runs_mod
from segcore import visualize as viz
from segcore.data.uploads import UploadedFile
from segcore.prediction import prediction_setup, probs_to_mask, runs_that_predict
from segcore.prediction.batch import batch_images, predict_batch
from segcore.safetext import markdown_text, quoted

IMAGE_TYPES = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"]
MAX_IMAGES = 8

ws = _ui.workspace()
st.title("Predict")


summaries = runs_that_predict(runs_mod.list_runs(ws))
if not summaries:
    st.info(
        "No run has a trained model yet. Train one on the **Train** page (or from **Home** with one click); "
        "when it has finished at least one epoch its model can predict here."
    )
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()


@st.cache_data(max_entries=32, show_spinner=False)
def predict(path: str, mtime: float, digest: str, _image: np.ndarray) -> np.ndarray:
    """Probabilities at the image's size; cached by run, checkpoint time and image content."""
    return _ui.predictor(path, mtime).predict_probs(_image)


by_id = {s.run_id: s for s in summaries}
labels = _ui.run_labels(runs_mod.list_runs(ws))
wanted = st.query_params.get("run")
if wanted and wanted not in by_id:
    st.warning(f"The link names run {quoted(wanted)}, which has no trained model in this workspace (it may still be training, or was deleted).")


def _run_choice(r: str) -> str:
    s = by_id[r]
    score = "" if s.best_val_dice is None else f" · val Dice {s.best_val_dice:.3f}"
    return f"{labels.get(r, r)} · {s.model} on {s.dataset}{score}"


c = st.columns([3, 2])
_ui.from_url("pred_run", "run", list(by_id))
run_id = c[0].selectbox("Run", list(by_id), key="pred_run", format_func=_run_choice, **_ui.url_sync("run", "pred_run"))
_ui.to_url("run", "pred_run")
source = c[1].radio("Images", ["Upload", "Dataset samples", "Folder or zip"], horizontal=True, key="pred_source",
                    help="Folder or zip: predict many images at once and download every mask in one zip.")
s = by_id[run_id]
folder = runs_mod.RunFolder(s.path)
_ui.damage_notes(s, labels.get(run_id, run_id))
model_file = folder.model_path
record = folder.read_record()
# Handed over as bytes, as on the Runs page: a file id that stays valid across reruns.
model_bytes = _ui.readable(model_file.read_bytes, b"") if model_file.is_file() else b""
st.download_button("Model (.keras)", model_bytes, f"{run_id}.keras", "application/octet-stream", on_click="ignore",
                   key="pred_dl_model", disabled=not model_bytes, icon=":material/download:",
                   help="The run's best checkpoint; load it with keras.models.load_model after `import segcore`.")


def _open_info():
    return _ui.open_dataset(str(ws.root), s.dataset, str(_ui.mtime(ws.dataset_dir(s.dataset) / "dataset.json"))).info


if source == "Folder or zip":
    setup = prediction_setup(record.dataset, _open_info)
    batch = st.file_uploader("Images, or a zip of them", type=IMAGE_TYPES + ["zip"], accept_multiple_files=True,
                             key="pred_batch_upload",
                             help="A folder: select all its images in the file dialog, or zip the folder and upload the zip.")
    batch_threshold = st.slider("Threshold", 0.05, 0.95, 0.5, 0.05, key="pred_batch_threshold", disabled=setup.mode == "multiclass",
                                help="Probability above which a pixel counts as the class (binary and multilabel datasets); "
                                     "multiclass models take the most likely class.")
    if not batch:
        st.info("Upload a zip of images, or several images at once (PNG, JPEG, TIFF, BMP or GIF). Every image is predicted "
                "at its own size and you get one zip of masks back, in the same format as a single mask download.")
        st.stop()
    uploaded = [(u.name, u.size) for u in batch]  # a result is shown only for the files it was made from
    if st.button(f"Predict all with {labels.get(run_id, run_id)}", key="pred_batch_go", type="primary", icon=":material/play_arrow:"):
        try:
            limits = ws.settings()
        except ValueError as exc:
            st.error(markdown_text(exc))
            st.stop()
        images, problems = batch_images([UploadedFile(u.name, u.getvalue()) for u in batch], limits)
        bar = st.progress(0.0, text=f"Loading the model to predict {len(images)} image(s)…")
        try:
            predictor = _ui.predictor(str(folder.path), _ui.mtime(model_file))
            result = predict_batch(images, lambda im: predictor.predict_mask(im, batch_threshold), predictor.mode,
                                   problems=problems, max_pixels=limits.max_image_pixels,
                                   progress=lambda done, total, name: bar.progress(done / total, text=markdown_text(f"{done} of {total}: {name}")))
        except (FileNotFoundError, ValueError) as exc:
            st.error(f"Could not predict with {markdown_text(labels.get(run_id, run_id))}: {markdown_text(exc)}")
            st.stop()
        finally:
            bar.empty()
        st.session_state["pred_batch"] = {"run": run_id, "upload": uploaded, "images": len(images), "data": result.data,
                                          "predicted": result.predicted, "problems": result.problems}
    done = st.session_state.get("pred_batch")
    if done and done["run"] == run_id and done["upload"] == uploaded:
        (st.success if done["predicted"] else st.warning)(f"{len(done['predicted'])} of {done['images']} images predicted.")
        st.download_button("Download the masks (zip)", done["data"], f"{run_id}-masks.zip", "application/zip", on_click="ignore",
                           key="pred_batch_dl", icon=":material/download:", disabled=not done["predicted"],
                           help="One mask per image, in the image's folder: <name>_mask.png of class ids (0 = background); "
                                "multilabel: one 0/1 <name>_<k>.png per class. problems.txt lists the files left out.")
        if done["problems"]:
            st.warning("Left out:\n\n" + "\n".join(f"- {markdown_text(p)}" for p in done["problems"]))
    st.stop()

images: list[tuple[str, np.ndarray]] = []
if source == "Upload":
    uploads = st.file_uploader("One or more images", type=IMAGE_TYPES, accept_multiple_files=True, key="pred_upload")
    for up in (uploads or [])[:MAX_IMAGES]:
        try:
            images.append((Path(up.name).stem, viz.decode_image(up.getvalue(), up.name)))
        except ValueError as exc:
            st.error(markdown_text(exc))
    if uploads and len(uploads) > MAX_IMAGES:
        st.caption(f"Showing the first {MAX_IMAGES} images.")
else:
    try:
        ds = _ui.open_dataset(str(ws.root), s.dataset, str(_ui.mtime(ws.dataset_dir(s.dataset) / "dataset.json")))
    except (FileNotFoundError, ValueError) as exc:
        st.error(f"The run's dataset {quoted(s.dataset)} cannot be opened: {markdown_text(exc)}")
        st.stop()
    test_ids = [i for i in record.test_ids if i in set(ds.ids)]
    options = test_ids + [i for i in ds.ids if i not in set(test_ids)]
    picked = st.multiselect("Samples (the run's test images first)", options, default=options[:1], max_selections=MAX_IMAGES, key="pred_samples")
    images = [(sid, ds.image(sid)) for sid in picked]

if not images:
    st.info("Upload an image (PNG, JPEG, TIFF, BMP or GIF) or pick a dataset sample to see the model's prediction.")
    st.stop()

setup = prediction_setup(record.dataset, _open_info)
mode, class_names, colors, dataset_info = setup.mode, setup.class_names, setup.colors, setup.dataset

c = st.columns([2, 2, 1])
class_index = c[0].selectbox("Heatmap class", list(range(len(class_names))), index=1 if len(class_names) > 1 else 0,
                             format_func=lambda k: class_names[k], key="pred_class")
opacity = c[1].slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="pred_opacity")
threshold = c[2].slider("Threshold", 0.05, 0.95, 0.5, 0.05, key="pred_threshold", disabled=mode == "multiclass",
                        help="Probability above which a pixel counts as the class (binary and multilabel datasets); multiclass models take the most likely class.")

if dataset_info is not None:
    st.markdown("Colours: " + _ui.class_legend(dataset_info, void=False), unsafe_allow_html=True)

for n, (name, image) in enumerate(images):
    with st.container(border=True):
        try:
            probs = predict(str(folder.path), _ui.mtime(model_file), hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() + str(image.shape), image)
        except (FileNotFoundError, ValueError) as exc:
            st.error(f"Could not predict {markdown_text(name)}: {markdown_text(exc)}")
            continue
        mask = probs_to_mask(probs, mode, threshold)
        rgb = viz.to_rgb(image)
        cols = st.columns([2, 2, 2, 2])
        cols[0].image(rgb, caption=markdown_text(f"{name} ({image.shape[1]}x{image.shape[0]})"), width="stretch")
        cols[1].image(viz.overlay(rgb, mask, colors, opacity, None, unpainted=record.dataset.labels.unpainted), caption="predicted mask over the image", width="stretch")
        cols[2].image(viz.heatmap_with_colorbar(viz.class_probability(probs, mode, class_index)), caption=f"probability of {markdown_text(class_names[class_index])} (0 to 1)", width="stretch")
        areas = viz.mask_areas(mask, class_names[: len(colors)])
        cols[3].dataframe(areas, hide_index=True, column_config={"percent": st.column_config.NumberColumn("% of image", format="%.2f")}, key=f"areas_{n}_{name}")
        data, file_name, mime = viz.encode_mask(mask, mode, name)
        cols[3].download_button("Download mask", data, file_name, mime, key=f"dl_{n}_{name}", icon=":material/download:", on_click="ignore",
                                help="Class ids as pixel values (0 = background); multilabel: a zip of one 0/1 PNG per class.")
        with st.expander("Heatmaps of every class"):
            st.image(viz.colorbar_horizontal(320, label="probability"), width=320)
            hm = st.columns(len(class_names))
            for k, col in enumerate(hm):
                col.image(viz.heatmap(viz.class_probability(probs, mode, k)), caption=markdown_text(class_names[k]), width="stretch")
