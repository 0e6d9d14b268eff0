"""User text made safe to show: class names, run names, notes, tags, file names.

Such text comes from uploads and form fields. Shown through a component that
interprets markup (Markdown, HTML, plotly labels), a name such as
``<img src=x onerror=...>`` or ``[click](https://...)`` would become live
markup. These functions turn text into markup that shows exactly the text:

* :func:`markdown_text` for Markdown (``st.markdown``, captions, messages,
  labels), also inside HTML that Markdown carries.
* :func:`plotly_text` for plotly titles, axis labels and legends.
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
    s = " ".join(str(text).split()) if text is not None else ""
    s = "".join(f"&#{ord(ch)};" if ch in _SPECIAL else ch for ch in s)
    for old, new in _AUTOLINKS:
        s = s.replace(old, new)
    return re.sub(r"(?i)(www)(?=\.)", "\\1" + _ZWSP, s)


def plotly_text(text: Any) -> str:
    """``text`` for a plotly label: plotly reads a few HTML tags (``<a href>``, ``<b>``, ``<br>``) in labels."""
    return html.escape(str(text), quote=True)
