"""Run folders: how they are named, what they hold, and their true state.

One function names run folders (``new_run_id``) and one class reads and writes
them (``RunFolder``). A run folder under ``<workspace>/runs/<run_id>/`` holds::

    config.json         RunConfig, dataset name + content hash, split ids,
                        package versions, backend and device
    status.json         state, epoch/batch progress, pid, heartbeat, message,
                        warnings, best and test metrics
    history.csv         one row per finished epoch (loss, val_loss, val_dice, lr, ...)
    train.log           the training process's log
    checkpoints/        best.keras (by validation Dice), last.keras, state.json
                        (epoch, best metric, early-stopping counters)
    tensorboard/        TensorBoard logs
    evaluation.json     test split: per class, macro, micro, per image
    predictions/        test probabilities, one compressed .npz per image
                        (uint8-quantised at training size) + index.json
    notes.json          notes and tags written by people
    audit.jsonl         who launched, stopped, resumed, noted, re-ran: one JSON
                        object a line, only ever appended (``AuditEntry``)
    transfer.json       what was copied when the model started from another run
    STOP                present while a stop has been requested
    .process.lock       locked by the training process for as long as it lives

Every file is written atomically (see ``segcore.fsutil``), so the dashboard,
the CLI and a teammate on the same folder always read whole files. The folder
is the truth: ``list_runs`` reports a "running" run whose process is gone or
whose heartbeat is stale as ``interrupted``.

No file is trusted: each is checked on every read (``segcore.runfiles``). A
run whose ``config.json`` or ``status.json`` is unreadable or of the wrong
shape is listed as ``damaged``, naming the file and the reason; it can still
be deleted, and resumed or evaluated where its settings and checkpoints allow.
The training process keeps its status in memory (``LiveStatus``) and only ever
writes it whole, so a damaged ``status.json`` is repaired by its next write.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import secrets
import shutil
import socket
import threading
import time
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from segcore import runfiles
from segcore.access import Actor, local_actor, require
from segcore.config import RunConfig
from segcore.fsutil import check_name, is_disk_full, write_bytes_atomic, write_json_atomic, write_text_atomic
from segcore.runfiles import STATES, RunFileError
from segcore.runrecord import RECORD_VERSION, RunRecord
from segcore.workspace import Workspace, get_workspace

# The run states' vocabulary, in one place (every page, command and the queue ask these).
ACTIVE_STATES = ("queued", "running")  # waiting or training: not to be deleted, stopped by stop()
# What a reader may report besides STATES: a run whose config.json or status.json cannot be read.
DAMAGED = "damaged"
LISTED_STATES = STATES + (DAMAGED,)
RESUMABLE_STATES = ("stopped", "interrupted", "failed", DAMAGED)  # resume() continues them from a checkpoint
PREDICTABLE_STATES = ("finished", "stopped", "interrupted", DAMAGED)  # a checkpoint may be there to predict with
# Files whose damage leaves the run's state unknown (the others are reported as warnings).
_DEFINING_FILES = ("config.json", "status.json")
# A running process refreshes its heartbeat every few seconds from a thread;
# a minute of silence means the process is gone or hung.
HEARTBEAT_STALE_S = 60.0
# Space a training process keeps in its run folder (``.reserve``) while it lives, and gives up when the disk
# is full, so that the status saying why the run ended can still be written.
RESERVE_BYTES = 256 * 1024
# Temporary files older than this, left in a run folder by a process that died mid-write, are removed on resume.
STALE_TEMP_S = 60.0
# Clocks of the machines sharing a workspace may differ a little; a heartbeat further ahead than this is not believed.
HEARTBEAT_AHEAD_S = 60.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: float | None = None) -> str:
    """An ISO-8601 UTC timestamp for ``ts`` (seconds since the epoch; now if None)."""
    moment = _utcnow() if ts is None else datetime.fromtimestamp(ts, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def model_tag(cfg: RunConfig) -> str:
    """A short readable description of the model: ``unet-d4f32``, ``vgg16-frozen``, ``resnet50``."""
    from segcore.catalog import encoders

    m = cfg.model
    return encoders.get(m.encoder).tag(depth=m.depth, filters=m.filters, freeze=m.freeze,
                                       fine_tune_after=m.fine_tune_after)


def new_run_id(cfg: RunConfig, now: datetime | None = None) -> str:
    """Name a run folder: readable, sortable by time, and unique.

    ``<UTC yyyymmdd-HHMMSS>-<model>-<dataset>-<4 hex>``, for example
    ``20261122-203045-unet-d4f32-demo-1a2b``. The random suffix keeps two runs
    started in the same second apart; ``create_run`` retries on the rare clash.

    Args:
        cfg: the run's settings (model and dataset go into the name).
        now: the time to use (UTC now when None).

    Returns:
        A valid run id (at most 64 characters).
    """
    now = now or _utcnow()
    stamp = now.strftime("%Y%m%d-%H%M%S")
    dataset = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in cfg.train.dataset)[:20].strip("-.") or "data"
    return f"{stamp}-{model_tag(cfg)}-{dataset}-{secrets.token_hex(2)}"[:64]


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


@dataclass
class RunSummary:
    """One row of the runs table: what a list of runs shows, in the true state."""

    run_id: str
    state: str
    name: str = ""
    dataset: str = ""
    mode: str = ""
    model: str = ""
    encoder: str = "none"
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    epoch: int = 0
    epochs: int = 0
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    best_val_dice: float | None = None
    best_epoch: int | None = None
    test: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    path: str = ""
    damage: dict[str, str] = field(default_factory=dict)  # damaged file -> what is wrong with it
    engine: str = ""  # "local" or "ray": what started the training process ("" before it was started)
    host: str = ""  # the machine (Ray node) the training process runs or ran on
    devices: str = ""  # what it trains on, as the process saw it: "CPU", "GPU 1 (NVIDIA H100)"
    config: dict[str, Any] = field(default_factory=dict)  # the settings as saved (config.json's "config"); {} when unreadable

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AuditEntry:
    """One line of a run's ``audit.jsonl`` (or the workspace's, for deletions): who did what, and when."""

    at: str
    who: str
    role: str
    action: str
    detail: str = ""


AUDIT_FIELDS = ("at", "who", "role", "action", "detail")


def append_audit(path: Path, actor: Actor, action: str, detail: str = "") -> AuditEntry:
    """Append one record to the audit file at ``path`` (one ``write`` of one line, so concurrent writers never interleave)."""
    entry = AuditEntry(at=iso(), who=actor.who, role=actor.role, action=action, detail=detail)
    line = (json.dumps(entry.__dict__, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return entry


def read_audit(path: Path) -> list[AuditEntry]:
    """The records of an audit file, oldest first; a line that is not a whole record (a torn write) is skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in raw.splitlines():
        try:
            data = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and all(isinstance(data.get(k), str) for k in AUDIT_FIELDS[:4]):
            entries.append(AuditEntry(**{k: str(data.get(k) or "") for k in AUDIT_FIELDS}))
    return entries


