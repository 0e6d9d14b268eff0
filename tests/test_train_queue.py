"""The queue and the training processes: kill and resume, NaN, stop, two launches at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _train_helpers import wait_until
from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
from segcore.data.demo import make_demo
from segcore.runs import RunFolder, open_run
from segcore.queue import launch, resume, stop, wait_for

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent


def tiny(epochs=2, **train):
    train.setdefault("early_stopping_patience", 0)
    return RunConfig(
        model=ModelConfig(depth=3, filters=8),
        train=TrainConfig(dataset="demo", image_size=32, epochs=epochs, batch_size=4, seed=0,
                          augment=AugmentConfig(enabled=False), split=SplitConfig(val_fraction=0.2, test_fraction=0.1),
                          **train),
    )


@pytest.fixture
def demo_ws(workspace):
    make_demo(workspace, num_samples=40, size=32)
    return workspace



def epoch_of(run):
    s = run.read_status()
    return s.get("state") == "running" and s.get("pid") and int(s.get("epoch", 0))


def test_sigkill_mid_run_then_resume_continues_epochs(demo_ws):
    run_id = launch(tiny(epochs=6), demo_ws)
    run = open_run(run_id, demo_ws)
    wait_until(lambda: (epoch_of(run) or 0) >= 2)
    pid = run.read_status()["pid"]
    os.kill(pid, signal.SIGKILL)
    status = wait_until(lambda: (s := run.true_status())["state"] == "interrupted" and s)
    assert "resume" in status["message"]
    done = run.read_train_state()["epoch"]
    assert 2 <= done < 6
    resume(run_id, demo_ws)
    final = wait_for([run_id], demo_ws, timeout=240)[run_id]
    assert final["state"] == "finished", final
    assert final["resumed_from"] == done and final["attempt"] == 2
    assert final["cpu_seconds"] > 0  # the training process's own CPU time, recorded at its end
    assert [row["epoch"] for row in run.read_history()] == list(range(1, 7))  # no epoch twice, none lost
    assert f"resuming from epoch {done}" in run.log_path.read_text()


def test_nan_loss_fails_with_a_message_naming_the_cause(demo_ws):
    env = dict(os.environ, SEGCORE_WORKSPACE=str(demo_ws.root))
    proc = subprocess.run(
        [sys.executable, "-m", "segcore", "train", "--dataset", "demo", "--depth", "3", "--filters", "8",
         "--image-size", "32", "--epochs", "3", "--batch-size", "4", "--lr", "1e30", "--wait", "--json", "--quiet"],
        capture_output=True, text=True, env=env, cwd=PROJECT, timeout=300,
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert result["state"] == "failed"
    assert "loss became nan" in result["message"].lower() or "loss became inf" in result["message"].lower()
    assert "learning rate 1e+30 is far too high" in result["message"]


def test_two_launches_at_the_same_moment_both_complete(demo_ws):
    env = dict(os.environ, SEGCORE_WORKSPACE=str(demo_ws.root))
    args = [sys.executable, "-m", "segcore", "train", "--dataset", "demo", "--depth", "3", "--filters", "8",
            "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--json"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, cwd=PROJECT) for _ in range(2)]
    ids = [json.loads(p.communicate(timeout=120)[0])["run_id"] for p in procs]
    assert len(set(ids)) == 2
    final = wait_for(ids, demo_ws, timeout=300)
    assert [final[i]["state"] for i in ids] == ["finished", "finished"]
    workers = (demo_ws.root / ".queue" / "worker.log").read_text()
    assert workers.count("started ") == 2


def test_stop_then_resume(demo_ws):
    run_id = launch(tiny(epochs=4), demo_ws)
    run = open_run(run_id, demo_ws)
    wait_until(lambda: (epoch_of(run) or 0) >= 1)
    status = stop(run_id, demo_ws, wait=120)
    assert status["state"] == "stopped", status
    done = run.read_train_state()["epoch"]
    assert status["message"].startswith(f"stopped after {done} finished epoch")
    assert not run.stop_requested()
    waiting = launch(tiny(epochs=1), demo_ws, start_worker=False)
    with pytest.raises(ValueError, match="only stopped, interrupted, failed or damaged"):
        resume(waiting, demo_ws)
    stop(waiting, demo_ws)
    resume(run_id, demo_ws)
    final = wait_for([run_id], demo_ws, timeout=300)[run_id]
    assert final["state"] == "finished" and final["resumed_from"] == done
    assert [row["epoch"] for row in run.read_history()] == list(range(1, 5))


def test_stop_a_queued_run_and_unknown_run(demo_ws):
    run_id = launch(tiny(), demo_ws, start_worker=False)
    assert stop(run_id, demo_ws)["state"] == "stopped"
    with pytest.raises(ValueError, match="nothing to stop"):
        stop(run_id, demo_ws)
    with pytest.raises(FileNotFoundError, match="no run 'missing'"):
        stop("missing", demo_ws)


def test_mirrored_strategy_builds_and_trains_on_one_cpu(demo_ws):
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("MirroredStrategy is the TensorFlow backend's engine")
    run_id = launch(tiny(epochs=1, distribution="mirrored"), demo_ws, start_worker=False)
    env = dict(os.environ, SEGCORE_WORKSPACE=str(demo_ws.root))
    proc = subprocess.run([sys.executable, "-m", "segcore.queue.process", str(demo_ws.run_dir(run_id))],
                          capture_output=True, text=True, env=env, cwd=PROJECT, timeout=300)
    status = RunFolder(demo_ws.run_dir(run_id)).read_status()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert status["state"] == "finished" and status["replicas"] == 1
