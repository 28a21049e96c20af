"""The device report: where training runs (devices, strategy, precision, XLA, oneDNN, variables)
as a plain dict, and its renderings as a rich table and as markdown."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from callbacks.placement import Rows, markdown_tables, placement_section, short_device
from trainer.devices.selection import ONEDNN_VARIABLE, onednn_enabled, onednn_text
from trainer.devices.strategies import strategy_label

if TYPE_CHECKING:
    import keras
    import rich.table
    import tensorflow as tf


# --------------------------------------------------------------------------- the report
def _variable_parts(variable) -> list:
    """The backend variables behind a Keras variable: one per replica for mirrored ones."""
    import tensorflow as tf

    inner = getattr(variable, "value", variable)
    if isinstance(inner, tf.distribute.DistributedValues):
        return list(inner.values)
    return [inner]


def _nbytes(variable) -> int:
    import numpy as np
    import tensorflow as tf

    return int(np.prod(variable.shape, dtype=np.int64)) * tf.as_dtype(variable.dtype).size


def _physical_rows() -> list[dict]:
    import tensorflow as tf

    rows = []
    for device in tf.config.list_physical_devices():
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        rows.append({
            "name": device.name,
            "kind": device.device_type,
            "description": details.get("device_name"),
            "compute_capability": ".".join(map(str, capability)) if capability else None,
        })
    return rows


def _logical_rows() -> list[dict]:
    import tensorflow as tf

    rows = []
    for kind in sorted({d.device_type for d in tf.config.list_logical_devices()}):
        limits = []
        for device in tf.config.get_visible_devices(kind):
            configs = tf.config.get_logical_device_configuration(device) or [None]
            limits += [getattr(c, "memory_limit", None) for c in configs]
        for i, device in enumerate(tf.config.list_logical_devices(kind)):
            rows.append({
                "name": device.name,
                "kind": kind,
                "memory_limit_mib": limits[i] if i < len(limits) else None,
            })
    return rows


def _strategy_entry(strategy: tf.distribute.Strategy) -> dict:
    import tensorflow as tf

    try:
        replica_devices = list(strategy.extended.worker_devices)
    except (RuntimeError, AttributeError):  # the default strategy has no device list
        first = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        replica_devices = [first[0].name]
    return {"class": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
            "devices": replica_devices}


def _variables_entry(model: keras.Model) -> dict:
    import numpy as np

    placement: dict[str, dict[str, int]] = {}
    for variable in model.variables:
        for part in _variable_parts(variable):
            entry = placement.setdefault(part.device, {"count": 0, "bytes": 0})
            entry["count"] += 1
            entry["bytes"] += _nbytes(part)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    return {
        "count": len(model.variables),
        "bytes": sum(_nbytes(v) for v in model.variables),
        "by_device": dict(sorted(placement.items())),
        "trainable_parameters": trainable,
        "frozen_parameters": sum(int(np.prod(v.shape)) for v in model.weights) - trainable,
    }


def device_report(strategy: tf.distribute.Strategy, policy: str | keras.DTypePolicy,
                  jit: bool | str | None, model: keras.Model | None = None,
                  global_batch_size: int | None = None, optimizer: str | None = None) -> dict:
    """Everything about where training runs, as a plain dict (see ``report_markdown``).

    ``policy``: a Keras dtype policy or its name; ``jit``: what ``compile`` was given (or a
    description of it). The strategy is stored by class name; ``strategy_label`` names it.
    """
    import keras
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync
    per_replica = None
    if global_batch_size is not None:
        per_replica = (global_batch_size // replicas if global_batch_size % replicas == 0
                       else global_batch_size / replicas)
    dtype_policy = keras.mixed_precision.Policy(policy) if isinstance(policy, str) else policy
    report = {
        "physical_devices": _physical_rows(),
        "logical_devices": _logical_rows(),
        "strategy": _strategy_entry(strategy),
        "global_batch_size": global_batch_size,
        "per_replica_batch_size": per_replica,
        "precision": {"policy": dtype_policy.name, "compute_dtype": dtype_policy.compute_dtype,
                      "variable_dtype": dtype_policy.variable_dtype},
        "xla": {"jit_compile": jit, "auto_clustering": tf.config.optimizer.get_jit() or "off"},
        "onednn": onednn_enabled(),
        "onednn_variable": os.environ.get(ONEDNN_VARIABLE),  # what TensorFlow read at import
    }
    if optimizer is not None:
        report["optimizer"] = optimizer
    if model is not None:
        report["variables"] = _variables_entry(model)
    return report


# --------------------------------------------------------------------------- renderings
def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.2f} MiB" if n_bytes >= 2**20 else f"{n_bytes:,} B"


def _device_section(report: dict) -> tuple[str, Rows]:
    rows = []
    for d in report["physical_devices"]:
        extra = [x for x in (d["description"], d["compute_capability"] and
                             f"compute capability {d['compute_capability']}") if x]
        rows.append((f"physical {short_device(d['name'])}", ", ".join([d["kind"], *extra])))
    for d in report["logical_devices"]:
        limit = d["memory_limit_mib"]
        rows.append((f"logical {short_device(d['name'])}",
                     d["kind"] + (f", memory limit {limit} MiB" if limit else "")))
    return "Devices", rows


def _run_section(report: dict) -> tuple[str, Rows]:
    s, p, x = report["strategy"], report["precision"], report["xla"]
    batch = (f"{report['global_batch_size']} global, {report['per_replica_batch_size']} "
             "per replica" if report["global_batch_size"] is not None else "n/a")
    rows = [
        ("strategy", strategy_label(s["class"], s["replicas"])),
        ("replica devices", ", ".join(short_device(d) for d in s["devices"])),
        ("batch size", batch),
        ("precision", f"{p['policy']} (compute {p['compute_dtype']}, "
                      f"variables {p['variable_dtype']})"),
        ("XLA", f"jit_compile={x['jit_compile']}, auto-clustering {x['auto_clustering']}"),
    ]
    if report.get("optimizer"):
        rows.append(("optimizer", report["optimizer"]))
    if report.get("onednn") is not None:
        rows.append(("oneDNN kernels",
                     onednn_text(report["onednn"], report.get("onednn_variable"))))
    return "Run", rows


def _variables_section(variables: dict) -> tuple[str, Rows]:
    rows = [("model", f"{variables['count']} variables, {_mib(variables['bytes'])}")]
    if "trainable_parameters" in variables:  # reports written before it have no split
        rows.append(("parameters", f"{variables['trainable_parameters']:,} trainable, "
                                   f"{variables['frozen_parameters']:,} frozen"))
    rows += [(f"on {short_device(dev)}", f"{e['count']} variables, {_mib(e['bytes'])}")
             for dev, e in variables["by_device"].items()]
    return "Variables", rows


def _report_rows(report: dict) -> list[tuple[str, Rows]]:
    """(section, [(item, value)]) rows shared by the table and the markdown renderings."""
    sections = [_device_section(report), _run_section(report)]
    if "variables" in report:
        sections.append(_variables_section(report["variables"]))
    if "placement" in report:
        sections.append(placement_section(report["placement"]))
    return sections


def report_table(report: dict, ascii: bool = False) -> rich.table.Table:
    """The report as one compact ``rich.table.Table`` with a section per topic.

    ``ascii``: plain ASCII borders and no colour (for logs, pipes and CI).
    """
    from rich import box
    from rich.table import Table

    table = Table(title="Devices and placement", show_header=False, title_justify="left",
                  box=box.ASCII if ascii else box.ROUNDED, padding=(0, 1))
    table.add_column("Item", style=None if ascii else "bold", no_wrap=True)
    table.add_column("Value", overflow="fold")
    for i, (section, rows) in enumerate(_report_rows(report)):
        if i:
            table.add_section()
        table.add_row(section if ascii else f"[cyan]{section}[/cyan]", "")
        for item, value in rows:
            table.add_row(item, value)
    return table


def report_markdown(report: dict) -> str:
    """The report as markdown tables (for a TensorBoard text summary)."""
    return markdown_tables(_report_rows(report))
