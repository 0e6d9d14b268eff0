"""scripts/start.sh picks what to install from the machine it runs on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


def _start_dry_run(tmp_path, nvidia_smi: str | None, **env_extra) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if nvidia_smi is not None:
        tool = bin_dir / "nvidia-smi"
        tool.write_text(nvidia_smi)
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "SEGCORE_ACCELERATOR")}
    # Only our bin folder and the basic system tools: a real nvidia-smi elsewhere must not leak in.
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", SEGCORE_START_DRY_RUN="1", **env_extra)
    proc = subprocess.run(["bash", str(PROJECT / "scripts" / "start.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_machine_with_an_nvidia_gpu_installs_the_gpu_backend(tmp_path):
    out = _start_dry_run(tmp_path, "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0000)'\n")
    assert out == "accelerator=nvidia requirements=requirements-gpu.txt backend=jax"


def test_a_machine_without_a_gpu_installs_tensorflow_cpu(tmp_path):
    assert _start_dry_run(tmp_path, None) == "accelerator=cpu requirements=requirements.txt backend=tensorflow"
    # nvidia-smi present but no GPU (driver without devices, or an error)
    failing = "#!/bin/sh\necho 'No devices were found'\nexit 6\n"
    assert _start_dry_run(tmp_path, failing) == "accelerator=cpu requirements=requirements.txt backend=tensorflow"


def test_the_backend_and_the_detection_can_be_overridden(tmp_path):
    gpu = "#!/bin/sh\necho 'GPU 0: NVIDIA A100'\n"
    assert _start_dry_run(tmp_path, gpu, KERAS_BACKEND="torch").endswith("backend=torch")
    assert _start_dry_run(tmp_path, gpu, SEGCORE_ACCELERATOR="cpu").startswith("accelerator=cpu")


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (PROJECT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            package, _, version = line.partition("==")
            pins[package.split("[")[0].lower()] = version
    return pins


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-gpu.txt"])
def test_each_machine_gets_exactly_one_pinned_backend(name):
    pins = _pins(name)
    assert all(pins.values()), f"{name} has unpinned packages: {pins}"
    backends = {"tensorflow-cpu", "tensorflow", "jax", "torch"} & set(pins)
    assert len(backends) == 1, f"{name} installs backends {backends}"
    assert "keras" not in pins and "keras" in _pins("requirements-core.txt")
