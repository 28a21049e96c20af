"""Devices, precision and distribution: choose them, apply them, report where things run.

Call order in a command: ``PlacementLog().start()`` if wanted and ``select_devices`` (before
anything initialises TensorFlow's devices), ``resolve_precision`` + ``apply_precision``,
``make_strategy`` ("multi-worker" also needs TensorFlow uninitialised); build the model inside
``strategy.scope()``, then ``force_float32_outputs`` before ``compile`` and
``patch_multi_worker`` after it. ``device_report`` describes the result; ``report_table`` /
``report_markdown`` render it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter

from trainer.errors import TrainerError, UsageError, invalid_argument

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
INSTALL_HINT = 'pip install "tensorflow[and-cuda]"'
TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


# --------------------------------------------------------------------------- before import
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def tensorflow_environment(environ=None) -> None:
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
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


# --------------------------------------------------------------------------- devices
def _short(name: str) -> str:
    """'/job:localhost/replica:0/task:0/device:CPU:0' or '/physical_device:CPU:0' -> 'CPU:0'."""
    return name.rsplit("device:", 1)[-1] if "device:" in name else name


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
            if not gpus:
                seen = ", ".join(_short(d.name) for d in tf.config.list_physical_devices())
                raise TrainerError(
                    f"GPU requested (gpu={gpu!r}) but TensorFlow sees no GPU, only: {seen}. "
                    f"Install GPU support with `{INSTALL_HINT}` (Linux, NVIDIA driver) "
                    "and check CUDA_VISIBLE_DEVICES."
                )
            if indices is not None:
                if bad := [i for i in indices if not 0 <= i < len(gpus)]:
                    raise invalid_argument("gpu", gpu, "indices of visible GPUs, here "
                                           + ", ".join(map(str, range(len(gpus))))
                                           + f" (GPU {bad[0]} does not exist)")
                gpus = [gpus[i] for i in indices]
            tf.config.set_visible_devices(gpus, "GPU")
        for device in gpus:
            try:
                tf.config.experimental.set_memory_growth(device, True)
            except ValueError:  # logical (virtual) devices configured: growth not allowed
                pass
    except RuntimeError as exc:
        raise TrainerError(
            f"Devices must be selected before TensorFlow initialises them ({exc})."
        ) from None


def gpu_count() -> int:
    """Number of GPUs TensorFlow will use (logical GPUs, after ``select_devices``)."""
    import tensorflow as tf

    return len(tf.config.list_logical_devices("GPU"))


# --------------------------------------------------------------------------- precision
def resolve_precision(precision: str | None, mixed: bool, on_gpu: bool | None = None) -> str:
    """Returns the Keras dtype policy name: 'float32', 'mixed_float16' or 'mixed_bfloat16'.

    ``mixed=True`` picks float16 on a GPU and bfloat16 on CPU (``on_gpu`` defaults to
    whether TensorFlow sees a GPU).
    """
    if precision is not None:
        name = precision.strip().lower()
        if name not in PRECISIONS:
            raise invalid_argument(
                "precision", precision, "one of " + ", ".join(repr(p) for p in PRECISIONS)
            )
        if mixed and name == "float32":
            raise UsageError(
                "Arguments `mixed` and `precision` conflict. "
                f"Received: mixed=True, precision={precision!r}. Give only one of them."
            )
        return name
    if not mixed:
        return "float32"
    if on_gpu is None:  # visible physical GPUs: listing them does not initialise TensorFlow
        import tensorflow as tf

        on_gpu = bool(tf.config.get_visible_devices("GPU"))
    return "mixed_float16" if on_gpu else "mixed_bfloat16"


def apply_precision(policy: str) -> None:
    """Sets Keras's global dtype policy (affects layers created afterwards)."""
    import keras

    keras.mixed_precision.set_global_policy(policy)


def _is_softmax(activation) -> bool:
    return getattr(activation, "__name__", None) == "softmax"


