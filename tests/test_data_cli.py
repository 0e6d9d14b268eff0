"""The data commands: import, datasets, exit codes and JSON on stdout."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from segcore.cli import main


def _src(root, n=3):
    for i in range(n):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), 30 * i, np.uint8)).save(root / "images" / f"im{i}.png")
        m = np.zeros((12, 12), np.uint8)
        m[2:8, 2:8] = 1
        m[9:, 9:] = 2
        m[0, 0] = 7  # void
        Image.fromarray(m).save(root / "labels" / f"im{i}_label.png")
    return root


def test_import_json_and_datasets(tmp_path, workspace, capsys):
    src = _src(tmp_path / "src")
    rc = main(["import", str(src), "--name", "cli", "--classes", "background", "a", "b", "--ignore", "7", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads(out)  # exactly one object
    assert report["ok"] and report["num_samples"] == 3 and report["classes"] == ["background", "a", "b"]
    assert report["mode"] == "multiclass" and report["layout"] == "paired"
    rc = main(["datasets", "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rc == 0 and [r["name"] for r in rows] == ["cli"]
    assert rows[0]["num_samples"] == 3 and rows[0]["classes"] == ["background", "a", "b"] and rows[0]["problems"] == []


def test_import_failure_exit_code(tmp_path, workspace, capsys):
    src = _src(tmp_path / "src")
    assert main(["import", str(src), "--name", "one", "--json"]) == 0
    capsys.readouterr()
    rc = main(["import", str(src), "--name", "one", "--json"])
    out = capsys.readouterr().out
    assert rc == 1 and json.loads(out)["ok"] is False and "already exists" in json.loads(out)["error"]
    rc = main(["import", str(src), "--name", "one", "--version", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["name"] == "one-2"
    empty = tmp_path / "nothing"
    empty.mkdir()
    rc = main(["import", str(empty), "--name", "two"])
    captured = capsys.readouterr()
    assert rc == 1 and "cannot tell the layout" in captured.err and captured.out == ""
    rc = main(["import", str(src), "--name", "../x"])
    assert rc == 1 and "dataset name" in capsys.readouterr().err


def test_strict_and_merge_options(tmp_path, workspace, capsys):
    src = _src(tmp_path / "src")
    (src / "images" / "orphan.png").write_bytes((src / "images" / "im0.png").read_bytes())
    rc = main(["import", str(src), "--name", "lenient", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and any(p["kind"] == "unpaired_image" and p["files"] == ["images/orphan.png"] for p in report["problems"])
    rc = main(["import", str(src), "--name", "strict", "--strict", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and not report["ok"] and "orphan.png" in report["error"]
    rc = main(["import", str(src), "--name", "m", "--merge", "oops"])
    assert rc == 1 and "A=B" in capsys.readouterr().err
