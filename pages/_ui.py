"""Shared pieces of the dashboard pages: workspace access, bounded caches, friendly errors.

Pages import this module; it holds no mutable module-level state (caches are
Streamlit's, keyed by the workspace path and the dataset's content hash).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import streamlit as st

from segcore import visualize as viz
from segcore.data.dataset import Dataset, DatasetInfo, list_datasets, load_dataset
from segcore.fsutil import describe_os_error
from segcore.runfiles import RunFileError
from segcore.safetext import markdown_text
from segcore.workspace import Workspace, get_workspace

DISPLAY_SIZE = 256  # longest side of browse thumbnails, in pixels


def _route_through_app() -> None:
    """Make sure pages run under ``streamlit_app.py``'s ``st.navigation``.

    Streamlit treats an app with a ``pages/`` folder as an old-style multipage
    app until its main script has called ``st.navigation`` once. When a freshly
    started server's first visitor opens a page URL directly (a bookmark of
    ``/data``), the page would run on its own with an automatic sidebar. Clear
    that mode and rerun, so the router (demo dataset, page titles) runs first.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without this internal: nothing to correct
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        st.rerun()


_route_through_app()


def workspace() -> Workspace:
    """The workspace of this server (``$SEGCORE_WORKSPACE`` or the project default).

    Every page load also makes sure a queue worker serves runs that are waiting
    (one may have been killed), so the queue never stalls.
    """
    ws = get_workspace()
    from segcore.training import launcher

    launcher.wake_queue(ws)
    return ws


def readable(read, default=None, *, warn: bool = False):
    """``read()``, or ``default`` when the run file it reads is damaged or unreadable.

    ``warn`` shows what is wrong with the file (the runs table names damaged
    settings and status itself).
    """
    try:
        return read()
    except (RunFileError, OSError) as exc:
        if warn:
            st.warning(str(exc))
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


def select_dataset(ws: Workspace, label: str = "Dataset", key: str = "dataset") -> DatasetInfo | None:
    """A dataset picker shared by pages (the choice is kept in session state across pages)."""
    infos = datasets(ws)
    if not infos:
        return None
    names = [i.name for i in infos]
    current = st.session_state.get(key)
    if current not in names:
        st.session_state[key] = "demo" if "demo" in names else names[0]
    name = st.selectbox(label, names, key=key)
    return next(i for i in infos if i.name == name)


def class_legend(info: DatasetInfo, void: bool = True) -> str:
    """Markdown legend: a coloured square per class (background shown as 'not painted'); ``void`` adds the ignore colour.

    The swatches are HTML (shown with ``unsafe_allow_html``); class names come
    from imported data and are written as plain text (``markdown_text``), so a
    name such as ``<img src=x>`` is shown, never rendered.
    """
    parts = []
    for k, c in enumerate(info.classes):
        r, g, b = (int(v) for v in c.color[:3])
        swatch = f"<span style='display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});border:1px solid #888;margin-right:0.3em;vertical-align:middle'></span>"
        parts.append(f"{swatch}{markdown_text(c.name)}" + (" (not painted)" if k == 0 else ""))
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


def run_columns() -> dict:
    """Column settings for tables of runs (from ``visualize.runs_frame``): number formats and what the columns mean."""
    return {
        "run": st.column_config.TextColumn("run", help="Run id: start time, model, dataset and a random suffix; the run's folder name."),
        "model": st.column_config.TextColumn("model", help="unet-d3f8: plain U-Net, depth 3, 8 base filters. Otherwise the encoder (vgg16, resnet50...), -frozen: encoder not trained, -ft5: encoder fine-tuned from epoch 5."),
        "best val Dice": st.column_config.NumberColumn(
            "best val Dice", format="%.3f",
            help="Dice on the validation images at the best epoch (0 = no overlap with the true masks, 1 = perfect).",
        ),
        "test Dice": st.column_config.NumberColumn(
            "test Dice", format="%.3f",
            help="Dice on the held-out test images, averaged over the foreground classes; measured once training has ended.",
        ),
        "epochs": st.column_config.TextColumn("epochs", help="Epochs done / epochs planned (early stopping may end a run sooner)."),
    }