def force_float32_outputs(model):
    """Returns ``model`` if its outputs are float32, else a functional model whose outputs are.

    A final softmax (``Activation``/``Softmax`` layer, or a ``Dense`` with softmax) is
    rebuilt so the softmax itself runs in float32 (a softmax ``Dense`` becomes a copy named
    ``<name>_logits`` with the same weights, followed by a float32 softmax named ``<name>``);
    any other output gets a float32 cast. All other layers (and weights) are shared with
    ``model``. Use the returned model from then on; call this before ``compile``.
    """
    import keras

    outputs = list(model.outputs) if getattr(model, "outputs", None) else None
    if outputs is None:
        raise TrainerError(
            f"Cannot force float32 outputs on model {model.name!r}: it has no symbolic "
            "inputs/outputs. Build it with keras.Input (functional or Sequential)."
        )
    if all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs):
        return model

    def fixed(tensor):
        if keras.backend.standardize_dtype(tensor.dtype) == "float32":
            return tensor
        layer = tensor._keras_history[0]
        single_use = len(outputs) == 1 and len(layer._inbound_nodes) == 1
        if single_use and isinstance(layer, keras.layers.Softmax):
            return keras.layers.Softmax(axis=layer.axis, dtype="float32", name=layer.name)(
                layer.input
            )
        if single_use and isinstance(layer, keras.layers.Activation) and _is_softmax(
            layer.activation
        ):
            return keras.layers.Activation("softmax", dtype="float32", name=layer.name)(
                layer.input
            )
        if single_use and type(layer) is keras.layers.Dense and _is_softmax(layer.activation):
            config = {**layer.get_config(), "activation": None, "name": layer.name + "_logits"}
            dense = keras.layers.Dense.from_config(config)
            logits = dense(layer.input)
            dense.set_weights(layer.get_weights())
            return keras.layers.Activation("softmax", dtype="float32", name=layer.name)(logits)
        return keras.layers.Activation("linear", dtype="float32")(tensor)

    new_outputs = [fixed(o) for o in outputs]
    return keras.Model(model.inputs, new_outputs if len(new_outputs) > 1 else new_outputs[0],
                       name=model.name)


