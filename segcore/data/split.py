"""Train / validation / test splits of a dataset's sample ids.

Three methods, chosen by ``SplitConfig.method``:

- ``"random"``: a seeded shuffle cut by ``val_fraction`` and ``test_fraction``.
- ``"ids"``: explicit id lists; an entry may be a range such as ``"1-27"``
  that matches every numeric id in it (``"007"`` counts as 7). Ids not listed
  for train or val go to test when ``test_ids`` is empty; validation is drawn
  from train with ``val_fraction`` when ``val_ids`` is empty.
- ``"subset"``: the dataset's own ``train``/``val``/``test`` folders, as
  recorded per sample at import; validation is drawn from train when the
  dataset has no ``val`` subset.

The same config and ids always give the same split, in every process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from segcore.config import SplitConfig

METHODS = ("random", "ids", "subset")
_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


@dataclass(frozen=True)
class Split:
    """Sample ids of each part of a split (disjoint, each in dataset order)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[str]]) -> "Split":
        return cls(tuple(data["train"]), tuple(data["val"]), tuple(data["test"]))


def expand_ids(entries: Iterable[str], ids: Sequence[str], what: str = "ids") -> list[str]:
    """Resolve id entries and ranges (``"1-27"``) against the dataset's ids.

    Args:
        entries: ids or ranges ``"A-B"`` (inclusive, over numeric ids).
        ids: the dataset's sample ids.
        what: which list this is, for error messages.

    Returns:
        The matching ids in dataset order, without duplicates.

    Raises:
        ValueError: naming the entries that match no sample.
    """
    known = set(ids)
    numeric = {}
    for sample_id in ids:
        if sample_id.isdigit():
            numeric.setdefault(int(sample_id), []).append(sample_id)
    chosen: set[str] = set()
    unmatched = []
    for entry in entries:
        entry = str(entry)
        if entry in known:
            chosen.add(entry)
            continue
        match = _RANGE_RE.match(entry)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if lo > hi:
                raise ValueError(f"{what}: range {entry!r} runs backwards; write it as '{hi}-{lo}'")
            hits = [i for n in range(lo, hi + 1) for i in numeric.get(n, ())]
            if hits:
                chosen.update(hits)
                continue
        elif entry.isdigit() and int(entry) in numeric:
            chosen.update(numeric[int(entry)])
            continue
        unmatched.append(entry)
    if unmatched:
        sample = list(ids[:5])
        raise ValueError(f"{what}: {unmatched} match no sample id (ids look like {sample})")
    return [i for i in ids if i in chosen]


def _cut(ids: Sequence[str], fraction: float, rng: np.random.Generator, keep_one: bool) -> tuple[list[str], list[str]]:
    """Draw ``round(len * fraction)`` ids out of ``ids``; returns (rest, drawn), both in input order."""
    n = len(ids)
    k = int(round(n * fraction))
    if fraction > 0 and k == 0 and keep_one and n >= 2:
        k = 1
    k = min(k, max(n - 1, 0))  # never leave the rest empty
    picked = set(rng.permutation(n)[:k].tolist())
    drawn = [ids[i] for i in range(n) if i in picked]
    rest = [ids[i] for i in range(n) if i not in picked]
    return rest, drawn


def split_ids(
    ids: Sequence[str],
    config: SplitConfig,
    subsets: Mapping[str, str | None] | None = None,
) -> Split:
    """Split sample ids into train, validation and test as ``config`` says.

    Args:
        ids: every sample id of the dataset, in dataset order.
        config: the split settings.
        subsets: sample id -> ``"train"``/``"val"``/``"test"``/None, for ``method="subset"``.

    Returns:
        A ``Split``; train is never empty.

    Raises:
        ValueError: for an unknown method, fractions out of range, overlapping
            or unknown ids, or a dataset without subsets for ``"subset"``.
    """
    ids = list(ids)
    if not ids:
        raise ValueError("cannot split a dataset with no samples")
    for name in ("val_fraction", "test_fraction"):
        value = getattr(config, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"split {name} is {value}; expected a fraction in [0, 1)")
    if config.val_fraction + config.test_fraction >= 1.0:
        raise ValueError(
            f"split val_fraction {config.val_fraction} + test_fraction {config.test_fraction} leaves no training data"
        )
    rng = np.random.default_rng(config.seed)
    if config.method == "random":
        order = [ids[i] for i in rng.permutation(len(ids))]
        n = len(ids)
        n_test = int(round(n * config.test_fraction))
        n_val = int(round(n * config.val_fraction))
        if n >= 3:  # a small dataset still gets one sample in every non-empty part
            n_test = max(n_test, 1 if config.test_fraction > 0 else 0)
            n_val = max(n_val, 1 if config.val_fraction > 0 else 0)
        n_test = min(n_test, n - 1)
        n_val = min(n_val, n - 1 - n_test)
        test, val = set(order[:n_test]), set(order[n_test : n_test + n_val])
        train = [i for i in ids if i not in test and i not in val]
        return Split(tuple(train), tuple(i for i in ids if i in val), tuple(i for i in ids if i in test))
    if config.method == "ids":
        if not config.train_ids:
            raise ValueError("split method 'ids' needs train_ids (ids or ranges such as '1-27')")
        train = expand_ids(config.train_ids, ids, "train_ids")
        val = expand_ids(config.val_ids, ids, "val_ids") if config.val_ids else []
        test = expand_ids(config.test_ids, ids, "test_ids") if config.test_ids else []
        for (a_name, a), (b_name, b) in (
            (("train_ids", train), ("val_ids", val)),
            (("train_ids", train), ("test_ids", test)),
            (("val_ids", val), ("test_ids", test)),
        ):
            both = sorted(set(a) & set(b))
            if both:
                raise ValueError(f"split {a_name} and {b_name} overlap on {both[:10]}")
        if not config.test_ids:
            used = set(train) | set(val)
            test = [i for i in ids if i not in used]
        if not config.val_ids:
            train, val = _cut(train, config.val_fraction, rng, keep_one=True)
        return Split(tuple(train), tuple(val), tuple(test))
    if config.method == "subset":
        subsets = subsets or {}
        parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for sample_id in ids:
            subset = (subsets.get(sample_id) or "").lower()
            if subset in ("valid", "validation"):
                subset = "val"
            if subset in parts:
                parts[subset].append(sample_id)
        if not parts["train"]:
            found = sorted({str(subsets.get(i)) for i in ids})
            raise ValueError(
                f"split method 'subset' needs samples in a 'train' subset; this dataset's subsets are {found}"
            )
        train, val = parts["train"], parts["val"]
        if not val:
            train, val = _cut(train, config.val_fraction, rng, keep_one=True)
        return Split(tuple(train), tuple(val), tuple(parts["test"]))
    raise ValueError(f"unknown split method {config.method!r}; expected one of {METHODS}")
