"""Calibration: a reliability diagram and the expected calibration error, from the validation pass.

``CalibrationBins`` is a Keras metric: it sorts each prediction by its confidence (the
probability of the predicted class) into ``bins`` equal-width bins of [0, 1] and keeps, per
bin, the count, the sum of confidences and the number correct. ``result()`` is the expected
calibration error, ECE = sum over bins of (n_b / N) * |accuracy_b - confidence_b|, so Keras
logs it as ``ece`` / ``val_ece`` and any scalar logger (Keras's TensorBoard callback,
``callbacks.Scalars``) writes ``epoch_ece``. A binary model (one sigmoid output) predicts
class 1 when p > 0.5, as Keras's BinaryAccuracy, with confidence max(p, 1 - p).

``ReliabilityDiagram`` draws the image ``reliability_diagram`` (run ``validation`` every
``every`` epochs, ``test`` from ``log_test``): accuracy per confidence bin against the
diagonal of perfect calibration, the count of each bin above its bar, the ECE in the title.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .base import never_raise
from .drawing import BLACK, GREY, Axes, font
from .text import check_int
from .validation_metrics import MetricSummaryCallback

IMAGE_TAG = "reliability_diagram"
DEFAULT_BINS = 10
_BAR, _GAP = (31, 119, 180), (255, 127, 14)


def expected_calibration_error(counts, confidence_sums, correct) -> float:
    """ECE from per-bin counts, sums of confidences and numbers correct (0 with no samples)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return 0.0
    return float(np.sum(np.abs(np.asarray(correct, np.float64) - np.asarray(confidence_sums, np.float64))) / total)


def _confidence_and_correct(y_true, y_pred, from_logits):
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    y_pred = ops.cast(y_pred, "float32")
    if y_pred.shape[-1] == 1:  # binary: one probability of class 1
        p = ops.reshape(y_pred, (-1,))
        p = ops.sigmoid(p) if from_logits else p
        predicted = ops.cast(p > 0.5, "int32")
        return ops.maximum(p, 1.0 - p), ops.equal(predicted, labels)
    probs = ops.softmax(y_pred, axis=-1) if from_logits else y_pred
    predicted = ops.cast(ops.argmax(probs, axis=-1), "int32")
    return ops.max(probs, axis=-1), ops.equal(predicted, labels)


@keras.saving.register_keras_serializable(package="trainer")
class CalibrationBins(keras.metrics.Metric):
    """Count, confidence sum and number correct per confidence bin; ``result()`` is the ECE.

    Sparse integer labels ``(B,)`` or ``(B, 1)``; class scores ``(B, C)``, or one sigmoid
    probability ``(B, 1)`` for a binary model. Sample weights are ignored.
    """

    def __init__(self, bins=DEFAULT_BINS, name="ece", from_logits=False, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.bins = check_int("bins", bins, minimum=1)
        self.from_logits = bool(from_logits)
        # rows: count, sum of confidences, number correct; float32 (counts exact to 2**24).
        self.table = self.add_variable((3, self.bins), "zeros", dtype="float32", name="table")

    def update_state(self, y_true, y_pred, sample_weight=None):
        confidence, correct = _confidence_and_correct(y_true, y_pred, self.from_logits)
        index = ops.clip(ops.cast(ops.floor(confidence * self.bins), "int32"), 0, self.bins - 1)
        rows = ops.stack([ops.ones_like(confidence), confidence, ops.cast(correct, "float32")], axis=0)
        sums = ops.segment_sum(ops.transpose(rows), index, num_segments=self.bins)  # (bins, 3)
        self.table.assign(self.table + ops.transpose(sums))

    def result(self):
        count, confidence, correct = self.table[0], self.table[1], self.table[2]
        return ops.sum(ops.abs(correct - confidence)) / ops.maximum(ops.sum(count), 1.0)

    def reliability(self) -> dict[str, np.ndarray]:
        """Per bin: ``edges`` (bins + 1), ``count`` (int64), mean ``confidence`` and
        ``accuracy`` (NaN for an empty bin), and ``ece``."""
        count, confidence_sum, correct = self.table.numpy().astype(np.float64)
        filled = count > 0
        mean = np.full(self.bins, np.nan)
        accuracy = np.full(self.bins, np.nan)
        mean[filled], accuracy[filled] = confidence_sum[filled] / count[filled], correct[filled] / count[filled]
        return {"edges": np.linspace(0.0, 1.0, self.bins + 1), "count": np.rint(count).astype(np.int64),
                "confidence": mean, "accuracy": accuracy,
                "ece": expected_calibration_error(count, confidence_sum, correct)}

    def samples_seen(self) -> int:
        return int(np.rint(self.table.numpy()[0].sum()))

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "from_logits": self.from_logits}


def render_reliability(reliability: dict, size=(640, 480)) -> np.ndarray:
    """The reliability diagram of ``CalibrationBins.reliability()`` as an RGB uint8 array: a
    bar per bin up to its accuracy, the gap to its mean confidence in orange, the diagonal,
    and each bin's count above it."""
    edges, count = reliability["edges"], reliability["count"]
    title = f"reliability (ECE {reliability['ece']:.4f}, {int(count.sum()):,} samples)"
    axes = Axes(size, title, "confidence", "accuracy", [i / 5 for i in range(6)], (0.0, 1.0))
    for tick in np.linspace(0.0, 1.0, 6):
        axes.xtick(tick, f"{tick:.1f}")
    small = font(11)
    for b in range(len(count)):
        if count[b] == 0:
            continue
        x0, x1 = axes.x(edges[b]) + 1, axes.x(edges[b + 1]) - 1
        accuracy, confidence = reliability["accuracy"][b], reliability["confidence"][b]
        axes.draw.rectangle([x0, axes.y(accuracy), x1, axes.y(0)], fill=_BAR)
        low, high = sorted((accuracy, confidence))
        if axes.y(low) - axes.y(high) >= 1:
            axes.draw.rectangle([x0, axes.y(high), x1, axes.y(low)], outline=_GAP, width=2)
        axes.draw.text(((x0 + x1) / 2, axes.y(max(accuracy, confidence)) - 3), f"{count[b]:,}",
                       font=small, fill=BLACK, anchor="md")
    axes.draw.line([(axes.x(0), axes.y(0)), (axes.x(1), axes.y(1))], fill=GREY, width=1)
    axes.legend([("accuracy", _BAR), ("gap to confidence", _GAP)])
    return np.asarray(axes.image)


class ReliabilityDiagram(MetricSummaryCallback):
    """Draws the reliability diagram held by a compiled ``CalibrationBins`` metric."""

    metric_type = CalibrationBins

    def __init__(self, log_dir: str, metric: CalibrationBins, every: int = 1):
        super().__init__(log_dir, metric, None, every)

    def _write(self, subdir, step):
        import tensorflow as tf

        with self.writer(subdir).as_default():
            tf.summary.image(IMAGE_TAG, render_reliability(self.metric.reliability())[None], step=step)
        return None

    @never_raise
    def log_test(self, step):
        """After ``model.evaluate(test)``: the test set's diagram under ``test``."""
        return self._log_test(step)
