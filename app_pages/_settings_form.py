"""The Train page's settings form, generated from the settings' declarations (``segcore.config.Setting``).

Each setting says how it is shown (its ``Widget``: kind, label, values, key); this module turns that
into Streamlit widgets with stable keys, laid out in rows, and reads their values back as settings
values (dotted path to value). A setting added to ``segcore/config.py`` with a widget appears here
without a change to the page.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import streamlit as st

from segcore.config import Declared

DEFAULT = "default"  # stands for None in a drop-down (a selectbox whose value is None shows "Choose an option")
A_FILE = "a file…"
ROW = 4.0  # the width of a row, in the widgets' width units


def pick(settings: Iterable[Declared], section: str, *, advanced: bool = False, pretrained: bool | None = None,
         exclude: Iterable[str] = ()) -> list[Declared]:
    """The settings of ``section`` (``"model"``, ``"train"``, ``"train.augment"``...) that the page shows.

    Args:
        advanced: the advanced ones (under "Advanced settings") rather than the others.
        pretrained: None for every encoder; else only the settings that apply to a pretrained encoder (True) or
            to the plain U-Net (False).
        exclude: paths the page shows in its own way.
    """
    skip = set(exclude)
    out = []
    for d in settings:
        parent = d.path.rpartition(".")[0]
        if parent != section or d.meta.widget is None or d.path in skip or d.meta.advanced != advanced:
            continue
        if pretrained is not None and d.meta.applies and d.meta.applies != ("pretrained" if pretrained else "plain"):
            continue
        out.append(d)
    return out


def rows(items: Sequence[Declared], layout: Sequence[Sequence[str]] = ()) -> list[list[Declared]]:
    """``items`` in rows: first the ``layout``'s rows (paths; those not in ``items`` left out), then the rest,
    in field order, as many to a row as their widths fit."""
    by_path = {d.path: d for d in items}
    out = [[by_path[p] for p in row if p in by_path] for row in layout]
    out = [row for row in out if row]
    placed = {d.path for row in out for d in row}
    row: list[Declared] = []
    for d in items:
        if d.path in placed:
            continue
        if row and sum(x.meta.widget.width for x in row) + d.meta.widget.width > ROW:
            out.append(row)
            row = []
        row.append(d)
    if row:
        out.append(row)
    return out


def show(items: Sequence[Declared], values: dict[str, Any], *, layout: Sequence[Sequence[str]] = (),
         overrides: Mapping[str, Mapping[str, Any]] | None = None, where: Any = st) -> dict[str, Any]:
    """Render ``items`` in rows into ``where``; ``values`` (dotted path to value) gives each widget its starting
    value and receives what it shows. ``overrides`` gives a setting's ``widget`` keyword arguments (``options``,
    ``labels``, ``none``)."""
    overrides = overrides or {}
    for row in rows(items, layout):
        columns = where.columns([d.meta.widget.width for d in row])
        for column, d in zip(columns, row):
            values[d.path] = widget(d, column, value=values[d.path], disabled=not enabled(d, values),
                                    **overrides.get(d.path, {}))
    return values


def enabled(d: Declared, values: Mapping[str, Any]) -> bool:
    """Whether the setting's widget is live: its ``enabled_by`` sibling has one of the values that use it."""
    if d.meta.enabled_by is None:
        return True
    sibling, wanted = d.meta.enabled_by
    parent = d.path.rpartition(".")[0]
    return values.get(f"{parent}.{sibling}" if parent else sibling) in wanted


def follow(settings: Iterable[Declared], values: dict[str, Any]) -> dict[str, Any]:
    """Settings that follow another (the split's seed follows the training seed) take its value."""
    for d in settings:
        if d.meta.follows and d.meta.follows in values:
            values[d.path] = values[d.meta.follows]
    return values


def state_value(d: Declared, value: Any) -> Any:
    """A setting's value as its widget holds it in the session state (to set a widget from, say, the plan)."""
    w = d.meta.widget
    if value is None and w is not None and w.none:
        return 0.0 if w.kind == "number" and d.annotation.startswith("float") else (0 if w.kind == "number" else DEFAULT)
    if d.annotation.startswith("float") and value is not None:
        return float(value)
    return value


def widget(d: Declared, where: Any = st, *, value: Any, disabled: bool = False, options: Sequence[Any] | None = None,
           labels: Mapping[Any, str] | None = None, none: str | None = None) -> Any:
    """One setting's widget (key ``d.key``), starting at ``value``; returns the setting's value it shows.

    Args:
        options: the values to offer where they depend on the page (the datasets, the finished runs).
        labels: texts for values, over the declared ones.
        none: the text for None, over the declared one.
    """
    w = d.meta.widget
    if w is None:
        raise ValueError(f"setting {d.path} has no widget: {d.meta.no_widget}")
    key, label = d.key, w.label
    help_text = d.meta.help[:1].upper() + d.meta.help[1:] + "."
    shown = {**w.labels, **(labels or {})}
    none_text = w.none if none is None else none
    kind = w.kind

    def text(v: Any) -> str:
        if v == DEFAULT:
            return none_text
        if v in shown:
            return shown[v]
        return f"{v:g}" if isinstance(v, float) else str(v)

    if kind in ("choice", "radio"):
        opts = [DEFAULT if o is None else o for o in (options if options is not None else (w.values or d.meta.choices))]
        current = DEFAULT if value is None else value
        index = opts.index(current) if current in opts else 0
        if kind == "radio":
            out = where.radio(label, opts, index, horizontal=True, key=key, format_func=text, help=help_text, disabled=disabled)
        else:
            out = where.selectbox(label, opts, index, key=key, format_func=text, help=help_text, disabled=disabled)
        return None if out == DEFAULT else out
    if kind == "steps":
        opts = sorted(set(w.values) | {value})
        return where.select_slider(label, opts, value, key=key, format_func=text, help=help_text, disabled=disabled)
    if kind == "slider":
        lo, hi, step = w.values
        return where.slider(label, lo, hi, float(value), step, key=key, help=help_text, disabled=disabled)
    if kind == "number":
        lo, hi, *step = w.values
        start = type(lo)(0) if value is None else type(lo)(value)
        out = where.number_input(label, lo, hi, start, *step, key=key, help=help_text, disabled=disabled)
        return None if none_text and not out else out
    if kind == "toggle":
        return where.toggle(label, bool(value), key=key, help=help_text, disabled=disabled)
    if kind == "checkbox":
        return where.checkbox(label, bool(value), key=key, help=help_text, disabled=disabled)
    if kind == "text":
        return where.text_input(label, value or "", key=key, help=help_text, disabled=disabled, placeholder=w.hint or None).strip()
    if kind == "list":
        typed = where.text_input(label, ", ".join(value or ()), key=key, help=help_text, disabled=disabled,
                                 placeholder=w.hint or None)
        return tuple(t.strip() for t in typed.split(",") if t.strip())
    if kind == "file":
        opts = [*w.values, A_FILE]
        index = opts.index(value) if value in opts else len(opts) - 1
        out = where.selectbox(label, opts, index, key=key, help=help_text, disabled=disabled)
        if out != A_FILE:
            return out
        return where.text_input(f"{label}: a file on the server", "" if value in opts else value, key=f"{key}_file",
                                disabled=disabled) or value
    raise ValueError(f"setting {d.path}: unknown widget kind {kind!r}")
