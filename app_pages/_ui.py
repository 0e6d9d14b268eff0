"""Shared pieces of the dashboard pages: workspace access, bounded caches, friendly errors.

Pages import this module; it holds no mutable module-level state (caches are
Streamlit's, keyed by the workspace path and the dataset's content hash).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import streamlit as st

from segcore import visualize as viz
from segcore.access import Actor, actor_from_claims, denial, local_actor
from segcore.data.dataset import Dataset, DatasetInfo, list_datasets, load_dataset
from segcore.fsutil import describe_os_error
from segcore.runfiles import RunFileError
from segcore.runs import RunFolder
from segcore.safetext import markdown_text, quoted
from segcore.workspace import Workspace, get_workspace

DISPLAY_SIZE = 256  # longest side of browse thumbnails, in pixels


def workspace() -> Workspace:
    """The workspace of this server (``$SEGCORE_WORKSPACE`` or the project default).

    Reading it starts nothing: ``streamlit_app.py`` wakes the run queue once per page load.
    """
    return get_workspace()


def signin_on() -> bool:
    """Whether sign-in is configured (an ``[auth]`` section in ``.streamlit/secrets.toml``)."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all
        return False


def actor() -> Actor:
    """Who is using this session: the signed-in identity with its role, or the local user (an admin) without sign-in.

    Raises:
        ValueError: the identity has no e-mail address, or ``server.json`` is not valid.
    """
    if not signin_on():
        return local_actor()
    claims = st.user.to_dict() if getattr(st.user, "is_logged_in", False) else {}
    return actor_from_claims(claims, get_workspace().settings())


def permit(action: str, owner: str | None = None, *, disabled: bool = False, help: str | None = None) -> dict:
    """``disabled`` and ``help`` for the widget of ``action``: disabled, saying why, where this session's role may not.

    Pages only hide what segcore refuses anyway (``segcore.access``); spread into the widget: ``st.button(..., **permit("stop", owner))``.
    """
    try:
        reason = denial(actor(), action, owner)
    except ValueError as exc:
        reason = str(exc)
    return {"disabled": disabled or reason is not None, "help": f"Not allowed: {markdown_text(reason)}." if reason else help}


def readable(read, default=None, *, warn: bool = False):
    """``read()``, or ``default`` when the run file it reads is damaged or unreadable.

    ``warn`` shows what is wrong with the file (the runs table names damaged
    settings and status itself).
    """
    try:
        return read()
    except (RunFileError, OSError) as exc:
        if warn:
            st.warning(markdown_text(exc))
        return default


@contextmanager
def friendly_errors(action: str) -> Iterator[None]:
    """Show errors from ``segcore`` as a message that says what failed, instead of a stack trace."""
    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, PermissionError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            message = describe_os_error(exc)
        st.error(f"Could not {markdown_text(action)}: {markdown_text(message)}")


def datasets(ws: Workspace) -> list[DatasetInfo]:
    """Every dataset in the workspace (read fresh: the folder is the truth)."""
    return list_datasets(ws)


def dataset_key(info: DatasetInfo) -> str:
    """A key that changes whenever the dataset's content does (for caches)."""
    return info.content_hash or f"{info.created_at}:{len(info.samples)}"


@st.cache_resource(max_entries=16, show_spinner=False)
def open_dataset(root: str, name: str, key: str) -> Dataset:
    """The dataset object (reads dataset.json once per content version)."""
    return load_dataset(name, get_workspace(root))


@st.cache_data(max_entries=512, show_spinner=False)
def sample_pair(root: str, name: str, key: str, sample_id: str, size: int = DISPLAY_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, mask) of one sample, resized for display (nearest neighbour for the mask)."""
    ds = open_dataset(root, name, key)
    image = viz.resize_for_display(viz.to_rgb(ds.image(sample_id)), size)
    mask = viz.resize_for_display(ds.mask(sample_id), size, nearest=True)
    return image, mask


def mtime(path: Path) -> float:
    """When ``path`` last changed (0.0 when it is missing): part of a cache key, so a cache follows the file."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(max_entries=6, show_spinner="Loading the model (the first time takes a few seconds)…")
def predictor(path: str, mtime: float):
    """The ``Predictor`` of the run folder at ``path``, loaded once per checkpoint time ``mtime``.

    Keras is imported on the first call only, so pages that never predict stay light.
    """
    from segcore.prediction import Predictor

    run = RunFolder(path)
    run.checked_model_path()  # a checkpoint cut short is named as damaged (RunFileError), not "File not found"
    return Predictor.from_folder(run)


def select_dataset(ws: Workspace, label: str = "Dataset", key: str = "dataset") -> DatasetInfo | None:
    """A dataset picker shared by pages (the choice is kept in session state across pages)."""
    infos = datasets(ws)
    if not infos:
        return None
    names = [i.name for i in infos]
    from_url(key, "dataset", names, fallback="demo")
    name = st.selectbox(label, names, key=key, **url_sync("dataset", key))
    to_url("dataset", key)
    return infos[names.index(name)]


