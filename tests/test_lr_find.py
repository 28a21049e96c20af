"""``trainer lr-find``: the range-test callback on a tiny model, its suggestion rules on known
curves, then real range tests on MNIST whose suggested rate trains well where a rate 100x
larger does not; the curve read back from the event files; Ctrl-C; bad input."""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from callbacks.lr_range import LearningRateRangeTest, smooth, suggest, sweep_rate
from tests.conftest import REPO, check_no_skipped_feature, read_events, run_cli
from trainer import architecture, config as configuration, lr_find, run
from trainer.cli import main
from trainer.errors import TrainerError


def value(event) -> float:
    from tensorboard.util import tensor_util

    return float(tensor_util.make_ndarray(event.tensor_proto))


# ---- pure parts --------------------------------------------------------------------------------


def test_the_sweep_is_exponential_from_start_to_end():
    rates = [sweep_rate(1e-7, 10.0, 100, i) for i in range(100)]
    assert rates[0] == pytest.approx(1e-7) and rates[-1] == pytest.approx(10.0)
    assert np.allclose(np.diff(np.log10(rates)), 8 / 99)


def test_smoothing_is_a_bias_corrected_moving_average():
    losses = [3.0, 1.0, 2.0]
    beta = 0.9
    e1 = 0.1 * 3.0
    e2 = 0.9 * e1 + 0.1 * 1.0
    e3 = 0.9 * e2 + 0.1 * 2.0
    assert smooth(losses, beta) == pytest.approx([e1 / 0.1, e2 / (1 - 0.81), e3 / (1 - 0.729)])


def test_suggestions_on_a_known_curve():
    """Falls fastest at 1e-3, lowest near 1e-1, then diverges (and turns NaN)."""
    x = np.linspace(-6, 0, 61)
    rates = 10.0**x
    loss = 2 - np.tanh(2 * (x + 3)) + 5 * np.maximum(0, x + 1) ** 2
    loss[-3:] = np.nan
    found = suggest(rates, loss)
    assert found["steepest"] == pytest.approx(1e-3)
    assert found["minimum"] == pytest.approx(0.1, rel=0.3)
    assert found["min/10"] == pytest.approx(found["minimum"] / 10)
    assert suggest(rates[:9], loss[:9]) is None  # too few points
    assert suggest(rates, np.r_[loss[:9], np.full(52, np.nan)]) is None


# ---- the callback on a tiny model --------------------------------------------------------------


