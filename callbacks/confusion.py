"""Confusion-matrix image and most-confused pairs from the validation pass.

Tags (run ``validation`` each ``every`` epochs, ``test`` from ``log_test``): the image
``confusion_matrix`` (counts in cells, colours normalised per true class) and the text
``confused_pairs`` (e.g. ``4 → 9: 23``).
"""

from __future__ import annotations

import numpy as np

from .base import never_raise
from .drawing import render_confusion
from .validation_metrics import ConfusionMatrix, MetricSummaryCallback

IMAGE_TAG = "confusion_matrix"
PAIRS_TAG = "confused_pairs"


def top_confused_pairs(counts, n=5) -> list[tuple[int, int, int]]:
    """The ``n`` largest off-diagonal cells as ``(true, pred, count)``, zeros left out."""
    counts = np.asarray(counts, dtype=np.int64)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    true, pred = np.nonzero(off)
    order = np.lexsort((pred, true, -off[true, pred]))[:n]
    return [(int(true[i]), int(pred[i]), int(off[true[i], pred[i]])) for i in order]


class ConfusionMatrixImage(MetricSummaryCallback):
    """Draws the confusion matrix held by a compiled ``ConfusionMatrix`` metric."""

    metric_type = ConfusionMatrix

    def __init__(self, log_dir: str, metric: ConfusionMatrix, class_names: list[str] | None = None,
                 every: int = 1, pairs: int = 5):
        super().__init__(log_dir, metric, class_names, every)
        self.pairs = pairs

    def _write(self, subdir, step):
        import tensorflow as tf

        counts = self.metric.counts()
        names = [self.class_name(i) for i in range(len(counts))]
        pairs = top_confused_pairs(counts, self.pairs)
        text = "\n".join(f"- {names[t]} → {names[p]}: {c}" for t, p, c in pairs)
        with self.writer(subdir).as_default():
            tf.summary.image(IMAGE_TAG, render_confusion(counts, names)[None], step=step)
            tf.summary.text(PAIRS_TAG, text or "No confusions.", step=step)
        return {
            "confusion_matrix": counts.tolist(),
            "confused_pairs": [
                {"true": names[t], "pred": names[p], "count": c} for t, p, c in pairs
            ],
        }

    @never_raise
    def log_test(self, step):
        """After ``model.evaluate(test)``: writes under ``test``, returns counts and pairs."""
        return self._log_test(step)