def class_legend(info: DatasetInfo, void: bool = True) -> str:
    """Markdown legend: a coloured square per class (a background class 0 shown as 'not painted'); ``void`` adds the ignore colour.

    The swatches are HTML (shown with ``unsafe_allow_html``); class names come
    from imported data and are written as plain text (``markdown_text``), so a
    name such as ``<img src=x>`` is shown, never rendered.
    """
    from segcore.labels import Labels

    unpainted = Labels.of_dataset(info).unpainted  # the one owner of what class 0 means
    parts = []
    for k, c in enumerate(info.classes):
        r, g, b = (int(v) for v in c.color[:3])
        swatch = f"<span style='display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});border:1px solid #888;margin-right:0.3em;vertical-align:middle'></span>"
        parts.append(f"{swatch}{markdown_text(c.name)}" + (" (not painted)" if k == unpainted else ""))
    if void and info.ignore_index is not None:
        r, g, b = viz.IGNORE_COLOR
        parts.append(f"<span style='display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});border:1px solid #888;margin-right:0.3em;vertical-align:middle'></span>void (not scored)")
    return " &nbsp; ".join(parts)


# Display names for the metric keys of evaluation reports and histories.
METRIC_LABELS = {
    "loss": "Loss", "dice": "Dice", "iou": "IoU", "precision": "Precision", "recall": "Recall",
    "pixel_accuracy": "Pixel accuracy",
}
METRICS_HELP = (
    "Dice and IoU measure the overlap of the predicted and the true mask (0 = none, 1 = perfect); "
    "precision: share of the predicted pixels that are right; recall: share of the true pixels that were found; "
    "pixel accuracy: share of all pixels classified correctly."
)


def metric_label(name: str, class_names: list[str] | tuple[str, ...] = ()) -> str:
    """'dice' -> 'Dice', 'dice_2' -> 'Dice: <class 2>', anything else unchanged."""
    base, _, k = name.rpartition("_")
    if base and k.isdigit() and base in METRIC_LABELS:
        index = int(k)
        return f"{METRIC_LABELS[base]}: {class_names[index] if index < len(class_names) else f'class {index}'}"
    return METRIC_LABELS.get(name, name)


def curve_options(key: str) -> tuple[float, bool]:
    """The smoothing slider and the log-scale toggle above training curves; returns (smoothing weight, log y axis)."""
    c = st.columns([3, 1], vertical_alignment="bottom")
    smoothing = c[0].slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key=f"{key}_smoothing",
                            help="An exponential moving average, as TensorBoard's: 0 shows the curves as recorded, "
                                 "0.9 evens out most of the noise. The raw curve stays faint behind the smoothed one.")
    log_y = c[1].toggle("Log scale", key=f"{key}_log", help="A logarithmic y axis: a loss that keeps falling by factors stays readable.")
    return smoothing, log_y


MISSING = "–"  # what a table cell shows for a score not measured (yet): never the word None


def run_columns() -> dict:
    """Column settings for tables of runs (from ``visualize.runs_frame``): number formats and what the columns mean."""
    return {
        "run": st.column_config.TextColumn("run", help="The run's name, else its id without the start time (model, dataset, a random suffix); runs that share a name get that suffix added."),
        "model": st.column_config.TextColumn("model", help="unet-d3f8: plain U-Net, depth 3, 8 base filters. Otherwise the encoder (vgg16, resnet50...), -frozen: encoder not trained, -ft5: encoder fine-tuned from epoch 5."),
        "best val Dice": st.column_config.NumberColumn(
            "best val Dice", format="%.3f",
            help="Dice on the validation images at the best epoch, every class counted (0 = no overlap with the true masks, 1 = perfect).",
        ),
        "test Dice, all classes": st.column_config.NumberColumn(
            "test Dice, all classes", format="%.3f",
            help="Dice on the held-out test images at their own size, averaged over every class, background included: "
                 "the figure runs are ranked by; a model that paints nearly everything as one class scores low here.",
        ),
        "test Dice": st.column_config.NumberColumn(
            "test Dice", format="%.3f",
            help="Macro Dice on the held-out test images: the foreground classes, or every class when class 0 is a real class; "
                 "measured once training has ended.",
        ),
        "epochs": st.column_config.TextColumn("epochs", help="Epochs done / epochs planned (early stopping may end a run sooner)."),
        "device": st.column_config.TextColumn("device", help="What the run trains on (the GPU numbers of its machine, or CPU); on the Ray engine also the node."),
        "learning rate": st.column_config.NumberColumn("learning rate", format="%g", help="The learning rate the run starts from."),
        "image size": st.column_config.NumberColumn("image size", format="%d", help="Side of the square the model sees, in pixels."),
        "batch": st.column_config.NumberColumn("batch", format="%d", help="Images per batch, per device."),
        "norm": st.column_config.TextColumn("norm", help="Normalisation after each convolution of the U-Net's own blocks: group, batch or none."),
        "loss": st.column_config.TextColumn("loss", help="The loss as set; auto: Dice + cross-entropy of the head."),
        "encoder": st.column_config.TextColumn("encoder", help="none: the plain U-Net."),
        "max epochs": st.column_config.NumberColumn("max epochs", format="%d", help="The most epochs the run may train; early stopping or a time budget may end it sooner."),
    }


