"""Per-class precision, recall and F1 from the validation pass, one chart per metric.

Tags (run ``validation`` each epoch, ``test`` from ``log_test``):
``precision/<class>``, ``recall/<class>``, ``f1/<class>``, ``macro/precision``,
``macro/recall``, ``macro/f1`` and the text ``per_class_metrics`` (a markdown table).
A custom-scalars layout in the root run puts each metric in one multiline chart with a
line per class (and the macro average).
"""

from __future__ import annotations

import re

import numpy as np

from .base import never_raise
from .validation_metrics import ConfusionMatrix, MetricSummaryCallback

METRICS = ("precision", "recall", "f1")
TABLE_TAG = "per_class_metrics"


def _ratio(num, den):
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(counts) -> dict[str, np.ndarray]:
    """precision, recall, f1 (float64) and support (int64) per class; 0/0 is 0."""
    counts = np.asarray(counts, dtype=np.int64)
    tp = np.diag(counts)
    predicted, support = counts.sum(axis=0), counts.sum(axis=1)
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, support),
        "f1": _ratio(2 * tp, predicted + support),
        "support": support,
    }


def sanitize(name: str) -> str:
    """A class name usable in a tag: runs of other characters than ``[\\w.-]`` become ``_``."""
    return re.sub(r"[^\w.\-]+", "_", str(name)).strip("_") or "_"


def class_tag(metric: str, name: str) -> str:
    """Tag of one class's value of ``metric``, e.g. ``class_tag("f1", "T-shirt/top")``."""
    return f"{metric}/{sanitize(name)}"


def macro_tag(metric: str) -> str:
    return f"macro/{metric}"


def markdown_table(class_names, scores) -> str:
    """Markdown table of ``per_class_scores`` output, with a macro-average row."""
    lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for i, name in enumerate(class_names):
        values = " | ".join(f"{scores[m][i]:.3f}" for m in METRICS)
        lines.append(f"| {name} | {values} | {int(scores['support'][i])} |")
    macro = " | ".join(f"**{np.mean(scores[m]):.3f}**" for m in METRICS)
    lines.append(f"| **macro avg** | {macro} | **{int(np.sum(scores['support']))}** |")
    return "\n".join(lines)


def layout():
    """Custom-scalars layout: one multiline chart per metric (all classes + macro)."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    charts = [
        layout_pb2.Chart(
            title=metric,
            multiline=layout_pb2.MultilineChartContent(
                tag=[f"^{re.escape(metric)}/", f"^{re.escape(macro_tag(metric))}$"]
            ),
        )
        for metric in METRICS
    ]
    return layout_pb2.Layout(category=[layout_pb2.Category(title="per-class", chart=charts)])


class PerClassMetrics(MetricSummaryCallback):
    """Writes per-class precision/recall/F1 read from a compiled ``ConfusionMatrix``."""

    metric_type = ConfusionMatrix

    def __init__(self, log_dir: str, metric: ConfusionMatrix, class_names: list[str] | None = None):
        super().__init__(log_dir, metric, class_names)
        self.names = [self.class_name(i) for i in range(metric.num_classes)]
        tags = [sanitize(n) for n in self.names]
        if len(set(tags)) != len(tags) or "_" in tags:
            raise ValueError(
                f"Invalid value for argument `class_names`. Received: "
                f"class_names={class_names!r}. Expected names that stay distinct and "
                f"non-empty as tags (sanitized: {tags})."
            )
        self._layout_written = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._layout_written = False

    def _write_layout(self):
        import tensorflow as tf
        from tensorboard.plugins.custom_scalar import summary as cs_summary

        with self.writer("").as_default():
            tf.summary.experimental.write_raw_pb(
                cs_summary.pb(layout()).SerializeToString(), step=0
            )
        self.writer("").flush()
        self._layout_written = True

    def _write(self, subdir, step):
        import tensorflow as tf

        if not self._layout_written:
            self._write_layout()
        scores = per_class_scores(self.metric.counts())
        with self.writer(subdir).as_default():
            for metric in METRICS:
                for name, value in zip(self.names, scores[metric]):
                    tf.summary.scalar(class_tag(metric, name), float(value), step=step)
                tf.summary.scalar(macro_tag(metric), float(np.mean(scores[metric])), step=step)
            tf.summary.text(TABLE_TAG, markdown_table(self.names, scores), step=step)
        return {
            "classes": {
                name: {**{m: float(scores[m][i]) for m in METRICS},
                       "support": int(scores["support"][i])}
                for i, name in enumerate(self.names)
            },
            "macro": {m: float(np.mean(scores[m])) for m in METRICS},
        }

    @never_raise
    def log_test(self, step):
        """After ``model.evaluate(test)``: writes under ``test`` and returns the numbers."""
        return self._log_test(step)