# --------------------------------------------------------------------------- strategies
def _tf_config() -> dict | None:
    """Parsed and validated TF_CONFIG, or None when it is unset."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        index = int(task.get("index", 0))
        if not isinstance(members, list) or not 0 <= index < len(members):
            raise ValueError(f"task index {index} outside cluster[{task['type']!r}]")
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"Invalid TF_CONFIG ({type(exc).__name__}: {exc}). Expected JSON such as "
            f"TF_CONFIG='{TF_CONFIG_EXAMPLE}'."
        ) from None
    return config


def is_chief() -> bool:
    """True for the task that should write logs: 'chief', else worker 0; True without TF_CONFIG."""
    config = _tf_config()
    if config is None:
        return True
    kind, index = config["task"]["type"], int(config["task"].get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in config["cluster"]


def make_strategy(name: str = "auto", num_gpus: int | None = None):
    """Creates the ``tf.distribute.Strategy`` called ``name``.

    ``num_gpus``: GPUs to use (None: all visible ones). "auto" mirrors over the GPUs when
    more than one is used, else "default". "mirrored" uses the GPUs or, without GPUs,
    every logical CPU device. "multi-worker" needs TF_CONFIG.
    """
    import tensorflow as tf

    key = name.strip().lower().replace("_", "-")
    if key not in STRATEGIES:
        raise invalid_argument("strategy", name, "one of " + ", ".join(map(repr, STRATEGIES)))
    if key == "multi-worker":  # first: collectives must be set up before TF initialises devices
        if _tf_config() is None:
            raise UsageError(
                "Strategy 'multi-worker' needs the TF_CONFIG environment variable describing "
                f"the cluster and this task, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'."
            )
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as exc:
            raise TrainerError(f"Cannot create strategy {name!r}: {exc}") from None
    gpus = tf.config.list_logical_devices("GPU")
    wanted = len(gpus) if num_gpus is None else num_gpus
    if wanted < 0 or wanted > len(gpus):
        seen = ", ".join(_short(d.name) for d in gpus) or "none"
        raise UsageError(
            f"Strategy {name!r} needs {wanted} GPU(s) but TensorFlow sees {len(gpus)} "
            f"(GPUs: {seen}). Use fewer GPUs or another strategy."
        )
    try:
        if key == "auto":
            key = "mirrored" if wanted > 1 else "default"
        if key == "default":
            return tf.distribute.get_strategy()
        devices = gpus[:wanted] if wanted else tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    except (RuntimeError, ValueError) as exc:
        raise TrainerError(f"Cannot create strategy {name!r}: {exc}") from None


# --------------------------------------------------------------------------- report
def _variable_parts(variable):
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


def _device_rows():
    import tensorflow as tf

    physical, logical = [], []
    for device in tf.config.list_physical_devices():
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        physical.append({
            "name": device.name,
            "kind": device.device_type,
            "description": details.get("device_name"),
            "compute_capability": ".".join(map(str, capability)) if capability else None,
        })
    for kind in sorted({d.device_type for d in tf.config.list_logical_devices()}):
        limits = []
        for device in tf.config.get_visible_devices(kind):
            configs = tf.config.get_logical_device_configuration(device) or [None]
            limits += [getattr(c, "memory_limit", None) for c in configs]
        for i, device in enumerate(tf.config.list_logical_devices(kind)):
            logical.append({
                "name": device.name,
                "kind": kind,
                "memory_limit_mib": limits[i] if i < len(limits) else None,
            })
    return physical, logical


def device_report(strategy, policy: str, jit, model=None, global_batch_size=None,
                  optimizer: str | None = None) -> dict:
    """Everything about where training runs, as a plain dict (see ``report_markdown``)."""
    import keras
    import tensorflow as tf

    physical, logical = _device_rows()
    replicas = strategy.num_replicas_in_sync
    try:
        replica_devices = list(strategy.extended.worker_devices)
    except (RuntimeError, AttributeError):  # the default strategy has no device list
        first = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        replica_devices = [first[0].name]
    per_replica = None
    if global_batch_size is not None:
        per_replica = (global_batch_size // replicas if global_batch_size % replicas == 0
                       else global_batch_size / replicas)
    dtype_policy = keras.mixed_precision.Policy(policy) if isinstance(policy, str) else policy
    report = {
        "physical_devices": physical,
        "logical_devices": logical,
        "strategy": {"class": type(strategy).__name__, "replicas": replicas,
                     "devices": replica_devices},
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
        placement: dict[str, dict[str, int]] = {}
        for variable in model.variables:
            for part in _variable_parts(variable):
                entry = placement.setdefault(part.device, {"count": 0, "bytes": 0})
                entry["count"] += 1
                entry["bytes"] += _nbytes(part)
        report["variables"] = {
            "count": len(model.variables),
            "bytes": sum(_nbytes(v) for v in model.variables),
            "by_device": dict(sorted(placement.items())),
        }
    return report


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.2f} MiB" if n_bytes >= 2**20 else f"{n_bytes:,} B"


def _report_rows(report: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """(section, [(item, value)]) rows shared by the table and the markdown renderings."""
    devices = []
    for d in report["physical_devices"]:
        extra = [x for x in (d["description"], d["compute_capability"] and
                             f"compute capability {d['compute_capability']}") if x]
        devices.append((f"physical {_short(d['name'])}", ", ".join([d["kind"], *extra])))
    for d in report["logical_devices"]:
        limit = d["memory_limit_mib"]
        devices.append((f"logical {_short(d['name'])}",
                        d["kind"] + (f", memory limit {limit} MiB" if limit else "")))
    s, p, x = report["strategy"], report["precision"], report["xla"]
    batch = (f"{report['global_batch_size']} global, {report['per_replica_batch_size']} "
             "per replica" if report["global_batch_size"] is not None else "n/a")
    run = [
        ("strategy", f"{s['class']} ({s['replicas']} replica(s))"),
        ("replica devices", ", ".join(_short(d) for d in s["devices"])),
        ("batch size", batch),
        ("precision", f"{p['policy']} (compute {p['compute_dtype']}, "
                      f"variables {p['variable_dtype']})"),
        ("XLA", f"jit_compile={x['jit_compile']}, auto-clustering {x['auto_clustering']}"),
    ]
    if report.get("optimizer"):
        run.append(("optimizer", report["optimizer"]))
    if report.get("onednn") is not None:
        run.append(("oneDNN kernels", onednn_text(report["onednn"], report.get("onednn_variable"))))
    sections = [("Devices", devices), ("Run", run)]
    if "variables" in report:
        v = report["variables"]
        rows = [("model", f"{v['count']} variables, {_mib(v['bytes'])}")]
        rows += [(f"on {_short(dev)}", f"{e['count']} variables, {_mib(e['bytes'])}")
                 for dev, e in v["by_device"].items()]
        sections.append(("Variables", rows))
    if "placement" in report:
        sections.append(_placement_section(report["placement"]))
    return sections


def _placement_section(summary: dict[str, int]) -> tuple[str, list[tuple[str, str]]]:
    return ("Op placement (start of run to end of epoch 1)",
            [(f"ops on {_short(dev)}", f"{count:,}") for dev, count in summary.items()]
            or [("ops", "none logged")])


def report_table(report: dict, ascii: bool = False):
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


def _markdown(sections) -> str:
    parts = []
    for section, rows in sections:
        parts.append(f"### {section}\n\n| Item | Value |\n|---|---|")
        parts[-1] += "".join(f"\n| {item} | {value.replace('|', '/')} |" for item, value in rows)
    return "\n\n".join(parts) + "\n"


def report_markdown(report: dict) -> str:
    """The report as markdown tables (for a TensorBoard text summary)."""
    return _markdown(_report_rows(report))


def placement_line(summary: dict[str, int]) -> str:
    """One terminal line: 'Op placement (…): CPU:0 1,234 ops. Full counts: …'."""
    counts = ", ".join(f"{_short(dev)} {count:,} ops" for dev, count in summary.items())
    return (f"Op placement (start of run to end of epoch 1): {counts or 'none logged'}. "
            "Per device in config.json (devices.placement) and TensorBoard text device_placement.")


def placement_markdown(summary: dict[str, int]) -> str:
    """``placement_summary``'s result as a markdown table."""
    return _markdown([_placement_section(summary)])


