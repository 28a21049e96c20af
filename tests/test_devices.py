"""Tests for trainer/devices/, callbacks/devices.py and callbacks/memory.py (CPU only; GPUs are
faked)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from rich.console import Console
from tensorboard.backend.event_processing import event_accumulator

from callbacks import memory
from callbacks.devices import DeviceScalars
from trainer import devices
from trainer.errors import TrainerError, UsageError

CPU0 = "/job:localhost/replica:0/task:0/device:CPU:0"


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def fake_gpus(monkeypatch):
    """Three fake physical GPUs; records visibility and memory-growth calls."""
    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(3)]
    calls = {"visible": [], "growth": []}
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else real(kind) + gpus)
    monkeypatch.setattr(tf.config, "set_visible_devices",
                        lambda d, kind=None: calls["visible"].append((list(d), kind)))
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth",
                        lambda d, on: calls["growth"].append((d.name, on)))
    return gpus, calls


def tiny_model(units=2, inputs=3, activation=None, name="tiny"):
    x = keras.Input((inputs,))
    return keras.Model(x, keras.layers.Dense(units, activation=activation)(x), name=name)


# ----------------------------------------------------------------- select_devices
def test_tensorflow_environment_turns_onednn_on_but_keeps_what_is_set():
    env = {}
    devices.tensorflow_environment(env)
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}
    env = {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "0"}
    devices.tensorflow_environment(env)
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "0"}


def test_gpu_and_cpu_together_is_a_usage_error():
    with pytest.raises(UsageError) as info:
        devices.select_devices("all", cpu=True)
    assert info.value.exit_code == 2
    assert "gpu='all', cpu=True" in info.value.message


def test_gpu_without_gpu_lists_devices_and_install_hint():
    with pytest.raises(TrainerError) as info:
        devices.select_devices("all", cpu=False)
    message = info.value.message
    assert info.value.exit_code == 1 and not isinstance(info.value, UsageError)
    assert "\n" not in message
    assert "only: CPU:0." in message
    assert 'pip install "tensorflow[and-cuda]"' in message


@pytest.mark.parametrize("bad", ["x", "0,a", "", "1.5"])
def test_gpu_index_syntax_is_a_usage_error(bad):
    with pytest.raises(UsageError) as info:
        devices.select_devices(bad)
    assert info.value.message == (
        f"Invalid value for argument `gpu`. Received: gpu={bad!r}. "
        "Expected 'all' or comma-separated GPU indices such as '0' or '0,2'."
    )


def test_gpu_index_out_of_range_names_what_exists(fake_gpus):
    with pytest.raises(UsageError) as info:
        devices.select_devices("0,3")
    assert info.value.message == (
        "Invalid value for argument `gpu`. Received: gpu='0,3'. "
        "Expected indices of visible GPUs, here 0, 1, 2 (GPU 3 does not exist)."
    )
    assert fake_gpus[1] == {"visible": [], "growth": []}


def test_gpu_selection_sets_visibility_and_memory_growth(fake_gpus):
    gpus, calls = fake_gpus
    devices.select_devices("2,0,2")
    assert calls["visible"] == [([gpus[2], gpus[0]], "GPU")]
    assert calls["growth"] == [(gpus[2].name, True), (gpus[0].name, True)]


def test_gpu_all_default_and_cpu(fake_gpus):
    gpus, calls = fake_gpus
    devices.select_devices("all")
    assert calls["visible"] == [(gpus, "GPU")] and len(calls["growth"]) == 3
    calls["visible"].clear(), calls["growth"].clear()
    devices.select_devices(None, cpu=False)
    assert calls["visible"] == [] and len(calls["growth"]) == 3
    calls["growth"].clear()
    devices.select_devices(None, cpu=True)
    assert calls["visible"] == [([], "GPU")] and calls["growth"] == []


def test_selecting_after_initialisation_is_a_trainer_error(fake_gpus, monkeypatch):
    def refuse(*_):
        raise RuntimeError("Visible devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config, "set_visible_devices", refuse)
    with pytest.raises(TrainerError, match="before TensorFlow initialises them"):
        devices.select_devices("0")


def test_cpu_only_is_a_no_op_without_gpus():
    devices.select_devices(None, cpu=True)  # TF is already initialised: same setting, no error
    assert tf.config.get_visible_devices("GPU") == []


# ----------------------------------------------------------------- precision
@pytest.mark.parametrize("precision, mixed, on_gpu, expected", [
    (None, False, True, "float32"),
    (None, False, False, "float32"),
    (None, True, True, "mixed_float16"),
    (None, True, False, "mixed_bfloat16"),
    ("float32", False, True, "float32"),
    ("mixed_float16", False, False, "mixed_float16"),
    ("Mixed_BFloat16", False, True, "mixed_bfloat16"),
    ("mixed_float16", True, False, "mixed_float16"),
    ("mixed_bfloat16", True, True, "mixed_bfloat16"),
])
def test_resolve_precision_matrix(precision, mixed, on_gpu, expected):
    assert devices.resolve_precision(precision, mixed, on_gpu=on_gpu) == expected


def test_mixed_detects_cpu():
    assert devices.resolve_precision(None, True) == "mixed_bfloat16"


def test_unknown_precision():
    with pytest.raises(UsageError) as info:
        devices.resolve_precision("fp8", False)
    assert info.value.message == (
        "Invalid value for argument `precision`. Received: precision='fp8'. "
        "Expected one of 'float32', 'mixed_float16', 'mixed_bfloat16'."
    )


def test_conflicting_precision():
    with pytest.raises(UsageError, match="mixed=True, precision='float32'"):
        devices.resolve_precision("float32", True)


def test_apply_precision():
    devices.apply_precision("mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"


# ----------------------------------------------------------------- float32 outputs
def _xy(n=16, features=4, classes=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, features)).astype("float32"), rng.integers(0, classes, n)


def test_float32_model_is_returned_unchanged():
    model = tiny_model()
    assert devices.force_float32_outputs(model) is model


def test_dense_softmax_runs_in_float32_and_trains():
    devices.apply_precision("mixed_bfloat16")
    x_in = keras.Input((4,))
    hidden = keras.layers.Dense(5, activation="relu")(x_in)
    model = keras.Model(x_in, keras.layers.Dense(3, activation="softmax", name="probs")(hidden))
    assert model.outputs[0].dtype == "bfloat16"
    x, y = _xy()
    before = model.predict(x, verbose=0)

    fixed = devices.force_float32_outputs(model)
    assert fixed.outputs[0].dtype == "float32"
    last, logits = fixed.layers[-1], fixed.layers[-2]
    assert (last.name, last.dtype_policy.name) == ("probs", "float32")
    assert isinstance(last, keras.layers.Activation)
    assert logits.name == "probs_logits" and logits.get_config()["activation"] == "linear"
    after = fixed.predict(x, verbose=0)
    assert after.dtype == np.float32
    np.testing.assert_allclose(after.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(after, np.asarray(before).astype("float32"), atol=0.02)  # bf16 rounding apart

    fixed.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    weights = [w.copy() for w in fixed.get_weights()]
    loss = fixed.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(weights, fixed.get_weights()))


def test_softmax_layer_and_other_outputs():
    devices.apply_precision("mixed_bfloat16")
    x_in = keras.Input((4,))
    softmax = keras.Model(x_in, keras.layers.Softmax(name="sm")(keras.layers.Dense(3)(x_in)))
    fixed = devices.force_float32_outputs(softmax)
    assert (fixed.layers[-1].name, fixed.outputs[0].dtype) == ("sm", "float32")
    assert isinstance(fixed.layers[-1], keras.layers.Softmax)

    linear = tiny_model(inputs=4)
    fixed = devices.force_float32_outputs(linear)
    assert fixed.outputs[0].dtype == "float32"
    assert isinstance(fixed.layers[-1], keras.layers.Activation)
    assert fixed.layers[-2] is linear.layers[-1]  # layers (and weights) are shared


# ----------------------------------------------------------------- strategies
def test_mirrored_needing_more_gpus_than_exist():
    with pytest.raises(UsageError) as info:
        devices.make_strategy("mirrored", num_gpus=2)
    assert info.value.exit_code == 2
    assert info.value.message == (
        "Strategy 'mirrored' needs 2 GPU(s) but TensorFlow sees 0 (GPUs: none). "
        "Use fewer GPUs or another strategy."
    )


def test_unknown_strategy():
    with pytest.raises(UsageError, match=r"Received: strategy='ring'\. Expected one of 'auto'"):
        devices.make_strategy("ring")


def test_auto_default_and_single_device_mirrored():
    assert devices.make_strategy("auto") is tf.distribute.get_strategy()
    assert devices.make_strategy("default").num_replicas_in_sync == 1
    mirrored = devices.make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert list(mirrored.extended.worker_devices) == [CPU0]



def test_strategy_names_are_what_people_call_them():
    assert devices.strategy_name(tf.distribute.get_strategy()) == "default (one device)"
    assert devices.strategy_name(devices.make_strategy("mirrored")) == "mirrored (1 replica)"
    assert devices.strategy_label("MirroredStrategy", 2) == "mirrored (2 replicas)"
    assert devices.strategy_label("MultiWorkerMirroredStrategy", 4) == "multi-worker (4 replicas)"
    assert devices.strategy_label("TPUStrategy", 8) == "TPUStrategy (8 replicas)"

    class FakeMirrored:  # the markdown and table name a stored report's strategy the same way
        num_replicas_in_sync = 2

    FakeMirrored.__name__ = "MirroredStrategy"
    assert devices.strategy_name(FakeMirrored()) == "mirrored (2 replicas)"

def test_multi_worker_without_tf_config():
    with pytest.raises(UsageError) as info:
        devices.make_strategy("multi-worker")
    message = info.value.message
    assert message.startswith("Strategy 'multi-worker' needs the TF_CONFIG environment variable")
    assert devices.TF_CONFIG_EXAMPLE in message
    json.loads(devices.TF_CONFIG_EXAMPLE)  # the example itself is valid JSON


@pytest.mark.parametrize("raw, reason", [
    ("{not json", "JSONDecodeError"),
    ('{"cluster": {"worker": ["a:1"]}}', "KeyError: 'task'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "task index 1 outside cluster['worker']"),
])
def test_invalid_tf_config(monkeypatch, raw, reason):
    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(UsageError) as info:
        devices.make_strategy("multi-worker")
    assert info.value.message.startswith("Invalid TF_CONFIG (")
    assert reason in info.value.message and devices.TF_CONFIG_EXAMPLE in info.value.message


@pytest.mark.parametrize("cluster, task, chief", [
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
    ({"worker": ["a:1"], "evaluator": ["e:1"]}, {"type": "evaluator", "index": 0}, False),
])
def test_is_chief(monkeypatch, cluster, task, chief):
    assert devices.is_chief() is True  # no TF_CONFIG
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert devices.is_chief() is chief


# ----------------------------------------------------------------- report
def test_device_report_for_a_tiny_model():
    model = tiny_model()  # kernel 3x2 + bias 2 = 8 float32 = 32 bytes
    report = devices.device_report(tf.distribute.get_strategy(), "mixed_bfloat16", "auto",
                                   model=model, global_batch_size=32)
    assert report["physical_devices"] == [{"name": "/physical_device:CPU:0", "kind": "CPU",
                                           "description": None, "compute_capability": None}]
    assert report["logical_devices"] == [
        {"name": "/device:CPU:0", "kind": "CPU", "memory_limit_mib": None}]
    assert report["strategy"] == {"class": "_DefaultDistributionStrategy", "replicas": 1,
                                  "devices": ["/device:CPU:0"]}
    assert (report["global_batch_size"], report["per_replica_batch_size"]) == (32, 32)
    assert report["precision"] == {"policy": "mixed_bfloat16", "compute_dtype": "bfloat16",
                                   "variable_dtype": "float32"}
    assert report["xla"] == {"jit_compile": "auto", "auto_clustering": "off"}
    assert report["variables"] == {"count": 2, "bytes": 32,
                                   "by_device": {CPU0: {"count": 2, "bytes": 32}},
                                   "trainable_parameters": 8, "frozen_parameters": 0}

    markdown = devices.report_markdown(report)
    assert "### Variables" in markdown and "| on CPU:0 | 2 variables, 32 B |" in markdown
    assert "| parameters | 8 trainable, 0 frozen |" in markdown
    assert "| precision | mixed_bfloat16 (compute bfloat16, variables float32) |" in markdown
    assert isinstance(report["onednn"], bool)
    assert f"| oneDNN kernels | {'on' if report['onednn'] else 'off'} (TF_ENABLE_ONEDNN_OPTS" in markdown
    console = Console(record=True, width=120)
    console.print(devices.report_table(report))
    text = console.export_text()
    assert "default (one device)" in text and "32 global, 32 per" in text
    assert "_DefaultDistributionStrategy" not in text and "| strategy | default (one device) |" in markdown


def test_device_report_without_model():
    report = devices.device_report(tf.distribute.get_strategy(), "float32", False)
    assert "variables" not in report and report["per_replica_batch_size"] is None
    assert "### Variables" not in devices.report_markdown(report)
    assert "| batch size | n/a |" in devices.report_markdown(report)


def test_placement_summary():
    log = textwrap.dedent("""\
        I0000 00:00:17.1 3920 execute.cc:1775] Executing op _EagerConst in device /job:localhost/replica:0/task:0/device:CPU:0
        I0000 00:00:17.2 3920 execute.cc:1775] Executing op MatMul in device /job:localhost/replica:0/task:0/device:GPU:0
        x: (_Arg): /job:localhost/replica:0/task:0/device:CPU:0
        I0000 00:00:17.3 3920 placer.cc:162] x: (_Arg): /job:localhost/replica:0/task:0/device:CPU:0
        Relu: (Relu): /job:localhost/replica:0/task:0/device:GPU:0
        I0000 00:00:17.4 3920 placer.cc:162] Relu: (Relu): /job:localhost/replica:0/task:0/device:GPU:0
        mul/y: (Const): /job:localhost/replica:0/task:0/device:GPU:0
        I0000 00:00:17.5 3920 placer.cc:162] mul/y: (Const): /job:localhost/replica:0/task:0/device:GPU:0
        Epoch 1/1 - loss: 0.5
        unrelated: line with (parens): and no device
        """)
    expected = {"/job:localhost/replica:0/task:0/device:CPU:0": 2,
                "/job:localhost/replica:0/task:0/device:GPU:0": 3}
    assert devices.placement_summary(log) == expected
    assert devices.placement_summary(log.splitlines()) == expected
    stderr_only = [line for line in log.splitlines() if line.startswith("I0000")]
    assert devices.placement_summary(stderr_only) == expected
    assert devices.placement_summary([]) == {}


MIRRORED = """
import json, os, sys
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from trainer import devices
devices.select_devices(None, cpu=True)
assert devices.make_strategy("auto") is tf.distribute.get_strategy()
strategy = devices.make_strategy("mirrored")
with strategy.scope():
    x_in = keras.Input((3,))
    model = keras.Model(x_in, keras.layers.Dense(2, activation="softmax")(x_in))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(40, 3)).astype("float32"), rng.integers(0, 2, 40)
