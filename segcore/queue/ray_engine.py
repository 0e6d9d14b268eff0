"""Ray as the engine: each queued run is a Ray job (the Ray Jobs API).

With ``engine: "ray"`` in ``server.json`` (or ``SEGCORE_ENGINE=ray``) the
queue worker still owns the queue (order, cancel, move-up, stop, resume are
the local engine's), but instead of starting a training process itself it
submits the front run to Ray: ``JobSubmissionClient.submit_job`` with the
training process as the entrypoint (``python -m segcore.queue.process
RUN_DIR``), the run id as the submission id (``<run id>-2``, ``-3``... for
the jobs of a resumed run; ``status.json``'s ``job`` names the current one), ``entrypoint_num_gpus`` from the
run's ``train.devices`` when the cluster has GPUs and
``entrypoint_num_cpus`` from the server setting ``ray_cpus_per_run``. Ray
places the job on a node with those resources free.

The run folder stays the truth: the training process writes its status,
history and checkpoints into the workspace, which every node must see at the
same path (NFS or similar). The worker only watches the jobs for what the
process cannot say itself: a job that ended while its run still reads
"running" (the process was killed, its node was lost, or the head restarted
and no longer knows the job) makes the run ``interrupted`` with that reason,
and ``resume`` continues it from its checkpoint like a local one.

One job waits for resources at a time (the front of the queue): the next is
submitted once it runs, so the cluster fills up to its free resources while
the queue order, cancel and move-up keep working for the runs not yet
submitted.

``ray_address``: ``"auto"`` (the cluster this machine is part of, or
``$RAY_ADDRESS``), an address (``http://head:8265``, the Ray dashboard's),
or ``""`` (the worker starts a Ray instance on this machine for as long as
it serves the queue; its address is kept in ``.queue/ray.json`` for stop and
logs).
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

from segcore.fsutil import read_json, write_json_atomic
from segcore.runfiles import RunFileError
from segcore.runs import HEARTBEAT_STALE_S, RunFolder, iso, iter_run_folders, pid_alive
from segcore.workspace import ServerSettings, Workspace

POLL_EVERY_S = 1.0
JOB_ENV = "SEGCORE_RAY_JOB"  # set for a job's training process: the job it belongs to  # job states are asked over HTTP: not at the worker's 0.3 s pace
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class RayUnavailable(RuntimeError):
    """Ray is not installed, or its cluster cannot be reached."""


def require_ray() -> None:
    """Refuse engine "ray" without the ``ray`` package, saying how to install it."""
    try:
        import ray  # noqa: F401
        from ray.job_submission import JobSubmissionClient  # noqa: F401
    except ImportError as exc:
        raise RayUnavailable(f"server setting engine is 'ray' but Ray's job client cannot be imported here ({exc}); "
                             "install it with: pip install -r requirements-cluster.txt") from None


def local_instance_path(ws: Workspace) -> Path:
    """Where a worker that started its own Ray instance records the instance's address."""
    return ws.root / ".queue" / "ray.json"


def job_address(ws: Workspace, settings: ServerSettings) -> str | None:
    """The address a job client connects to (None: Ray's own lookup of ``"auto"``).

    Raises:
        RayUnavailable: ``ray_address`` is "" and no worker's Ray instance is running.
    """
    address = settings.ray_address.strip()
    if address == "auto":
        return "auto"
    if address:
        return address
    path = local_instance_path(ws)
    try:
        recorded = read_json(path)
    except (OSError, ValueError):
        recorded = None
    if isinstance(recorded, dict) and isinstance(recorded.get("address"), str):
        return recorded["address"]
    raise RayUnavailable(f"server setting ray_address is '' (a Ray instance of the queue worker's own) and no worker "
                         f"runs one now ({path} is missing)")


def connect(address: str | None):
    """A ``JobSubmissionClient`` for ``address``; RayUnavailable naming the address if it cannot connect."""
    require_ray()
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all mean "not reachable"
        raise RayUnavailable(f"cannot reach the Ray cluster at {address!r}: {type(exc).__name__}: {exc}") from None


def _missing(exc: Exception) -> bool:
    return "does not exist" in str(exc)


def stop_job(ws: Workspace, job_id: str) -> bool:
    """Ask Ray to stop job ``job_id`` (SIGTERM to the training process, then SIGKILL); True if it was live."""
    client = connect(job_address(ws, ws.settings()))
    try:
        return bool(client.stop_job(job_id))
    except RuntimeError as exc:
        if _missing(exc):
            return False
        raise


