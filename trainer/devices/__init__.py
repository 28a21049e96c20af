"""Devices, precision and distribution: choose them, apply them, report where things run.

Call order in a command: ``PlacementLog().start()`` if wanted and ``select_devices`` (before
anything initialises TensorFlow's devices), ``resolve_precision`` + ``apply_precision``,
``make_strategy`` ("multi-worker" also needs TensorFlow uninitialised); build the model inside
``strategy.scope()``, then ``force_float32_outputs`` before ``compile`` and
``patch_multi_worker`` after it. ``device_report`` describes the result; ``report_table`` /
``report_markdown`` render it.

One module per job: ``selection`` (environment before import, oneDNN, GPUs), ``precision``,
``strategies``, ``report`` (the report and its renderings), ``placement`` (the placement log).
Memory readings and the placement markdown live in the callbacks layer (``callbacks.memory``,
``callbacks.placement``), which must not import ``trainer``. No module imports TensorFlow at
import time: ``tensorflow_environment`` must run before it is imported.
"""

from callbacks.memory import gpu_memory_key, memory_scalars, memory_tag, peak_rss_mib
from callbacks.placement import placement_markdown
from trainer.devices.placement import PlacementLog, placement_line, placement_summary
from trainer.devices.precision import (
    PRECISIONS,
    apply_precision,
    force_float32_outputs,
    resolve_precision,
)
from trainer.devices.report import device_report, report_markdown, report_table
from trainer.devices.selection import (
    INSTALL_HINT,
    ONEDNN_VARIABLE,
    onednn_enabled,
    onednn_text,
    parse_gpu,
    select_devices,
    tensorflow_environment,
)
from trainer.devices.strategies import (
    STRATEGIES,
    TF_CONFIG_EXAMPLE,
    is_chief,
    make_strategy,
    patch_multi_worker,
    strategy_label,
    strategy_name,
)

__all__ = [
    "INSTALL_HINT", "ONEDNN_VARIABLE", "PRECISIONS", "STRATEGIES", "TF_CONFIG_EXAMPLE",
    "PlacementLog", "apply_precision", "device_report", "force_float32_outputs",
    "gpu_memory_key", "is_chief", "make_strategy", "memory_scalars", "memory_tag",
    "onednn_enabled", "onednn_text", "parse_gpu", "patch_multi_worker", "peak_rss_mib",
    "placement_line", "placement_markdown", "placement_summary", "report_markdown",
    "report_table", "resolve_precision", "select_devices", "strategy_label", "strategy_name",
    "tensorflow_environment",
]
