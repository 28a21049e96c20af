"""``--lr-schedule``: each schedule against its formula (written out here, independently of
trainer/schedules.py), read back from the event files of real runs; plateau's state and the
step-based schedules' position survive an interruption and resume exactly; bad options."""

from __future__ import annotations

import json
import math
import os
import signal

import keras
import pytest

from callbacks.backup import restore_callbacks, snapshot_callbacks
from callbacks.guards import Interrupted
from tests.conftest import read_events, run_cli
from trainer import architecture, config as configuration, run, schedules
from trainer.errors import UsageError

RATE = 0.1
TRAIN, BATCH = 512, 64  # fcn keeps 80 %: 410 training samples, 7 batches per epoch
STEPS = 7


# ---- the formulas ------------------------------------------------------------------------------


def cosine(t, total, top, bottom):
    t = min(t, total)
    return bottom + (top - bottom) * (1 + math.cos(math.pi * t / total)) / 2


def formula(name, t, total, warmup=0, low=0.0):
    """The rate of optimizer step ``t`` (0-based) of ``total``."""
    if name == "constant":
        return RATE
    if name == "cosine":
        return cosine(t, total, RATE, low)
    start = 0.0 if name == "warmup-cosine" else RATE / 25
    if t < warmup:
        return start + (RATE - start) * t / warmup
    return cosine(t - warmup, total - warmup, RATE, low)


def make_config(**overrides):
    values = {"learning_rate": RATE, "epochs": 3}
    values.update(overrides)
    return configuration.resolve(architecture.load("fcn"), values)


@pytest.mark.parametrize("name, options, warmup", [
    ("constant", {}, 0),
    ("cosine", {"min_learning_rate": 0.01}, 0),
    ("warmup-cosine", {}, 2),  # default: 10 % of 21 steps
    ("warmup-cosine", {"warmup_steps": 5, "min_learning_rate": 0.001}, 5),
    ("onecycle", {}, 6),  # default: 30 % of 21 steps
    ("onecycle", {"warmup_epochs": 1.5}, 10),  # round(1.5 x 7)
])
def test_each_schedule_follows_its_formula(name, options, warmup):
    config = make_config(lr_schedule=name, **options)
    total = config.epochs * STEPS
    rate = schedules.learning_rate(config, STEPS)
    low = options.get("min_learning_rate", 0.0)
    for t in range(total + 3):
        got = float(rate(t)) if callable(rate) else rate
        assert got == pytest.approx(formula(name, t, total, warmup, low), rel=1e-5, abs=1e-8), t
    if name == "onecycle":
        assert float(rate(0)) == pytest.approx(RATE / 25) and float(rate(warmup)) == pytest.approx(RATE)


@pytest.mark.parametrize("options, expected", [
    ({"lr_schedule": "constant", "warmup_epochs": 1.0}, "Received: lr_schedule='constant' with a warmup"),
    ({"lr_schedule": "onecycle", "warmup_epochs": 1.0, "warmup_steps": 3}, "Got both --warmup-epochs"),
    ({"lr_schedule": "onecycle", "warmup_steps": 0}, "Received: warmup_steps=0. Expected a positive integer"),
    ({"lr_schedule": "plateau", "plateau_factor": 1.5}, "Received: plateau_factor=1.5. Expected a number between 0 and 1"),
    ({"lr_schedule": "plateau", "plateau_patience": 0}, "Received: plateau_patience=0"),
    ({"lr_schedule": "cosine", "min_learning_rate": 0.5}, "Received: min_learning_rate=0.5. Expected a number >= 0 "
                                                          "and below the learning rate (0.1)"),
    ({"lr_schedule": "linear"}, "Received: lr_schedule='linear'. Expected one of constant, cosine, onecycle"),
])
def test_bad_schedule_options(options, expected):
    with pytest.raises(UsageError) as error:
        make_config(**options)
    assert expected in str(error.value)


def test_a_warmup_as_long_as_the_run_is_refused():
    config = make_config(lr_schedule="warmup-cosine", warmup_epochs=3.0)
    with pytest.raises(UsageError) as error:
        schedules.learning_rate(config, STEPS)
    assert str(error.value) == ("Invalid value for argument `warmup_epochs`. Received: warmup_epochs=3.0 (21 steps). "
                                "Expected fewer than the run's 21 training steps (3 epochs x 7 batches).")