class RunFolder:
    """Reads and writes everything in one run folder, atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- paths ---------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.path.name

    config_path = property(lambda self: self.path / "config.json")
    status_path = property(lambda self: self.path / "status.json")
    history_path = property(lambda self: self.path / "history.csv")
    log_path = property(lambda self: self.path / "train.log")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    best_model_path = property(lambda self: self.path / "checkpoints" / "best.keras")
    last_model_path = property(lambda self: self.path / "checkpoints" / "last.keras")
    train_state_path = property(lambda self: self.path / "checkpoints" / "state.json")
    audit_path = property(lambda self: self.path / "audit.jsonl")

    # -- who did what ----------------------------------------------------------
    def record(self, actor: Actor, action: str, detail: str = "") -> AuditEntry:
        """Append who did ``action`` to this run, and when, to ``audit.jsonl``."""
        return append_audit(self.audit_path, actor, action, detail)

    def read_audit(self) -> list[AuditEntry]:
        """This run's history of actions, oldest first."""
        return read_audit(self.audit_path)

    def owner(self) -> str | None:
        """Who launched this run (None for a run launched before launches were recorded)."""
        return next((e.who for e in self.read_audit() if e.action == "launch"), None)

    def require(self, actor: Actor, action: str) -> None:
        """Raise ``AccessDenied`` unless ``actor`` may do ``action`` to this run (``segcore.access``)."""
        require(actor, action, self.owner())

    @property
    def model_path(self) -> Path:
        """The model to use: ``best.keras``, else ``last.keras`` (a run stopped before its first best epoch).

        It may not exist yet; ``has_model`` says whether either does.
        """
        return self.best_model_path if self.best_model_path.is_file() else self.last_model_path

    @property
    def has_model(self) -> bool:
        """Whether the run has a checkpoint to predict with (it may still be damaged: see ``checked_model_path``)."""
        return self.model_path.is_file()

    def checked_model_path(self, checkpoint: str = "best") -> Path:
        """The checkpoint to load (``best``: ``model_path``; ``last``), checked to be a whole ``.keras`` file.

        Raises:
            FileNotFoundError: the run has no such checkpoint yet.
            RunFileError: the file is cut short or not a Keras model file (naming it).
        """
        path = self.model_path if checkpoint == "best" else self.checkpoints_dir / f"{check_name(checkpoint, 'checkpoint')}.keras"
        if not path.is_file():
            raise FileNotFoundError(f"run {self.run_id} ({self.true_status().get('state')}) has no model checkpoint yet: {path} is missing")
        problem = runfiles.zip_problem(path, runfiles.KERAS_MEMBERS)
        if problem:
            raise RunFileError(path, problem)
        return path

    def artifact_damage(self) -> dict[str, str]:
        """Damaged checkpoints (``checkpoints/*.keras``) and prediction caches (``predictions/*.npz``): name -> reason.

        Only the zip directories are read (see ``runfiles.zip_problem``), so a listing stays fast.
        """
        damage: dict[str, str] = {}
        for path in (self.best_model_path, self.last_model_path):
            problem = runfiles.zip_problem(path, runfiles.KERAS_MEMBERS)
            if problem:
                damage[f"checkpoints/{path.name}"] = problem
        if self.predictions_dir.is_dir():
            for path in sorted(self.predictions_dir.glob("*.npz")):
                problem = runfiles.zip_problem(path, runfiles.NPZ_MEMBERS)
                if problem:
                    damage[f"predictions/{path.name}"] = problem
        return damage
    tensorboard_dir = property(lambda self: self.path / "tensorboard")
    evaluation_path = property(lambda self: self.path / "evaluation.json")
    predictions_dir = property(lambda self: self.path / "predictions")
    notes_path = property(lambda self: self.path / "notes.json")
    transfer_path = property(lambda self: self.path / "transfer.json")
    # A run folder lives at <workspace>/runs/<run id>.
    workspace_root = property(lambda self: self.path.parent.parent)
    stop_path = property(lambda self: self.path / "STOP")
    process_lock_path = property(lambda self: self.path / ".process.lock")

    def exists(self) -> bool:
        """Whether this is a run folder (it has a ``config.json`` or a ``status.json``, readable or not)."""
        return self.config_path.exists() or self.status_path.exists()

    def _read_checked(self, path: Path, check) -> Any:
        return check(path, runfiles.load_json(path))

    # -- config --------------------------------------------------------------
    def read_meta(self) -> dict[str, Any]:
        """The whole ``config.json``: ``config`` (RunConfig dict), ``dataset``, ``split``, ``environment``.

        Raises:
            FileNotFoundError: not a run folder.
            RunFileError: the file is not JSON or not of the expected shape.
        """
        if not self.config_path.exists():
            if not self.status_path.exists():
                raise FileNotFoundError(f"{self.path} is not a run folder: {self.config_path} is missing")
            raise RunFileError(self.config_path, "the file is missing")
        return self._read_checked(self.config_path, runfiles.check_meta)

    def read_record(self) -> RunRecord:
        """``config.json`` as a typed ``RunRecord`` (settings, dataset, split, input, ...), migrated to this version.

        Raises:
            FileNotFoundError: not a run folder.
            RunFileError: the file is not JSON or not of the expected shape.
        """
        try:
            return RunRecord.from_dict(self.read_meta(), run_id=self.run_id)
        except ValueError as exc:
            if isinstance(exc, RunFileError):
                raise
            raise RunFileError(self.config_path, str(exc)) from None

    def read_config(self) -> RunConfig:
        """The run's settings as saved (machine-dependent checks are left to ``launch``)."""
        return self.read_record().config

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_json_atomic(self.config_path, meta)

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        with self._lock():
            meta = self.read_meta()
            meta.update(fields)
            self.write_meta(meta)
            return meta

    # -- status --------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        # Several processes update status.json (the trainer, the queue worker,
        # stop/resume from the CLI or dashboard): read-modify-write under a lock.
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_status(self) -> dict[str, Any]:
        """``status.json`` as written (not corrected for dead processes; see ``true_status``).

        Raises:
            RunFileError: the file is missing, not JSON or not of the expected shape.
        """
        try:
            return self._read_checked(self.status_path, runfiles.check_status)
        except FileNotFoundError:
            raise RunFileError(self.status_path, "the file is missing") from None

    def write_status(self, status: dict[str, Any], *, use_reserve: bool = True) -> None:
        status = dict(status)
        status["updated_at"] = iso()
        self.write_status_file(status, use_reserve=use_reserve)

    def write_status_file(self, status: dict[str, Any], *, use_reserve: bool = True) -> None:
        """Write ``status.json`` atomically; on a full disk, give up the run's reserved space and try once more.

        ``use_reserve`` is False for heartbeats and progress: the reserve is kept
        for a status that changes the state (the reason a run ended).
        """
        try:
            write_json_atomic(self.status_path, status)
        except OSError as exc:
            if not use_reserve or not is_disk_full(exc) or not self.release_reserve():
                raise
            write_json_atomic(self.status_path, status)

    # -- space for the last word, and temporary files -------------------------------
    reserve_path = property(lambda self: self.path / ".reserve")

    def reserve_space(self, nbytes: int = RESERVE_BYTES) -> bool:
        """Keep ``nbytes`` of disk in ``.reserve`` (real blocks, not a sparse file); False if there is no room."""
        try:
            with open(self.reserve_path, "wb") as handle:
                handle.write(b"\0" * nbytes)
                handle.flush()
                os.fsync(handle.fileno())
            return True
        except OSError:
            self.release_reserve()
            return False

    def release_reserve(self) -> bool:
        """Free the space ``reserve_space`` kept; True if there was a reserve to free."""
        try:
            self.reserve_path.unlink()
            return True
        except FileNotFoundError:
            return False

    def remove_temp_files(self, now: float | None = None) -> list[str]:
        """Remove temporary files that a process which died mid-write left behind; returns their names.

        ``checkpoints/.tmp-<pid>-*`` (checkpoint saves) are all removed: call
        this only while holding the process lock, when no other process saves
        this run's checkpoints. The atomic writers' ``.<name>.<hex>.tmp`` files
        are removed once older than ``STALE_TEMP_S`` (another process may be
        writing one now).
        """
        now = time.time() if now is None else now
        removed = []
        for folder in (self.path, self.checkpoints_dir):
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for path in entries:
                name = path.name
                checkpoint_temp = folder == self.checkpoints_dir and name.startswith(".tmp-")
                atomic_temp = name.startswith(".") and name.endswith(".tmp")
                if not (checkpoint_temp or atomic_temp) or not path.is_file():
                    continue
                if atomic_temp and not checkpoint_temp and now - _mtime(path, default=now) < STALE_TEMP_S:
                    continue
                try:
                    path.unlink()
                    removed.append(str(path.relative_to(self.path)))
                except OSError:
                    pass
        return removed

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``status.json`` under the folder lock; returns the new status.

        A damaged ``status.json`` is replaced when ``fields`` sets a ``state``
        (the damage is noted in ``warnings``); otherwise RunFileError is raised.
        """
        return self.update_status_if(None, **fields)

    def update_status_if(self, expected: Callable[[dict[str, Any] | None], bool] | None, **fields: Any) -> dict[str, Any] | None:
        """``update_status``, only if ``expected`` passes the status as written (None where it is unreadable).

        The check and the write happen under the same folder lock, so a decision taken on
        what ``status.json`` said cannot overwrite what another process wrote since (a
        resume after a kill, say). Returns None when ``expected`` says no.
        """
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"run state {fields['state']!r} is not one of {STATES}")
        with self._lock():
            try:
                status, damage = self.read_status(), None
            except RunFileError as exc:
                if "state" not in fields:
                    raise
                status, damage = None, exc
            if expected is not None and not expected(status):
                return None
            if status is None:
                status = self.rebuilt_status(damage)
            status.update(fields)
            self.write_status(status, use_reserve="state" in fields)
            return status

    def transition(self, allowed_from: tuple[str, ...], when: Callable[[dict[str, Any]], bool] | None = None,
                   **fields: Any) -> dict[str, Any] | None:
        """Update the status only if its current true state is in ``allowed_from`` (and ``when(status)`` holds).

        ``allowed_from`` may include ``"damaged"``: a damaged status is then
        rebuilt (see ``rebuilt_status``) before ``fields`` are applied.

        Returns:
            The new status, or None when the state was something else (or ``when`` said no).
        """
        with self._lock():
            status = self.true_status()
            if status.get("state") not in allowed_from or (when is not None and not when(status)):
                return None
            if status.get("state") == DAMAGED:
                status = self.rebuilt_status(status.get("damage", {}).get("status.json"))
            status.update(fields)
            self.write_status(status)
            return status

    def rebuilt_status(self, damage: Any = None) -> dict[str, Any]:
        """A status to replace a damaged one: progress from ``checkpoints/state.json`` and the settings."""
        reason = damage.reason if isinstance(damage, RunFileError) else damage
        status: dict[str, Any] = {"epoch": 0, "warnings": []}
        if reason:
            status["warnings"] = [f"status.json was damaged ({reason}) and was rewritten; progress comes from the checkpoints"]
        try:
            status["epochs"] = self.read_config().train.epochs
        except (RunFileError, FileNotFoundError):
            pass
        try:
            state = self.read_train_state()
        except RunFileError:
            state = None
        if state:
            status["epoch"] = int(state["epoch"])
            if state.get("best_epoch") is not None:
                status["best"] = {"val_dice": state.get("best_val_dice"), "epoch": state.get("best_epoch")}
        return status

    def heartbeat(self, **fields: Any) -> None:
        """Record that the training process is alive (plus any progress fields)."""
        self.update_status(heartbeat=time.time(), **fields)

    def true_status(self, now: float | None = None) -> dict[str, Any]:
        """The status with ``state`` corrected: a "running" run whose process is dead
        (same machine) or whose heartbeat is older than ``HEARTBEAT_STALE_S`` is
        ``interrupted``; an unreadable ``status.json`` gives state ``damaged``
        with ``damage`` (file -> reason) and ``process_alive``. Never raises for
        a damaged file."""
        try:
            status = self.read_status()
        except RunFileError as exc:
            alive = self.process_alive()
            message = f"damaged: status.json {exc.reason}"
            message += ("; its training process is still running and rewrites the file at its next heartbeat" if alive
                        else "; delete the run, or resume it (from its last checkpoint, if it has one)")
            return {"state": DAMAGED, "damage": {"status.json": exc.reason}, "message": message,
                    "process_alive": alive, "warnings": []}
        if status.get("state") != "running":
            return status
        now = time.time() if now is None else now
        beat = status.get("heartbeat")
        reason = None
        ahead = ""
        if beat is not None and float(beat) - now > HEARTBEAT_AHEAD_S:
            # A heartbeat from the future (a clock set wrong, a file copied or written by hand) would
            # keep the run "running", and the queue waiting, for ever: the file's own modification
            # time, which every heartbeat renews, stands in for it.
            ahead = f" (its heartbeat claims a time {int(float(beat) - now)} s in the future)"
            beat = _mtime(self.status_path, default=float(beat))
        if status.get("host") in (None, socket.gethostname()) and status.get("pid") and not pid_alive(status.get("pid")):
            reason = f"the training process (pid {status.get('pid')}) is no longer running"
        elif beat is not None and now - float(beat) > HEARTBEAT_STALE_S:
            reason = f"no heartbeat for {int(now - float(beat))} s{ahead}"
        if reason:
            status = dict(status)
            status["state"] = "interrupted"
            status["message"] = f"interrupted: {reason}; resume continues from the last checkpoint"
        return status

    # -- the training process's lock -----------------------------------------------
    def acquire_process_lock(self, timeout: float = 5.0):
        """Lock ``.process.lock`` for the life of this process; returns the open handle, or None if
        another process holds it (that process is training this run)."""
        handle = open(self.process_lock_path, "a+")
        deadline = time.time() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if time.time() > deadline:  # readers hold it for microseconds only
                    handle.close()
                    return None
                time.sleep(0.05)

    def process_alive(self) -> bool:
        """Whether a training process of this run lives on this machine (it holds ``.process.lock``)."""
        try:
            fd = os.open(self.process_lock_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # closing releases a lock taken here
        return False

    # -- stop requests -----------------------------------------------------------
    def request_stop(self) -> None:
        write_text_atomic(self.stop_path, iso() + "\n")

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def clear_stop(self) -> None:
        try:
            self.stop_path.unlink()
        except FileNotFoundError:
            pass

    # -- history -------------------------------------------------------------
    def read_history(self) -> list[dict[str, Any]]:
        """``history.csv`` rows as dicts with float values (``epoch`` as int); RunFileError if malformed."""
        if not self.history_path.is_file():
            return []
        return runfiles.parse_history(self.history_path)

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        keys: list[str] = []
        for row in rows:
            keys.extend(k for k in row if k not in keys)
        if "epoch" in keys:
            keys.remove("epoch")
            keys.insert(0, "epoch")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in keys})
        write_text_atomic(self.history_path, buffer.getvalue())

    # -- training state --------------------------------------------------------
    def read_train_state(self) -> dict[str, Any] | None:
        """``checkpoints/state.json`` (epoch, best metric, early-stopping counters), or None before the first epoch."""
        try:
            return self._read_checked(self.train_state_path, runfiles.check_train_state)
        except FileNotFoundError:
            return None

    def write_train_state(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.train_state_path, state)

    # -- results -------------------------------------------------------------
    def read_evaluation(self) -> dict[str, Any] | None:
        """``evaluation.json``, or None before evaluation; RunFileError if damaged."""
        try:
            return self._read_checked(self.evaluation_path, runfiles.check_evaluation)
        except FileNotFoundError:
            return None

    def write_evaluation(self, report: dict[str, Any]) -> None:
        write_json_atomic(self.evaluation_path, report)

    def write_transfer(self, report: dict[str, Any]) -> None:
        """What was copied when the model started from another run's weights (``transfer.json``)."""
        write_json_atomic(self.transfer_path, report)

    # Test-split probabilities cached for the Compare page: predictions/<id>.npz
    # holds uint8 round(p * 255), shape (H, W, outputs) at the image's own size; index.json lists them.
    def prediction_cache_writer(self, mode: str, class_names: list[str]) -> "PredictionCacheWriter":
        """A writer that keeps each image's probabilities as they are predicted; ``close()`` writes the index."""
        return PredictionCacheWriter(self, mode, list(class_names))

    def write_prediction_cache(
        self, ids: list[str], probs: Any, mode: str, class_names: list[str], size: int | None = None
    ) -> None:
        """Write the probabilities ``probs`` (one ``(H, W, outputs)`` array per id) for sample ``ids``."""
        writer = self.prediction_cache_writer(mode, class_names)
        for sample_id, p in zip(ids, probs):
            writer.add(sample_id, p)
        writer.close()

    def read_prediction_index(self) -> dict[str, Any] | None:
        """``predictions/index.json`` (ids, image_size, mode, class_names), or None before evaluation."""
        try:
            return self._read_checked(self.predictions_dir / "index.json", runfiles.check_prediction_index)
        except FileNotFoundError:
            return None

    def read_cached_probs(self, sample_id: str):
        """Cached float32 test probabilities (H, W, outputs) of ``sample_id``, or None if not cached."""
        import numpy as np

        path = self.predictions_dir / f"{check_name(sample_id, 'sample id')}.npz"
        if not path.is_file():
            return None
        problem = runfiles.zip_problem(path, runfiles.NPZ_MEMBERS)
        if problem:
            raise RunFileError(path, problem)
        try:
            with np.load(path, allow_pickle=False) as data:
                probs = data["probs"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise RunFileError(path, f"not a prediction cache file ({type(exc).__name__}: {exc})") from None
        if probs.ndim != 3:
            raise RunFileError(path, f"expected probabilities of shape (H, W, outputs), found {probs.shape}")
        return probs.astype(np.float32) / 255.0

    def read_notes(self) -> dict[str, Any]:
        """``notes.json`` with ``notes`` and ``tags`` (empty when absent); RunFileError if damaged."""
        try:
            notes = self._read_checked(self.notes_path, runfiles.check_notes)
        except FileNotFoundError:
            notes = {}
        notes.setdefault("notes", "")
        notes.setdefault("tags", [])
        return notes

    def write_notes(self, notes: str | None = None, tags: list[str] | None = None) -> dict[str, Any]:
        """Replace the notes and/or tags (a damaged ``notes.json`` is replaced); returns the new content."""
        with self._lock():
            try:
                current = self.read_notes()
            except RunFileError:
                current = {"notes": "", "tags": []}
            if notes is not None:
                current["notes"] = str(notes)
            if tags is not None:
                clean = []
                for tag in tags:
                    tag = str(tag).strip()
                    if tag and tag not in clean:
                        clean.append(tag)
                current["tags"] = clean
            current["updated_at"] = iso()
            write_json_atomic(self.notes_path, current)
            return current

    # -- summary ---------------------------------------------------------------
    def summary(self) -> RunSummary:
        """The runs-table row for this folder (true state, best and test metrics, notes).

        Never raises for a damaged file: the row then has ``damage`` (file ->
        reason), and state ``damaged`` when ``config.json`` or ``status.json``
        is the damaged file.
        """
        damage: dict[str, str] = {}
        record: RunRecord | None = None
        try:
            record = self.read_record()
        except RunFileError as exc:
            damage["config.json"] = exc.reason
        status = self.true_status()
        damage.update(status.get("damage") or {})
        try:
            notes = self.read_notes()
        except RunFileError as exc:
            notes, damage["notes.json"] = {}, exc.reason
        try:
            self.read_train_state()
        except RunFileError as exc:
            damage["checkpoints/state.json"] = exc.reason
        damage.update(self.artifact_damage())
        cfg = record.config if record else None
        best = status.get("best") or {}
        tags = list(dict.fromkeys(list(cfg.tags if cfg else ()) + list(notes.get("tags", []))))
        state = DAMAGED if any(name in damage for name in _DEFINING_FILES) else status.get("state", DAMAGED)
        message = status.get("message", "")
        if state == DAMAGED and "status.json" not in damage:
            message = f"damaged: config.json {damage['config.json']}; the run cannot start or resume; delete it"
        warnings = list(status.get("warnings", []))
        warnings += [f"{name} is damaged: {reason}" for name, reason in damage.items() if name not in _DEFINING_FILES]
        return RunSummary(
            run_id=self.run_id,
            state=state,
            name=cfg.name if cfg else "",
            dataset=cfg.train.dataset if cfg else "",
            mode=record.dataset.mode if record else "",
            model=model_tag(cfg) if cfg else "",
            encoder=cfg.model.encoder if cfg else "none",
            created_at=(record.created_at if record else "") or _mtime_iso(self.path),
            started_at=status.get("started_at"),
            finished_at=status.get("finished_at"),
            epoch=int(status.get("epoch", 0) or 0),
            epochs=int(status.get("epochs", cfg.train.epochs if cfg else 0) or 0),
            message=message,
            warnings=warnings,
            best_val_dice=best.get("val_dice"),
            best_epoch=best.get("epoch"),
            test=dict(status.get("test") or {}),
            tags=tags,
            notes=notes.get("notes", ""),
            path=str(self.path),
            damage=damage,
            engine=str(status.get("engine") or ""),
            host=str(status.get("host") or ""),
            devices=_devices_text(status),
            config=cfg.to_dict() if cfg else {},
        )


def _mtime(path: Path, default: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default


def _devices_text(status: dict[str, Any]) -> str:
    """What a run trains on: the process's own label, else the GPUs the queue gave it (before the process says)."""
    if status.get("devices"):
        return str(status["devices"])
    gpus = status.get("gpus")
    if isinstance(gpus, list) and gpus:
        return "GPU " + ",".join(str(g) for g in gpus)
    return ""


def _mtime_iso(path: Path) -> str:
    try:
        return iso(path.stat().st_mtime)
    except OSError:
        return ""


class LiveStatus:
    """A run's status as its training process owns it: kept in memory, written whole on every change.

    The training process never reads ``status.json`` back, so a file that someone
    else damaged cannot stop it; its next write (a heartbeat every few seconds)
    replaces the damaged file. Thread-safe (the heartbeat thread and the
    trainer share one), and re-entrant for a signal handler.
    """

    def __init__(self, run: RunFolder, status: dict[str, Any]):
        self.run = run
        self._status = dict(status)
        self._lock = threading.RLock()

    def update(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the status and write it; returns a copy of the new status."""
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"run state {fields['state']!r} is not one of {STATES}")
        with self._lock:
            self._status.update(fields)
            self._status["updated_at"] = iso()
            snapshot = dict(self._status)
            self.run.write_status_file(snapshot, use_reserve="state" in fields)
        return snapshot

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._status.get(key, default)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._status)


# -- the workspace's runs ------------------------------------------------------


def create_run(
    ws: Workspace,
    cfg: RunConfig,
    *,
    dataset: dict[str, Any],
    split: dict[str, list[str]],
    now: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> RunFolder:
    """Create a new run folder, queued, with its ``config.json`` and ``status.json``.

    Args:
        ws: the workspace.
        cfg: the run's settings.
        dataset: name, content_hash, mode, classes, channels of the dataset.
        split: ``{"train": ids, "val": ids, "test": ids}``.
        now: creation time (UTC now when None): the run id's stamp, ``created_at`` and ``queued_at``.
        extra: more fields for ``config.json`` (e.g. ``sweep``).

    Returns:
        The new ``RunFolder``.
    """
    ws.runs_dir.mkdir(parents=True, exist_ok=True)
    now = now or _utcnow()
    for _ in range(20):
        run_id = new_run_id(cfg, now)
        path = ws.run_dir(run_id)
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 20 clashes of 16 random bits in one second
        raise FileExistsError(f"could not find a free run folder name in {ws.runs_dir}")
    run = RunFolder(path)
    # status.json first: a folder is listed once config.json exists, and then it has a status.
    run.write_status(
        {
            "state": "queued",
            "queued_at": now.timestamp(),
            "epoch": 0,
            "epochs": cfg.train.epochs,
            "message": "waiting in the queue",
            "warnings": [],
        }
    )
    meta = {
        "version": RECORD_VERSION,
        "run_id": run_id,
        "created_at": iso(now.timestamp()),
        "config": cfg.to_dict(),
        "dataset": dataset,
        "split": split,
        "environment": {},
    }
    meta.update(extra or {})
    run.write_meta(meta)
    if cfg.tags:
        run.write_notes(tags=list(cfg.tags))
    return run


def open_run(run_id: str, ws: Workspace | None = None) -> RunFolder:
    """The run folder called ``run_id``; FileNotFoundError naming recent runs if absent.

    A unique prefix of a run id is accepted too (``20261122-2030``).
    """
    ws = ws or get_workspace()
    run = RunFolder(ws.runs_dir / run_id) if "/" not in run_id and run_id not in ("", ".", "..") else None
    if run is not None and run.exists():
        return run
    known = [r.run_id for r in iter_run_folders(ws)]
    matches = [name for name in known if run_id and name.startswith(run_id)]
    if len(matches) == 1:
        return RunFolder(ws.runs_dir / matches[0])
    known = known[-5:]
    if len(matches) > 1:
        raise FileNotFoundError(f"run id {run_id!r} matches several runs: {matches[:5]}; give more of it")
    raise FileNotFoundError(f"no run {run_id!r} in {ws.runs_dir}; latest runs are {known}")


def iter_run_folders(ws: Workspace | None = None) -> list[RunFolder]:
    """Every run folder in the workspace (a folder with a ``config.json`` or a ``status.json``), by name."""
    ws = ws or get_workspace()
    if not ws.runs_dir.is_dir():
        return []
    names = {p.parent.name for pattern in ("*/config.json", "*/status.json") for p in ws.runs_dir.glob(pattern)}
    return [RunFolder(ws.runs_dir / name) for name in sorted(names) if not name.startswith(".")]


def list_runs(ws: Workspace | None = None) -> list[RunSummary]:
    """Every run in the workspace with its true state, newest first.

    A run with a damaged file is listed too (``state`` ``damaged`` or a
    warning, ``damage`` naming the file and the reason); only a folder that
    vanishes while it is read is left out.
    """
    out = []
    for run in iter_run_folders(ws):
        try:
            out.append(run.summary())
        except FileNotFoundError:
            continue  # deleted while we looked
        except Exception as exc:  # never let one folder hide the others
            out.append(RunSummary(run_id=run.run_id, state=DAMAGED, message=f"damaged: cannot be read ({type(exc).__name__}: {exc})",
                                  path=str(run.path), created_at=_mtime_iso(run.path),
                                  damage={"(folder)": f"{type(exc).__name__}: {exc}"}))
    out.sort(key=lambda s: (s.created_at, s.run_id), reverse=True)
    return out


@dataclass
class RunResult:
    """A finished run's test evaluation, a row of the results table."""

    summary: RunSummary
    report: dict[str, Any]  # evaluation.json
    study: str = ""  # id of the encoder study that queued the run ("" for none)


def run_results(summaries: Iterable[RunSummary]) -> list[RunResult]:
    """The finished runs among ``summaries`` that have a test evaluation, in the order given.

    A run whose ``evaluation.json`` is damaged is left out; one whose
    ``config.json`` is damaged belongs to no study.
    """
    out = []
    for s in summaries:
        if s.state != "finished":
            continue
        folder = RunFolder(s.path)
        try:
            report = folder.read_evaluation()
        except (RunFileError, OSError):
            continue
        if not report:
            continue
        try:
            sweep = folder.read_record().sweep or {}
        except (RunFileError, OSError):
            sweep = {}
        out.append(RunResult(s, report, str(sweep.get("id", ""))))
    return out


def result_datasets(results: Iterable[RunResult]) -> list[str]:
    """The datasets of ``results``, by name: scores are compared on one dataset at a time."""
    return sorted({r.summary.dataset for r in results})


def result_studies(results: Iterable[RunResult], dataset: str) -> list[str]:
    """The encoder studies with results on ``dataset``, newest first (study ids start with their time)."""
    return sorted({r.study for r in results if r.study and r.summary.dataset == dataset}, reverse=True)


def select_results(results: Iterable[RunResult], dataset: str, study: str | None = None) -> list[RunResult]:
    """The results on ``dataset``, of one encoder study when ``study`` is given, in the order given."""
    return [r for r in results if r.summary.dataset == dataset and (study is None or r.study == study)]


def queued_runs(ws: Workspace, skipped: dict[str, str] | None = None) -> list[RunFolder]:
    """Runs waiting in the queue that can start, in the order they were queued.

    Args:
        ws: the workspace.
        skipped: if given, filled with ``run_id -> reason`` for the folders
            that could not be considered (damaged status or settings).
    """
    waiting = []
    for run in iter_run_folders(ws):
        try:
            status = run.read_status()
            if status.get("state") != "queued":
                continue
            run.read_meta()  # a queued run whose settings are damaged cannot start
        except (RunFileError, OSError) as exc:
            if skipped is not None:
                skipped[run.run_id] = str(exc)
            continue
        waiting.append((float(status.get("queued_at") or 0.0), run.run_id, run))
    return [run for _, _, run in sorted(waiting, key=lambda t: (t[0], t[1]))]


def move_up(run_id: str, ws: Workspace | None = None, *, actor: Actor | None = None) -> list[str]:
    """Move a queued run one place towards the front of the queue (the worker starts the front first).

    The queue is ordered by ``queued_at``; the waiting runs get new times in
    the new order (spaced by a millisecond from the earliest), so a run queued
    meanwhile stays last and one that started meanwhile is left alone.

    Returns:
        The ids of the queued runs, front first, after the move.

    Raises:
        FileNotFoundError: no such run.
        ValueError: the run is not waiting in the queue, or is at its front already.
        AccessDenied: ``actor`` (default: the local user) may not reorder this run.
    """
    ws = ws or get_workspace()
    run = open_run(run_id, ws)
    run.require(actor or local_actor(), "reorder")
    order = queued_runs(ws)
    ids = [r.run_id for r in order]
    if run.run_id not in ids:
        raise ValueError(f"run {run.run_id} is {run.true_status().get('state')}, not waiting in the queue; only queued runs can be moved")
    i = ids.index(run.run_id)
    if i == 0:
        raise ValueError(f"run {run.run_id} is at the front of the queue already")
    order[i - 1], order[i] = order[i], order[i - 1]
    base = min(float(r.read_status().get("queued_at", 0.0) or 0.0) for r in order)
    for k, r in enumerate(order):
        r.transition(("queued",), queued_at=base + k * 1e-3)
    return [r.run_id for r in queued_runs(ws)]


def delete_run(run_id: str, ws: Workspace | None = None, *, force: bool = False, actor: Actor | None = None) -> None:
    """Delete a run folder. A queued or running run is refused unless ``force``.

    Who deleted it is appended to the workspace's ``audit.jsonl`` (the run's own is gone with it).

    Raises:
        ValueError: if the run is active and ``force`` is false.
        AccessDenied: ``actor`` (default: the local user) may not delete this run.
    """
    actor = actor or local_actor()
    run = open_run(run_id, ws)
    run.require(actor, "delete")
    status = run.true_status()
    state = status.get("state")
    if state in ACTIVE_STATES and not force:
        raise ValueError(f"run {run.run_id} is {state}; stop it first (or pass force=True)")
    if status.get("process_alive") and not force:
        raise ValueError(f"run {run.run_id} is damaged but its training process still runs; stop it first (or pass force=True)")
    # Rename first so that a reader never sees a half-deleted run folder.
    ws = ws or get_workspace()
    ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    trash = ws.tmp_dir / f"deleted-{run.run_id}-{secrets.token_hex(2)}"
    os.replace(run.path, trash)
    shutil.rmtree(trash, ignore_errors=True)
    append_audit(workspace_audit_path(ws), actor, "delete", run.run_id)


def workspace_audit_path(ws: Workspace) -> Path:
    """The workspace's own audit file: actions whose run folder is gone (deletions)."""
    return ws.root / "audit.jsonl"


def set_notes(run_id: str, notes: str, ws: Workspace | None = None, *, actor: Actor | None = None) -> dict[str, Any]:
    """Replace the notes of a run; returns ``notes.json``'s content. AccessDenied if ``actor`` may not write notes."""
    actor = actor or local_actor()
    run = open_run(run_id, ws)
    run.require(actor, "notes")
    before = _notes_or_empty(run)["notes"]
    content = run.write_notes(notes=notes)
    if content["notes"] != before:
        run.record(actor, "notes", f"{len(content['notes'])} characters")
    return content


def _notes_or_empty(run: RunFolder) -> dict[str, Any]:
    try:
        return run.read_notes()
    except RunFileError:  # damaged: replaced by the write
        return {"notes": "", "tags": []}


def set_tags(run_id: str, tags: list[str], ws: Workspace | None = None, *, actor: Actor | None = None) -> dict[str, Any]:
    """Replace the tags of a run; returns ``notes.json``'s content. AccessDenied if ``actor`` may not write notes."""
    actor = actor or local_actor()
    run = open_run(run_id, ws)
    run.require(actor, "notes")
    before = _notes_or_empty(run)["tags"]
    content = run.write_notes(tags=list(tags))
    if content["tags"] != before:
        run.record(actor, "tags", ", ".join(content["tags"]))
    return content


class PredictionCacheWriter:
    """Writes ``predictions/<id>.npz`` one image at a time, then ``index.json`` (``close``)."""

    def __init__(self, run: RunFolder, mode: str, class_names: list[str]):
        self.run, self.mode, self.class_names = run, mode, class_names
        self.ids: list[str] = []
        self.channels = 0
        self.sizes: set[tuple[int, int]] = set()

    def add(self, sample_id: str, probs: Any) -> None:
        import numpy as np

        probs = np.asarray(probs)
        folder = self.run.predictions_dir
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, probs=np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8))
        write_bytes_atomic(folder / f"{check_name(sample_id, 'sample id')}.npz", buffer.getvalue())
        self.ids.append(sample_id)
        self.channels = int(probs.shape[-1])
        self.sizes.add((int(probs.shape[0]), int(probs.shape[1])))

    def close(self) -> None:
        largest = max((max(s) for s in self.sizes), default=1)
        write_json_atomic(
            self.run.predictions_dir / "index.json",
            {
                "ids": list(self.ids),
                "image_size": int(largest),
                "mode": self.mode,
                "class_names": list(self.class_names),
                "channels": int(self.channels) or 1,
                "encoding": "probs uint8 = round(p * 255), shape (H, W, outputs) at each image's own size",
            },
        )