# --------------------------------------------------------------------------- selections in the URL
#
# Each page keeps its selection in the address (``?run=...&dataset=...``) as well as in the
# session, so a link to a run's Compare or Predict view opens that view for whoever follows it.


def from_url(key: str, param: str, options: list, fallback=None) -> None:
    """Before widget ``key`` is created: take ``?param=`` when it names one of ``options``; else keep the
    session's choice if it is still an option, else ``fallback`` (or the first option)."""
    wanted = st.query_params.get(param)
    if wanted is not None and wanted in options:
        st.session_state[key] = wanted
    elif st.session_state.get(key) not in options and options:
        st.session_state[key] = fallback if fallback in options else options[0]


def unknown_in_url(param: str, options, what: str, key: str) -> list[str]:
    """Warn when ``?param=`` names something not among ``options`` (a deleted run, a typo in a shared link), so a page
    never silently shows another in its place. Call it after ``from_url`` has chosen what widget ``key`` shows instead:
    the warning stays, through polling reruns, until the user picks something else. Returns the unknown values."""
    store = f"{key}__unknown_link"
    unknown = [v for v in st.query_params.get_all(param) if v not in options]
    if unknown:
        st.session_state[store] = {"names": unknown, "instead": st.session_state.get(key)}
    note = st.session_state.get(store)
    if note is None:
        return []
    if st.session_state.get(key) != note["instead"]:  # the user has chosen since
        del st.session_state[store]
        return []
    for v in note["names"]:
        st.warning(f"The link names {what} {quoted(v)}, which is not in this workspace (it may have been deleted); "
                   "showing another instead.")
    return list(note["names"])


def many_from_url(key: str, param: str, options: list, fallback: list) -> None:
    """``from_url`` for a multiselect: every ``?param=`` value that is an option (in URL order)."""
    wanted = [v for v in st.query_params.get_all(param) if v in options]
    if wanted:
        st.session_state[key] = list(dict.fromkeys(wanted))
    elif key not in st.session_state or any(v not in options for v in st.session_state[key]):
        st.session_state[key] = [v for v in fallback if v in options]


def to_url(param: str, key: str) -> None:
    """Write widget ``key``'s value into ``?param=`` (a list gives the parameter once per value)."""
    value = st.session_state.get(key)
    if value is None or value == []:
        if param in st.query_params:
            del st.query_params[param]
        return
    values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if st.query_params.get_all(param) != values:
        st.query_params[param] = values if len(values) > 1 else values[0]


def url_sync(param: str, key: str):
    """An ``on_change`` callback that writes the widget's new value into the URL before the rerun reads it."""
    return {"on_change": to_url, "args": (param, key)}


# --------------------------------------------------------------------------- runs


def run_labels(summaries) -> dict[str, str]:
    """Run id -> the label every page shows (``segcore.visualize.run_labels``)."""
    return viz.run_labels(summaries)


def damage_notes(summary, label: str | None = None) -> None:
    """One warning per damaged file of a run (a checkpoint or prediction cache cut short, a damaged notes file),
    so a page that shows the run says which file is wrong instead of failing on it."""
    for name, reason in (summary.damage or {}).items():
        st.warning(markdown_text(f"{label or viz.run_label(summary)}: {name} is damaged: {reason}"))


def code_text(text) -> str:
    """``text`` as a Markdown code span: shown exactly, never read as markup (a backtick in it cannot close the span)."""
    s = " ".join(str(text).split())
    ticks = 1
    while "`" * ticks in s:
        ticks += 1
    fence = "`" * ticks
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def what_next(summary, summaries, key: str) -> None:
    """After a run has finished: its test Dice, and links to its predictions and to a comparison."""
    label = viz.run_labels(summaries).get(summary.run_id, viz.run_label(summary))
    test = summary.test or {}
    dice = test.get("all_dice", test.get("macro_dice"))
    with st.container(border=True, key=f"next_{key}"):
        if dice is None:
            score = "no test evaluation (the split has no test images)"
        elif "all_dice" in test:
            macro = test.get("macro_dice")
            score = (f"test Dice **{dice:.3f}** (held-out images at their own size, every class counted"
                     + (f"; macro {macro:.3f}" if isinstance(macro, (int, float)) else "") + ")")
        else:
            score = f"test Dice **{dice:.3f}** (held-out images, macro)"
        st.markdown(f":material/check_circle: **{markdown_text(label)}** has finished: {score}. What next?")
        c = st.columns(2)
        c[0].page_link("app_pages/predict.py", label="See its predictions (Predict)", icon=":material/auto_fix_high:",
                       query_params={"run": summary.run_id})
        others = [s for s in summaries if s.state == "finished" and s.dataset == summary.dataset and s.run_id != summary.run_id]
        if others:
            c[1].page_link("app_pages/compare.py", label=f"Compare it with {len(others)} other run(s) on {markdown_text(summary.dataset)}",
                           icon=":material/compare:", query_params={"run": summary.run_id})
        else:
            c[1].caption(f"Train another model on {markdown_text(summary.dataset)} to compare the two side by side.")
