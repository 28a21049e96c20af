"""Precision-recall curves in TensorBoard's PR Curves tab, from Keras's own validation pass.

``PrecisionRecallCounts`` is a Keras metric: per class (one-vs-rest) it counts how many
positives and negatives fall in each of ``num_thresholds`` confidence buckets, bucket
``floor(p * (num_thresholds - 1))``, exactly as ``tensorboard.plugins.pr_curve.summary.pb``
buckets them. Memory is bounded (2 x classes x thresholds counts); compile the model with it
and Keras updates it in its train/test steps (any ``steps_per_execution``, any strategy) and
resets it each epoch and each ``evaluate``. ``result()`` is the macro average precision
(the area under the step-wise PR curve, over the classes present), logged as ``pr_auc``.

``PRCurves`` turns the counts into one curve per class, tag ``pr_curves/<class>`` (run
``validation`` every ``every`` epochs, ``test`` from ``log_test``), written in the plugin's
own format (``pr_curve.summary.raw_data_pb``). A binary model (one sigmoid output,
``num_classes=1``) gets the single curve of its positive class.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .base import never_raise
from .per_class import sanitize
from .text import check_int, invalid_argument_text
from .validation_metrics import MetricSummaryCallback

TAG_PREFIX = "pr_curves"
DEFAULT_THRESHOLDS = 201  # TensorBoard's own default: thresholds 0, 0.005, ..., 1
_MINIMUM_COUNT = 1e-7  # as pr_curve.summary: 0/0 precision or recall is 0


def pr_curve_tag(class_name) -> str:
    """Tag of one class's curve, e.g. ``pr_curves/T-shirt_top``: one group in the PR Curves tab."""
    return f"{TAG_PREFIX}/{sanitize(class_name)}"


def curves_from_buckets(positives, negatives) -> dict[str, np.ndarray]:
    """Per-bucket counts (..., T) -> the plugin's six series per threshold ``i / (T - 1)``:
    tp, fp, tn, fn (predictions with bucket >= i count as positive), precision, recall."""
    positives = np.asarray(positives, np.float64)
    negatives = np.asarray(negatives, np.float64)
    tp = np.cumsum(positives[..., ::-1], axis=-1)[..., ::-1]
    fp = np.cumsum(negatives[..., ::-1], axis=-1)[..., ::-1]
    tn, fn = fp[..., :1] - fp, tp[..., :1] - tp
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "precision": tp / np.maximum(_MINIMUM_COUNT, tp + fp),
            "recall": tp / np.maximum(_MINIMUM_COUNT, tp + fn)}


def average_precision(precision, recall) -> np.ndarray:
    """Step-wise area under PR curves (..., T) ordered by rising threshold: the sum of
    ``(recall[i] - recall[i + 1]) * precision[i]``, with recall 0 past the last threshold."""
    recall = np.asarray(recall, np.float64)
    drop = recall - np.concatenate([recall[..., 1:], np.zeros_like(recall[..., :1])], axis=-1)
    return np.sum(drop * np.asarray(precision, np.float64), axis=-1)


