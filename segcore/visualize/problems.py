"""The problems an import found, as a table for people."""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from segcore.data.dataset import Problem

PROBLEM_COLUMNS = ["severity", "kind", "message", "files", "which"]


def problems_frame(problems: Iterable[Problem]) -> pd.DataFrame:
    """One row per problem: the whole message (it ends with what to do), and the files it names.

    Args:
        problems: :class:`~segcore.data.dataset.Problem` records, from an
            ``ImportReport`` or a ``DatasetInfo`` (``Problem.from_dict`` reads
            one back from a report's ``to_dict()``).

    Returns:
        DataFrame with columns ``severity``, ``kind``, ``message``, ``files``
        (how many, or ``–``) and ``which`` (the first three files, or "the
        dataset as a whole").
    """
    rows = []
    for p in problems:
        files = list(p.files)
        rows.append({
            "severity": p.severity, "kind": p.kind, "message": p.message,
            "files": str(len(files)) if files else "–",
            "which": ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "") if files else "the dataset as a whole",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=PROBLEM_COLUMNS)