def test_the_range_test_sets_each_rate_records_each_batch_loss_and_stops_on_divergence(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(640, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    test = LearningRateRangeTest(str(tmp_path), start=1e-4, end=1e3, num_batches=60)
    seen = []

    class Probe(keras.callbacks.Callback):
        """Before a batch: its loss under the current weights; after it: the rate it used."""

        def on_train_batch_begin(self, batch, logs=None):
            xb, yb = x[batch * 32:(batch + 1) * 32], y[batch * 32:(batch + 1) * 32]
            seen.append([float(np.mean((self.model.predict_on_batch(xb) - yb) ** 2))])

        def on_train_batch_end(self, batch, logs=None):
            seen[-1].append(float(self.model.optimizer.learning_rate))

    model.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0, callbacks=[test, Probe()])
    assert test.stopped == "diverged" and 20 < len(test.points) < 60
    assert model.stop_training
    for (step, rate, loss, _), (expected_loss, used_rate) in zip(test.points, seen):
        assert rate == pytest.approx(sweep_rate(1e-4, 1e3, 60, step)) == pytest.approx(used_rate, rel=1e-6)
        if math.isfinite(loss) and loss < 1e6:
            assert loss == pytest.approx(expected_loss, rel=1e-3), step  # that batch's, not a running mean
    events = read_events(str(tmp_path))
    assert [e.step for e in events.Tensors("lr_find/learning_rate")] == list(range(len(test.points)))
    assert len(events.Tensors("lr_find/curve")) == 1

    model.compile(keras.optimizers.SGD(0.01), "mse", steps_per_execution=2)
    with pytest.raises(ValueError, match="Expected 1: the range test sets the rate before every batch"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[LearningRateRangeTest()])


# ---- trainer lr-find on MNIST ------------------------------------------------------------------


def accuracy_of(run_dir) -> float:
    return json.load(open(os.path.join(run_dir, "metrics.json")))["test"]["accuracy"]


@pytest.fixture(scope="module")
def fcn_range_test(tmp_path_factory, mnist_small):
    logdir = tmp_path_factory.mktemp("lr") / "logs"
    settings = logdir.parent / "lr.toml"  # --config works as in fit, and is passed on to the fit command
    settings.write_text("seed = 1\ntest_limit = 500\nlearning_rate = 0.5  # ignored: the rate is what is looked for\n")
    proc = run_cli("lr-find", "fcn", "--config", settings, "--data", mnist_small, "--logdir", logdir, "--epochs", 2)
    assert proc.returncode == 0, proc.stderr
    return proc, logdir


def test_fcn_range_test_prints_the_rate_and_the_command(fcn_range_test, mnist_small):
    proc, logdir = fcn_range_test
    (run_dir,) = glob.glob(os.path.join(logdir, "fcn", "lr-find-*"))
    assert not os.path.exists(os.path.join(run_dir, "config.json"))  # not a training run
    saved = json.load(open(os.path.join(run_dir, lr_find.RESULT_FILE)))
    rate = saved["suggested_learning_rate"]
    assert saved["kind"] == "lr-find" and saved["rule"] == "min/10" and saved["status"] in ("diverged", "completed")
    assert f"Suggested learning rate: {rate:.3g} (a tenth of the rate at the lowest smoothed loss" in proc.stdout
    command = (f"trainer fit fcn --config {logdir.parent / 'lr.toml'} --epochs 2 --data {mnist_small} "
               f"--logdir {logdir} --learning-rate {rate:.3g}")
    assert f"Train with it: {command}\n" in proc.stdout and saved["command"] == command

    # the curve: one point per batch, the rate exactly the sweep's, and the image and the summary
    n = len(saved["points"])
    events = read_events(run_dir)
    rates = events.Tensors("lr_find/learning_rate")
    assert [e.step for e in rates] == list(range(n)) and 10 <= n <= 100
    assert [value(e) for e in rates] == pytest.approx([sweep_rate(1e-7, 10, 100, i) for i in range(n)], rel=1e-6)
    losses = [p["loss"] for p in saved["points"]]
    assert [value(e) for e in events.Tensors("lr_find/loss")] == pytest.approx(losses, rel=1e-6)
    assert [e.step for e in events.Tensors("lr_find/smoothed_loss")] == list(range(n))
    (image,) = events.Tensors("lr_find/curve")
    assert image.tensor_proto.string_val[2].startswith(b"\x89PNG")
    (text,) = events.Tensors("lr_find/summary")
    assert f"`{command}`" in text.tensor_proto.string_val[0].decode()


def test_fcn_suggested_rate_trains_and_100x_does_not(fcn_range_test, tmp_path, mnist_small):
    """The printed command, run as it is, trains; the same run at 100x the rate does not."""
    proc, logdir = fcn_range_test
    command = re.search(r"Train with it: (.*)\n", proc.stdout).group(1)
    arguments = shlex.split(command)[1:]  # after "trainer"
    rate = float(arguments[-1])
    good = run_cli(*arguments, "--progress", "plain", "--histograms-every", 0, "--gradients-every", 0)
    assert good.returncode == 0, good.stderr
    (good_dir,) = re.findall(r"run directory\s*\|\s*(\S+)", good.stdout)
    assert accuracy_of(good_dir) >= 0.6  # 0.74 here; 100x: 0.09 (or NaN)
    config = configuration.resolve(architecture.load("fcn"), {
        "data": mnist_small, "epochs": 2, "test_limit": 500, "seed": 1, "learning_rate": rate * 100,
        "logdir": str(tmp_path), "progress": "none", "histograms_every": 0, "gradients_every": 0})
    try:
        assert run.fit(config).test["accuracy"] < 0.6
    except TrainerError as error:
        assert "Loss became nan" in str(error)


def test_cnn_small_suggested_rate_trains_and_100x_does_not(tmp_path, mnist_small):
    def config(**values):
        return configuration.resolve(architecture.load("cnn_small"), {
            "data": mnist_small, "logdir": str(tmp_path / "logs"), "seed": 1, "train_limit": 2000,
            "test_limit": 500, "epochs": 1, "progress": "none", "histograms_every": 0, "gradients_every": 0,
            "misclassified": 0, "graph": False, **values})

    result = lr_find.lr_find(config(), lr_find.Settings(batches=100), base_command="trainer fit cnn_small")
    assert result.stopped in ("diverged", "completed") and result.rate is not None
    assert result.command == f"trainer fit cnn_small --learning-rate {result.rate:.3g}"
    assert os.path.basename(result.run_dir).startswith("lr-find-")

    def accuracy(rate) -> float:
        try:
            return run.fit(config(learning_rate=rate)).test["accuracy"]
        except TrainerError as error:  # the loss became NaN
            assert "Loss became nan" in str(error)
            return 0.0

    assert accuracy(float(f"{result.rate:.3g}")) >= 0.8
    assert accuracy(result.rate * 100) < 0.8


def test_ctrl_c_keeps_the_partial_curve_and_suggests(tmp_path, mnist_small):
    logdir = tmp_path / "logs"
    out_path = tmp_path / "out.txt"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_COLOR": "1"}
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainer.cli", "lr-find", "fcn", "--data", mnist_small, "--logdir", str(logdir),
             "--batch-size", "16", "--batches", "5000", "--end-lr", "1e-3", "--diverge", "1000"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120  # a safety net: we wait for the line, not for a time
        while "lr-find batch 500/5000" not in out_path.read_text():
            assert proc.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    output = out_path.read_text()
    check_no_skipped_feature(output)
    assert code == 130, output
    (run_dir,) = glob.glob(os.path.join(logdir, "fcn", "lr-find-*"))
    saved = json.load(open(os.path.join(run_dir, lr_find.RESULT_FILE)))
    n = len(saved["points"])
    assert saved["status"] == "interrupted" and 500 <= n < 5000
    assert f"Range test: {n} batches (interrupted)" in output
    assert f"Suggested learning rate: {saved['suggested_learning_rate']:.3g}" in output
    assert f"Stopped by SIGINT; the partial curve is kept in {run_dir}." in output
    assert "Traceback" not in output
    events = read_events(run_dir)
    assert [e.step for e in events.Tensors("lr_find/learning_rate")] == list(range(n))
    assert len(events.Tensors("lr_find/curve")) == 1


@pytest.mark.parametrize("args, expected", [
    (["--start-lr", "0"], "Invalid value for argument `start_lr`. Received: start_lr=0.0. Expected a positive number."),
    (["--end-lr", "1e-8"], "Received: end_lr=1e-08. Expected a number above start_lr (1e-07)."),
    (["--batches", "1"], "Invalid value for argument `batches`. Received: batches=1. Expected an integer >= 2."),
    (["--diverge", "0.5"], "Received: diverge=0.5. Expected a number above 1"),
    (["--set", "unitz=3"], "Unknown hyperparameter 'unitz' for architecture 'fcn'"),
    (["--learning-rate", "0.1"], "Invalid value for argument `learning_rate`. Received: learning_rate=0.1. Expected "
                                 "none: lr-find sweeps the rate from --start-lr to --end-lr."),
])
def test_bad_input(tmp_path, mnist_small, args, expected):
    result = CliRunner().invoke(main, ["lr-find", "fcn", "--data", mnist_small, "--logdir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert not glob.glob(os.path.join(tmp_path, "*", "*")), "nothing written"
