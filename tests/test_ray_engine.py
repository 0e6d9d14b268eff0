"""The Ray engine, on a real local Ray instance started here: runs go through the Ray Jobs API to
``finished``, a run stopped mid-way resumes, a job whose training process is killed reads
``interrupted`` (the worker says why) and resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest
from _train_helpers import make_shapes_dataset, wait_until

from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
from segcore.runs import open_run
from segcore.queue import launch, resume, stop, wait_for

pytestmark = pytest.mark.slow


def tiny(epochs=1):
    return RunConfig(
        model=ModelConfig(depth=3, filters=8),
        train=TrainConfig(dataset="shapes", image_size=32, epochs=epochs, batch_size=4, seed=0, early_stopping_patience=0,
                          augment=AugmentConfig(enabled=False), split=SplitConfig(val_fraction=0.2, test_fraction=0.2)),
    )


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance on this machine with 2 CPUs and its job server; shut down after the module."""
    import ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                       log_to_driver=False)
    yield "http://" + context.dashboard_url
    ray.shutdown()


@pytest.fixture
def ray_ws(workspace, ray_address):
    (workspace.root / "server.json").write_text(json.dumps({"engine": "ray", "ray_address": ray_address}))
    make_shapes_dataset(workspace, "shapes", n=16)
    return workspace


def job_status(address, run_id):
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(address).get_job_status(run_id).value)


def epoch_of(run):
    s = run.read_status()
    return s.get("state") == "running" and s.get("pid") and int(s.get("epoch", 0))


def test_with_no_address_the_worker_runs_its_own_ray_instance_and_stops_it(workspace, monkeypatch):
    """First in the module, before the shared instance starts: ``ray_address`` "" (here from the environment)."""
    from segcore.queue.launcher import worker_running

    monkeypatch.setenv("SEGCORE_ENGINE", "ray")
    monkeypatch.setenv("SEGCORE_RAY_ADDRESS", "")
    make_shapes_dataset(workspace, "shapes", n=16)
    run_id = launch(tiny(), workspace)
    final = wait_for([run_id], workspace, timeout=300)[run_id]
    assert final["state"] == "finished" and final["engine"] == "ray" and final["job"] == run_id, final
    path = workspace.root / ".queue" / "worker.log"
    # the worker lets go of the queue first, then shuts its instance down
    log = wait_until(lambda: (t := path.read_text()).rstrip().endswith("stopped this worker's Ray instance") and t, timeout=60)
    assert "started a Ray instance on this machine" in log and not worker_running(workspace)
    assert not (workspace.root / ".queue" / "ray.json").exists()


def test_two_runs_train_as_ray_jobs_to_finished(ray_ws, ray_address):
    ids = [launch(tiny(), ray_ws) for _ in range(2)]
    final = wait_for(ids, ray_ws, timeout=300)
    for run_id in ids:
        status = final[run_id]
        assert status["state"] == "finished", status
        assert status["engine"] == "ray" and status["job"] == run_id
        assert status["host"] == socket.gethostname() and status["devices"] == "CPU"
        # the submission id is the run id; the job ends when the process exits, just after its last status write
        assert wait_until(lambda: job_status(ray_address, run_id) == "SUCCEEDED", timeout=60)
    from segcore.queue.ray_engine import job_log

    assert f"Running entrypoint for job {ids[0]}" in job_log(ray_ws, ids[0])  # what the Runs page fetches
    log = (ray_ws.root / ".queue" / "worker.log").read_text()
    assert "serving the queue on the ray engine" in log
    assert all(f"submitted {run_id} as Ray job {run_id} (1 CPU, 0 GPU)" in log for run_id in ids)