def job_log(ws: Workspace, job_id: str, lines: int = 40) -> str:
    """The last ``lines`` lines of Ray job ``job_id``'s own log (its entrypoint's output), or why there is none."""
    try:
        client = connect(job_address(ws, ws.settings()))
        text = client.get_job_logs(job_id)
    except (RayUnavailable, ValueError) as exc:
        return f"(the Ray job log cannot be read: {exc})"
    except RuntimeError as exc:
        return f"(the Ray cluster has no log of job {job_id}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayEngine:
    """The queue worker's side of the Ray engine: submit runs as jobs, watch them, stop them.

    Args:
        ws: the workspace (a path every Ray node sees).
        settings: the server settings (``ray_address``, ``ray_cpus_per_run``, ``max_concurrent_runs``).
        log: the worker's log function.
    """

    name = "ray"

    def __init__(self, ws: Workspace, settings: ServerSettings, log: Callable[[str], None]):
        require_ray()
        self.ws = ws
        self.settings = settings
        self.log = log
        self.own_instance = False
        self.address: str | None = None
        self._client = None
        self.jobs: dict[str, RunFolder] = {}  # submitted by this worker (or adopted), not yet ended
        self.stopping: set[str] = set()
        self.orphans: set[str] = set()  # jobs the cluster forgot whose process still runs
        self._last_poll = 0.0
        self._unreachable_logged = False
        self._adopt()

    # -- the cluster -----------------------------------------------------------
    def client(self):
        if self._client is not None:
            return self._client
        if self.settings.ray_address.strip() == "" and not self.own_instance:
            self._start_instance()
        self._client = connect(self.address if self.own_instance else job_address(self.ws, self.settings))
        return self._client

    def _start_instance(self) -> None:
        import ray

        port = _free_port()
        context = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                           log_to_driver=False, configure_logging=False)
        self.own_instance = True
        self.address = "http://" + context.dashboard_url
        write_json_atomic(local_instance_path(self.ws), {"address": self.address, "worker_pid": os.getpid(), "started_at": iso()})
        self.log(f"started a Ray instance on this machine, dashboard and jobs at {self.address}")

    def _gpus_per_node(self) -> int:
        """The most GPUs any live node has (0 on a CPU cluster), from Ray's state API."""
        from ray.util.state import list_nodes

        address = self.address if self.own_instance else job_address(self.ws, self.settings)
        try:
            nodes = list_nodes(address=address, limit=1000, raise_on_missing_output=False)
        except Exception as exc:
            self.log(f"could not list the Ray nodes ({type(exc).__name__}: {exc}); submitting without GPUs")
            return 0
        return int(max([n.resources_total.get("GPU", 0) for n in nodes if n.state == "ALIVE"] or [0]))

    def close(self) -> None:
        if self.own_instance:
            import ray

            ray.shutdown()
            path = local_instance_path(self.ws)
            try:  # a worker started after this one let go of the queue may have written its own address there
                if read_json(path).get("worker_pid") == os.getpid():
                    path.unlink()
            except (OSError, ValueError, AttributeError):
                pass
            self.log("stopped this worker's Ray instance")

    # -- runs ------------------------------------------------------------------
    def _adopt(self) -> None:
        """Watch the Ray runs a previous worker submitted and left running (it died or was restarted)."""
        for run in iter_run_folders(self.ws):
            try:
                status = run.read_status()
            except (RunFileError, OSError):
                continue
            if status.get("state") == "running" and status.get("engine") == "ray" and status.get("job"):
                self.jobs[str(status["job"])] = run

    def busy(self) -> bool:
        return bool(self.jobs)

    def pending(self) -> int:
        """Jobs submitted but not yet started by Ray (their run reads running under them, with no pid yet)."""
        count = 0
        for job_id, run in self.jobs.items():
            try:
                status = run.read_status()
            except (RunFileError, OSError):
                continue
            count += status.get("state") == "running" and status.get("job") == job_id and status.get("pid") is None
        return count

    def can_start(self, live: int) -> bool:
        """Whether the front run may be submitted now: no job waiting for resources, and under any configured cap."""
        cap = self.settings.max_concurrent_runs
        return self.pending() == 0 and (cap == 0 or live < cap)

    def _job_id(self, client, run: RunFolder) -> str | None:
        """The submission id for this attempt: the run id, then ``<run id>-2``, ``-3``... for resumed attempts.

        A Ray job id names one attempt (Ray keeps ended jobs, and reusing an id right after its job
        ended raced with the old job's supervisor). None while an earlier attempt's job still runs.
        """
        for n in range(1, 1000):
            job_id = run.run_id if n == 1 else f"{run.run_id}-{n}"
            try:
                previous = client.get_job_status(job_id)
            except RuntimeError as exc:
                if _missing(exc):
                    return job_id
                raise RayUnavailable(f"cannot ask the Ray cluster about job {job_id}: {exc}") from None
            except Exception as exc:
                raise RayUnavailable(f"cannot reach the Ray cluster: {type(exc).__name__}: {exc}") from None
            if not previous.is_terminal():
                return None  # a resumed run whose last job is still being stopped
        raise ValueError(f"run {run.run_id} has had 999 Ray jobs; re-run it instead")

    def start(self, run: RunFolder, env: dict[str, str]) -> bool:
        """Submit ``run`` as a Ray job; returns False when it must wait (its previous job has not ended).

        Raises:
            RayUnavailable: the cluster cannot be reached (the run stays queued).
        """
        cfg = run.read_config()
        client = self.client()
        job_id = self._job_id(client, run)
        if job_id is None:
            return False
        gpus_per_node = self._gpus_per_node()
        devices = cfg.train.devices
        num_gpus = 0 if gpus_per_node == 0 else (gpus_per_node if devices == "all" else int(devices))
        if num_gpus > gpus_per_node:
            raise ValueError(f"setting train.devices is {devices}; the largest node of the Ray cluster has {gpus_per_node} GPUs")
        num_cpus = self.settings.ray_cpus_per_run
        claimed = run.transition(("queued",), state="running", pid=None, host=None, heartbeat=time.time(), engine="ray",
                                 job=job_id, gpus=[], devices=None, message=f"submitting to Ray as job {job_id}")
        if claimed is None:
            return True  # cancelled meanwhile: nothing to submit
        pythonpath = str(PROJECT_ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
        env_vars = {"SEGCORE_WORKSPACE": str(self.ws.root), "PYTHONPATH": pythonpath, JOB_ENV: job_id, **env}
        entrypoint = f"{shlex.quote(sys.executable)} -m segcore.queue.process {shlex.quote(str(run.path))}"
        try:
            client.submit_job(entrypoint=entrypoint, submission_id=job_id, runtime_env={"env_vars": env_vars},
                              entrypoint_num_cpus=num_cpus, entrypoint_num_gpus=num_gpus,
                              metadata={"segcore_run": run.run_id, "workspace": str(self.ws.root)})
        except Exception as exc:
            run.transition(("running",), state="queued", job=None, engine=None, queued_at=float(claimed.get("queued_at") or 0.0),
                           message=f"waiting: the Ray cluster did not take the job ({type(exc).__name__}: {exc})")
            raise RayUnavailable(f"Ray did not take job {job_id}: {type(exc).__name__}: {exc}") from None
        self.jobs[job_id] = run
        # Said only once Ray has the job: a reader who sees it may ask Ray about the job. The job's process
        # may have started already (its pid is in the status then), or the run been stopped meanwhile.
        run.transition(("running",), when=lambda s: s.get("job") == job_id and s.get("pid") is None,
                       message=f"submitted to Ray as job {job_id}; waiting for a node with {num_cpus} CPU(s)"
                       + (f" and {num_gpus} GPU(s)" if num_gpus else "") + " free")
        self.log(f"submitted {run.run_id} as Ray job {job_id} ({num_cpus} CPU, {num_gpus} GPU)")
        return True

    def poll(self, grace: float) -> None:
        """Look at every watched job: record where it runs, keep a waiting job's run alive, and close ended ones."""
        now = time.time()
        if now - self._last_poll < POLL_EVERY_S:
            return
        self._last_poll = now
        for job_id, run in list(self.jobs.items()):
            if not self._still_running(job_id, run):
                # The run folder is the truth: its process ended it (or it was stopped and resumed); whether or
                # not the cluster can still be asked, there is nothing left to watch.
                self.jobs.pop(job_id, None)
        try:
            client = self.client()
        except RayUnavailable as exc:
            if not self._unreachable_logged:
                self.log(f"{exc}; retrying (runs whose heartbeat stops read interrupted after a minute)")
                self._unreachable_logged = True
            return
        for job_id, run in list(self.jobs.items()):
            try:
                info = client.get_job_info(job_id)
            except RuntimeError as exc:
                if _missing(exc):
                    self._unknown(job_id, run)
                    continue
                self._log_unreachable(exc)
                continue
            except Exception as exc:  # connection refused while the head restarts
                self._log_unreachable(exc)
                self._client = None
                continue
            self._unreachable_logged = False
            status = str(getattr(info.status, "value", info.status))
            if status == "PENDING":
                current = run.read_status()
                if current.get("state") == "running" and current.get("job") == job_id:
                    run.transition(("running",), heartbeat=time.time())  # waiting for resources is not a dead process
                else:  # stopped while it waited: Ray keeps a job that never started pending, so let it go
                    client.stop_job(job_id)
                    self.jobs.pop(job_id, None)
                    self.log(f"let go of Ray job {job_id}, still waiting for resources: its run is {current.get('state')}")
            elif status == "RUNNING":
                self._stop_if_asked(client, job_id, run, grace)
            else:
                code = getattr(info, "driver_exit_code", None)
                said = (info.message or "").strip().splitlines()
                self._ended(job_id, run, f"Ray job {job_id} ended {status}" + (f" with exit code {code}" if code is not None else "")
                            + (f": {said[0]}" if said else ""), code)

    def _still_running(self, job_id: str, run: RunFolder) -> bool:
        """Whether the run reads running under this job, or its job still waits for resources (to be let go)."""
        try:
            status = run.read_status()
        except (RunFileError, OSError):
            return True  # damaged: the job's end decides
        if status.get("state") == "running" and status.get("job") == job_id:
            return True
        return status.get("pid") is None and status.get("job") == job_id and status.get("state") == "stopped"

    def _unknown(self, job_id: str, run: RunFolder) -> None:
        """The cluster no longer knows the job (its head restarted): the run is interrupted once its process is gone.

        A training process can outlive its job's record (it keeps training and writes its own end);
        it is judged by its pid on this machine, else by its heartbeat, as every reader judges a run.
        """
        reason = f"the Ray cluster no longer knows job {job_id} (its head was restarted, or the job was deleted)"
        try:
            status = run.read_status()
        except (RunFileError, OSError):
            status = {}
        if status.get("state") == "running" and status.get("job") == job_id and status.get("pid"):
            here = status.get("host") == socket.gethostname()
            beat = float(status.get("heartbeat") or 0.0)
            alive = pid_alive(int(status["pid"])) if here else time.time() - beat < HEARTBEAT_STALE_S
            if alive:
                if job_id not in self.orphans:
                    self.log(f"{reason}; its training process still runs, so the run is left to it")
                    self.orphans.add(job_id)
                return
        self.orphans.discard(job_id)
        self._ended(job_id, run, reason)

    def _log_unreachable(self, exc: Exception) -> None:
        if not self._unreachable_logged:
            self.log(f"cannot reach the Ray cluster ({type(exc).__name__}: {exc}); retrying")
            self._unreachable_logged = True

    def _stop_if_asked(self, client, job_id: str, run: RunFolder, grace: float) -> None:
        if job_id in self.stopping or not run.stop_path.exists():
            return
        try:
            age = time.time() - run.stop_path.stat().st_mtime
        except FileNotFoundError:
            return
        if age > grace:  # the run did not stop at a batch end in time
            client.stop_job(job_id)
            self.stopping.add(job_id)

    def _ended(self, job_id: str, run: RunFolder, reason: str, code: int | None = None) -> None:
        """A job ended: if its run still reads "running" under this job, its process could not say why; record it."""
        self.jobs.pop(job_id, None)
        self.stopping.discard(job_id)
        try:
            status = run.read_status()
        except (RunFileError, OSError):
            status = {"state": "running", "job": job_id}
        if status.get("state") != "running" or status.get("job") != job_id:
            self.log(f"{run.run_id} ended ({status.get('state')}); {reason}")
            return
        if code is not None and 0 < code < 128:  # the process exited by itself without a result: it crashed
            run.update_status(state="failed", finished_at=iso(),
                              message=f"the training process exited with code {code} without a result ({reason}); see train.log")
        else:
            run.update_status(state="interrupted", finished_at=iso(),
                              message=f"interrupted: {reason}; resume continues from the last checkpoint")
        self.log(f"{run.run_id} ended abnormally: {reason}")
