"""Runs and the queue under faults: damaged files in every run folder file, a killed worker, a
damaged status under a running process, a read-only workspace. Each is listed, explained and
recoverable; nothing crashes, nothing vanishes, the queue goes on."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _train_helpers import make_shapes_dataset, wait_until

from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
from segcore.runs import DAMAGED, RunFolder, create_run, delete_run, list_runs, open_run, queued_runs

PROJECT = Path(__file__).resolve().parent.parent

# Wrong-shaped JSON, invalid JSON and empty files, as a teammate, a script or a full disk leave them.
GARBAGE = {
    "list": b"[1, 2]",
    "queued_at": b'{"queued_at": "soon"}',
    "pid": b'{"pid": "abc"}',
    "state": b'{"state": "exploded", "epoch": -1}',
    "null": b"null",
    "string": b'"finished"',
    "empty": b"",
    "invalid": b'{"state": "running",',
    "binary": b"\xff\xfe\x00garbage",
}
# Files whose damage leaves the state unknown: the run is listed as damaged. The others are warnings.
DEFINING = ("config.json", "status.json")
FILES = ("config.json", "status.json", "notes.json", "checkpoints/state.json", "evaluation.json",
         "predictions/index.json", "history.csv")
STATES = ("finished", "queued", "running")
# Larger files that the listing does not read; their readers raise an error naming them.
LARGE = ("evaluation.json", "predictions/index.json", "history.csv")

CFG = RunConfig(model=ModelConfig(depth=3, filters=8), train=TrainConfig(dataset="shapes", image_size=32, epochs=3))
SPLIT = {"train": ["001", "002"], "val": ["003"], "test": ["004"]}


def tiny(epochs=3, dataset="shapes", **train):
    train.setdefault("early_stopping_patience", 0)
    return RunConfig(
        model=ModelConfig(depth=3, filters=8),
        train=TrainConfig(dataset=dataset, image_size=32, epochs=epochs, batch_size=4, seed=0,
                          augment=AugmentConfig(enabled=False), split=SplitConfig(val_fraction=0.2, test_fraction=0.2),
                          **train),
    )


def make_run(ws, state):
    """A run folder with every file present and valid, in ``state`` (running: this process, alive)."""
    run = create_run(ws, CFG, dataset={"name": "shapes", "content_hash": "h", "mode": "multiclass",
                                       "classes": ["background", "disc", "square"], "channels": 3}, split=SPLIT)
    run.write_history([{"epoch": 1, "loss": 0.5, "val_dice": 0.4}])
    run.write_train_state({"epoch": 1, "best_val_dice": 0.4, "best_epoch": 1, "es_wait": 0})
    run.write_evaluation({"per_class": [], "macro": {"dice": 0.5}, "per_image": [], "warnings": []})
    run.predictions_dir.mkdir(parents=True, exist_ok=True)
    (run.predictions_dir / "index.json").write_text(json.dumps({"ids": ["004"], "image_size": 32, "mode": "multiclass",
                                                                 "class_names": ["a", "b", "c"], "channels": 3}))
    run.write_notes(notes="fine", tags=["t"])
    if state == "running":
        run.update_status(state="running", pid=os.getpid(), heartbeat=time.time(), epoch=1)
    elif state == "finished":
        run.update_status(state="finished", epoch=3, best={"val_dice": 0.4, "epoch": 1})
    return run


def acceptable(file: str, garbage: bytes) -> bool:
    """Content a file may legitimately hold: an empty history, or notes/evaluation objects with only
    unknown extra keys (newer versions may add fields)."""
    if file == "history.csv":
        return garbage == b""
    if file in ("notes.json", "evaluation.json"):
        try:
            return isinstance(json.loads(garbage), dict)
        except ValueError:
            return False
    return False


def damage(run: RunFolder, name: str, garbage: bytes) -> None:
    path = run.path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(garbage)


@pytest.fixture
def no_worker(monkeypatch):
    """Record worker starts instead of starting real training processes."""
    from segcore.queue import launcher

    started = []
    monkeypatch.setattr(launcher, "ensure_worker", lambda ws=None: started.append(ws) or True)
    return started


@pytest.mark.parametrize("state", STATES)
def test_fuzz_every_run_file_listing_and_cli_keep_working(workspace, capsys, no_worker, state):
    """Each file of an idle, a queued and a running run, damaged every way: the run stays listed,
    as damaged (config/status) or with a warning naming the file, and the CLI lists it in one piece."""
    from segcore.cli import main

    for file in FILES:
        for kind, garbage in GARBAGE.items():
            for old in workspace.runs_dir.iterdir():
                shutil.rmtree(old)
            good = make_run(workspace, "finished")
            run = make_run(workspace, state)
            damage(run, file, garbage)
            rows = {s.run_id: s for s in list_runs(workspace)}
            assert set(rows) == {good.run_id, run.run_id}, (file, kind)
            row = rows[run.run_id]
            if acceptable(file, garbage):
                assert row.state == state and not row.damage, (file, kind, row)
                continue
            if file in LARGE:
                # read by those who show them, not by the listing: the run keeps its state
                assert row.state == state and not row.damage, (file, kind, row)
            else:
                assert file in row.damage, (file, kind, row)
            if file in DEFINING:
                assert row.state == DAMAGED, (file, kind)
                assert row.message.startswith(f"damaged: {file} ")
            elif file in ("notes.json", "checkpoints/state.json"):
                assert row.state == state, (file, kind)
                assert any(w.startswith(f"{file} is damaged: ") for w in row.warnings)
            assert rows[good.run_id].state == "finished" and not rows[good.run_id].damage
            # the queue's view never raises; a damaged queued run is skipped with a reason
            skipped: dict[str, str] = {}
            waiting = [r.run_id for r in queued_runs(workspace, skipped)]
            if state == "queued" and file in DEFINING:
                assert run.run_id not in waiting
                if file == "config.json":
                    assert "config.json is damaged" in skipped[run.run_id]
            elif state == "queued":
                assert waiting == [run.run_id]
            # the other readers say what is wrong instead of crashing with a bare error
            reader = {"history.csv": run.read_history, "evaluation.json": run.read_evaluation,
                      "predictions/index.json": run.read_prediction_index, "checkpoints/state.json": run.read_train_state,
                      "notes.json": run.read_notes, "config.json": run.read_meta, "status.json": run.read_status}[file]
            with pytest.raises(ValueError, match=f"{Path(file).name} is damaged: "):
                reader()
            assert main(["runs"]) == 0
            out = capsys.readouterr().out
            assert run.run_id in out and (file in LARGE or f"{file} is damaged: " in out)
            assert main(["runs", "--json"]) == 0
            listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
            assert file in LARGE or file in listed[run.run_id]["damage"]


def test_damaged_runs_can_be_deleted_and_resumed(workspace, no_worker):
    make_shapes_dataset(workspace, "shapes", n=6)
    run = make_run(workspace, "finished")
    damage(run, "status.json", b'{"pid": "abc"}')
    from segcore.queue import resume

    assert resume(run.run_id, workspace) == run.run_id  # re-queued from its checkpoint record
    status = run.read_status()
    assert status["state"] == "queued" and status["epoch"] == 1
    assert status["warnings"][0].startswith("status.json was damaged (field 'state' is missing)")
    assert no_worker  # the queue was woken for it

    damage(run, "config.json", b"[1, 2]")
    with pytest.raises(ValueError, match="cannot be resumed: .*config.json is damaged: expected a JSON object"):
        resume(run.run_id, workspace)
    other = make_run(workspace, "stopped")
    damage(other, "checkpoints/state.json", b'{"epoch": "three"}')
    with pytest.raises(ValueError, match="state.json is damaged: field 'epoch'"):
        resume(other.run_id, workspace)
    damage(run, "status.json", b"")
    delete_run(run.run_id, workspace)
    assert not run.path.exists()


def test_a_damaged_status_of_a_live_process_is_not_deleted_or_resumed(workspace):
    run = make_run(workspace, "running")
    lock = run.acquire_process_lock()
    try:
        damage(run, "status.json", b"[1, 2]")
        row = list_runs(workspace)[0]
        assert row.state == DAMAGED and "still running" in row.message
        with pytest.raises(ValueError, match="still runs"):
            delete_run(run.run_id, workspace)
        from segcore.queue import resume

        with pytest.raises(ValueError, match="still runs"):
            resume(run.run_id, workspace, start_worker=False)
    finally:
        lock.close()
    assert not run.process_alive()


def test_page_loads_and_cli_calls_wake_a_stalled_queue(workspace, capsys, no_worker):
    from segcore.cli import main
    from segcore.queue import launcher

    make_shapes_dataset(workspace, "shapes", n=6)
    assert main(["runs"]) == 0 and no_worker == []  # nothing queued: no worker
    launcher.launch(tiny(), workspace, start_worker=False)
    assert main(["runs"]) == 0
    assert len(no_worker) == 1
    assert "started a queue worker" in capsys.readouterr().err


# -- the worker --------------------------------------------------------------------------


def test_the_worker_skips_damaged_runs_records_why_and_starts_the_rest(workspace, monkeypatch):
    """serve() with a queue of damaged runs around a good one: it logs each skip once and starts the good run."""
    from segcore.queue import launcher, worker

    make_shapes_dataset(workspace, "shapes", n=6)
    bad_status = launcher.launch(tiny(), workspace, start_worker=False)
    good = launcher.launch(tiny(), workspace, start_worker=False)
    bad_config = launcher.launch(tiny(), workspace, start_worker=False)
    damage(open_run(bad_status, workspace), "status.json", b'{"queued_at": "soon"}')
    damage(open_run(bad_config, workspace), "config.json", b'{"config": [1, 2]}')
    started = []

    class Done:
        pid, returncode = 4242, 0

        def poll(self):
            return 0

    def fake_spawn(module, arg, ws, log_path, *, detach=False, env=None):
        started.append((Path(arg).name, env))
        RunFolder(Path(arg)).update_status(state="finished")
        return Done()

    monkeypatch.setattr(worker, "spawn_module", fake_spawn)
    lines = []
    monkeypatch.setattr(worker, "_log", lines.append)
    assert worker.serve(workspace) == 0
    assert [s[0] for s in started] == [good]
    skips = [line for line in lines if line.startswith("skipped ")]
    assert len(skips) == 2
    assert any(line.startswith(f"skipped {bad_status}: ") and "status.json is damaged" in line for line in skips)
    assert any(line.startswith(f"skipped {bad_config}: ") and "config.json is damaged" in line for line in skips)
    assert lines[-1] == "queue empty, exiting"


def test_the_worker_starts_each_run_with_its_own_backend(workspace, monkeypatch):
    from segcore.queue import launcher, worker

    make_shapes_dataset(workspace, "shapes", n=6)
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    run_id = launcher.launch(tiny(), workspace, start_worker=False)
    assert open_run(run_id, workspace).read_config().train.backend == "torch"  # "auto" became the requested one
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the worker's own environment says otherwise
    envs = []

    class Done:
        pid, returncode = 4242, 0

        def poll(self):
            return 0

    def fake_spawn(module, arg, ws, log_path, *, detach=False, env=None):
        envs.append(env)
        RunFolder(Path(arg)).update_status(state="finished")
        return Done()

    monkeypatch.setattr(worker, "spawn_module", fake_spawn)
    monkeypatch.setattr(worker, "_log", lambda message: None)
    worker.serve(workspace)
    assert envs == [{"KERAS_BACKEND": "torch"}]


def test_a_backend_that_is_not_installed_is_refused_at_launch(workspace, monkeypatch):
    from segcore.queue import launcher
    from segcore.training import device

    make_shapes_dataset(workspace, "shapes", n=6)
    monkeypatch.setattr(device, "BACKEND_PACKAGES", {**device.BACKEND_PACKAGES, "jax": "no_such_package_for_jax"})
    with pytest.raises(ValueError, match="setting train.backend is 'jax'; expected an installed backend"):
        launcher.launch(tiny(backend="jax"), workspace, start_worker=False)
    assert list_runs(workspace) == []


# -- read-only and full workspaces -----------------------------------------------------------


@pytest.mark.parametrize("code, says", [(errno.EROFS, "is on a read-only file system"),
                                        (errno.EACCES, "is not writable"), (errno.ENOSPC, "has no space left")])
def test_a_refused_write_is_one_line_naming_the_folder(workspace, capsys, monkeypatch, code, says):
    """Mocked at the lowest layer (os.mkdir and tempfile): the CLI prints one line, no traceback."""
    from segcore.cli import main

    make_shapes_dataset(workspace, "shapes", n=6)

    def refuse(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(os, "mkdir", refuse)
    assert main(["train", "--dataset", "shapes", "--image-size", "32", "--depth", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot write to {workspace.runs_dir}: it {says}")


def _read_only_mount_works(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    cmd = f"mount --bind {probe} {probe} && mount -o remount,ro,bind {probe} && ! touch {probe}/x 2>/dev/null"
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _run_read_only(ws_root: Path, command: str) -> subprocess.CompletedProcess:
    """``command`` with the workspace bind-mounted read-only in a private mount namespace (a real EROFS)."""
    script = f"mount --bind {ws_root} {ws_root} && mount -o remount,ro,bind {ws_root} && {command}"
    env = dict(os.environ, SEGCORE_WORKSPACE=str(ws_root), PYTHONPATH=str(PROJECT))
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, cwd=PROJECT,
                          timeout=240)


@pytest.mark.slow
def test_read_only_workspace_cli_import_train_demo_give_one_line(workspace, tmp_path):
    """A real read-only bind mount (root ignores chmod, so permissions cannot simulate it)."""
    if not _read_only_mount_works(tmp_path):
        pytest.skip("no private mount namespace here (unshare -m and a read-only bind mount need CAP_SYS_ADMIN)")
    make_shapes_dataset(workspace, "shapes", n=6)
    src = tmp_path / "src"
    for sub in ("images", "masks"):
        (src / sub).mkdir(parents=True)
    shutil.copy(workspace.dataset_dir("shapes") / "images" / "001.png", src / "images" / "a.png")
    shutil.copy(workspace.dataset_dir("shapes") / "masks" / "001.png", src / "masks" / "a.png")
    py = sys.executable
    for args in (f"demo", f"import {src} --name cells", "train --dataset shapes --image-size 32 --depth 3"):
        proc = _run_read_only(workspace.root, f"{py} -m segcore {args}")
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and f"cannot write to {workspace.root}" in lines[0], (args, proc.stderr)
        assert "it is on a read-only file system" in lines[0]


@pytest.mark.slow
def test_read_only_workspace_data_page_upload_says_so(workspace, tmp_path):
    if not _read_only_mount_works(tmp_path):
        pytest.skip("no private mount namespace here (unshare -m and a read-only bind mount need CAP_SYS_ADMIN)")
    make_shapes_dataset(workspace, "demo", n=6)
    src = tmp_path / "zsrc"
    for sub in ("images", "masks"):
        (src / sub).mkdir(parents=True)
        for name in ("a", "b"):
            shutil.copy(workspace.dataset_dir("demo") / sub / "001.png", src / sub / f"{name}.png")
    archive = shutil.make_archive(str(tmp_path / "cells"), "zip", src)
    app = PROJECT / "streamlit_app.py"
    script = tmp_path / "upload.py"
    script.write_text(
        "from pathlib import Path\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(app)!r}, default_timeout=60).run()\n"
        "at.switch_page('app_pages/data.py').run()\n"
        f"at.file_uploader(key='import_zip').set_value(('cells.zip', Path({archive!r}).read_bytes(), 'application/zip')).run()\n"
        "at.button(key='import_go').click().run()\n"
        "assert not at.exception, at.exception\n"
        "print('ERRORS:', [e.value for e in at.error])\n"
    )
    proc = _run_read_only(workspace.root, f"{sys.executable} {script}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = proc.stdout.split("ERRORS:", 1)[1]
    assert f"Could not import cells.zip: cannot write to {workspace.root}" in errors
    assert "read-only file system" in errors


# -- real processes: a damaged status under training, a killed worker --------------------------



def _wait_until(predicate, timeout=180.0):
    return wait_until(predicate, timeout)


def _epoch(run):
    try:
        s = run.read_status()
    except ValueError:
        return 0
    return s.get("state") == "running" and s.get("pid") and int(s.get("epoch", 0))


@pytest.mark.slow
def test_garbage_in_a_running_runs_status_does_not_stop_it(workspace):
    """The training process keeps its status in memory: garbage written into status.json mid-run is
    replaced at the next heartbeat, the run finishes, and the damaged run can be evaluated,
    resumed and deleted afterwards."""
    from segcore.cli import main
    from segcore.queue import launch, resume, wait_for

    make_shapes_dataset(workspace, "shapes", n=16)
    # enough epochs to outlast the garbage below: a 4-epoch run once finished during it on a fast day (its
    # process gone, the empty file rightly read "delete or resume" rather than "still running")
    epochs = 16
    run_id = launch(tiny(epochs=epochs), workspace)
    run = open_run(run_id, workspace)
    _wait_until(lambda: (_epoch(run) or 0) >= 1)
    for garbage in (b"[1, 2]", b'{"pid": "abc"}', b"{", b""):
        damage(run, "status.json", garbage)
        row = {s.run_id: s for s in list_runs(workspace)}[run_id]
        if row.state == DAMAGED:  # until the next heartbeat rewrites it
            assert "still running" in row.message
        time.sleep(0.3)
    final = wait_for([run_id], workspace, timeout=300)[run_id]
    assert final["state"] == "finished", final
    assert [r["epoch"] for r in run.read_history()] == list(range(1, epochs + 1))
    assert "Traceback" not in (run.path / "process.log").read_text()

    damage(run, "status.json", b'{"queued_at": "soon"}')  # idle now
    assert {s.run_id: s.state for s in list_runs(workspace)}[run_id] == DAMAGED
    assert main(["eval", run_id, "--json"]) == 0  # the checkpoint still evaluates
    resume(run_id, workspace)
    final = wait_for([run_id], workspace, timeout=300)[run_id]
    assert final["state"] == "finished" and final["epoch"] == epochs
    delete_run(run_id, workspace)
    assert list_runs(workspace) == []


@pytest.mark.slow
def test_a_killed_worker_does_not_leave_queued_runs_stuck(workspace):
    """SIGKILL the worker while a run waits: the next CLI call starts a new worker, which trains it."""
    from segcore.queue import launcher

    make_shapes_dataset(workspace, "shapes", n=16)
    first = launcher.launch(tiny(epochs=3), workspace)
    waiting = launcher.launch(tiny(epochs=1), workspace)
    lock = workspace.root / ".queue" / "worker.lock"
    _wait_until(lambda: lock.read_text().strip().isdigit())
    pid = int(lock.read_text())
    _wait_until(lambda: (_epoch(open_run(first, workspace)) or 0) >= 1)
    os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: not launcher.worker_running(workspace), timeout=30)
    # the first run's process goes on and ends by itself; nobody starts the waiting one
    _wait_until(lambda: open_run(first, workspace).true_status()["state"] != "running", timeout=240)
    time.sleep(2.0)
    assert open_run(waiting, workspace).true_status()["state"] == "queued"
    env = dict(os.environ, SEGCORE_WORKSPACE=str(workspace.root), PYTHONPATH=str(PROJECT))
    proc = subprocess.run([sys.executable, "-m", "segcore", "runs"], capture_output=True, text=True, env=env,
                          cwd=PROJECT, timeout=120)
    assert proc.returncode == 0 and "started a queue worker" in proc.stderr
    state = _wait_until(lambda: (s := open_run(waiting, workspace).true_status()["state"]) in ("finished", "failed") and s,
                        timeout=240)
    assert state == "finished"


# -- damaged checkpoints and prediction caches, a status that would hold the queue --------------


def _zip_file(path: Path, members: dict[str, bytes]) -> Path:
    """A zip as Keras (``.keras``) or numpy (``.npz``) writes one."""
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


KERAS_FILE = {"metadata.json": b"{}", "config.json": b'{"class_name": "Functional"}', "model.weights.h5": os.urandom(4096)}


@pytest.mark.parametrize("file", ["checkpoints/best.keras", "checkpoints/last.keras", "predictions/004.npz"])
def test_a_truncated_checkpoint_or_cache_marks_the_run_and_every_command_names_it(workspace, capsys, no_worker, file):
    """Half a checkpoint or a prediction cache (a full disk, a copy cut short): the run keeps its state
    and names the file in its listing; eval, predict and the cache reader say which file is damaged."""
    import numpy as np

    from segcore.cli import main

    good = make_run(workspace, "finished")
    run = make_run(workspace, "finished")
    for r in (good, run):
        _zip_file(r.best_model_path, KERAS_FILE)
        _zip_file(r.last_model_path, KERAS_FILE)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, probs=np.zeros((32, 32, 3), np.uint8))
        (r.predictions_dir / "004.npz").write_bytes(buffer.getvalue())
    _cut_in_half(run.path / file)
    rows = {s.run_id: s for s in list_runs(workspace)}
    assert not rows[good.run_id].damage
    row = rows[run.run_id]
    assert row.state == "finished" and file in row.damage, row
    assert any(w.startswith(f"{file} is damaged: ") for w in row.warnings)
    assert main(["runs"]) == 0
    assert f"{file} is damaged: " in capsys.readouterr().out
    if file.endswith(".npz"):
        with pytest.raises(ValueError, match="004.npz is damaged: "):
            run.read_cached_probs("004")
        assert good.read_cached_probs("004").shape == (32, 32, 3)
        return
    checkpoint = Path(file).stem
    if checkpoint == "best":
        # eval and predict load the best model: one line naming the file, not "File not found"
        assert main(["eval", run.run_id]) != 0
        err = capsys.readouterr().err
        assert "best.keras is damaged: " in err and "Traceback" not in err and "File not found" not in err
        image = workspace.root / "image.png"
        import cv2

        cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
        assert main(["predict", run.run_id, str(image), "--out", str(workspace.root / "mask.png")]) != 0
        assert "best.keras is damaged: " in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"{checkpoint}.keras is damaged: cut short"):
        run.checked_model_path(checkpoint)


def test_a_status_with_a_heartbeat_in_the_future_and_a_live_pid_does_not_hold_the_queue(workspace):
    """'running' with a live pid from another program (pid 1) and a heartbeat far in the future: once the
    file has not been renewed for HEARTBEAT_STALE_S the run is interrupted, and the worker counts no live run."""
    from segcore.runs import HEARTBEAT_STALE_S
    from segcore.queue import worker

    run = make_run(workspace, "finished")
    run.update_status(state="running", pid=1, heartbeat=time.time() + 10**6)
    # a process that renews the file is believed, whatever its clock says
    assert run.true_status()["state"] == "running"
    assert worker._live_runs(workspace)[0] == 1  # (runs training, GPUs they hold)
    old = time.time() - HEARTBEAT_STALE_S - 5
    os.utime(run.status_path, (old, old))
    status = run.true_status()
    assert status["state"] == "interrupted", status
    assert "in the future" in status["message"]
    assert worker._live_runs(workspace)[0] == 0


@pytest.fixture
def in_process(monkeypatch):
    """Run ``segcore.queue.process.execute`` here: its log handlers and SIGTERM handler are undone after."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    term = signal.getsignal(signal.SIGTERM)
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    signal.signal(signal.SIGTERM, term)


