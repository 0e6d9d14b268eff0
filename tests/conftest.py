"""Shared fixtures: an isolated workspace per test and the real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from segcore.workspace import ENV_VAR, get_workspace

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("SEGCORE_SHARED_DATASETS", PROJECT_ROOT.parent / "shared" / "datasets"))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty workspace; ``$SEGCORE_WORKSPACE`` points at it for subprocesses too."""
    root = tmp_path / "ws"
    monkeypatch.setenv(ENV_VAR, str(root))
    return get_workspace(root)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets``: skipped with a reason where absent, a failure in CI."""
    if not SHARED_DATASETS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI=true but the real datasets are missing at {SHARED_DATASETS}")
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
