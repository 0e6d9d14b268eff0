"""The built-in demo dataset: deterministic, multi-class, imbalanced, overlapping, created once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from segcore.data.dataset import load_dataset
from segcore.data.demo import CLASSES, ensure_demo, make_demo, render_sample


def test_render_is_deterministic_and_seed_dependent():
    a_img, a_mask = render_sample(0, 7)
    b_img, b_mask = render_sample(0, 7)
    c_img, _ = render_sample(1, 7)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (128, 128, 3) and a_img.dtype == np.uint8
    assert a_mask.shape == (128, 128) and set(np.unique(a_mask)) <= {0, 1, 2, 3}


def test_classes_have_distinct_colour_cues():
    # Mean colour of each class over a few images: the shapes differ clearly from each other.
    sums = {k: [] for k in range(4)}
    for i in range(20):
        img, mask = render_sample(0, i)
        for k in range(4):
            if (mask == k).any():
                sums[k].append(img[mask == k].mean(axis=0))
    means = {k: np.mean(v, axis=0) for k, v in sums.items()}
    for a in range(1, 4):
        for b in range(a + 1, 4):
            assert np.abs(means[a] - means[b]).max() > 40, (CLASSES[a].name, CLASSES[b].name, means[a], means[b])


def test_make_demo_dataset(workspace):
    start = time.perf_counter()
    info = ensure_demo(workspace)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"demo took {elapsed:.1f} s"
    assert info.name == "demo" and info.mode == "multiclass" and info.channels == 3
    assert info.class_names == ["background", "disc", "square", "triangle"]
    assert len(info.samples) == 300
    frac = info.class_pixel_fraction
    # Imbalanced: discs more common than squares, squares than triangles; background dominates.
    assert frac[0] > 0.6 and frac[1] > frac[2] > frac[3] > 0.005
    ds = load_dataset("demo", workspace)
    img, mask = render_sample(0, 5)
    assert np.array_equal(ds.image("demo_0005"), img)
    assert np.array_equal(ds.mask("demo_0005"), mask)
    # Overlap: some image has a shape drawn partly over another, so fewer pixels of the
    # earlier one show than it had; count images whose mask has >= 3 foreground classes.
    multi = sum(len(set(np.unique(ds.mask(i))) - {0}) >= 2 for i in ds.ids[:50])
    assert multi >= 10


def test_ensure_demo_is_idempotent(workspace):
    first = ensure_demo(workspace)
    stamp = (workspace.dataset_dir("demo") / "dataset.json").stat().st_mtime_ns
    second = ensure_demo(workspace)
    assert second.content_hash == first.content_hash
    assert (workspace.dataset_dir("demo") / "dataset.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        make_demo(workspace)


def test_same_seed_same_hash(workspace):
    a = make_demo(workspace, name="d1", num_samples=10, size=32)
    b = make_demo(workspace, name="d2", num_samples=10, size=32)
    c = make_demo(workspace, name="d3", num_samples=10, size=32, seed=3)
    assert a.content_hash == b.content_hash != c.content_hash


def test_cli_demo_quiet(workspace):
    run = lambda *a: subprocess.run([sys.executable, "-m", "segcore", *a], capture_output=True, text=True, timeout=120)
    first = run("demo", "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["created"] is True and summary["num_samples"] == 300
    quiet = run("demo", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == ""
    again = json.loads(run("demo", "--json").stdout)
    assert again["created"] is False
