"""Epoch scalars: every compiled metric for train and validation, learning rate, time, speed."""

from __future__ import annotations

import time

from callbacks.base import TensorBoardCallback, never_raise
from callbacks.text import check_int


def split_logs(logs: dict) -> tuple[dict, dict]:
    """``{"loss", "val_loss", ...}`` -> (train, validation), both keyed without the ``val_``."""
    train, val = {}, {}
    for key, value in logs.items():
        if key.startswith("val_"):
            val[key[4:]] = value
        else:
            train[key] = value
    return train, val


def epoch_tag(name: str) -> str:
    return f"epoch_{name}"


def current_learning_rate(optimizer) -> float:
    """The rate the optimizer's next update uses: its schedule at ``iterations``, or its rate."""
    import keras

    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def loss_scale(optimizer) -> float | None:
    """The current dynamic loss scale of a ``keras.optimizers.LossScaleOptimizer`` (as
    ``mixed_float16`` compiles), else None."""
    import keras

    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    if not optimizer.built:
        return float(optimizer.initial_scale)
    return float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))


class Scalars(TensorBoardCallback):
    """Writes ``epoch_<metric>`` to ``train/`` and ``validation/`` (one chart, two runs).

    Adds ``learning_rate``, ``seconds`` (training part of the epoch),
    ``samples_per_second`` and, under a ``LossScaleOptimizer`` (mixed_float16),
    ``loss_scale`` to the epoch logs, as Keras's LearningRateScheduler adds the rate, so
    the progress display and the history see them too. With ``log_every=N`` it
    also writes ``batch_loss`` at the global batch index every N batches (steps stay
    correct when several batches run per execution), and ``batch_learning_rate``: the rate
    after that batch (the one the next batch uses), as ``learning_rate`` is the rate after
    the epoch.
    """

    state_attributes = ("_last_batch_written",)  # saved with a resumable state

    def __init__(self, log_dir: str, samples_per_epoch: int, log_every: int = 0, batch_size: int | None = None):
        super().__init__(log_dir)
        self.samples_per_epoch = check_int("samples_per_epoch", samples_per_epoch, minimum=1)
        self.log_every = check_int("log_every", log_every, minimum=0)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, minimum=1)

    def on_train_begin(self, logs=None):
        self._last_batch_written = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = time.perf_counter()
        self._train_seconds = None
        self._batches = None  # (first, last) batch index seen in this epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._batches is None:
            self._batches = (batch, batch)

    def _samples_seen(self) -> int:
        """Samples trained on this epoch: all of them, or for a resumed epoch (which starts
        part-way) those from its first batch on; needs ``batch_size``."""
        if self.batch_size is None or self._batches is None:
            return self.samples_per_epoch
        return max(0, self.samples_per_epoch - self._batches[0] * self.batch_size)

    def on_test_begin(self, logs=None):
        if self._train_seconds is None and hasattr(self, "_start"):
            self._train_seconds = time.perf_counter() - self._start

    @never_raise
    def on_train_batch_end(self, batch, logs=None):
        if not self.log_every or not logs or "loss" not in logs:
            return
        steps = self.params.get("steps") or 0
        if steps:  # a last, partial execution reports batch indices past the epoch's end
            batch = min(batch, steps - 1)
        step = self._epoch * steps + batch
        if self._last_batch_written is not None and step - self._last_batch_written < self.log_every:
            return
        self._last_batch_written = step
        import tensorflow as tf

        with self.writer("train").as_default():
            tf.summary.scalar("batch_loss", float(logs["loss"]), step=step)
            tf.summary.scalar("batch_learning_rate", current_learning_rate(self.model.optimizer), step=step)

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = self._train_seconds or (time.perf_counter() - self._start)
        logs["learning_rate"] = current_learning_rate(self.model.optimizer)
        if (scale := loss_scale(self.model.optimizer)) is not None:
            logs["loss_scale"] = scale
        logs["seconds"] = seconds
        logs["samples_per_second"] = self._samples_seen() / seconds if seconds > 0 else 0.0
        import tensorflow as tf

        train, val = split_logs(logs)
        for subdir, values in (("train", train), ("validation", val)):
            if not values:
                continue
            with self.writer(subdir).as_default():
                for name, value in values.items():
                    tf.summary.scalar(epoch_tag(name), float(value), step=epoch)
