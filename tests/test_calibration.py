"""Calibration: the ECE of the compiled bins against a case computed by hand, the reliability
diagram's bars, and the callback's images read back."""

from __future__ import annotations

import numpy as np
import pytest

from callbacks.calibration import (
    CalibrationBins,
    ReliabilityDiagram,
    expected_calibration_error,
    render_reliability,
)
from callbacks.pr_curves import PrecisionRecallCounts
from tests.test_confusion import decode
from tests.test_per_class import read_run

# Five predictions over three classes; confidence = the top probability.
PROBS = np.array([[0.95, 0.05, 0.0],   # true 0: right, 0.95 -> bin 9
                  [0.92, 0.08, 0.0],   # true 1: wrong, 0.92 -> bin 9
                  [0.18, 0.72, 0.10],  # true 1: right, 0.72 -> bin 7
                  [0.30, 0.28, 0.42],  # true 2: right, 0.42 -> bin 4
                  [0.46, 0.34, 0.20]],  # true 1: wrong, 0.46 -> bin 4
                 dtype="float32")
LABELS = np.array([0, 1, 1, 2, 1])
# bin 9: |1 right - (0.95 + 0.92)| = 0.87; bin 7: |1 - 0.72| = 0.28; bin 4: |1 - (0.42 + 0.46)| = 0.12
ECE = (0.87 + 0.28 + 0.12) / 5


def test_ece_by_hand():
    metric = CalibrationBins()
    metric.update_state(LABELS[:2, None], PROBS[:2])
    metric.update_state(LABELS[2:], PROBS[2:])
    assert float(metric.result()) == pytest.approx(ECE, abs=1e-6)
    r = metric.reliability()
    assert r["ece"] == pytest.approx(ECE, abs=1e-6)
    assert r["count"].tolist() == [0, 0, 0, 0, 2, 0, 0, 1, 0, 2]
    np.testing.assert_allclose(r["accuracy"][[4, 7, 9]], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(r["confidence"][[4, 7, 9]], [0.44, 0.72, 0.935], rtol=1e-6)
    assert np.isnan(r["accuracy"][0]) and metric.samples_seen() == 5
    assert expected_calibration_error([2, 1, 2], [1.87, 0.72, 0.88], [1, 1, 1]) == pytest.approx(ECE)
    assert expected_calibration_error([0, 0], [0, 0], [0, 0]) == 0.0
    metric.reset_state()
    assert metric.samples_seen() == 0 and float(metric.result()) == 0.0


def test_binary_and_logits():
    """One sigmoid output: class 1 when p > 0.5, confidence max(p, 1 - p)."""
    metric = CalibrationBins()
    metric.update_state(np.array([1.0, 0.0, 1.0]), np.array([[0.9], [0.2], [0.4]], dtype="float32"))
    # right at 0.9 and 0.8, wrong at 0.6 (predicted 0): (0.1 + 0.2 + 0.6) / 3
    assert float(metric.result()) == pytest.approx(0.3, abs=1e-6)
    logits = CalibrationBins(from_logits=True)
    logits.update_state(LABELS, np.log(np.maximum(PROBS, 1e-12)))
    assert float(logits.result()) == pytest.approx(ECE, abs=1e-5)
    with pytest.raises(ValueError, match="`bins`"):
        CalibrationBins(bins=0)


def _bars(image, colour=(31, 119, 180)):
    """{first column: height} of each run of columns holding bar-coloured pixels."""
    mask = np.all(image == colour, axis=-1)
    heights = mask.sum(axis=0)
    runs, start = {}, None
    for x, h in enumerate(np.append(heights, 0)):
        if h and start is None:
            start = x
        elif not h and start is not None:
            runs[start] = int(heights[start + (x - start) // 2])
            start = None
    return runs


def test_reliability_image_bars():
    reliability = {"edges": np.linspace(0, 1, 11), "count": np.array([0, 0, 0, 0, 10, 0, 0, 0, 3, 0]),
                   "accuracy": np.array([np.nan] * 4 + [1.0] + [np.nan] * 3 + [0.5, np.nan]),
                   "confidence": np.array([np.nan] * 4 + [0.45] + [np.nan] * 3 + [0.85, np.nan]), "ece": 0.4}
    image = render_reliability(reliability)
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    bars = _bars(image[60:])  # below the legend's swatch
    assert len(bars) == 2, bars  # the two filled bins only
    (x4, h4), (x8, h8) = sorted(bars.items())
    assert h4 == pytest.approx(2 * h8, rel=0.05)  # accuracy 1.0 against 0.5
    assert (x8 - x4) / (640 - 72 - 24) == pytest.approx(0.4, abs=0.01)  # bins 4 and 8 of 10
    assert np.all(image == (255, 127, 14), axis=-1).sum() > 100  # the gap to the confidence


def test_callback_writes_the_diagram(tmp_path):
    metric = CalibrationBins()
    metric.update_state(LABELS, PROBS)
    callback = ReliabilityDiagram(tmp_path, metric)
    callback.set_params({"epochs": 2, "steps": 1})
    callback.on_train_begin()
    callback.on_epoch_end(0, {"loss": 1.0})  # no validation this epoch: nothing
    callback.on_epoch_end(1, {"loss": 1.0, "val_loss": 1.0})
    callback.on_train_end()
    callback.log_test(5)
    validation, test = read_run(tmp_path / "validation"), read_run(tmp_path / "test")
    assert set(validation) == {"reliability_diagram"} == set(test)
    assert [s for s, _ in validation["reliability_diagram"]] == [1] and test["reliability_diagram"][0][0] == 5
    assert decode(test["reliability_diagram"][0][1]).shape == (480, 640, 3)
    with pytest.raises(ValueError, match="`metric`"):
        ReliabilityDiagram(tmp_path, PrecisionRecallCounts(3))


def test_an_empty_metric_warns_once_and_writes_nothing(tmp_path):
    callback = ReliabilityDiagram(tmp_path, CalibrationBins(), every=1)
    callback.set_params({"epochs": 2, "steps": 1})
    callback.on_train_begin()
    with pytest.warns(RuntimeWarning, match="saw no samples") as caught:
        callback.on_epoch_end(0, {"val_loss": 1.0})
        callback.on_epoch_end(1, {"val_loss": 1.0})
    assert len(caught) == 1
    callback.on_train_end()
    assert read_run(tmp_path / "validation") == {}