def test_a_full_disk_during_a_checkpoint_records_why_and_leaves_no_temp_files(workspace, monkeypatch, in_process):
    """The disk fills while last.keras is saved: the half-written temporary checkpoint is removed, the run
    is 'failed' with the reason (the status is written into the space the process kept in .reserve), and
    temporary files an earlier, killed process left are removed when the run starts again."""
    from segcore import fsutil
    from segcore.queue import process
    from segcore.training import trainer

    run = make_run(workspace, "queued")
    leftover = run.checkpoints_dir / ".tmp-999999-last.keras"  # a process killed mid-save
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"PK half")
    disk = {"full": False}
    create = fsutil._create_temp_file

    def create_unless_full(folder, name):
        if disk["full"] and run.reserve_path.exists():  # nothing is free until the reserve is given up
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / name))
        return create(folder, name)

    monkeypatch.setattr(fsutil, "_create_temp_file", create_unless_full)

    class HalfSave:
        def save(self, path):
            Path(path).write_bytes(b"PK\x03\x04 half a model")
            raise OSError(errno.ENOSPC, "No space left on device", path)

    class FillingTrainer:
        def __init__(self, run, status):
            assert not leftover.exists(), "the earlier process's temporary file is still there"
            assert run.reserve_path.stat().st_size > 0
            self.run, self.status, self.cfg = run, status, CFG

        def train(self):
            disk["full"] = True
            with pytest.raises(OSError):  # a heartbeat on a full disk fails, and leaves the reserve for the last word
                self.status.update(heartbeat=time.time())
            assert self.run.reserve_path.exists()
            trainer.save_model_atomic(HalfSave(), self.run.last_model_path)

    monkeypatch.setattr(trainer, "Trainer", FillingTrainer)
    assert process.execute(run.path) == 1
    status = run.read_status()
    assert status["state"] == "failed", status
    assert "no space left" in status["message"] and str(run.checkpoints_dir) in status["message"], status["message"]
    assert [p.name for p in run.checkpoints_dir.iterdir() if p.name.startswith(".tmp")] == []
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp") or p.name == ".reserve"] == []
    assert not run.last_model_path.exists()