history = model.fit(x, y, batch_size=10, epochs=1, verbose=0)
report = devices.device_report(strategy, "float32", False, model, global_batch_size=10)
sys.stdout.flush()
print("REPORT", json.dumps({"loss": history.history["loss"], **report}))
"""


def test_mirrored_over_two_logical_cpus():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                          env=env, timeout=240, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    assert len(report["loss"]) == 1 and np.isfinite(report["loss"][0])
    cpu1 = CPU0[:-1] + "1"
    assert report["strategy"] == {"class": "MirroredStrategy", "replicas": 2,
                                  "devices": [CPU0, cpu1]}
    assert report["per_replica_batch_size"] == 5
    assert [d["name"] for d in report["logical_devices"]] == ["/device:CPU:0", "/device:CPU:1"]
    # kernel 3x2 + bias 2, mirrored: one full copy on each replica device
    assert report["variables"] == {"count": 2, "bytes": 32, "by_device": {
        CPU0: {"count": 2, "bytes": 32}, cpu1: {"count": 2, "bytes": 32}},
        "trainable_parameters": 8, "frozen_parameters": 0}


# ----------------------------------------------------------------- memory
def test_memory_scalars_and_tags(monkeypatch):
    values = devices.memory_scalars()
    assert set(values) == {"host_rss_mib", "host_peak_mib"}  # no GPU here
    assert 0 < values["host_rss_mib"] <= values["host_peak_mib"] < 1e6
    assert devices.memory_tag("host_rss_mib") == "memory/host_rss_mib"
    assert devices.gpu_memory_key(1, "peak") == "gpu1_peak_mib"

    def no_proc(*_, **__):
        raise OSError("no /proc")

    monkeypatch.setattr(memory, "open", no_proc, raising=False)
    fallback = devices.memory_scalars()
    assert set(fallback) == {"host_peak_mib"} and fallback["host_peak_mib"] > 0


def test_device_scalars_callback_writes_memory_per_epoch(tmp_path):
    model = tiny_model(inputs=4, units=3, activation="softmax")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = _xy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[DeviceScalars(tmp_path)])
    acc = event_accumulator.EventAccumulator(
        str(tmp_path / "train"), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    assert set(acc.Tags()["tensors"]) == {"memory/host_rss_mib", "memory/host_peak_mib"}
    events = acc.Tensors("memory/host_rss_mib")
    assert [e.step for e in events] == [0, 1]
    assert all(float(tf.make_ndarray(e.tensor_proto)) > 0 for e in events)


def test_peak_rss_from_proc_and_from_getrusage(monkeypatch):
    import resource

    assert 0 < memory.peak_rss_mib() == memory.memory_scalars()["host_peak_mib"]

    def no_proc(*_, **__):
        raise OSError("no /proc")

    monkeypatch.setattr(memory, "open", no_proc, raising=False)
    usage = type("Usage", (), {"ru_maxrss": 2**30})()
    monkeypatch.setattr(resource, "getrusage", lambda who: usage)
    monkeypatch.setattr(memory.sys, "platform", "darwin")  # ru_maxrss in bytes
    assert memory.peak_rss_mib() == 1024
    monkeypatch.setattr(memory.sys, "platform", "linux")  # ru_maxrss in KiB
    assert memory.peak_rss_mib() == 2**20


def _imported_after(statement: str) -> set[str]:
    """Top-level packages a fresh Python has imported after running ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_devices_import_is_light():  # tensorflow_environment must run before TensorFlow loads
    assert not {"tensorflow", "keras", "rich"} & _imported_after(
        "from trainer.devices import tensorflow_environment, device_report, PlacementLog")


def test_callbacks_never_import_trainer():
    statement = ("import importlib, pkgutil, callbacks\n"
                 "for module in pkgutil.iter_modules(callbacks.__path__):\n"
                 "    importlib.import_module('callbacks.' + module.name)")
    assert "trainer" not in _imported_after(statement)
