"""What the Home page says about the machine: the backend a run gets, GPUs and CPUs, read without importing Keras."""

from __future__ import annotations

from segcore.training import device


def test_backend_summary_reads_env_then_keras_json(tmp_path):
    assert device.backend_summary({"KERAS_BACKEND": "jax"}, tmp_path)["backend"] == "jax"
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')
    info = device.backend_summary({}, tmp_path)
    assert info["backend"] == "torch" and info["backend_source"].endswith("keras.json")
    assert device.backend_summary({}, tmp_path / "missing", gpus=[])["backend"] == "tensorflow"


def test_backend_summary_names_the_backend_a_run_gets_on_a_gpu(tmp_path):
    """With nothing chosen, a GPU machine trains on JAX where it is installed: the summary says so, as the launcher does."""
    gpus = ["NVIDIA H100 80GB HBM3"]
    info = device.backend_summary({}, tmp_path / "missing", gpus=gpus)
    assert info["gpus"] == gpus
    assert info["backend"] == device.configured_backend({"KERAS_HOME": str(tmp_path / "missing")}, gpus=gpus)
    if device.importlib.util.find_spec("jax") is not None:
        assert info["backend"] == "jax" and "GPU" in info["backend_source"]