def test_stop_a_ray_run_mid_way_then_resume(ray_ws, ray_address):
    run_id = launch(tiny(epochs=4), ray_ws)
    run = open_run(run_id, ray_ws)
    wait_until(lambda: (epoch_of(run) or 0) >= 1)
    status = stop(run_id, ray_ws, wait=120)
    assert status["state"] == "stopped", status
    done = run.read_train_state()["epoch"]
    assert 1 <= done < 4
    resume(run_id, ray_ws)
    final = wait_for([run_id], ray_ws, timeout=300)[run_id]
    assert final["state"] == "finished" and final["resumed_from"] == done and final["attempt"] == 2, final
    assert final["job"] == f"{run_id}-2"  # each attempt is its own Ray job
    assert [row["epoch"] for row in run.read_history()] == [1, 2, 3, 4]
    assert wait_until(lambda: job_status(ray_address, f"{run_id}-2") == "SUCCEEDED", timeout=60)
    assert job_status(ray_address, run_id) == "SUCCEEDED"  # the stopped attempt: its process exited cleanly


def test_a_killed_job_process_reads_interrupted_with_the_ray_reason_then_resumes(ray_ws):
    run_id = launch(tiny(epochs=4), ray_ws)
    run = open_run(run_id, ray_ws)
    wait_until(lambda: (epoch_of(run) or 0) >= 1)
    os.kill(run.read_status()["pid"], signal.SIGKILL)
    # Written by the worker from the job's end, not derived by a reader from a dead pid.
    status = wait_until(lambda: (s := run.read_status())["state"] == "interrupted" and s, timeout=120)
    assert f"Ray job {run_id} ended FAILED" in status["message"] and "resume continues" in status["message"], status
    done = run.read_train_state()["epoch"]
    resume(run_id, ray_ws)
    final = wait_for([run_id], ray_ws, timeout=300)[run_id]
    assert final["state"] == "finished" and final["resumed_from"] == done, final
    assert [row["epoch"] for row in run.read_history()] == [1, 2, 3, 4]


def test_a_job_waiting_for_resources_is_stopped_at_once(ray_ws, ray_address):
    """A run asking for more CPUs than the cluster has stays submitted-but-pending; stop ends its job."""
    (ray_ws.root / "server.json").write_text(json.dumps({"engine": "ray", "ray_address": ray_address, "ray_cpus_per_run": 3}))
    run_id = launch(tiny(), ray_ws)
    run = open_run(run_id, ray_ws)
    # "submitted" is said only once Ray has the job (before it, the run reads "submitting")
    status = wait_until(lambda: (s := run.read_status()).get("message", "").startswith("submitted") and s, timeout=60)
    assert status["state"] == "running" and status["pid"] is None and status["job"] == run_id
    assert status["message"] == f"submitted to Ray as job {run_id}; waiting for a node with 3 CPU(s) free"
    assert job_status(ray_address, run_id) == "PENDING"
    status = stop(run_id, ray_ws)
    assert status["state"] == "stopped" and "its Ray job was stopped" in status["message"], status
    # Ray keeps a job that never got its resources pending; the worker lets it go and exits
    from segcore.queue.launcher import worker_running

    assert wait_until(lambda: not worker_running(ray_ws), timeout=60)
    log = (ray_ws.root / ".queue" / "worker.log").read_text()
    assert f"let go of Ray job {run_id}, still waiting for resources: its run is stopped" in log
    assert run.read_status()["state"] == "stopped"


def test_a_restarted_head_leaves_the_run_interrupted_with_the_reason_then_it_resumes(ray_ws, ray_address):
    """Last in the module: the Ray instance is shut down mid-run and started again on the same port."""
    import ray

    run_id = launch(tiny(epochs=6), ray_ws)
    run = open_run(run_id, ray_ws)
    wait_until(lambda: (epoch_of(run) or 0) >= 1)
    port = int(ray_address.rsplit(":", 1)[1])
    ray.shutdown()  # the head goes, and with it the job's record
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port, log_to_driver=False)
    status = wait_until(lambda: (s := run.read_status())["state"] != "running" and s, timeout=180)
    # The training process went down with the head's processes; the new head does not know the job.
    # (Seen first as the job's end instead, should the old head report it before it went.)
    assert status["state"] == "interrupted", status
    assert (f"the Ray cluster no longer knows job {run_id}" in status["message"]
            or f"Ray job {run_id} ended" in status["message"]), status
    resume(run_id, ray_ws)
    final = wait_for([run_id], ray_ws, timeout=300)[run_id]
    assert final["state"] == "finished", final
    assert [row["epoch"] for row in run.read_history()] == [1, 2, 3, 4, 5, 6]
