"""The workspace: one folder holding ``datasets/`` and ``runs/``, and the server's settings.

The folder is chosen by the ``SEGCORE_WORKSPACE`` environment variable and
defaults to ``workspace/`` inside the project (git-ignored). Everything segcore
writes goes under it; the folder is the truth that the dashboard and the CLI
both read.

Server settings (:class:`ServerSettings`) are chosen by whoever runs the
server, never by a dashboard user: ``<workspace>/server.json`` (read strictly:
an unknown key is an error listing the valid ones), and the environment
variable ``SEGCORE_IMPORT_ROOTS`` (folders separated by ``os.pathsep``) for
more import roots. The dashboard imports server folders only from inside the
import roots: ``<workspace>/incoming/`` and those configured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from segcore.access import check_default_role, check_role_map
from segcore.config import from_dict
from segcore.fsutil import check_name, ensure_inside, read_json

ENV_VAR = "SEGCORE_WORKSPACE"
IMPORT_ROOTS_ENV = "SEGCORE_IMPORT_ROOTS"
ENGINE_ENV = "SEGCORE_ENGINE"
RAY_ADDRESS_ENV = "SEGCORE_RAY_ADDRESS"
CONCURRENCY_ENV = "SEGCORE_MAX_CONCURRENT_RUNS"
ENGINES = ("local", "ray")
SETTINGS_FILE = "server.json"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServerSettings:
    """Settings of the server that a dashboard user cannot change.

    ``import_roots``: folders, besides ``<workspace>/incoming/``, from which
    the dashboard may import server folders. ``max_image_pixels``: images
    claiming more pixels are refused before decoding (image bombs).
    ``max_archive_bytes`` / ``max_archive_files``: zip archives expanding past
    these are refused (zip bombs); ``max_archive_files`` also caps the files
    of a folder import. ``import_workers``: decoding threads per import (0:
    twice the cores, at most 8). ``max_import_seconds``: an import still
    running after this long stops and leaves nothing behind.

    Where runs train (``segcore.training.engines``): ``engine`` is
    ``"local"`` (the queue worker starts training processes on this machine)
    or ``"ray"`` (each run is a Ray job). ``ray_address``: ``"auto"`` (the
    Ray cluster this machine belongs to, or ``$RAY_ADDRESS``), an address
    (``http://head:8265``, the Ray dashboard's), or ``""`` (the queue worker
    starts a Ray instance of its own on this machine). ``max_concurrent_runs``:
    how many runs may train at once; 0 (the default) is one per GPU on a
    machine with NVIDIA GPUs and 1 without, on the local engine, and no cap
    of segcore's own on Ray (the cluster's free resources decide).
    ``ray_cpus_per_run``: the CPUs Ray reserves for each run's job.
    ``$SEGCORE_ENGINE``, ``$SEGCORE_RAY_ADDRESS`` and
    ``$SEGCORE_MAX_CONCURRENT_RUNS`` override the file.

    Who may do what once sign-in is on (``segcore.access``): ``roles`` maps an
    e-mail address or ``group:NAME`` to ``viewer``, ``trainer`` or ``admin``;
    ``default_role`` is the role of a signed-in identity named nowhere
    (``"none"``: no access); ``group_claim`` is the identity's claim that
    lists its groups.
    """

    import_roots: tuple[str, ...] = ()
    max_image_pixels: int = 100_000_000
    max_archive_bytes: int = 4 * 1024**3
    max_archive_files: int = 100_000
    import_workers: int = 0
    max_import_seconds: int = 3600
    engine: str = "local"
    ray_address: str = ""
    ray_cpus_per_run: float = 1
    max_concurrent_runs: int = 0
    roles: dict[str, str] = field(default_factory=dict)
    default_role: str = "viewer"
    group_claim: str = "groups"

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", check_role_map(self.roles))
        check_default_role(self.default_role)
        if not isinstance(self.group_claim, str) or not self.group_claim.strip():
            raise ValueError(f"server setting group_claim is {self.group_claim!r}; expected the name of the claim that "
                             "lists an identity's groups, e.g. \"groups\"")
        for name in ("max_image_pixels", "max_archive_bytes", "max_archive_files", "max_import_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"server setting {name} is {value!r}; expected a positive integer")
        if isinstance(self.import_workers, bool) or not isinstance(self.import_workers, int) or not 0 <= self.import_workers <= 64:
            raise ValueError(f"server setting import_workers is {self.import_workers!r}; expected an integer from 0 to 64")
        # A bare string would be read as its characters, making "/" an import root: only a list is taken.
        if not isinstance(self.import_roots, (list, tuple)) or not all(isinstance(r, str) and r for r in self.import_roots):
            raise ValueError(f"server setting import_roots is {self.import_roots!r}; expected a list of folder paths")
        object.__setattr__(self, "import_roots", tuple(self.import_roots))
        if self.engine not in ENGINES:
            raise ValueError(f"server setting engine is {self.engine!r}; expected one of {', '.join(repr(e) for e in ENGINES)}")
        if not isinstance(self.ray_address, str):
            raise ValueError(f"server setting ray_address is {self.ray_address!r}; expected \"auto\", an address such as "
                             "\"http://head:8265\", or \"\" for a Ray instance on this machine")
        cpus = self.ray_cpus_per_run
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus <= 4096:
            raise ValueError(f"server setting ray_cpus_per_run is {cpus!r}; expected a number of CPUs > 0")
        value = self.max_concurrent_runs
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1024:
            raise ValueError(f"server setting max_concurrent_runs is {value!r}; expected a whole number of runs "
                             "from 1 to 1024, or 0 for one per GPU (1 without a GPU)")


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

    @property
    def incoming_dir(self) -> Path:
        """The default import root: folders put here can be imported from the dashboard."""
        return self.root / "incoming"

    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_FILE

    def settings(self) -> ServerSettings:
        """The server settings: ``server.json`` in the workspace (if any) and ``$SEGCORE_IMPORT_ROOTS``.

        Raises:
            ValueError: naming the file (and the key) if ``server.json`` cannot be read or is not valid.
        """
        data = {}
        if self.settings_path.is_file():
            try:
                data = read_json(self.settings_path)
            except UnicodeDecodeError:
                raise ValueError(f"{self.settings_path} is not UTF-8 text; expected a JSON object of server settings (see docs/security.md)") from None
            except OSError as exc:
                raise ValueError(f"{self.settings_path} cannot be read ({exc.strerror or exc})") from None
            try:
                settings = from_dict(ServerSettings, data)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{self.settings_path}: {exc}") from None
        else:
            settings = ServerSettings()
        extra = [r for r in os.environ.get(IMPORT_ROOTS_ENV, "").split(os.pathsep) if r.strip()]
        overrides: dict = {}
        if extra:
            overrides["import_roots"] = tuple(settings.import_roots) + tuple(extra)
        if os.environ.get(ENGINE_ENV):
            overrides["engine"] = os.environ[ENGINE_ENV].strip()
        if RAY_ADDRESS_ENV in os.environ:
            overrides["ray_address"] = os.environ[RAY_ADDRESS_ENV].strip()
        if os.environ.get(CONCURRENCY_ENV, "").strip():
            raw = os.environ[CONCURRENCY_ENV].strip()
            try:
                overrides["max_concurrent_runs"] = int(raw)
            except ValueError:
                raise ValueError(f"${CONCURRENCY_ENV} is {raw!r}; expected a whole number of runs >= 1") from None
        if overrides:
            try:
                settings = ServerSettings(**{**settings.__dict__, **overrides})
            except ValueError as exc:
                names = {"engine": ENGINE_ENV, "ray_address": RAY_ADDRESS_ENV, "max_concurrent_runs": CONCURRENCY_ENV}
                raise ValueError(f"{exc} (from the environment: {', '.join('$' + names[k] for k in overrides if k in names)})") from None
        return settings

    def import_roots(self) -> list[Path]:
        """The folders the dashboard may import from, resolved: ``incoming/`` first, then the configured ones."""
        roots = [self.incoming_dir.resolve()]
        for r in self.settings().import_roots:
            path = Path(r).expanduser()
            path = (path if path.is_absolute() else self.root / path).resolve()
            if path not in roots:
                roots.append(path)
        return roots

    def import_source(self, text: str) -> Path:
        """A folder or file named in the dashboard, resolved and checked to lie inside an import root.

        Args:
            text: a path relative to an import root (``cells``, ``lab/cells.zip``)
                or an absolute path inside one.

        Returns:
            The resolved path (links followed), inside an import root.

        Raises:
            ValueError: if the path is outside every import root (the message
                is the same whether or not it exists, and lists only the roots).
            FileNotFoundError: if it is inside a root but does not exist.
        """
        text = str(text).strip()
        roots = self.import_roots()
        outside = ValueError(
            f"{text!r} is not inside the import folders {[str(r) for r in roots]}; the dashboard imports "
            f"server folders only from there: copy the data into {roots[0]} (or upload a .zip), or ask "
            f"whoever runs the server to add an import root (see docs/security.md)"
        )
        if not text or "\x00" in text or text.startswith("~"):
            raise outside
        given = Path(text)
        candidates = [given] if given.is_absolute() else [r / given for r in roots]
        for candidate in candidates:
            resolved = candidate.resolve()
            inside = [r for r in roots if resolved == r or r in resolved.parents]
            if inside and resolved != inside[0] and resolved.exists():
                return resolved
        for candidate in candidates:
            resolved = candidate.resolve()
            if any(resolved == r or r in resolved.parents for r in roots):
                if resolved in roots:
                    raise ValueError(f"{text!r} is an import folder itself; name a dataset folder or file inside it")
                raise FileNotFoundError(f"{text!r} does not exist in the import folders {[str(r) for r in roots]}")
        raise outside

    def inside(self, path: Path) -> Path:
        """Resolve ``path`` and refuse it if it lies outside the workspace."""
        return ensure_inside(path, self.root)

    def ensure(self) -> "Workspace":
        """Create the workspace folders if missing; return self."""
        for folder in (self.datasets_dir, self.runs_dir, self.tmp_dir, self.incoming_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def get_workspace(root: str | os.PathLike | None = None) -> Workspace:
    """Return the workspace at ``root``, else ``$SEGCORE_WORKSPACE``, else ``<project>/workspace``.

    The folders are created if they do not exist.
    """
    if root is None:
        root = os.environ.get(ENV_VAR) or (_PROJECT_ROOT / "workspace")
    return Workspace(Path(root).expanduser().resolve()).ensure()
