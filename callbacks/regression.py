"""Regression: a predicted-vs-true scatter image from the validation pass itself.

``PredictionSample`` is a Keras metric that keeps the first ``k`` (true, predicted) pairs
seen since its last reset — bounded memory, no extra pass; ``PredictionScatter`` draws them.
"""

from __future__ import annotations

import keras
import numpy as np
from PIL import Image, ImageDraw

from callbacks.base import never_raise
from callbacks.drawing import BLACK, GREY, WHITE, font
from callbacks.text import check_int
from callbacks.validation_metrics import MetricSummaryCallback

TAG = "predicted_vs_true"


@keras.saving.register_keras_serializable(package="trainer")
class PredictionSample(keras.metrics.Metric):
    """The first ``k`` (y_true, y_pred) pairs of the current pass; ``result()`` is how many."""

    def __init__(self, k=1000, name="sampled", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.k = check_int("k", k, minimum=1)
        self.pairs = self.add_variable(shape=(k, 2), initializer="zeros", name="pairs", aggregation="none")
        self.seen = self.add_variable(shape=(), initializer="zeros", name="seen", dtype="int64", aggregation="none")

    def update_state(self, y_true, y_pred, sample_weight=None):
        from keras import ops

        true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
        n = ops.shape(true)[0]
        start = ops.cast(self.seen, "int32")
        index = start + ops.arange(n, dtype="int32")
        keep = index < self.k
        rows = ops.where(keep, index, self.k)  # rows past k fall off the end
        pairs = ops.concatenate([self.pairs.value, ops.zeros((1, 2))], axis=0)
        pairs = ops.scatter_update(pairs, ops.expand_dims(rows, 1), ops.stack([true, pred], axis=1))
        self.pairs.assign(pairs[: self.k])
        self.seen.assign(self.seen + ops.cast(n, "int64"))

    def result(self):
        return keras.ops.minimum(keras.ops.cast(self.seen, "float32"), float(self.k))

    def samples_seen(self) -> int:
        return int(self.seen.numpy())

    def sample(self) -> np.ndarray:
        """(n, 2) array of (true, predicted), n = min(k, samples seen)."""
        return self.pairs.numpy()[: min(self.k, self.samples_seen())]

    def reset_state(self):
        self.pairs.assign(np.zeros((self.k, 2), dtype=np.float32))
        self.seen.assign(0)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def render_scatter(pairs: np.ndarray, size: int = 480, margin: int = 56) -> np.ndarray:
    """Predicted (y) against true (x) values with the y = x diagonal, as an RGB array."""
    image = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(image)
    low = float(min(pairs.min(), 0.0) if pairs.size else 0.0)
    high = float(pairs.max() if pairs.size else 1.0)
    low, high = (low, high) if high > low else (low - 1.0, high + 1.0)
    span, inner = high - low, size - 2 * margin

    def to_px(tv, pv):
        return margin + (tv - low) / span * inner, size - margin - (pv - low) / span * inner

    draw.rectangle([margin, margin, size - margin, size - margin], outline=BLACK)
    draw.line([to_px(low, low), to_px(high, high)], fill=GREY, width=1)
    for t, p in pairs:
        x, y = to_px(float(t), float(p))
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
    small = font(12)
    for value in (low, high):
        draw.text(to_px(value, low)[0:1] + (size - margin + 6,), f"{value:.3g}", fill=BLACK, font=small, anchor="mt")
        draw.text((margin - 6, to_px(low, value)[1]), f"{value:.3g}", fill=BLACK, font=small, anchor="rm")
    draw.text((size / 2, size - 16), "true", fill=BLACK, font=font(14), anchor="mm")
    draw.text((24, size / 2), "pred", fill=BLACK, font=font(14), anchor="mm")
    return np.asarray(image)


class PredictionScatter(MetricSummaryCallback):
    """Each epoch: an image ``predicted_vs_true`` (validation writer) from ``PredictionSample``."""

    metric_type = PredictionSample

    def _write(self, subdir, step):
        import tensorflow as tf

        pairs = self.metric.sample()
        with self.writer(subdir).as_default():
            tf.summary.image(TAG, render_scatter(pairs)[None], step=step)
        return None

    @never_raise
    def log_test(self, step):
        """After ``model.evaluate(test)``: the same image under ``test``."""
        return self._log_test(step)
