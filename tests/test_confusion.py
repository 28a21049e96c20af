import io

import numpy as np
import pytest
from PIL import Image

from callbacks.confusion import ConfusionMatrixImage, top_confused_pairs
from callbacks.drawing import render_confusion
from callbacks.validation_metrics import WorstMistakes
from tests.test_per_class import metric_with, read_run


def decode(image_tensor):
    """The PNG of a tf.summary.image tensor ([width, height, png, ...])."""
    width, height, png = image_tensor[:3]
    image = Image.open(io.BytesIO(png))
    assert image.size == (int(width), int(height))
    return np.asarray(image.convert("RGB"))


def test_top_confused_pairs():
    counts = np.array([[9, 2, 7], [2, 5, 0], [23, 0, 4]])
    assert top_confused_pairs(counts, n=3) == [(2, 0, 23), (0, 2, 7), (0, 1, 2)]
    assert top_confused_pairs(counts, n=10) == [(2, 0, 23), (0, 2, 7), (0, 1, 2), (1, 0, 2)]
    assert top_confused_pairs(np.diag([3, 4])) == []


def test_render_confusion_is_readable_and_row_normalised():
    counts = np.full((10, 10), 1) + np.diag(np.arange(10) * 50)
    image = render_confusion(counts, [f"class {i}" for i in range(10)])
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert 400 <= image.shape[0] <= 700 and 400 <= image.shape[1] <= 700

    def dark_pixels(counts):  # pixels of the colour of a cell holding its whole row
        return int(np.all(render_confusion(counts) == (8, 48, 107), axis=-1).sum())

    full_rows = dark_pixels(np.diag([5, 500]))
    assert full_rows > 1000
    assert dark_pixels(np.diag([1000, 1])) == pytest.approx(full_rows, rel=0.1)  # per row
    assert dark_pixels([[5, 5], [0, 500]]) == pytest.approx(full_rows / 2, rel=0.1)


def test_writes_image_and_pairs_on_due_epochs(tmp_path):
    counts = np.array([[6, 0, 1], [0, 5, 3], [2, 0, 4]])
    callback = ConfusionMatrixImage(tmp_path, metric_with(counts), ["zero", "one", "two"], every=2)
    callback.set_params({"epochs": 3, "steps": 1})
    callback.on_train_begin()
    for epoch in range(3):
        callback.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.0})
    callback.on_train_end()

    validation = read_run(tmp_path / "validation")
    assert set(validation) == {"confusion_matrix", "confused_pairs"}
    assert [step for step, _ in validation["confusion_matrix"]] == [1, 2]  # every 2nd + last
    image = decode(validation["confusion_matrix"][0][1])
    assert 150 <= image.shape[0] <= 700 and 150 <= image.shape[1] <= 700
    text = validation["confused_pairs"][-1][1].item().decode()
    assert text.splitlines() == ["- one → two: 3", "- two → zero: 2", "- zero → two: 1"]


def test_log_test_and_skips(tmp_path):
    callback = ConfusionMatrixImage(tmp_path, metric_with(np.array([[2, 1], [0, 3]])))
    callback.set_params({"epochs": 1, "steps": 1})
    callback.on_epoch_end(0, {"loss": 1.0})  # no validation this epoch: nothing
    result = callback.log_test(4)
    assert result["confusion_matrix"] == [[2, 1], [0, 3]]
    assert result["confused_pairs"] == [{"true": "0", "pred": "1", "count": 1}]
    assert read_run(tmp_path / "validation") == {}
    test = read_run(tmp_path / "test")
    assert set(test) == {"confusion_matrix", "confused_pairs"}
    assert test["confusion_matrix"][0][0] == 4


def test_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="`metric`"):
        ConfusionMatrixImage(tmp_path, WorstMistakes())
    with pytest.raises(ValueError, match="`every`"):
        ConfusionMatrixImage(tmp_path, metric_with(np.eye(2, dtype=int)), every=0)
