"""Where runs train: the server's engine settings, one run per free GPU on the local engine (GPUs
pinned with CUDA_VISIBLE_DEVICES), and the devices setting of a run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _train_helpers import make_shapes_dataset

from segcore.config import ModelConfig, RunConfig, TrainConfig
from segcore.runs import RunFolder, open_run
from segcore.workspace import ServerSettings


def tiny(**train):
    return RunConfig(model=ModelConfig(depth=3, filters=8), train=TrainConfig(dataset="shapes", image_size=32, epochs=1, **train))


# -- settings ----------------------------------------------------------------------------------


def test_engine_settings_from_server_json_and_the_environment(workspace, monkeypatch):
    assert workspace.settings().engine == "local" and workspace.settings().max_concurrent_runs == 0
    workspace.settings_path.write_text(json.dumps({"engine": "ray", "ray_address": "http://head:8265", "max_concurrent_runs": 3}))
    s = workspace.settings()
    assert (s.engine, s.ray_address, s.max_concurrent_runs) == ("ray", "http://head:8265", 3)
    monkeypatch.setenv("SEGCORE_ENGINE", "local")
    monkeypatch.setenv("SEGCORE_MAX_CONCURRENT_RUNS", "2")
    assert (workspace.settings().engine, workspace.settings().max_concurrent_runs) == ("local", 2)
    monkeypatch.setenv("SEGCORE_ENGINE", "spark")
    with pytest.raises(ValueError, match=r"server setting engine is 'spark'; expected one of 'local', 'ray' \(from the environment: \$SEGCORE_ENGINE"):
        workspace.settings()


@pytest.mark.parametrize("data, says", [
    ({"engine": "slurm"}, "engine is 'slurm'; expected one of 'local', 'ray'"),
    ({"max_concurrent_runs": -1}, "max_concurrent_runs is -1; expected a whole number"),
    ({"max_concurrent_runs": True}, "max_concurrent_runs is True"),
    ({"ray_address": 8265}, "ray_address is 8265"),
    ({"ray_cpus_per_run": 0}, "ray_cpus_per_run is 0"),
])
def test_bad_engine_settings_name_the_file_and_the_value(workspace, data, says):
    workspace.settings_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="server.json") as err:
        workspace.settings()
    assert says in str(err.value)


def test_the_queue_reads_max_concurrent_runs_from_server_json_then_the_older_queue_json(workspace):
    from segcore.queue.launcher import max_concurrent_runs

    assert max_concurrent_runs(workspace) == 0  # the engine's own rule
    (workspace.root / "queue.json").write_text('{"max_concurrent_runs": 2}')
    assert max_concurrent_runs(workspace) == 2
    workspace.settings_path.write_text('{"max_concurrent_runs": 3}')
    assert max_concurrent_runs(workspace) == 3


def test_devices_setting_and_the_distribution_it_brings(workspace, monkeypatch):
    from segcore.queue import launcher

    make_shapes_dataset(workspace, "shapes", n=6)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    run = open_run(launcher.launch(tiny(devices=2), workspace, start_worker=False), workspace)
    assert (run.read_config().train.devices, run.read_config().train.distribution) == (2, "mirrored")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    run = open_run(launcher.launch(tiny(devices="all"), workspace, start_worker=False), workspace)
    assert (run.read_config().train.devices, run.read_config().train.distribution) == ("all", "data_parallel")
    # a distribution named alone spreads over every device, as it did before devices existed
    run = open_run(launcher.launch(tiny(distribution="data_parallel"), workspace, start_worker=False), workspace)
    assert run.read_config().train.devices == "all"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(ValueError, match="setting train.devices is 'more than 1'; expected 1 on the 'torch' backend"):
        launcher.launch(tiny(devices=2), workspace, start_worker=False)
    with pytest.raises(ValueError, match='setting train.devices is 0; expected "all" or a whole number'):
        tiny(devices=0)


def test_the_cli_takes_devices(workspace, capsys):
    from segcore.cli import main

    make_shapes_dataset(workspace, "shapes", n=6)
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "shapes", "--devices", "two"])
    assert "'two' is not 'all' or a whole number of devices" in capsys.readouterr().err


# -- the local engine on a machine with GPUs ----------------------------------------------------


def test_gpu_plan():
    from segcore.queue.worker import gpu_plan

    assert gpu_plan(1, 0, set()) == []  # no GPU: nothing to pin
    assert gpu_plan(1, 4, {0, 2}) == [1]
    assert gpu_plan(2, 4, {0, 2}) == [1, 3]
    assert gpu_plan(2, 4, {0, 1, 2}) is None  # waits for a second free GPU
    assert gpu_plan("all", 2, set()) == [0, 1]
    assert gpu_plan("all", 2, {1}) is None
    with pytest.raises(ValueError, match="train.devices is 3; this machine has 2 GPU"):
        gpu_plan(3, 2, set())


def test_the_local_engine_runs_one_run_per_gpu_each_pinned(workspace, monkeypatch):
    """Four runs (the last asks for both GPUs) on a machine whose driver lists two GPUs: training
    processes are faked (each lives for a few polls), the scheduling and the pinning are real."""
    from segcore.queue import launcher, worker

    make_shapes_dataset(workspace, "shapes", n=6)
    ids = [launcher.launch(tiny(), workspace, start_worker=False) for _ in range(3)]
    ids.append(launcher.launch(tiny(devices=2), workspace, start_worker=False))
    monkeypatch.setattr(worker, "nvidia_gpus", lambda: ["NVIDIA H100", "NVIDIA H100"])
    monkeypatch.setattr(worker, "POLL_S", 0.0)
    monkeypatch.setattr(worker, "_log", lambda message: None)
    alive: dict[str, "Training"] = {}
    events = []

    class Training:
        pid = os.getpid()  # a live process: the queue counts it as training
        returncode = None

        def __init__(self, run_dir: str, gpus: str):
            self.run, self.gpus, self.polls = RunFolder(Path(run_dir)), gpus, 0

        def poll(self):
            self.polls += 1
            if self.polls < 4:
                return None
            self.run.update_status(state="finished")
            alive.pop(self.run.run_id, None)
            self.returncode = 0
            return 0

    def spawn(module, arg, ws, log_path, *, detach=False, env=None):
        proc = Training(arg, env.get("CUDA_VISIBLE_DEVICES"))
        alive[proc.run.run_id] = proc
        events.append((proc.run.run_id, proc.gpus, sorted(p.gpus for p in alive.values())))
        return proc

    monkeypatch.setattr(worker, "spawn_module", spawn)
    assert worker.serve(workspace) == 0
    assert [e[0] for e in events] == ids  # queue order
    assert [e[1] for e in events[:2]] == ["0", "1"]  # one run per GPU at once
    for _, gpus, live in events:
        held = [g for text in live for g in text.split(",")]
        assert len(held) == len(set(held)) and len(held) <= 2, events  # no GPU given twice
    assert events[3][1] == "0,1" and events[3][2] == ["0,1"]  # the two-GPU run waited for both
    for run_id, gpus, _ in events:
        status = open_run(run_id, workspace).read_status()
        assert status["engine"] == "local" and status["gpus"] == [int(g) for g in gpus.split(",")]


def test_max_concurrent_runs_caps_the_gpus_used(workspace, monkeypatch):
    from segcore.queue import launcher, worker

    make_shapes_dataset(workspace, "shapes", n=6)
    workspace.settings_path.write_text('{"max_concurrent_runs": 1}')
    for _ in range(2):
        launcher.launch(tiny(), workspace, start_worker=False)
    monkeypatch.setattr(worker, "nvidia_gpus", lambda: ["A", "B"])
    monkeypatch.setattr(worker, "POLL_S", 0.0)
    monkeypatch.setattr(worker, "_log", lambda message: None)
    live = []

    class Training:
        pid = os.getpid()
        returncode = None

        def __init__(self, run_dir):
            self.run, self.polls = RunFolder(Path(run_dir)), 0

        def poll(self):
            self.polls += 1
            if self.polls < 3:
                return None
            self.run.update_status(state="finished")
            live.remove(self.run.run_id)
            self.returncode = 0
            return 0

    seen = []

    def spawn(module, arg, ws, log_path, *, detach=False, env=None):
        proc = Training(arg)
        live.append(proc.run.run_id)
        seen.append((env.get("CUDA_VISIBLE_DEVICES"), len(live)))
        return proc

    monkeypatch.setattr(worker, "spawn_module", spawn)
    worker.serve(workspace)
    assert seen == [("0", 1), ("0", 1)]


def test_the_runs_table_shows_the_device(workspace):
    from segcore import visualize as viz
    from segcore.runs import list_runs

    make_shapes_dataset(workspace, "shapes", n=6)
    from segcore.queue import launcher

    a = open_run(launcher.launch(tiny(), workspace, start_worker=False), workspace)
    b = open_run(launcher.launch(tiny(), workspace, start_worker=False), workspace)
    a.update_status(state="finished", engine="local", host="box", gpus=[1], devices="GPU 1 (NVIDIA H100)")
    b.update_status(state="finished", engine="ray", host="node-3", gpus=[], devices="CPU")
    frame = viz.runs_frame(list_runs(workspace)).set_index("id")
    assert frame.loc[a.run_id, "device"] == "GPU 1 (NVIDIA H100)"
    assert frame.loc[b.run_id, "device"] == "CPU · node-3 · ray"


def test_device_label():
    from segcore.training.device import device_label

    assert device_label([], 1, {}) == "CPU"
    assert device_label([], 2, {}) == "CPU (2 devices)"
    assert device_label(["NVIDIA H100"], 1, {"CUDA_VISIBLE_DEVICES": "3"}) == "GPU 3 (NVIDIA H100)"
    assert device_label(["NVIDIA H100"] * 2, 2, {"CUDA_VISIBLE_DEVICES": "2,3"}) == "GPU 2,3 (2 x NVIDIA H100)"


def test_the_runs_page_names_the_engine_node_and_device_and_fetches_the_ray_job_log(workspace, monkeypatch):
    """A finished Ray run on the Runs page: the caption says where it ran; the job log button asks the
    cluster (none here, so it says why it cannot)."""
    from streamlit.testing.v1 import AppTest

    from segcore.queue import launcher

    make_shapes_dataset(workspace, "shapes", n=6)
    import segcore.data.demo as demo

    monkeypatch.setattr(demo, "ensure_demo", lambda ws, *a, **k: None)
    run = open_run(launcher.launch(tiny(), workspace, start_worker=False), workspace)
    run.update_status(state="finished", engine="ray", host="node-3", job=run.run_id, devices="GPU 0 (NVIDIA H100)")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "streamlit_app.py"), default_timeout=60).run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    captions = "\n".join(c.value for c in at.caption)
    assert "GPU 0 (NVIDIA H100) · ray engine on node-3" in captions
    assert "GPU 0 (NVIDIA H100) · node-3 · ray" in at.dataframe[0].value["device"].tolist()
    at.button(key=f"ray_log_{run.run_id}").click().run()
    assert not at.exception, at.exception
    shown = "\n".join(str(c.value) for c in at.code)
    assert "the Ray job log cannot be read" in shown and "ray.json is missing" in shown


def test_the_default_start_needs_no_ray():
    import subprocess
    import sys

    project = Path(__file__).resolve().parent.parent

    def pins(name):
        out = {}
        for line in (project / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r"):
                package, _, version = line.partition("==")
                out[package.split("[")[0].lower()] = (package, version)
        return out

    for name in ("requirements-core.txt", "requirements.txt", "requirements-gpu.txt"):
        assert "ray" not in pins(name), name
    assert pins("requirements-cluster.txt")["ray"] == pins("requirements-dev.txt")["ray"] == ("ray[default]", "2.60.0")
    code = ("import sys, segcore.queue.worker, segcore.queue.launcher, segcore.queue.ray_engine\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project,
                          env=dict(os.environ, PYTHONPATH=str(project)), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_ray_worker_lets_go_of_ended_runs_even_when_the_cluster_is_gone(workspace):
    """The run folder is the truth: a run its process ended is not watched any more, so a worker whose
    cluster went away (nothing listens at this address) can still finish and exit."""
    from segcore.queue import launcher
    from segcore.queue.ray_engine import RayEngine

    make_shapes_dataset(workspace, "shapes", n=6)
    ended = open_run(launcher.launch(tiny(), workspace, start_worker=False), workspace)
    live = open_run(launcher.launch(tiny(), workspace, start_worker=False), workspace)
    for run in (ended, live):
        run.update_status(state="running", engine="ray", job=run.run_id, pid=os.getpid(), host="node-3")
    lines = []
    engine = RayEngine(workspace, ServerSettings(engine="ray", ray_address="http://127.0.0.1:9"), lines.append)
    assert set(engine.jobs) == {ended.run_id, live.run_id}  # adopted from the run folders
    ended.update_status(state="finished")
    engine.poll(30.0)
    assert set(engine.jobs) == {live.run_id} and engine.busy()  # the running one is still watched
    assert any("cannot reach the Ray cluster" in line for line in lines)


class _RecordingJobClient:
    """Stands in for Ray's ``JobSubmissionClient``: knows no job until it is submitted, and records what the run
    said about itself at the moment of submission."""

    def __init__(self, run, start_process: bool = False):
        self.run, self.start_process, self.said_at_submit, self.jobs = run, start_process, None, set()

    def get_job_status(self, job_id):
        if job_id not in self.jobs:
            raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not exist.")
        raise AssertionError("not asked in these tests")

    def submit_job(self, submission_id, **kwargs):
        self.said_at_submit = self.run.read_status()["message"]
        self.jobs.add(submission_id)
        if self.start_process:  # resources were free: the job's process started and wrote its own status at once
            self.run.update_status(pid=12345, message="starting: loading Keras and its backend")
        return submission_id


@pytest.mark.parametrize("process_started", [False, True])
def test_a_ray_run_says_submitted_only_once_ray_has_its_job(workspace, monkeypatch, process_started):
    """A reader who sees "submitted to Ray as job X" may ask Ray about X at once (CI once got a 404 for a job
    its run already called submitted); and the worker's word never overwrites what the job's process wrote."""
    from segcore.queue import launcher
    from segcore.queue.ray_engine import RayEngine

    make_shapes_dataset(workspace, "shapes", n=6)
    run = open_run(launcher.launch(tiny(), workspace, start_worker=False), workspace)
    engine = RayEngine(workspace, ServerSettings(engine="ray", ray_address="http://127.0.0.1:9", ray_cpus_per_run=2), [].append)
    client = _RecordingJobClient(run, start_process=process_started)
    engine._client = client
    monkeypatch.setattr(engine, "_gpus_per_node", lambda: 0)
    assert engine.start(run, {}) is True
    assert client.said_at_submit == f"submitting to Ray as job {run.run_id}"
    status = run.read_status()
    assert status["state"] == "running" and status["job"] == run.run_id and run.run_id in engine.jobs
    if process_started:
        assert status["message"] == "starting: loading Keras and its backend" and status["pid"] == 12345
    else:
        assert status["message"] == f"submitted to Ray as job {run.run_id}; waiting for a node with 2 CPU(s) free"
        assert status["pid"] is None
