import os
import re
import warnings

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.util import tensor_util

from callbacks.per_class import (
    PerClassMetrics,
    class_tag,
    markdown_table,
    per_class_scores,
    sanitize,
)
from callbacks.validation_metrics import ConfusionMatrix, WorstMistakes

# rows true, columns predicted; class 2 is never predicted, class 3 never present
COUNTS = np.array([[5, 1, 0, 0], [2, 6, 0, 2], [0, 3, 0, 0], [0, 0, 0, 0]])


def read_run(path):
    """{tag: [(step, ndarray), ...]} for every tensor summary in one run directory."""
    if not os.path.isdir(path):
        return {}
    acc = plugin_event_accumulator.EventAccumulator(str(path), size_guidance={"tensors": 0})
    acc.Reload()
    return {
        tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
    }


def metric_with(counts):
    """A ConfusionMatrix whose state is ``counts``, driven through update_state."""
    metric = ConfusionMatrix(len(counts))
    true, pred = np.nonzero(counts)
    reps = counts[true, pred]
    eye = np.eye(len(counts), dtype="float32")
    metric.update_state(np.repeat(true, reps), eye[np.repeat(pred, reps)])
    return metric


def test_per_class_scores_by_hand():
    s = per_class_scores(COUNTS)
    np.testing.assert_allclose(s["precision"], [5 / 7, 6 / 10, 0, 0])
    np.testing.assert_allclose(s["recall"], [5 / 6, 6 / 10, 0, 0])
    np.testing.assert_allclose(s["f1"], [10 / 13, 12 / 20, 0, 0])
    np.testing.assert_array_equal(s["support"], [6, 10, 3, 0])


def test_metric_result_is_the_mean_of_per_class_f1():
    metric = metric_with(COUNTS)
    np.testing.assert_array_equal(metric.counts(), COUNTS)
    assert float(metric.result()) == pytest.approx((10 / 13 + 12 / 20) / 4)


def test_class_tag_and_markdown_table():
    assert class_tag("precision", "T-shirt/top") == "precision/T-shirt_top"
    assert class_tag("f1", " ankle boot ") == "f1/ankle_boot"
    assert class_tag("recall", 3) == "recall/3"
    assert sanitize("%%") == "_"
    table = markdown_table(["a", "b"], per_class_scores([[3, 1], [0, 4]]))
    assert table.splitlines() == [
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
        "| a | 1.000 | 0.750 | 0.857 | 4 |",
        "| b | 0.800 | 1.000 | 0.889 | 4 |",
        "| **macro avg** | **0.900** | **0.875** | **0.873** | **8** |",
    ]


def run_epochs(callback, logs_per_epoch):
    callback.set_params({"epochs": len(logs_per_epoch), "steps": 1})
    callback.on_train_begin()
    for epoch, logs in enumerate(logs_per_epoch):
        callback.on_epoch_end(epoch, logs)
    callback.on_train_end()


def test_writes_per_class_scalars_table_and_layout(tmp_path):
    names = ["cat", "dog", "T-shirt/top", "bird"]
    callback = PerClassMetrics(tmp_path, metric_with(COUNTS), class_names=names)
    run_epochs(callback, [{"loss": 1.0}, {"loss": 1.0, "val_loss": 2.0}])

    validation = read_run(tmp_path / "validation")
    tags = {f"{m}/{n}" for m in ("precision", "recall", "f1")
            for n in ("cat", "dog", "T-shirt_top", "bird")}
    tags |= {"macro/precision", "macro/recall", "macro/f1", "per_class_metrics"}
    assert set(validation) == tags
    assert all([step for step, _ in v] == [1] for v in validation.values())  # epoch index
    assert float(validation["recall/cat"][0][1]) == pytest.approx(5 / 6)
    assert float(validation["macro/f1"][0][1]) == pytest.approx((10 / 13 + 12 / 20) / 4)
    text = validation["per_class_metrics"][0][1].item().decode()
    assert "| T-shirt/top | 0.000 | 0.000 | 0.000 | 3 |" in text

    root = read_run(tmp_path)
    assert set(root) == {"custom_scalars__config__"}
    layout = layout_pb2.Layout()
    layout.ParseFromString(root["custom_scalars__config__"][0][1].item())
    charts = {c.title: c.multiline.tag for c in layout.category[0].chart}
    assert set(charts) == {"precision", "recall", "f1"}
    for metric, regexes in charts.items():  # each chart matches one line per class + macro
        matched = {t for t in tags if any(re.match(r, t) for r in regexes)}
        assert matched == {f"{metric}/{n}" for n in ("cat", "dog", "T-shirt_top", "bird")} | {
            f"macro/{metric}"}


def test_log_test_writes_under_test_and_returns_numbers(tmp_path):
    callback = PerClassMetrics(tmp_path, metric_with(COUNTS))
    result = callback.log_test(7)
    assert result["classes"]["1"] == {"precision": 0.6, "recall": 0.6, "f1": 0.6, "support": 10}
    assert result["macro"]["recall"] == pytest.approx((5 / 6 + 0.6) / 4)
    test = read_run(tmp_path / "test")
    assert len(test) == 3 * 4 + 3 + 1 and test["f1/0"][0][0] == 7
    assert not os.path.exists(tmp_path / "validation")


def test_metric_without_updates_warns_once_and_writes_nothing(tmp_path):
    callback = PerClassMetrics(tmp_path, ConfusionMatrix(3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_epochs(callback, [{"val_loss": 1.0}] * 3)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "compile the model with it" in messages[0].lower()
    assert read_run(tmp_path / "validation") == {} and read_run(tmp_path) == {}


def test_constructor_errors():
    with pytest.raises(ValueError, match="`metric`.*ConfusionMatrix"):
        PerClassMetrics("/tmp/x", WorstMistakes())
    with pytest.raises(ValueError, match="`class_names`.*one name per class"):
        PerClassMetrics("/tmp/x", ConfusionMatrix(3), class_names=["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        PerClassMetrics("/tmp/x", ConfusionMatrix(2), class_names=["a b", "a/b"])