def test_resuming_from_half_a_last_checkpoint_fails_naming_it(workspace, in_process):
    """A run whose checkpoints/last.keras was cut short (its state.json says epoch 1) cannot resume: it
    fails with the file named and why, not with Keras's "File not found"."""
    from segcore.queue import launcher, process

    make_shapes_dataset(workspace, "shapes", n=16)
    run = open_run(launcher.launch(tiny(epochs=2), workspace, start_worker=False), workspace)
    run.write_train_state({"epoch": 1, "es_wait": 0})
    _zip_file(run.last_model_path, KERAS_FILE)
    _cut_in_half(run.last_model_path)
    assert process.execute(run.path) == 1
    status = run.read_status()
    assert status["state"] == "failed" and "last.keras is damaged: cut short" in status["message"], status


def test_a_resume_between_the_workers_look_and_its_write_is_not_overwritten(workspace, no_worker, monkeypatch):
    """A killed training process: the worker decides from status.json that the run was its own and records the
    kill, but a resume can queue the run in between (``true_status`` already calls it interrupted). The check
    and the write must be one step under the run's lock, or the resume is lost and the run never trains."""
    import threading
    import types

    from segcore.queue import resume, worker

    make_shapes_dataset(workspace, "shapes", n=6)
    run = make_run(workspace, "stopped")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.update_status(state="running", pid=dead.pid, heartbeat=time.time(), epoch=1)
    assert run.true_status()["state"] == "interrupted"  # what a page or the CLI sees at once

    real_read = RunFolder.read_status
    calls = []

    def read_then_resume(self):
        status = real_read(self)
        if not calls:  # the worker's look: a resume comes in right after it (it waits for the run's lock)
            calls.append(threading.Thread(target=resume, args=(run.run_id, workspace), kwargs={"start_worker": False}))
            calls[0].start()
            calls[0].join(timeout=2)
        return status

    monkeypatch.setattr(RunFolder, "read_status", read_then_resume)
    worker._reap(run, types.SimpleNamespace(pid=dead.pid, returncode=-signal.SIGKILL))
    calls[0].join(timeout=30)
    monkeypatch.setattr(RunFolder, "read_status", real_read)
    status = run.read_status()
    assert status["state"] == "queued", status  # the resume stands: the run trains again
    assert any(json.loads(line)["action"] == "resume" for line in run.audit_path.read_text().splitlines())
