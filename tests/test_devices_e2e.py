"""Devices end to end: real ``trainer fit`` processes for precision, placement log, profiler,
MirroredStrategy over two logical CPUs and a two-process multi-worker run on loopback."""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.util import tensor_util

from callbacks.profiler import plugin_installed
from tests.conftest import REPO, read_events, run_cli

SMALL = ("--train-limit", 600, "--test-limit", 200, "--epochs", 1, "--progress", "plain",
         "--optimizer", "adam", "--learning-rate", 0.003, "--seed", 1)
CPU0 = "/job:localhost/replica:0/task:0/device:CPU:0"


def only_run(logdir) -> str:
    (run_dir,) = glob.glob(os.path.join(str(logdir), "*", "*"))
    return run_dir


def load(run_dir: str, name: str) -> dict:
    with open(os.path.join(run_dir, name)) as f:
        return json.load(f)


# ----------------------------------------------------------------- oneDNN
@pytest.mark.parametrize("env, shown", [({}, "on (TF_ENABLE_ONEDNN_OPTS=1)"),
                                        ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "off (TF_ENABLE_ONEDNN_OPTS=0)")])
def test_onednn_is_on_unless_the_environment_says_otherwise(env, shown):
    proc = run_cli("devices", env=env)
    assert proc.returncode == 0, proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if "oneDNN kernels" in line]
    assert shown in row


# ----------------------------------------------------------------- command-line errors
@pytest.mark.parametrize("spec", ["5,2", "0,3", "a,b", "1,2,3"])
def test_bad_profile_spec_is_a_one_line_usage_error(spec, tmp_path):
    proc = run_cli("fit", "fcn", "--profile", spec, "--logdir", tmp_path)
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("Error")]
    assert line == (f"Error: Invalid value for '--profile': Received: {spec!r}. Expected START,END "
                    "batch numbers with 1 <= START <= END, e.g. 10,20 (or one batch: 10).")
    assert os.listdir(tmp_path) == []


def test_gpu_without_a_gpu_exits_1_listing_devices(mnist_small, tmp_path):
    proc = run_cli("fit", "fcn", "--gpu", "--data", mnist_small, "--logdir", tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("Error")]
    assert "TensorFlow sees no GPU, only: CPU:0." in line
    assert 'pip install "tensorflow[and-cuda]"' in line
    assert os.listdir(tmp_path) == []  # nothing written


# ----------------------------------------------------------------- mixed precision
@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, mnist_small):
    logdir = tmp_path_factory.mktemp("bf16")
    proc = run_cli("fit", "fcn", "--data", mnist_small, *SMALL, "--batch-size", 32,
                   "--precision", "mixed_bfloat16", "--logdir", logdir)
    assert proc.returncode == 0, proc.stderr
    return proc, only_run(logdir)


def test_bfloat16_run_reports_its_policy_and_trains(bf16_run):
    proc, run_dir = bf16_run
    assert load(run_dir, "config.json")["devices"]["precision"] == {
        "policy": "mixed_bfloat16", "compute_dtype": "bfloat16", "variable_dtype": "float32"}
    assert load(run_dir, "metrics.json")["test"]["accuracy"] > 0.5  # chance is 0.1
    table = proc.stdout[proc.stdout.index("Devices and placement"):proc.stdout.index("Epoch 1/1")]
    assert "| precision       | mixed_bfloat16 (compute bfloat16, variables float32) |" in table
    assert "| batch size      | 32 global, 32 per replica" in table
    assert table.isascii() and "\x1b" not in table  # not a terminal: plain ASCII


def test_bfloat16_model_keeps_float32_outputs(bf16_run):
    import keras

    _, run_dir = bf16_run
    import callbacks.validation_metrics  # noqa: F401 - registers the metrics it was compiled with

    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    assert model.outputs[0].dtype == "float32"
    assert model.get_layer("dense").dtype_policy.name == "mixed_bfloat16"
    probabilities = model.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_bfloat16_run_writes_histograms(bf16_run):
    _, run_dir = bf16_run
    tags = set(read_events(os.path.join(run_dir, "train")).PluginTagToContent("histograms"))
    assert {"dense/kernel", "dense/bias", "dense_1_logits/kernel"} <= tags


def test_loss_scale_is_logged_under_a_loss_scale_optimizer(tmp_path):
    import keras
    import tensorflow as tf

    from callbacks.scalars import Scalars, loss_scale

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x_in = keras.Input((4,))
        hidden = keras.layers.Dense(5, activation="relu")(x_in)
        out = keras.layers.Activation("softmax", dtype="float32")(keras.layers.Dense(3)(hidden))
        model = keras.Model(x_in, out)
        # 2**40 overflows float16 gradients: each of the 2 steps halves the scale and is skipped
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(), initial_scale=2.0**40)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        assert loss_scale(model.optimizer) == 2.0**40
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)
        history = model.fit(x, y, epochs=1, batch_size=8, verbose=0,
                            callbacks=[Scalars(tmp_path, samples_per_epoch=16)])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert history.history["loss_scale"] == [2.0**38]
    (event,) = read_events(str(tmp_path / "train")).Tensors("epoch_loss_scale")
    assert (event.step, float(tf.make_ndarray(event.tensor_proto))) == (0, 2.0**38)
    assert loss_scale(keras.optimizers.SGD()) is None


