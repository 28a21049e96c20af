import warnings

import numpy as np
import pytest

from callbacks.drawing import render_grid
from callbacks.misclassified import MisclassifiedGrid, grid_shape
from callbacks.validation_metrics import ConfusionMatrix, WorstMistakes
from tests.test_confusion import decode
from tests.test_per_class import read_run
from tests.test_validation_metrics import one_hot_probs

# 12 validation images, each one solid, distinct colour (never grey like text or background)
COLOURS = [(200, 10 + 20 * i, 60) for i in range(12)]
IMAGES = np.array([np.full((28, 28, 3), c, dtype=np.uint8) for c in COLOURS])


def metric_with_mistakes():
    """k=5; mistakes (index: conf) 0: .6, 2: .95, 4: .7 | 8: .4, 9: .99, 10: .9, 11: .8.

    Kept, most confident first: 9, 2, 10, 11, 4.
    """
    metric = WorstMistakes(k=5)
    metric.update_state(np.array([0, 1, 2, 0, 1, 2]),
                        one_hot_probs([1, 1, 0, 0, 2, 2], [0.6, 0.9, 0.95, 0.5, 0.7, 0.9]))
    metric.update_state(np.array([0, 1, 2, 0, 1, 2]),
                        one_hot_probs([0, 1, 1, 2, 0, 0], [0.9, 0.9, 0.4, 0.99, 0.9, 0.8]))
    return metric


def test_grid_shape():
    assert grid_shape(0) == (0, 0)
    assert grid_shape(1) == (1, 1)
    assert grid_shape(5) == (2, 3)
    assert grid_shape(36) == (6, 6)
    assert grid_shape(37) == (6, 7)


def tile_boxes(image):
    """{image index: (top, left, pixel count)} for every colour of COLOURS found."""
    boxes = {}
    for i, colour in enumerate(COLOURS):
        ys, xs = np.nonzero(np.all(image == colour, axis=-1))
        if len(ys):
            boxes[i] = (ys.min(), xs.min(), len(ys))
    return boxes


def test_writes_grid_of_most_confident_mistakes(tmp_path):
    metric = metric_with_mistakes()
    assert [m[0] for m in metric.mistakes()] == [9, 2, 10, 11, 4]
    callback = MisclassifiedGrid(tmp_path, metric, IMAGES, class_names=["a", "b", "c"])
    callback.set_params({"epochs": 1, "steps": 1})
    callback.on_train_begin()
    callback.on_epoch_end(0, {"val_loss": 1.0})
    callback.on_train_end()

    validation = read_run(tmp_path / "validation")
    assert set(validation) == {"misclassified"}
    image = decode(validation["misclassified"][0][1])
    boxes = tile_boxes(image)
    assert set(boxes) == {9, 2, 10, 11, 4}  # exactly the kept mistakes
    assert all(count == 84 * 84 for _, _, count in boxes.values())  # 28 px upscaled 3x
    order = [boxes[i][:2] for i in (9, 2, 10, 11, 4)]
    tops, lefts = [t for t, _ in order], [left for _, left in order]
    assert tops[0] == tops[1] == tops[2] < tops[3] == tops[4]  # 2 rows x 3 columns
    assert lefts[0] < lefts[1] < lefts[2] and lefts[3] == lefts[0] and lefts[4] == lefts[1]
    assert 3 * 84 < image.shape[1] < 3 * 84 * 2 and 2 * 84 < image.shape[0] < 2 * 84 * 2


def test_no_mistakes_writes_nothing_and_log_test_uses_given_images(tmp_path):
    metric = WorstMistakes(k=4)
    metric.update_state(np.array([0, 1]), one_hot_probs([0, 1], [0.9, 0.9]))
    callback = MisclassifiedGrid(tmp_path, metric, IMAGES[:2])
    callback.set_params({"epochs": 1, "steps": 1})
    callback.on_epoch_end(0, {"val_loss": 1.0})
    callback.on_train_end()
    assert not (tmp_path / "validation").exists()

    metric.reset_state()
    metric.update_state(np.array([0, 1, 2]), one_hot_probs([1, 1, 0], [0.9, 0.9, 0.6]))
    test_images = np.linspace(0, 1, 3 * 8 * 8).reshape(3, 8, 8)  # float grey, other size
    result = callback.log_test(5, test_images)
    assert result == {"misclassified": [
        {"index": 0, "true": "0", "pred": "1", "confidence": pytest.approx(0.9)},
        {"index": 2, "true": "2", "pred": "0", "confidence": pytest.approx(0.6)}]}
    test = read_run(tmp_path / "test")
    assert set(test) == {"misclassified"} and test["misclassified"][0][0] == 5
    assert decode(test["misclassified"][0][1]).shape[1] >= 2 * 88  # 8 px tiles upscaled 11x


def test_indices_beyond_images_warn_once_and_skip(tmp_path):
    callback = MisclassifiedGrid(tmp_path, metric_with_mistakes(), IMAGES[:5])
    callback.set_params({"epochs": 2, "steps": 1})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        callback.on_epoch_end(0, {"val_loss": 1.0})
        callback.on_epoch_end(1, {"val_loss": 1.0})
    callback.on_train_end()
    assert len([w for w in caught if "`images` has 5 images" in str(w.message)]) == 1
    assert read_run(tmp_path / "validation") == {}


def test_render_grid_checks_captions():
    with pytest.raises(ValueError, match="2 tiles but 1 captions"):
        render_grid([IMAGES[0], IMAGES[1]], ["x"])


def test_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="`metric`"):
        MisclassifiedGrid(tmp_path, ConfusionMatrix(3), IMAGES)
    with pytest.raises(ValueError, match="`images`.*floats in \\[0, 1\\]"):
        MisclassifiedGrid(tmp_path, WorstMistakes(), IMAGES.astype("float32"))
    with pytest.raises(ValueError, match="`images`"):
        MisclassifiedGrid(tmp_path, WorstMistakes(), np.zeros((4, 28), np.uint8))
    with pytest.raises(ValueError, match="`images`"):
        MisclassifiedGrid(tmp_path, WorstMistakes(), np.zeros((4, 8, 8, 2), np.uint8))
