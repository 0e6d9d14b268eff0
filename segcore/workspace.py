"""The workspace: one folder holding ``datasets/`` and ``runs/``.

The folder is chosen by the ``SEGCORE_WORKSPACE`` environment variable and
defaults to ``workspace/`` inside the project (git-ignored). Everything segcore
writes goes under it; the folder is the truth that the dashboard and the CLI
both read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from segcore.fsutil import check_name, ensure_inside

ENV_VAR = "SEGCORE_WORKSPACE"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Workspace:
    """A workspace folder and the paths inside it."""

    root: Path

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space for imports in progress (same filesystem, so renames are atomic)."""
        return self.root / ".tmp"

    def dataset_dir(self, name: str) -> Path:
        return self.datasets_dir / check_name(name, "dataset name")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / check_name(run_id, "run id")

    def inside(self, path: Path) -> Path:
        """Resolve ``path`` and refuse it if it lies outside the workspace."""
        return ensure_inside(path, self.root)

    def ensure(self) -> "Workspace":
        """Create the workspace folders if missing; return self."""
        for folder in (self.datasets_dir, self.runs_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def get_workspace(root: str | os.PathLike | None = None) -> Workspace:
    """Return the workspace at ``root``, else ``$SEGCORE_WORKSPACE``, else ``<project>/workspace``.

    The folders are created if they do not exist.
    """
    if root is None:
        root = os.environ.get(ENV_VAR) or (_PROJECT_ROOT / "workspace")
    return Workspace(Path(root).expanduser().resolve()).ensure()
