"""Memory readings of this process: host RSS and peak, and TensorFlow's GPU allocations, in MiB.

Used by ``DeviceScalars`` (a TensorBoard scalar per reading and epoch) and by the run's
metrics (``peak_rss_mib``). Reading memory never initialises TensorFlow.
"""

from __future__ import annotations

import sys


def memory_tag(key: str) -> str:
    """TensorBoard tag of a ``memory_scalars`` key: 'host_rss_mib' -> 'memory/host_rss_mib'."""
    return f"memory/{key}"


def gpu_memory_key(index: int, which: str) -> str:
    """'gpu0_current_mib' / 'gpu0_peak_mib'."""
    return f"gpu{index}_{which}_mib"


def _proc_status_mib() -> dict[str, float] | None:
    """VmRSS and VmHWM from /proc/self/status in MiB; None where there is no /proc (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {"host_rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
                "host_peak_mib": int(fields["VmHWM"].split()[0]) / 1024}
    except (OSError, KeyError, ValueError):
        return None


def _max_rss_mib() -> float:
    """``getrusage``'s peak resident set size in MiB: ``ru_maxrss`` is in bytes on macOS and in
    KiB on Linux and the BSDs."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB: ``VmHWM`` on Linux, else ``ru_maxrss``."""
    status = _proc_status_mib()
    return status["host_peak_mib"] if status else _max_rss_mib()


def _gpu_memory() -> dict[str, float]:
    """TensorFlow's current and peak allocation per logical GPU, if TensorFlow is imported
    (never initialise TensorFlow just to report memory)."""
    if "tensorflow" not in sys.modules:
        return {}
    import tensorflow as tf

    values = {}
    for i, _ in enumerate(tf.config.list_logical_devices("GPU")):
        info = tf.config.experimental.get_memory_info(f"GPU:{i}")
        values[gpu_memory_key(i, "current")] = info["current"] / 2**20
        values[gpu_memory_key(i, "peak")] = info["peak"] / 2**20
    return values


def memory_scalars() -> dict[str, float]:
    """Host RSS/peak in MiB and, per GPU, TensorFlow's current/peak allocation in MiB.

    Without /proc (not Linux) only ``host_peak_mib`` is available for the host.
    """
    host = _proc_status_mib() or {"host_peak_mib": _max_rss_mib()}
    return {**host, **_gpu_memory()}
