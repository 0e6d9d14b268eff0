"""Splits: seeded random ratios, explicit ids and ranges, the dataset's own subsets."""

from __future__ import annotations

import pytest

from segcore.config import SplitConfig
from segcore.data.split import Split, expand_ids, split_ids

IDS = [str(i) for i in range(1, 31)]


def test_random_split_sizes_disjoint_and_seeded():
    cfg = SplitConfig(method="random", val_fraction=0.2, test_fraction=0.1, seed=3)
    s = split_ids(IDS, cfg)
    assert (len(s.train), len(s.val), len(s.test)) == (21, 6, 3)
    assert set(s.train) | set(s.val) | set(s.test) == set(IDS)
    assert not (set(s.train) & set(s.val) or set(s.train) & set(s.test) or set(s.val) & set(s.test))
    assert split_ids(IDS, cfg) == s  # same seed, same split
    assert split_ids(IDS, SplitConfig(val_fraction=0.2, test_fraction=0.1, seed=4)) != s
    # each part keeps dataset order
    assert list(s.train) == sorted(s.train, key=int)


def test_random_split_golden_seed0():
    s = split_ids([f"s{i}" for i in range(10)], SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0))
    # numpy's PCG64 permutation for seed 0 is stable across numpy versions
    assert s == split_ids([f"s{i}" for i in range(10)], SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0))
    assert (len(s.train), len(s.val), len(s.test)) == (6, 2, 2)


def test_tiny_dataset_gets_one_sample_per_part():
    s = split_ids(["a", "b", "c"], SplitConfig(val_fraction=0.1, test_fraction=0.1))
    assert (len(s.train), len(s.val), len(s.test)) == (1, 1, 1)


def test_ranges_like_the_tutorial_images_1_to_27_train():
    padded = [f"{i:03d}" for i in range(1, 31)]
    s = split_ids(padded, SplitConfig(method="ids", train_ids=("1-27",), val_fraction=0.0))
    assert s.train == tuple(padded[:27])
    assert s.test == ("028", "029", "030")
    assert s.val == ()


def test_ids_with_explicit_lists_and_val_drawn_from_train():
    s = split_ids(IDS, SplitConfig(method="ids", train_ids=("1-20",), test_ids=("25", "26-30"), val_fraction=0.1))
    assert len(s.val) == 2 and set(s.val) <= {str(i) for i in range(1, 21)}
    assert len(s.train) == 18
    assert s.test == ("25", "26", "27", "28", "29", "30")  # 21-24 are in no part


def test_ids_errors_name_the_bad_entries():
    with pytest.raises(ValueError, match=r"\['99'\] match no sample"):
        expand_ids(["1", "99"], IDS, "train_ids")
    with pytest.raises(ValueError, match="overlap on"):
        split_ids(IDS, SplitConfig(method="ids", train_ids=("1-10",), test_ids=("10-12",)))
    with pytest.raises(ValueError, match="runs backwards"):
        expand_ids(["9-3"], IDS)
    with pytest.raises(ValueError, match="needs train_ids"):
        split_ids(IDS, SplitConfig(method="ids"))


def test_subset_split_uses_dataset_folders():
    subsets = {i: ("test" if int(i) > 24 else "train") for i in IDS}
    s = split_ids(IDS, SplitConfig(method="subset", val_fraction=0.25, seed=1), subsets)
    assert s.test == tuple(str(i) for i in range(25, 31))
    assert len(s.val) == 6 and len(s.train) == 18
    with pytest.raises(ValueError, match="needs samples in a 'train' subset"):
        split_ids(IDS, SplitConfig(method="subset"), {})


def test_bad_fractions_and_method():
    with pytest.raises(ValueError, match="leaves no training data"):
        split_ids(IDS, SplitConfig(val_fraction=0.5, test_fraction=0.5))
    with pytest.raises(ValueError, match="setting train.split.method is 'kfold'; expected one of 'random', 'ids', 'subset'"):
        split_ids(IDS, SplitConfig(method="kfold"))


def test_split_round_trips_through_dict():
    s = Split(("a",), ("b",), ("c", "d"))
    assert Split.from_dict(s.to_dict()) == s
