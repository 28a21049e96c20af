"""Automatic ``steps_per_execution`` stays prompt: a slow model gets fewer batches per execution."""

from __future__ import annotations

import glob
import json
import os
import types

import numpy as np
import pytest

from callbacks.pace import ExecutionPace, paced_steps
from tests.conftest import read_events, run_cli
from tests.slow_arch import write_slow_arch


@pytest.mark.parametrize("current, seconds_per_batch, expected", [
    (16, 0.01, 16),   # 0.16 s per execution: fast enough
    (16, 0.12, 16),   # 1.9 s: within the tolerance (2 × the 1 s target), left alone
    (16, 0.15, 4),    # 2.4 s: 6 batches fit in a second, the power of two below is 4
    (16, 0.3, 2),
    (16, 5.0, 1),     # one batch is already longer than the target
    (8, 0.4, 2),
    (1, 10.0, 1),     # nothing left to lower
    (16, 0.0, 16),    # no measurement
])
def test_paced_steps(current, seconds_per_batch, expected):
    assert paced_steps(current, seconds_per_batch) == expected


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def drive(pace, clock, epochs, steps, spe, seconds_per_batch, first_execution_seconds=30.0):
    """Calls the hooks as Keras does with ``spe`` batches per execution; returns the epochs run."""
    pace.set_params({"epochs": epochs, "steps": steps})
    pace.on_train_begin()
    first = True
    for epoch in range(epochs):
        pace.on_epoch_begin(epoch)
        for begin in range(0, steps, spe):
            end = min(begin + spe, steps) - 1
            pace.on_train_batch_begin(begin)
            clock.now += first_execution_seconds if first else (end - begin + 1) * seconds_per_batch
            first = False
            pace.on_train_batch_end(end)
        pace.on_epoch_end(epoch)
        if pace.model.stop_training:
            return epoch + 1
    return epochs


def test_slow_executions_ask_for_fewer_steps_at_the_end_of_the_epoch():
    clock = FakeClock()
    pace = ExecutionPace(clock=clock)
    pace.set_model(types.SimpleNamespace(stop_training=False, steps_per_execution=16))
    # The first execution (tracing, 30 s) is not counted; the others take 0.3 s per batch.
    assert drive(pace, clock, epochs=3, steps=64, spe=16, seconds_per_batch=0.3) == 1
    assert pace.requested == 2 and pace.seconds_per_batch == pytest.approx(0.3)


def test_fast_executions_and_the_last_epoch_change_nothing():
    clock = FakeClock()
    pace = ExecutionPace(clock=clock)
    pace.set_model(types.SimpleNamespace(stop_training=False, steps_per_execution=16))
    assert drive(pace, clock, epochs=3, steps=64, spe=16, seconds_per_batch=0.01) == 3
    assert pace.requested is None
    # Slow, but there is no epoch left to run faster: no stop.
    pace = ExecutionPace(clock=clock)
    pace.set_model(types.SimpleNamespace(stop_training=False, steps_per_execution=16))
    assert drive(pace, clock, epochs=1, steps=64, spe=16, seconds_per_batch=0.3) == 1
    assert pace.requested is None and not pace.model.stop_training


def test_early_stopping_is_not_taken_for_a_pace_request():
    clock = FakeClock()
    pace = ExecutionPace(clock=clock)
    # stop_training was set by EarlyStopping, which runs before it
    pace.set_model(types.SimpleNamespace(stop_training=True, steps_per_execution=16))
    pace.set_params({"epochs": 3})
    pace.on_train_begin()
    pace.on_epoch_begin(0)
    for begin in (0, 16, 32):
        pace.on_train_batch_begin(begin)
        clock.now += 16 * 0.3
        pace.on_train_batch_end(begin + 15)
    pace.on_epoch_end(0)
    assert pace.requested is None


def test_a_slow_model_runs_fewer_batches_per_execution_from_the_second_epoch(tmp_path, mnist_path):
    with np.load(mnist_path) as f:
        np.savez(tmp_path / "tiny.npz", x_train=f["x_train"][:512], y_train=f["y_train"][:512],
                 x_test=f["x_test"][:100], y_test=f["y_test"][:100])
    write_slow_arch(tmp_path, 0.3, epochs=2, batch_size=16, optimizer="adam", learning_rate=1e-3)
    logdir = tmp_path / "logs"
    proc = run_cli("fit", tmp_path / "slow.py", "--data", tmp_path / "tiny.npz", "--validation", "test",
                   "--logdir", logdir, "--log-every", 16, "--progress", "plain", "--histograms-every", 0,
                   "--gradients-every", 0, "--misclassified", 0)
    assert proc.returncode == 0, proc.stderr
    assert "One execution of 16 batches took" in proc.stdout + proc.stderr
    assert "running 2 per execution from epoch 2" in proc.stdout + proc.stderr
    (run_dir,) = glob.glob(os.path.join(logdir, "slow", "*"))
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "finished" and metrics["steps_per_execution"] == 2
    assert [h["epoch"] for h in metrics["history"]] == [1, 2] and metrics["train_steps"] == 64
    train = read_events(os.path.join(run_dir, "train"))
    assert [e.step for e in train.Tensors("epoch_loss")] == [0, 1]
    # 32 batches per epoch: two executions of 16 in the first, sixteen of 2 in the second;
    # the loss every 16 batches at the global batch index in both.
    assert [e.step for e in train.Tensors("batch_loss")] == [15, 31, 47, 63]
