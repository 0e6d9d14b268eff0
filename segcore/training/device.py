"""Backend, device, precision and distribution: what a run runs on.

Mixed precision and compiled (XLA / ``torch.compile``-style) steps are used on
a GPU only: on a CPU they slow training down. Several GPUs are used through
the engines that exist for it, chosen by ``TrainConfig.distribution``:

- ``"none"``: one device (the default).
- ``"mirrored"``: ``tf.distribute.MirroredStrategy`` on the TensorFlow backend
  (synchronous data parallelism over every visible GPU, or the CPU).
- ``"data_parallel"``: ``keras.distribution.DataParallel`` on the JAX backend.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
from pathlib import Path
from typing import Any, Iterator, Mapping

from segcore.config import BACKENDS, DISTRIBUTIONS, PRECISIONS, SettingError

# The package each Keras backend needs.
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}


# The backend a GPU run uses when nothing names one: the fastest measured on an
# NVIDIA GPU (README "Performance": JAX 718 images/s, PyTorch 230, for the same
# U-Net on an H100), where it is installed.
GPU_DEFAULT_BACKEND = "jax"


def nvidia_gpus(proc_root: str | os.PathLike = "/proc/driver/nvidia/gpus") -> list[str]:
    """Model names of the NVIDIA GPUs the driver reports, read without importing any backend."""
    names = []
    for info in sorted(Path(proc_root).glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return names


def configured_backend(env: Mapping[str, str] | None = None, gpus: list[str] | None = None) -> str:
    """The backend a run gets when its settings say "auto", without importing Keras.

    ``$KERAS_BACKEND``, else ``backend`` in ``$KERAS_HOME/keras.json``
    (``~/.keras/keras.json``): what the user chose. With neither, JAX on a
    machine with an NVIDIA GPU and JAX installed (the fastest backend measured
    there), else ``"tensorflow"`` (Keras's own default).
    """
    return _backend_choice(os.environ if env is None else env, gpus)[0]


def backend_summary(env: Mapping[str, str] | None = None, keras_home: str | os.PathLike | None = None,
                    gpus: list[str] | None = None) -> dict[str, Any]:
    """Which backend a run started now gets and which accelerators the machine has, without importing Keras.

    Reads the environment, ``keras.json`` and the NVIDIA driver's ``/proc``
    entries (the rule of ``configured_backend``).

    Args:
        env: the environment (``os.environ`` when None).
        keras_home: the folder of ``keras.json`` (``$KERAS_HOME`` or ``~/.keras`` when None).
        gpus: the GPU names (read from the driver when None).

    Returns:
        dict with ``backend``, ``backend_source`` (where the choice comes from),
        ``gpus`` (list of names) and ``cpus``.
    """
    env = dict(os.environ if env is None else env)
    if keras_home is not None:
        env["KERAS_HOME"] = str(keras_home)
    gpus = nvidia_gpus() if gpus is None else list(gpus)
    backend_name, source = _backend_choice(env, gpus)
    return {"backend": backend_name, "backend_source": source, "gpus": gpus, "cpus": os.cpu_count() or 1}


def _backend_choice(env: Mapping[str, str], gpus: list[str] | None) -> tuple[str, str]:
    """(backend, where the choice comes from): see ``configured_backend``."""
    if env.get("KERAS_BACKEND"):
        return env["KERAS_BACKEND"], "KERAS_BACKEND"
    path = Path(env.get("KERAS_HOME") or Path.home() / ".keras") / "keras.json"
    try:
        name = json.loads(path.read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and name:
        return name, str(path)
    gpus = nvidia_gpus() if gpus is None else gpus
    if gpus and importlib.util.find_spec(BACKEND_PACKAGES[GPU_DEFAULT_BACKEND]) is not None:
        return GPU_DEFAULT_BACKEND, "default on a machine with an NVIDIA GPU"
    return "tensorflow", "default"


def check_backend(name: str) -> str:
    """Refuse a backend that is unknown or not installed; returns ``name``."""
    if name not in BACKENDS[1:]:
        raise SettingError("train.backend", name, "one of " + ", ".join(repr(b) for b in BACKENDS[1:])
                           + " (from train.backend or $KERAS_BACKEND)")
    if importlib.util.find_spec(BACKEND_PACKAGES[name]) is None:
        raise SettingError("train.backend", name, f"an installed backend; the package {BACKEND_PACKAGES[name]!r} "
                           "is not installed here")
    return name


def backend() -> str:
    import keras

    return keras.backend.backend()


def gpu_names() -> list[str]:
    """Names of the GPUs the current Keras backend can use (empty on CPU)."""
    name = backend()
    try:
        if name == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            out = []
            for gpu in gpus:
                details = tf.config.experimental.get_device_details(gpu)
                out.append(details.get("device_name", gpu.name))
            return out
        if name == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if name == "jax":
            import jax

            return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    except Exception:  # a broken driver is "no GPU", not a failed run
        return []
    return []


def describe_device() -> dict[str, Any]:
    """Backend and device of this process, for ``config.json`` and the Home page."""
    gpus = gpu_names()
    return {
        "backend": backend(),
        "device": "gpu" if gpus else "cpu",
        "gpus": gpus,
        "cpu_count": os.cpu_count(),
    }


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("segcore", "keras", "tensorflow", "tensorflow-cpu", "torch", "jax", "numpy", "opencv-python-headless"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def resolve_precision(setting: str, on_gpu: bool) -> tuple[str, str | None]:
    """The Keras dtype policy for a ``mixed_precision`` setting.

    Returns:
        (policy name, warning or None). Mixed precision is used on a GPU only.
    """
    if setting not in PRECISIONS:
        raise ValueError(f"mixed_precision {setting!r} is not one of {PRECISIONS}")
    if setting in ("off", "float32"):
        return "float32", None
    wanted = "mixed_bfloat16" if "bfloat16" in setting else "mixed_float16"
    if not on_gpu:
        warning = None if setting == "auto" else f"mixed precision {setting!r} asked for, but there is no GPU: training in float32"
        return "float32", warning
    return wanted, None


def distribution_for(backend_name: str) -> str:
    """The data-parallel engine of a backend, for a run on several devices that names none.

    Raises:
        ValueError: the backend has none in segcore (PyTorch).
    """
    engines = {"tensorflow": "mirrored", "jax": "data_parallel"}
    if backend_name not in engines:
        raise SettingError("train.devices", "more than 1", f"1 on the {backend_name!r} backend: segcore spreads one run over "
                           "several devices with tf.distribute.MirroredStrategy (tensorflow) or "
                           "keras.distribution.DataParallel (jax)")
    return engines[backend_name]


def pick_devices(available: list, wanted: int | str, what: str) -> list:
    """The first ``wanted`` of ``available`` devices (all for ``"all"``); ValueError naming both counts if too few."""
    if wanted == "all":
        return list(available)
    if int(wanted) > len(available):
        raise ValueError(f"setting train.devices is {wanted}; this process sees {len(available)} {what} "
                         f"({', '.join(str(d) for d in available)})")
    return list(available)[: int(wanted)]


def device_label(gpus: list[str], replicas: int, env: Mapping[str, str] | None = None) -> str:
    """What a run trains on, for its status and the Runs page: ``GPU 2 (NVIDIA H100)``, ``GPU 0,1 (2 x ...)``, ``CPU``.

    GPU numbers are the machine's (``$CUDA_VISIBLE_DEVICES``, set by the queue or by Ray), not the process's own.
    """
    env = os.environ if env is None else env
    if not gpus:
        return "CPU" if replicas <= 1 else f"CPU ({replicas} devices)"
    visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    numbers = ",".join(visible[: len(gpus)]) if visible else ",".join(str(i) for i in range(len(gpus)))
    used = max(replicas, 1)
    kind = gpus[0] if len(set(gpus)) == 1 else "mixed"
    return f"GPU {numbers} ({kind})" if used == 1 else f"GPU {numbers} ({used} x {kind})"


@contextlib.contextmanager
def distribution_scope(setting: str, devices: int | str = "all") -> Iterator[Any]:
    """A context in which to build and compile the model for ``setting`` over ``devices`` devices.

    Yields:
        The strategy or distribution object (None for ``"none"``).

    Raises:
        ValueError: for an unknown setting, or one the current backend cannot run.
    """
    if setting not in DISTRIBUTIONS:
        raise ValueError(f"distribution {setting!r} is not one of {DISTRIBUTIONS}")
    name = backend()
    if setting == "none":
        yield None
        return
    if setting == "mirrored":
        if name != "tensorflow":
            raise ValueError(
                f"distribution 'mirrored' uses tf.distribute.MirroredStrategy and needs KERAS_BACKEND=tensorflow; "
                f"the backend is {name!r} (use 'data_parallel' on JAX)"
            )
        import tensorflow as tf

        kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        chosen = pick_devices([d.name for d in tf.config.list_logical_devices(kind)], devices, f"TensorFlow {kind} devices")
        strategy = tf.distribute.MirroredStrategy(devices=chosen)
        with strategy.scope():
            yield strategy
        return
    if name != "jax":
        raise ValueError(
            f"distribution 'data_parallel' uses keras.distribution.DataParallel, which needs KERAS_BACKEND=jax; "
            f"the backend is {name!r} (use 'mirrored' on TensorFlow)"
        )
    import keras

    chosen = pick_devices(keras.distribution.list_devices(), devices, "JAX devices")
    distribution = keras.distribution.DataParallel(devices=chosen)
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        yield distribution
    finally:
        keras.distribution.set_distribution(previous)


def replicas(strategy: Any) -> int:
    """How many devices a strategy or distribution spreads a batch over (1 without one)."""
    if strategy is None:
        return 1
    count = getattr(strategy, "num_replicas_in_sync", None)
    if count is not None:
        return int(count)
    mesh = getattr(strategy, "device_mesh", None)
    return int(len(getattr(mesh, "devices", [None]).reshape(-1))) if mesh is not None else 1