# ---- plateau's state, hook level ---------------------------------------------------------------


def test_plateau_state_and_rate_are_restored_exactly(tmp_path):
    """Keras's ReduceLROnPlateau: wait/best from the saved callback state, the rate from the
    optimizer's variables in the weights file; the resumed copy cuts at the same epoch."""
    def model():
        m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        m.compile(keras.optimizers.SGD(RATE), "mse")
        m.optimizer.build(m.trainable_variables)
        return m

    def callback(m):
        cb = schedules.callbacks(make_config(lr_schedule="plateau", plateau_patience=2), "val_loss")[0]
        cb.set_model(m)
        cb.on_train_begin()
        return cb

    first = model()
    cb = callback(first)
    for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.4, 0.7]):  # improve, improve, wait, improve, wait
        cb.on_epoch_end(epoch, {"val_loss": loss})
    cb.on_epoch_end(5, {"val_loss": 0.8})  # second epoch without improvement: cut
    assert (cb.wait, cb.best, float(first.optimizer.learning_rate)) == (0, 0.4, pytest.approx(RATE / 2))
    cb.on_epoch_end(6, {"val_loss": 0.9})
    states = snapshot_callbacks([cb])
    assert states == {"ReduceLROnPlateau": {"wait": 1, "best": 0.4, "cooldown_counter": 0}}
    first.save_weights(tmp_path / "w.weights.h5")

    second = model()
    second.load_weights(tmp_path / "w.weights.h5")
    resumed = callback(second)  # on_train_begin has reset it, as in a new process
    restore_callbacks([resumed], json.loads(json.dumps(states)))
    assert (resumed.wait, resumed.best) == (1, 0.4)
    assert float(second.optimizer.learning_rate) == pytest.approx(RATE / 2)
    for m, c in ((first, cb), (second, resumed)):
        c.on_epoch_end(7, {"val_loss": 0.95})
        assert float(m.optimizer.learning_rate) == pytest.approx(RATE / 4)


# ---- real runs, read back ----------------------------------------------------------------------


class StopAt(keras.callbacks.Callback):
    """Stops the run as Ctrl-C does (the Interrupted that StopOnSignal raises) after ``batch``
    batches of ``epoch`` (0-based): the run saves its state there and raises RunInterrupted."""

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self._epoch, batch + 1) == self.at:
            raise Interrupted(signal.SIGINT, *self.at)


def fit(tmp_path, data, callbacks=(), **overrides):
    options = {"data": data, "logdir": str(tmp_path / "logs"), "train_limit": TRAIN, "test_limit": 200,
               "batch_size": BATCH, "seed": 1, "progress": "none", "log_every": 1, "histograms_every": 0,
               "gradients_every": 0, "misclassified": 0, "per_class": False, "confusion_every": 0,
               "graph": False, "overfitting_patience": 0}
    return run.fit(make_config(**{**options, **overrides}), callbacks=callbacks)


def value(event) -> float:
    from tensorboard.util import tensor_util

    return float(tensor_util.make_ndarray(event.tensor_proto))


def curves(run_dir):
    """({step: rate} of batch_learning_rate, [epoch_learning_rate]) from the train event files."""
    train = read_events(os.path.join(run_dir, "train"))
    batch = [(e.step, value(e)) for e in train.Tensors("batch_learning_rate")]
    steps = [s for s, _ in batch]
    assert steps == sorted(set(steps)), "one point per step, in order"
    epoch = train.Tensors("epoch_learning_rate")
    assert [e.step for e in epoch] == list(range(len(epoch)))
    return dict(batch), [value(e) for e in epoch]


