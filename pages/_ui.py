"""Shared pieces of the dashboard pages: workspace access, bounded caches, friendly errors.

Pages import this module; it holds no mutable module-level state (caches are
Streamlit's, keyed by the workspace path and the dataset's content hash).
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import streamlit as st

from segcore import visualize as viz
from segcore.data.dataset import Dataset, DatasetInfo, list_datasets, load_dataset
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
    """The workspace of this server (``$SEGCORE_WORKSPACE`` or the project default)."""
    return get_workspace()


def optional_module(name: str):
    """Import ``name`` if this installation has it, else ``None`` (pages then explain what is missing)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise


@contextmanager
def friendly_errors(action: str) -> Iterator[None]:
    """Show errors from ``segcore`` as a message that says what failed, instead of a stack trace."""
    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, PermissionError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        st.error(f"Could not {action}: {message}")


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


def class_legend(info: DatasetInfo) -> str:
    """Markdown legend: a coloured square per class (background shown as 'not painted')."""
    parts = []
    for k, c in enumerate(info.classes):
        r, g, b = (int(v) for v in c.color[:3])
        swatch = f"<span style='display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});border:1px solid #888;margin-right:0.3em;vertical-align:middle'></span>"
        parts.append(f"{swatch}{c.name}" + (" (not painted)" if k == 0 else ""))
    if info.ignore_index is not None:
        r, g, b = viz.IGNORE_COLOR
        parts.append(f"<span style='display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});border:1px solid #888;margin-right:0.3em;vertical-align:middle'></span>void (not scored)")
    return " &nbsp; ".join(parts)


def page_path(name: str) -> str:
    """Path of a page file, for st.page_link / st.switch_page."""
    return str(Path("pages") / f"{name}.py")


def run_action(fn, run_id: str, ws: Workspace) -> Any:
    """Call a run action (stop, resume, delete...) with the workspace when the function takes one."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "ws" in params or "workspace" in params or len(params) >= 2:
        return fn(run_id, ws)
    return fn(run_id)