# ----------------------------------------------------------------- placement log and profiler
def test_placement_log_is_summarised_and_profile_trace_written(mnist_small, tmp_path):
    proc = run_cli("fit", "fcn", "--data", mnist_small, *SMALL, "--batch-size", 32,
                   "--log-device-placement", "--profile", "2,3", "--logdir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(tmp_path)
    placement = load(run_dir, "config.json")["devices"]["placement"]
    assert list(placement) == [CPU0] and placement[CPU0] > 100
    assert f"Op placement (start of run to end of epoch 1): CPU:0 {placement[CPU0]:,} ops." in proc.stdout
    assert "(_Arg)" not in proc.stdout + proc.stderr  # the raw log never reaches the terminal
    assert re.search(r"^Epoch 1/1 ", proc.stdout, re.M) and "fcn finished" in proc.stdout
    root = read_events(run_dir)
    assert set(root.Tags()["tensors"]) == {"config", "devices", "device_placement",
                                           "custom_scalars__config__"}
    (traces,) = [glob.glob(os.path.join(run_dir, "train", "plugins", "profile", "*", "*.xplane.pb"))]
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 1000
    hint = "TensorBoard's Profile tab needs the profile plugin"
    assert (hint in proc.stdout) == (not plugin_installed())


def test_profiler_arguments_are_checked():
    from callbacks.profiler import Profiler

    with pytest.raises(ValueError, match=r"Received: end=2\. Expected a batch number >= start \(3\)"):
        Profiler("logs", 3, 2)
    with pytest.raises(ValueError, match=r"Received: start=0\. Expected a batch number >= 1"):
        Profiler("logs", 0, 2)


# ----------------------------------------------------------------- strategies
MIRRORED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from trainer.cli import main
main(sys.argv[1:], standalone_mode=False)
"""


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRAINER_DATA", "TF_CONFIG")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_COLOR": "1", "PYTHONPATH": REPO, **extra}


def test_mirrored_over_two_logical_cpus(mnist_small, tmp_path):
    args = ["fit", "fcn", "--data", mnist_small, *map(str, SMALL), "--batch-size", "64",
            "--strategy", "mirrored", "--logdir", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-c", MIRRORED, *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = only_run(tmp_path)
    report = load(run_dir, "config.json")["devices"]
    assert report["strategy"] == {"class": "MirroredStrategy", "replicas": 2,
                                  "devices": [CPU0, CPU0[:-1] + "1"]}
    assert (report["global_batch_size"], report["per_replica_batch_size"]) == (64, 32)
    metrics = load(run_dir, "metrics.json")
    assert metrics["steps_per_execution"] == 1  # Keras's multi-step loop fails with 2 replicas
    assert metrics["train_steps"] == 8  # 480 training samples / 64
    assert metrics["test"]["accuracy"] > 0.5
    assert "| batch size      | 64 global, 32 per replica" in proc.stdout
    # The compiled counting metrics sum over the replicas: every validation / test sample once.
    for split, samples in (("validation", 120), ("test", 200)):
        acc = read_events(os.path.join(run_dir, split))
        curves = [tensor_util.make_ndarray(acc.Tensors(f"pr_curves/{c}")[-1].tensor_proto) for c in range(10)]
        counts = np.array([curve[:2, 0] for curve in curves])  # tp, fp at threshold 0
        assert (counts.sum(axis=1) == samples).all() and counts[:, 0].sum() == samples, counts
        assert "reliability_diagram" in acc.Tags()["tensors"]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_worker_run_on_loopback(mnist_small, tmp_path):
    logdir, ports = tmp_path / "logs", _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in range(2):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "trainer.cli", "fit", "fcn", "--data", mnist_small,
             "--train-limit", "300", "--test-limit", "100", "--epochs", "2", "--batch-size", "32",
             "--optimizer", "adam", "--learning-rate", "0.003", "--progress", "plain",
             "--strategy", "multi-worker", "--logdir", str(logdir)],
            cwd=REPO, env=_env(TF_CONFIG=tf_config, TMPDIR=str(scratch)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=180))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (_out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-2000:]

    (run_dir,) = glob.glob(str(logdir / "*" / "*"))  # exactly one run, by the chief
    metrics = load(run_dir, "metrics.json")
    assert metrics["train_steps"] == 16  # 240 training samples / 32 = 8 steps, 2 epochs
    worker_steps = re.search(r"Worker finished: (\d+) training steps", outputs[1][0])
    assert worker_steps and int(worker_steps.group(1)) == metrics["train_steps"]
    assert load(run_dir, "config.json")["devices"]["strategy"]["replicas"] == 2
    assert metrics["test"]["accuracy"] > 0.5

    def losses(out):
        return re.findall(r"^Epoch \d/2 .* - loss (\S+) .* - val_loss (\S+) ", out, re.M)

    assert len(losses(outputs[0][0])) == 2 and losses(outputs[0][0]) == losses(outputs[1][0])
    assert os.listdir(tmp_path / "tmp1") == []  # the worker's scratch directory is gone
