"""A run trains on each Keras backend with only that backend installed.

A GPU machine may carry JAX or PyTorch and no TensorFlow at all. The tests hide
TensorFlow (and TensorBoard) from every process of the run, the queue worker
and the training process included, through a ``sitecustomize`` module on
``PYTHONPATH`` that makes their import fail as it does where they are absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segcore.runs import open_run
from tests._train_helpers import make_shapes_dataset

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent

_HIDE = '''
import importlib.abc, importlib.machinery, sys

class _AbsentLoader(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}", name=module.__name__)

class _Absent(importlib.abc.MetaPathFinder):
    # A spec without an origin whose loading fails: torch's import-time checks
    # (find_spec, then origin) pass it over, and every import of it fails.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorboard", "tf_keras"):
            return importlib.machinery.ModuleSpec(name, _AbsentLoader())
        return None

sys.meta_path.insert(0, _Absent())
'''


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_run_trains_without_tensorflow(workspace, tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI=true but {backend} is not installed (requirements-dev.txt lists it)")
        pytest.skip(f"{backend} is not installed")
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(_HIDE)
    make_shapes_dataset(workspace, n=12, size=32)
    env = dict(
        os.environ,
        SEGCORE_WORKSPACE=str(workspace.root),
        KERAS_BACKEND=backend,
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([str(hide), str(PROJECT)]),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'tensorflow'" in probe.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "segcore", "train", "--dataset", "shapes", "--depth", "3", "--filters", "4",
         "--image-size", "32", "--epochs", "2", "--batch-size", "4", "--wait", "--json"],
        env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    run = open_run(result["run_id"], workspace)
    log = run.log_path.read_text()
    assert result["state"] == "finished", log[-3000:]
    assert run.read_meta()["environment"]["backend"] == backend
    assert len(run.read_history()) == 2
    assert "no TensorBoard logs for this run" in log
