"""Ctrl-C, SIGTERM, kill -9 and NaN against a real ``trainer fit`` subprocess on MNIST."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from callbacks.backup import load_state
from tests.conftest import REPO, check_no_skipped_feature, read_events, run_cli

STEPS = 1000  # 16,000 training samples / batch 16: a couple of seconds per epoch


@pytest.fixture(scope="module")
def mnist_medium(tmp_path_factory, mnist_path) -> str:
    with np.load(mnist_path) as f:
        arrays = {"x_train": f["x_train"][:20000], "y_train": f["y_train"][:20000],
                  "x_test": f["x_test"][:2000], "y_test": f["y_test"][:2000]}
    path = tmp_path_factory.mktemp("data") / "mnist_medium.npz"
    np.savez(path, **arrays)
    return str(path)


def fit_args(data, logdir, *extra):
    return ["fit", "fcn", "--data", data, "--logdir", logdir, "--epochs", 3, "--batch-size", 16,
            "--steps-per-execution", 1, "--seed", 3, "--progress", "plain", "--log-every", 50,
            "--histograms-every", 0, "--gradients-every", 0, "--misclassified", 0, *extra]


class Run:
    """``trainer fit`` in the background, its output going to a file we can poll."""

    def __init__(self, tmp_path, *args):
        self.out_path = tmp_path / f"out-{time.monotonic_ns()}.txt"
        self.out = open(self.out_path, "w")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_COLOR": "1"}
        env.pop("TRAINER_DATA", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "trainer.cli", *map(str, args)], cwd=REPO,
                                     env=env, stdout=self.out, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        return self.out_path.read_text()

    def wait_until(self, condition, what: str, timeout: float = 120):
        """Polls ``condition()`` (an observable fact: a line, a file) until it is true; the
        timeout is a safety net only, the test never depends on how long anything takes."""
        deadline = time.monotonic() + timeout
        while not (found := condition()):
            assert self.proc.poll() is None, f"exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.output()}"
            time.sleep(0.05)
        return found

    def wait_for(self, text: str, timeout: float = 120):
        self.wait_until(lambda: text in self.output(), repr(text), timeout)

    def wait_for_state(self, logdir, epoch: int, min_batch: int = 1, timeout: float = 120) -> dict:
        """Waits until the saved resumable state is at least (``epoch``, ``min_batch``): with
        ``--save-every N`` it is rewritten (atomically) every N batches, so this is a point
        inside an epoch that does not depend on the machine's speed."""
        def reached():
            dirs = glob.glob(os.path.join(logdir, "fcn", "*", "state"))
            state = load_state(dirs[0]) if dirs else None
            return state if state and (state["epoch"], state["batch"]) >= (epoch, min_batch) else None
        return self.wait_until(reached, f"a saved state at epoch {epoch}, batch >= {min_batch}", timeout)

    def finish(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        self.out.close()
        check_no_skipped_feature(self.output())
        return code


def run_dir_of(logdir) -> str:
    (run_dir,) = glob.glob(os.path.join(logdir, "fcn", "*"))
    return run_dir


def assert_continuous(run_dir):
    """Every tag, read back with TensorBoard's reader, has strictly increasing unique steps."""
    for sub in ("train", "validation"):
        acc = read_events(os.path.join(run_dir, sub))
        for tag in acc.Tags()["tensors"]:
            steps = [e.step for e in acc.Tensors(tag)]
            assert steps == sorted(set(steps)), (sub, tag, steps)
    train = read_events(os.path.join(run_dir, "train"))
    assert [e.step for e in train.Tensors("epoch_loss")] == [0, 1, 2]
    batch_steps = [e.step for e in train.Tensors("batch_loss")]
    assert batch_steps[0] == 0 and batch_steps[-1] >= 2 * STEPS  # the whole run, no gap at 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_medium):
    logdir = tmp_path_factory.mktemp("plain")
    proc = run_cli(*fit_args(mnist_medium, logdir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.load(open(os.path.join(run_dir_of(logdir), "metrics.json")))


def test_sigint_mid_epoch_saves_and_resume_continues(tmp_path, mnist_medium, uninterrupted):
    logdir = tmp_path / "logs"
    run = Run(tmp_path, *fit_args(mnist_medium, logdir, "--save-every", 200))
    run.wait_for_state(logdir, epoch=1, min_batch=200)  # into the second epoch
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    run_dir = run_dir_of(logdir)
    out = run.output()
    assert f"Resume with: trainer fit --resume {run_dir}" in out
    assert "Traceback" not in out and "\x1b" not in out
    state = json.load(open(os.path.join(run_dir, "state", "state.json")))
    assert state["epoch"] == 1 and 0 < state["batch"] < STEPS
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "interrupted" and [h["epoch"] for h in metrics["history"]] == [1]
    # Event files were flushed and closed: epoch 1 and the batches up to the stop are readable.
    train = read_events(os.path.join(run_dir, "train"))
    assert [e.step for e in train.Tensors("epoch_loss")] == [0]
    assert max(e.step for e in train.Tensors("batch_loss")) >= STEPS

    proc = run_cli("fit", "--resume", run_dir, env={"TRAINER_DATA": mnist_medium})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "finished"
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["resumed"][0]["epoch"] == 2 and metrics["resumed"][0]["batch"] == state["batch"]
    assert_continuous(run_dir)
    # Same seed, same batches in the same order from the same saved weights: the same model.
    assert abs(metrics["test"]["accuracy"] - uninterrupted["test"]["accuracy"]) < 0.01
    assert metrics["test"]["accuracy"] > 0.85

    again = run_cli("fit", "--resume", run_dir, env={"TRAINER_DATA": mnist_medium})
    assert again.returncode == 0 and "already finished" in again.stdout


def test_sigterm_exits_143_with_resume_command(tmp_path, mnist_medium):
    run = Run(tmp_path, *fit_args(mnist_medium, tmp_path / "logs"))
    run.wait_for("Epoch 1/3")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    assert "Interrupted by SIGTERM" in run.output() and "Resume with:" in run.output()


def test_second_ctrl_c_aborts_without_corrupting_state(tmp_path, mnist_medium):
    run = Run(tmp_path, *fit_args(mnist_medium, tmp_path / "logs"))
    run.wait_for("Epoch 1/3")
    run.proc.send_signal(signal.SIGINT)
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    assert "Traceback" not in run.output()
    run_dir = run_dir_of(tmp_path / "logs")
    state = json.load(open(os.path.join(run_dir, "state", "state.json")))  # still valid
    assert os.path.isfile(os.path.join(run_dir, "state", state["weights"]))
    proc = run_cli("fit", "--resume", run_dir, env={"TRAINER_DATA": mnist_medium})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_continuous(run_dir)


@pytest.mark.parametrize("point", ["before-first-save", "mid-epoch"])
def test_kill_9_then_resume(tmp_path, mnist_medium, point):
    logdir = tmp_path / "logs"
    run = Run(tmp_path, *fit_args(mnist_medium, logdir, "--save-every", 100))
    if point == "before-first-save":
        # config.json is written after the model is compiled, before the first batch is traced.
        run.wait_until(lambda: glob.glob(os.path.join(logdir, "fcn", "*", "config.json")), "config.json")
    else:
        run.wait_for_state(logdir, epoch=1, min_batch=100)
    run.proc.send_signal(signal.SIGKILL)
    run.finish()
    run_dir = run_dir_of(logdir)
    state = load_state(os.path.join(run_dir, "state"))
    if point == "before-first-save":
        assert state is None
    else:
        assert state["epoch"] == 1 and state["batch"] >= 100
    proc = run_cli("fit", "--resume", run_dir, env={"TRAINER_DATA": mnist_medium})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "finished" and [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["test"]["accuracy"] > 0.85
    assert_continuous(run_dir)


def test_a_kill_during_a_save_leaves_the_previous_state(tmp_path):
    import keras

    from callbacks.backup import Backup, load_state

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    backup = Backup(str(tmp_path / "state"), steps_per_epoch=10)
    backup.set_model(model)
    backup.on_train_begin()
    first = backup.save(1, 0)

    def torn_save(path, *args, **kwargs):
        open(path, "wb").write(b"half a weights file")  # the temporary file only
        raise KeyboardInterrupt  # killed here

    model.save_weights = torn_save
    with pytest.raises(KeyboardInterrupt):
        backup.save(1, 5)
    assert load_state(str(tmp_path / "state")) == first
    backup.restore(first)  # the weights it names are intact


def _layer_count() -> int:
    """How many unnamed ``keras.layers.Layer`` objects Keras has named so far (a new one each call)."""
    import keras

    name = keras.layers.Layer().name  # "layer", "layer_1", "layer_2", ...
    return int(name.rsplit("_", 1)[1]) if "_" in name else 0


def test_saves_build_no_throwaway_layers_and_load_back_exactly(tmp_path):
    """Keras's saving lists the attributes to skip from a reference object (a ``Layer()``) made
    for each object saved, a list it means to cache: ``compat.cache_saving_skipsets`` makes the
    cache work, so the resumable state and the best model build none, and load back exactly."""
    import keras

    from callbacks.backup import Backup
    from callbacks.checkpoint import atomic_save

    def make():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
        model.compile("adam", "mse")
        return model

    model = make()
    model.fit(np.ones((8, 3)), np.zeros((8, 2)), verbose=0)  # optimizer state to save
    backup = Backup(str(tmp_path / "state"), steps_per_epoch=1)
    backup.set_model(model)
    backup.on_train_begin()
    from callbacks import compat

    compat.cache_saving_skipsets()  # Keras's own reference objects, built once per process (cached)
    before = _layer_count()
    state = backup.save(1, 0)
    atomic_save(model, str(tmp_path / "best.keras"))
    assert _layer_count() == before + 1  # only the one made by _layer_count
    copy = make()
    backup.set_model(copy)
    backup.restore(state)
    best = keras.saving.load_model(str(tmp_path / "best.keras"))
    for other in (copy, best):
        for a, b in zip(model.weights + model.optimizer.variables, other.weights + other.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


NAN_ARCH = '''"""Trains normally, then its output turns NaN after 100 training steps."""
import keras

DEFAULTS = {"epochs": 3, "batch_size": 32, "optimizer": "sgd", "learning_rate": 0.01, "validation": 0.2}


class NanAfter(keras.layers.Layer):
    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps

    def build(self, shape):
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=False):
        if training:
            self.count.assign_add(1.0)
        return keras.ops.where(self.count > self.steps, float("nan"), x)


def build(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    x = NanAfter(100)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''


@pytest.mark.parametrize("spe, where", [
    (1, "batch 26"),
    (16, "batches 17-32"),  # several batches per execution: the execution that hit it is named
])
def test_nan_loss_stops_and_keeps_the_last_good_state(tmp_path, mnist_small, spe, where):
    arch = tmp_path / "nan_after.py"
    arch.write_text(NAN_ARCH)
    proc = run_cli("fit", arch, "--data", mnist_small, "--logdir", tmp_path / "logs",
                   "--steps-per-execution", spe, "--progress", "plain")
    assert proc.returncode == 1
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("Error:")]
    # 2,400 samples / 32 = 75 batches per epoch: step 101 is epoch 2, batch 26.
    assert f"Loss became nan at epoch 2, {where}" in line and "last good state is kept" in line
    (run_dir,) = glob.glob(str(tmp_path / "logs" / "nan_after" / "*"))
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "failed" and len(metrics["history"]) == 1
    state = json.load(open(os.path.join(run_dir, "state", "state.json")))
    assert (state["epoch"], state["batch"]) == (1, 0)
    root = read_events(run_dir)
    assert "non_finite_loss" in root.Tags()["tensors"]


def test_ctrl_c_stops_at_the_end_of_an_execution(tmp_path, mnist_medium):
    logdir = tmp_path / "logs"
    args = fit_args(mnist_medium, logdir)
    args[args.index("--steps-per-execution") + 1] = 8
    run = Run(tmp_path, *args, "--save-every", 200)
    seen = run.wait_for_state(logdir, epoch=1, min_batch=200)  # inside the second epoch
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    state = json.load(open(os.path.join(run_dir_of(logdir), "state", "state.json")))
    assert state["epoch"] == 1 and 0 < state["batch"] < STEPS and state["batch"] % 8 == 0
    assert state["batch"] >= seen["batch"]


def test_resume_of_a_running_run_is_refused(tmp_path, mnist_medium):
    logdir = tmp_path / "logs"
    run = Run(tmp_path, *fit_args(mnist_medium, logdir))
    try:
        run.wait_for("Epoch 1/3")
        proc = run_cli("fit", "--resume", run_dir_of(logdir), env={"TRAINER_DATA": mnist_medium})
        assert proc.returncode == 1
        assert "is being written by a live process" in proc.stderr
    finally:
        run.proc.kill()
        run.finish()


def test_a_kill_in_the_test_pass_resumes_to_the_test_panels(tmp_path, mnist_small):
    """kill -9 after the last epoch's state was saved, during the test pass: the resumed run
    trains nothing and writes the test panels (the grids need the model without a fit)."""
    logdir = tmp_path / "logs"
    args = ("--data", mnist_small, "--logdir", logdir, "--epochs", 1, "--train-limit", 600, "--test-limit", 200,
            "--misclassified", 4, "--progress", "plain", "--seed", 1)
    assert run_cli("fit", "cnn_small", *args).returncode == 0
    (run_dir,) = glob.glob(os.path.join(logdir, "cnn_small", "*"))
    path = os.path.join(run_dir, "metrics.json")
    metrics = json.load(open(path))
    first_test = metrics["test"]
    metrics.update(status="running", test=None)  # what the killed process had written
    json.dump(metrics, open(path, "w"))
    for events in glob.glob(os.path.join(run_dir, "test", "events.*")):
        os.remove(events)
    proc = run_cli("fit", "--resume", run_dir)  # fails on any "failed and was skipped" warning
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.load(open(path))
    assert metrics["status"] == "finished" and metrics["test"] == pytest.approx(first_test)
    tags = read_events(os.path.join(run_dir, "test")).Tags()["tensors"]
    assert {"misclassified", "misclassified_gradcam", "confusion_matrix"} <= set(tags)