def check_step_schedule(run_dir, name, epochs, warmup=0, low=0.0):
    """Each logged rate is the one after its batch/epoch: the formula at the next step."""
    total = epochs * STEPS
    batch, epoch = curves(run_dir)
    assert sorted(batch) == list(range(total))
    for step, value in batch.items():
        assert value == pytest.approx(formula(name, step + 1, total, warmup, low), rel=1e-5, abs=1e-8), step
    assert epoch == pytest.approx([formula(name, (e + 1) * STEPS, total, warmup, low) for e in range(epochs)],
                                  rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("name", ["constant", "cosine"])  # onecycle: the resume test below
def test_step_schedules_read_back(tmp_path, mnist_small, name):
    result = fit(tmp_path, mnist_small, lr_schedule=name)
    assert result.train_steps == 3 * STEPS
    check_step_schedule(result.run_dir, name, 3)


def test_warmup_cosine_from_the_command_line(tmp_path, mnist_small):
    logdir = tmp_path / "logs"
    proc = run_cli("fit", "fcn", "--data", mnist_small, "--logdir", logdir, "--train-limit", TRAIN,
                   "--batch-size", BATCH, "--epochs", 3, "--learning-rate", RATE, "--lr-schedule", "warmup-cosine",
                   "--warmup-steps", 4, "--min-lr", 0.002, "--log-every", 1, "--progress", "plain",
                   "--histograms-every", 0, "--gradients-every", 0, "--misclassified", 0)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [os.path.join(logdir, "fcn", d) for d in os.listdir(logdir / "fcn")]
    check_step_schedule(run_dir, "warmup-cosine", 3, warmup=4, low=0.002)
    saved = json.load(open(os.path.join(run_dir, "config.json")))
    assert (saved["lr_schedule"], saved["warmup_steps"], saved["min_learning_rate"]) == ("warmup-cosine", 4, 0.002)


def test_onecycle_resumed_mid_epoch_continues_the_curve(tmp_path, mnist_small):
    with pytest.raises(run.RunInterrupted):
        fit(tmp_path, mnist_small, callbacks=[StopAt(1, 3)], lr_schedule="onecycle", epochs=3)
    (run_dir,) = [os.path.join(tmp_path, "logs", "fcn", d) for d in os.listdir(tmp_path / "logs" / "fcn")]
    assert max(curves(run_dir)[0]) == STEPS + 2  # stopped after batch 3 of epoch 2
    result = run.resume(run_dir)
    assert result.train_steps == 3 * STEPS
    check_step_schedule(run_dir, "onecycle", 3, warmup=6)


def expected_plateau(val_losses, patience, factor, min_delta):
    """Keras's ReduceLROnPlateau rule, written out: the rate after each epoch."""
    best, wait, rate, out = None, 0, RATE, []
    for value in val_losses:
        if best is None or value + min_delta < best:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                rate, wait = rate * factor, 0
        out.append(rate)
    return out


def test_plateau_resumed_mid_epoch_keeps_wait_best_and_rate(tmp_path, mnist_small):
    """min_delta 10: no epoch after the first improves, so the rate is cut every 2 epochs
    (after epochs 3 and 5). Stopped in epoch 5 with wait=1 and the rate already halved: the
    resumed run must cut at the end of that same epoch."""
    options = {"lr_schedule": "plateau", "plateau_patience": 2, "plateau_min_delta": 10.0, "epochs": 5}
    with pytest.raises(run.RunInterrupted):
        fit(tmp_path, mnist_small, callbacks=[StopAt(4, 3)], **options)
    (run_dir,) = [os.path.join(tmp_path, "logs", "fcn", d) for d in os.listdir(tmp_path / "logs" / "fcn")]
    state = json.load(open(os.path.join(run_dir, "state", "state.json")))
    saved = state["callbacks"]["ReduceLROnPlateau"]
    history = json.load(open(os.path.join(run_dir, "metrics.json")))["history"]
    assert (state["epoch"], state["batch"]) == (4, 3)
    assert saved == {"wait": 1, "best": history[0]["val_loss"], "cooldown_counter": 0}
    run.resume(run_dir)
    history = json.load(open(os.path.join(run_dir, "metrics.json")))["history"]
    expected = expected_plateau([h["val_loss"] for h in history], 2, 0.5, 10.0)
    assert expected == pytest.approx([RATE, RATE, RATE / 2, RATE / 2, RATE / 4])
    batch, epoch = curves(run_dir)
    assert epoch == pytest.approx(expected, rel=1e-6)
    assert [h["learning_rate"] for h in history] == pytest.approx(expected, rel=1e-6)
    assert sorted(batch) == list(range(5 * STEPS))
    for step, value in batch.items():  # within an epoch, the rate the previous epoch ended with
        e = step // STEPS
        assert value == pytest.approx(RATE if e == 0 else expected[e - 1], rel=1e-6), step