_EAGER = re.compile(r"Executing op (\S+) in device (\S+)")
_PLACED = re.compile(r"(?:^|\] )(\S+): \((\S+)\): (/\S*device:\S+)\s*$")


def placement_summary(log_lines) -> dict[str, int]:
    """Counts op placements per device in TensorFlow's ``log_device_placement`` output.

    Reads eager lines ("Executing op MatMul in device …", stderr, shown only with
    TF_CPP_MIN_LOG_LEVEL=0) and graph placer lines ("name: (MatMul): /job:…/device:CPU:0",
    printed to stdout and, at log level 0, repeated on stderr behind a "placer.cc" prefix;
    the repetition is not counted twice). ``log_lines``: a string or an iterable of lines.
    """
    if isinstance(log_lines, str):
        log_lines = log_lines.splitlines()
    eager, plain, logged = Counter(), Counter(), Counter()
    for line in log_lines:
        if m := _EAGER.search(line):
            eager[m.group(2)] += 1
        elif m := _PLACED.search(line.rstrip()):
            (logged if "placer.cc" in line else plain)[m.group(3)] += 1
    devices = set(eager) | set(plain) | set(logged)
    return {d: eager[d] + max(plain[d], logged[d]) for d in sorted(devices)}


def _flush_c_stdio() -> None:
    """Flushes C's stdio buffers (TensorFlow's placer writes with ``printf``)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (Windows)
        pass


class PlacementLog:
    """TensorFlow's per-op placement log, kept off the terminal and summarised.

    ``start()`` it before TensorFlow initialises its devices: from then on file descriptors
    1 and 2 (where TensorFlow's C++ code prints) go to a temporary file, while Python's
    ``sys.stdout`` / ``sys.stderr`` (progress, messages, warnings) still reach the terminal.
    ``summary()`` counts the ops per device logged so far; after it the log is discarded.
    TensorFlow cannot turn the log off again (it logs until the process ends, down to the
    resources freed at exit), so the redirection is for the rest of the process.
    """

    def __init__(self):
        self._log = self._summary = None

    def start(self) -> "PlacementLog":
        import tempfile

        import tensorflow as tf
        from tensorflow.python.eager import context

        if getattr(context.context(), "_context_handle", None) is not None:
            raise TrainerError("The device placement log must be turned on before TensorFlow "
                               "initialises its devices; start a new process for it.")
        sys.stdout.flush()
        sys.stderr.flush()
        self._log = tempfile.TemporaryFile()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        streams = (sys.stdout, sys.stderr)
        for fd in (1, 2):
            os.dup2(self._log.fileno(), fd)
        sys.stdout, sys.stderr = (
            open(saved[fd], "w", buffering=1, errors="replace",
                 encoding=getattr(stream, "encoding", None) or "utf-8")
            for fd, stream in zip((1, 2), streams))
        tf.debugging.set_log_device_placement(True)
        return self

    def summary(self) -> dict[str, int]:
        """Ops per device (``placement_summary``) logged until the first call."""
        if self._summary is None:
            _flush_c_stdio()
            self._log.seek(0)
            self._summary = placement_summary(self._log.read().decode(errors="replace"))
            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)
            self._log.close()
        return self._summary



# --------------------------------------------------------------------------- memory
def memory_tag(key: str) -> str:
    """TensorBoard tag of a ``memory_scalars`` key: 'host_rss_mib' -> 'memory/host_rss_mib'."""
    return f"memory/{key}"


def gpu_memory_key(index: int, which: str) -> str:
    """'gpu0_current_mib' / 'gpu0_peak_mib'."""
    return f"gpu{index}_{which}_mib"


def _host_memory() -> dict[str, float]:
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {"host_rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
                "host_peak_mib": int(fields["VmHWM"].split()[0]) / 1024}
    except (OSError, KeyError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (bytes on macOS)
        return {"host_peak_mib": peak / (2**20 if sys.platform == "darwin" else 1024)}


def memory_scalars() -> dict[str, float]:
    """Host RSS/peak in MiB and, per GPU, TensorFlow's current/peak allocation in MiB.

    Without /proc (not Linux) only ``host_peak_mib`` is available for the host.
    """
    values = _host_memory()
    if "tensorflow" in sys.modules:  # never initialise TensorFlow just to report memory
        import tensorflow as tf

        for i, _ in enumerate(tf.config.list_logical_devices("GPU")):
            info = tf.config.experimental.get_memory_info(f"GPU:{i}")
            values[gpu_memory_key(i, "current")] = info["current"] / 2**20
            values[gpu_memory_key(i, "peak")] = info["peak"] / 2**20
    return values



def patch_multi_worker(model, strategy) -> None:
    """Works around two Keras 3 bugs that stop ``model.fit`` under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585); a no-op under any other strategy. Call it after ``compile``.

    1. ``fit`` builds the model by ``strategy.reduce``-ing a whole (x, y) batch, which the
       collective strategy cannot do ("Attempt to convert a value (PerReplica…)"); the batch
       only gives shapes, so the local replica's part is used instead.
    2. With several workers, step results are reduced with ``axis=0``, which fails on scalar
       metrics ("Invalid reduction dimension 0 for input with 0 dimensions"); each result is
       given a leading axis of 1, so the reduction is the mean over replicas.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    if hasattr(model, "_maybe_symbolic_build") and hasattr(model, "_symbolic_build"):
        def maybe_symbolic_build(iterator=None, data_batch=None):
            if iterator is not None:
                for _, _, batches in iterator:
                    data_batch = tf.nest.map_structure(
                        lambda v: strategy.experimental_local_results(v)[0], next(batches))
                    break
            with strategy.scope():
                model._symbolic_build(data_batch=data_batch)

        model._maybe_symbolic_build = maybe_symbolic_build
    if strategy.num_replicas_in_sync > len(strategy.extended.worker_devices):  # other workers
        def batched(step):
            return lambda data: tf.nest.map_structure(lambda t: tf.expand_dims(t, 0), step(data))

        model.train_step = batched(model.train_step)
        model.test_step = batched(model.test_step)
