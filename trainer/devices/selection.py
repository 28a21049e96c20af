"""Which devices TensorFlow uses: its environment before import, oneDNN, GPU selection."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from callbacks import compat
from callbacks.placement import short_device
from trainer.errors import TrainerError, UsageError, invalid_argument

INSTALL_HINT = 'pip install "tensorflow[and-cuda]"'
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


# --------------------------------------------------------------------------- before import
def tensorflow_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Settings read once, when TensorFlow is imported; call before importing it. Quiet C++
    start-up logs, and oneDNN's CPU kernels on: TensorFlow turns them on by itself only on CPUs
    with AVX-512 VNNI/BF16 or AMX, while on the others (AVX2-only ones, say) they train
    convolutional models about twice as fast (docs/benchmarks.md). What the environment already
    says wins: ``TF_ENABLE_ONEDNN_OPTS=0`` keeps TensorFlow's Eigen kernels."""
    environ = os.environ if environ is None else environ
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environ.setdefault(ONEDNN_VARIABLE, "1")


def onednn_text(enabled: bool | None, value: str | None) -> str:
    """'on (TF_ENABLE_ONEDNN_OPTS=1)', 'off (TF_ENABLE_ONEDNN_OPTS unset)', ..."""
    state = {True: "on", False: "off", None: "unknown"}[enabled]
    return f"{state} ({ONEDNN_VARIABLE}{' unset' if value is None else '=' + value})"


def onednn_enabled() -> bool | None:
    """Whether this TensorFlow process runs oneDNN's CPU kernels (None: cannot tell)."""
    return compat.onednn_enabled()


# --------------------------------------------------------------------------- devices
def parse_gpu(gpu: str) -> list[int] | None:
    """'all' -> None (every GPU); '0,2' -> [0, 2]; anything else -> UsageError."""
    if gpu.strip().lower() == "all":
        return None
    try:
        return list(dict.fromkeys(int(part) for part in gpu.split(",")))  # no duplicates
    except ValueError:
        raise invalid_argument(
            "gpu", gpu, "'all' or comma-separated GPU indices such as '0' or '0,2'"
        ) from None


def _requested_gpus(gpu: str, indices: list[int] | None, gpus: list) -> list:
    """The physical GPUs ``gpu`` asks for, or a clear error when there are none or too few."""
    import tensorflow as tf

    if not gpus:
        seen = ", ".join(short_device(d.name) for d in tf.config.list_physical_devices())
        raise TrainerError(
            f"GPU requested (gpu={gpu!r}) but TensorFlow sees no GPU, only: {seen}. "
            f"Install GPU support with `{INSTALL_HINT}` (Linux, NVIDIA driver) "
            "and check CUDA_VISIBLE_DEVICES."
        )
    if indices is None:
        return gpus
    if bad := [i for i in indices if not 0 <= i < len(gpus)]:
        raise invalid_argument("gpu", gpu, "indices of visible GPUs, here "
                               + ", ".join(map(str, range(len(gpus))))
                               + f" (GPU {bad[0]} does not exist)")
    return [gpus[i] for i in indices]


def _grow_memory(gpus: list) -> None:
    """Memory growth on each GPU, so that TensorFlow does not reserve all their memory."""
    import tensorflow as tf

    for device in gpus:
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except ValueError:  # logical (virtual) devices configured: growth not allowed
            pass


def select_devices(gpu: str | None = None, cpu: bool = False) -> None:
    """Makes the requested devices visible; must run before TensorFlow initialises devices.

    ``gpu=None, cpu=False``: TensorFlow's default. ``cpu=True``: hide all GPUs.
    ``gpu="all"`` or ``"0,2"``: use those GPUs (error if there are none).
    Memory growth is enabled on every GPU that stays visible.
    """
    if gpu is not None and cpu:
        raise UsageError(
            f"Arguments `gpu` and `cpu` are mutually exclusive. Received: gpu={gpu!r}, cpu=True."
        )
    indices = parse_gpu(gpu) if gpu is not None else None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        if cpu:
            tf.config.set_visible_devices([], "GPU")
            return
        if gpu is not None:
            gpus = _requested_gpus(gpu, indices, gpus)
            tf.config.set_visible_devices(gpus, "GPU")
        _grow_memory(gpus)
    except RuntimeError as exc:
        raise TrainerError(
            f"Devices must be selected before TensorFlow initialises them ({exc})."
        ) from None
