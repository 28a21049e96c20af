"""Keras metrics that keep per-class state from Keras's own evaluation pass.

Compile the model with them (``model.compile(..., metrics=["accuracy", cm, errors])``):
Keras updates them inside its train/test steps (graph mode, any ``steps_per_execution``)
and resets them at the start of every epoch and of every ``evaluate``. So at
``on_epoch_end`` they hold the validation pass, and after ``model.evaluate(test)`` they
hold the test pass: the callbacks in ``per_class``, ``confusion`` and ``misclassified``
only read them, with no extra ``predict``. Memory is bounded (C x C counts, k mistakes).

Both metrics expect sparse integer labels of shape ``(B,)`` or ``(B, 1)`` and class
scores ``y_pred`` of shape ``(B, C)``. Sample weights are ignored: counts are counts.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from .base import TensorBoardCallback, never_raise
from .text import check_int


def _labels_and_predictions(y_true, y_pred, from_logits):
    y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    y_pred = ops.cast(y_pred, "float32")
    if from_logits:
        y_pred = ops.softmax(y_pred, axis=-1)
    return y_true, ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_pred


def _check_positive_int(name, value, minimum=1):
    return check_int(name, value, minimum)


@keras.saving.register_keras_serializable(package="trainer")
class ConfusionMatrix(keras.metrics.Metric):
    """Counts (true, predicted) pairs; ``result()`` is the macro F1 over all classes.

    Rows are true classes, columns predicted classes. A class that is neither present
    nor predicted has F1 0 (0/0 is defined as 0 everywhere).
    """

    def __init__(self, num_classes, name="macro_f1", from_logits=False, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = _check_positive_int("num_classes", num_classes, minimum=2)
        self.from_logits = bool(from_logits)
        # float32 like keras.metrics.MeanIoU (exact up to 2**24 per cell and epoch).
        self.matrix = self.add_variable(
            (self.num_classes, self.num_classes), "zeros", dtype="float32", name="matrix"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        true, pred, _ = _labels_and_predictions(y_true, y_pred, self.from_logits)
        # one_hot of an out-of-range label is all zeros: such samples are not counted.
        batch = ops.matmul(
            ops.transpose(ops.one_hot(true, self.num_classes, dtype="float32")),
            ops.one_hot(pred, self.num_classes, dtype="float32"),
        )
        self.matrix.assign(self.matrix + batch)

    def result(self):
        tp = ops.diagonal(self.matrix)
        denominator = ops.sum(self.matrix, axis=0) + ops.sum(self.matrix, axis=1)
        f1 = ops.where(denominator > 0, 2 * tp / ops.maximum(denominator, 1.0), 0.0)
        return ops.mean(f1)

    def counts(self) -> np.ndarray:
        """The current count matrix as a numpy int64 array (rows true, columns predicted)."""
        return np.rint(self.matrix.numpy()).astype(np.int64)

    def samples_seen(self) -> int:
        return int(self.counts().sum())

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="trainer")
class WorstMistakes(keras.metrics.Metric):
    """Keeps the ``k`` most confident misclassified samples seen since the last reset.

    A sample's index is its position in the stream since the reset (running count plus
    position in the batch); the validation data is not shuffled, so it addresses the
    validation arrays. ``class_filter=K`` keeps only mistakes whose true or predicted
    class is K. ``result()`` is the number of (filtered) mistakes seen. Single device:
    under a distribution strategy the per-replica indices are not meaningful.
    """

    def __init__(self, k=36, class_filter=None, name="errors", from_logits=False, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.k = _check_positive_int("k", k)
        self.class_filter = (
            None if class_filter is None
            else _check_positive_int("class_filter", class_filter, minimum=0)
        )
        self.from_logits = bool(from_logits)
        slots = (self.k,)
        self.confidence = self.add_variable(slots, "zeros", dtype="float32", name="confidence")
        self.index = self.add_variable(slots, "zeros", dtype="int32", name="index")
        self.true = self.add_variable(slots, "zeros", dtype="int32", name="true")
        self.pred = self.add_variable(slots, "zeros", dtype="int32", name="pred")
        self.seen = self.add_variable((), "zeros", dtype="int32", name="seen")
        self.count = self.add_variable((), "zeros", dtype="float32", name="count")
        self.confidence.assign(-ops.ones(slots))  # empty slots have confidence -1

    def reset_state(self):
        super().reset_state()
        self.confidence.assign(-ops.ones((self.k,)))

    def update_state(self, y_true, y_pred, sample_weight=None):
        true, pred, probs = _labels_and_predictions(y_true, y_pred, self.from_logits)
        size = ops.shape(true)[0]
        wrong = ops.not_equal(true, pred)
        if self.class_filter is not None:
            wrong = ops.logical_and(
                wrong, ops.logical_or(ops.equal(true, self.class_filter),
                                      ops.equal(pred, self.class_filter))
            )
        confidence = ops.where(wrong, ops.max(probs, axis=-1), -1.0)
        index = self.seen + ops.arange(size, dtype="int32")
        all_conf = ops.concatenate([self.confidence, confidence])
        best_conf, best = ops.top_k(all_conf, self.k)
        self.confidence.assign(best_conf)
        self.index.assign(ops.take(ops.concatenate([self.index, index]), best))
        self.true.assign(ops.take(ops.concatenate([self.true, true]), best))
        self.pred.assign(ops.take(ops.concatenate([self.pred, pred]), best))
        self.seen.assign(self.seen + ops.cast(size, "int32"))
        self.count.assign(self.count + ops.sum(ops.cast(wrong, "float32")))

    def result(self):
        return ops.copy(self.count)  # a value, not the variable itself

    def mistakes(self) -> list[tuple[int, int, int, float]]:
        """Filled slots as ``(index, true, pred, confidence)``, most confident first."""
        conf = self.confidence.numpy()
        columns = [v.numpy() for v in (self.index, self.true, self.pred)]
        return [
            (int(columns[0][i]), int(columns[1][i]), int(columns[2][i]), float(conf[i]))
            for i in range(self.k) if conf[i] >= 0
        ]

    def samples_seen(self) -> int:
        """Number of samples seen since the last reset (mistaken or not)."""
        return int(self.seen.numpy())

    def get_config(self):
        return {**super().get_config(), "k": self.k, "class_filter": self.class_filter,
                "from_logits": self.from_logits}


class MetricSummaryCallback(TensorBoardCallback):
    """Base for callbacks that turn one of the metrics above into summaries.

    Subclasses set ``metric_type`` and implement ``_write(subdir, step)``, which reads
    the metric's state; this class decides when (epochs with validation, ``every``)
    and skips, with one warning, a metric that saw no samples.
    """

    metric_type: type = keras.metrics.Metric

    def __init__(self, log_dir, metric, class_names=None, every=1):
        super().__init__(log_dir)
        if not isinstance(metric, self.metric_type):
            raise ValueError(
                f"Invalid value for argument `metric`. Received: metric={metric!r}. "
                f"Expected a callbacks.validation_metrics.{self.metric_type.__name__} "
                "instance, the one the model is compiled with."
            )
        num_classes = getattr(metric, "num_classes", None)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if num_classes is not None and len(class_names) != num_classes:
                raise ValueError(
                    f"Invalid value for argument `class_names`. Received: {len(class_names)} "
                    f"names. Expected one name per class ({num_classes})."
                )
        self.metric = metric
        self.class_names = class_names
        self.every = _check_positive_int("every", every)
        self._warned_empty = False

    def class_name(self, i: int) -> str:
        names = self.class_names
        return names[i] if names is not None and 0 <= i < len(names) else str(i)

    def on_train_begin(self, logs=None):
        self._warned_empty = False

    def _has_samples(self) -> bool:
        if self.metric.samples_seen() > 0:
            return True
        if not self._warned_empty:
            self._warned_empty = True
            warnings.warn(
                f"{type(self).__name__}: metric '{self.metric.name}' saw no samples, so "
                "nothing was logged. Compile the model with it: "
                "model.compile(..., metrics=[..., metric]).",
                RuntimeWarning,
                stacklevel=3,
            )
        return False

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        if "val_loss" not in (logs or {}):
            return
        last = (self.params or {}).get("epochs")
        if (epoch + 1) % self.every and epoch + 1 != last:
            return
        if self._has_samples():
            self._write("validation", epoch)
            for writer in self._open.values():
                writer.flush()

    def _log_test(self, step, **kwargs):
        """Writes the metric's current state (after ``model.evaluate``) under ``test``."""
        if not self._has_samples():
            return None
        try:
            return self._write("test", step, **kwargs)
        finally:
            self.close_writers()

    def _write(self, subdir, step, **kwargs):
        raise NotImplementedError