@keras.saving.register_keras_serializable(package="trainer")
class PrecisionRecallCounts(keras.metrics.Metric):
    """Positives and negatives per class and confidence bucket; ``result()`` is the macro AP.

    ``num_classes`` >= 2: sparse integer labels ``(B,)`` or ``(B, 1)`` and class scores
    ``(B, C)``, one curve per class. ``num_classes=1``: a binary model, labels 0/1 and one
    sigmoid probability ``(B, 1)``, one curve (the positive class). Sample weights are ignored.
    """

    def __init__(self, num_classes, num_thresholds=DEFAULT_THRESHOLDS, name="pr_auc",
                 from_logits=False, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.num_thresholds = check_int("num_thresholds", num_thresholds, minimum=2)
        self.from_logits = bool(from_logits)
        # [negatives, positives] x class x bucket; float32 like ConfusionMatrix (exact to 2**24).
        self.buckets = self.add_variable((2, self.num_classes, self.num_thresholds), "zeros",
                                         dtype="float32", name="buckets")

    def _scores_and_positives(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        if self.num_classes == 1:
            scores = ops.reshape(y_pred, (-1, 1))
            scores = ops.sigmoid(scores) if self.from_logits else scores
            return scores, ops.cast(ops.reshape(ops.equal(labels, 1), (-1, 1)), "int32")
        scores = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        # one_hot of an out-of-range label is all zeros: a negative for every class.
        return scores, ops.cast(ops.one_hot(labels, self.num_classes), "int32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        scores, positives = self._scores_and_positives(y_true, y_pred)
        t, c = self.num_thresholds, self.num_classes
        bucket = ops.clip(ops.cast(ops.floor(scores * (t - 1)), "int32"), 0, t - 1)
        segment = positives * (c * t) + ops.arange(c, dtype="int32") * t + bucket
        segment = ops.reshape(segment, (-1,))
        counts = ops.segment_sum(ops.ones_like(segment, dtype="float32"), segment, num_segments=2 * c * t)
        self.buckets.assign(self.buckets + ops.reshape(counts, (2, c, t)))

    def result(self):
        negatives, positives = self.buckets[0], self.buckets[1]

        def reverse_cumsum(x):
            return ops.flip(ops.cumsum(ops.flip(x, axis=-1), axis=-1), axis=-1)

        tp, fp = reverse_cumsum(positives), reverse_cumsum(negatives)
        present = tp[:, 0]
        precision = tp / ops.maximum(tp + fp, _MINIMUM_COUNT)
        recall = tp / ops.maximum(ops.expand_dims(present, 1), _MINIMUM_COUNT)
        drop = recall - ops.concatenate([recall[:, 1:], ops.zeros_like(recall[:, :1])], axis=1)
        ap = ops.sum(drop * precision, axis=1)
        has = ops.cast(present > 0, "float32")
        return ops.sum(ap * has) / ops.maximum(ops.sum(has), 1.0)

    def bucket_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(positives, negatives), each (curves, num_thresholds) int64: per confidence bucket."""
        counts = np.rint(self.buckets.numpy()).astype(np.int64)
        return counts[1], counts[0]

    def curves(self) -> dict[str, np.ndarray]:
        """The six series of ``curves_from_buckets`` for every class, each (curves, thresholds)."""
        return curves_from_buckets(*self.bucket_counts())

    def samples_seen(self) -> int:
        positives, negatives = self.bucket_counts()
        return int(positives[0].sum() + negatives[0].sum())

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_thresholds": self.num_thresholds, "from_logits": self.from_logits}


def curve_names(num_curves: int, class_names) -> list[str]:
    """One name per curve: the class names (for a binary model, the positive class's: the
    second of two names, or the only one)."""
    if class_names is None:
        return ["1"] if num_curves == 1 else [str(i) for i in range(num_curves)]
    names = [str(c) for c in class_names]
    if num_curves == 1 and len(names) == 2:
        return names[1:]
    if len(names) != num_curves:
        expected = "one name per class" + (" (or two: negative, positive)" if num_curves == 1 else "")
        raise ValueError(invalid_argument_text("class_names", class_names, f"{expected}, {num_curves}"))
    return names


class PRCurves(MetricSummaryCallback):
    """Writes one PR curve per class, read from a compiled ``PrecisionRecallCounts``."""

    metric_type = PrecisionRecallCounts

    def __init__(self, log_dir: str, metric: PrecisionRecallCounts, class_names: list[str] | None = None,
                 every: int = 1):
        super().__init__(log_dir, metric, None, every)
        self.names = curve_names(metric.num_classes, class_names)
        tags = [pr_curve_tag(n) for n in self.names]
        if len(set(tags)) != len(tags):
            raise ValueError(invalid_argument_text(
                "class_names", class_names, f"names that stay distinct as tags (sanitized: {tags})"))
        self.tags = tags

    def _write(self, subdir, step):
        import tensorflow as tf
        from tensorboard.plugins.pr_curve import summary as pr_summary

        curves = self.metric.curves()
        with self.writer(subdir).as_default():
            for i, (name, tag) in enumerate(zip(self.names, self.tags)):
                proto = pr_summary.raw_data_pb(
                    tag, *(curves[k][i] for k in ("tp", "fp", "tn", "fn", "precision", "recall")),
                    num_thresholds=self.metric.num_thresholds, display_name=name,
                    description=f"Class {name} against the rest (one-vs-rest).",
                )
                # raw_data_pb names the value "<name>/pr_curves"; one group "pr_curves/<class>"
                # keeps every class's curve together in the PR Curves tab.
                for value in proto.value:
                    value.tag = tag
                tf.summary.experimental.write_raw_pb(proto.SerializeToString(), step=step)
        return None

    @never_raise
    def log_test(self, step):
        """After ``model.evaluate(test)``: the curves of the test set under ``test``."""
        return self._log_test(step)
