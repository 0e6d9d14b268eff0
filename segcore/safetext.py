"""User text made safe to show: class names, run names, notes, tags, file names.

Such text comes from uploads and form fields. Shown through a component that
interprets markup (Markdown, HTML, plotly labels), a name such as
``<img src=x onerror=...>`` or ``[click](https://...)`` would become live
markup. These functions turn text into markup that shows exactly the text:

* :func:`markdown_text` for Markdown (``st.markdown``, captions, messages,
  labels), also inside HTML that Markdown carries.
* :func:`quoted` for a value named inside a sentence (where ``{value!r}`` would be written).
* :func:`plotly_text` for plotly titles, axis labels and legends.
* :func:`spreadsheet_text`, :func:`csv_bytes` and :func:`markdown_cell` for
  exported tables: a cell such as ``=HYPERLINK(...)`` would run as a formula
  when the file is opened in a spreadsheet (OWASP "CSV injection"); text
  that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets
  a leading ``'``, which spreadsheets show as text.

Pages show user text only through these, and exports are written only
through them (``tests/test_security.py`` renders every page with hostile
names in every field and reads every export).
"""

from __future__ import annotations

import html
import re
from typing import Any

# Characters that make links, images, raw HTML, math or Streamlit directives
# (":red[...]") in Markdown, and emphasis or code marks. Written as numeric
# character references they are plain text: CommonMark never reads a reference
# as syntax. Ordinary punctuation (".", "_", "(", ":") is left readable.
_SPECIAL = set("\\&<>[]$@*`~")
# GFM turns bare URLs and e-mail addresses into links after character references
# are decoded, so a reference cannot stop it: a zero-width space (U+200B, not
# shown) after "://", "www" and "@" does.
_ZWSP = "\u200b"
_AUTOLINKS = (("://", ":" + _ZWSP + "//"), ("&#64;", "&#64;" + _ZWSP))


def markdown_text(text: Any) -> str:
    """``text`` as Markdown (or HTML inside Markdown) on one line, with no link, image, tag or directive in it.

    What is shown is the text itself, with runs of white space (newlines too)
    shown as one space (and an invisible zero-width space inside bare URLs).
    """
    raw = str(text) if text is not None else ""
    s = " ".join(raw.split())
    if s:  # a run of white space at either end is shown as one space too: fragments joined later keep their gap
        s = (" " if raw[0].isspace() else "") + s + (" " if raw[-1].isspace() else "")
    s = "".join(f"&#{ord(ch)};" if ch in _SPECIAL else ch for ch in s)
    for old, new in _AUTOLINKS:
        s = s.replace(old, new)
    return re.sub(r"(?i)(www)(?=\.)", "\\1" + _ZWSP, s)


def quoted(text: Any) -> str:
    """``text`` in single quotes for a Markdown sentence (``run 'a [b]'``), with no markup in it."""
    return f"'{markdown_text(text)}'"


def plotly_text(text: Any) -> str:
    """``text`` for a plotly label: plotly reads a few HTML tags (``<a href>``, ``<b>``, ``<br>``) in labels."""
    return html.escape(str(text), quote=True)


# Characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: Any) -> Any:
    """``value`` for a cell of an exported table: text starting with a formula character gets a leading ``'``.

    Numbers and other values are returned unchanged (a negative number stays a number).
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_frame(frame):
    """A copy of a ``pandas.DataFrame`` with every text cell, index label and column label through ``spreadsheet_text``."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(spreadsheet_text)

    def labels(index):
        if isinstance(index, pd.MultiIndex):
            return index.set_levels([level.map(spreadsheet_text) for level in index.levels])
        return index.map(spreadsheet_text).rename(spreadsheet_text(index.name))

    out.index = labels(out.index)
    out.columns = labels(out.columns)
    return out


def csv_bytes(frame, **to_csv: Any) -> bytes:
    """``frame`` as UTF-8 CSV for a download, with formula characters neutralised (``safe_frame``); ``to_csv`` as pandas takes it.

    Rows end in CRLF (RFC 4180), so a line break inside a cell is quoted and cannot start a new row.
    """
    if "index_label" in to_csv:
        to_csv["index_label"] = spreadsheet_text(to_csv["index_label"])
    # RFC 4180 line ends: a field holding a carriage return is then quoted too, so it cannot start a row.
    to_csv.setdefault("lineterminator", "\r\n")
    return safe_frame(frame).to_csv(**to_csv).encode("utf-8")


def markdown_cell(value: Any) -> str:
    """Text for a cell of an exported Markdown table: no markup, no formula, no ``|`` that would split the row."""
    return markdown_text(spreadsheet_text(str(value))).replace("|", "\\|")
