"""Grad-CAM and the saliency fallback on tiny models whose answer is known (they only see one
half of the image), in float32 and under mixed precision, and the Grad-CAM grid they draw."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from callbacks.gradcam import IMAGE_TAG, GradCam, GradCamGrid, class_scores, find_conv_layer, normalise, overlay
from callbacks.validation_metrics import WorstMistakes
from tests.test_confusion import decode
from tests.test_per_class import read_run

IMAGES = np.random.default_rng(0).uniform(0.2, 1.0, size=(4, 28, 28, 1)).astype("float32")


@pytest.fixture(params=["float32", "mixed_float16"])
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def half_model(side: str, conv: bool = True) -> keras.Model:
    """A model that sees only the ``side`` half of its input: the other half is zeroed before a
    bias-free convolution (or before the dense layers), so nothing there reaches the output.
    Positive weights throughout, and large logits: a saturated softmax, as on confident mistakes."""
    mask = np.zeros((1, 28, 28, 1), "float32")
    mask[:, :, slice(0, 14) if side == "left" else slice(14, 28)] = 1.0
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * mask, name="look")(inputs)
    if conv:
        x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, activation="relu",
                                kernel_initializer="ones", name="conv")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(3, activation="softmax", name="classes",
                           kernel_initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=1))(x)
    return keras.Model(inputs, x)


def left_share(heat: np.ndarray) -> float:
    return float(heat[:, :, :14].sum() / heat.sum())


@pytest.mark.parametrize("side", ["left", "right"])
def test_gradcam_heat_is_where_the_model_looks(policy, side):
    cam = GradCam(half_model(side))
    assert cam.method == "grad-cam" and cam.layer.name == "conv"
    heat = cam.heatmaps(IMAGES, [0, 1, 2, 0])
    assert heat.shape == (4, 28, 28) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and np.allclose(heat.max(axis=(1, 2)), 1.0)
    # the 3x3 convolution reaches one column across the middle: all but that is on the seen side
    assert left_share(heat) > 0.95 if side == "left" else left_share(heat) < 0.05


@pytest.mark.parametrize("side", ["left", "right"])
def test_saliency_without_convolutions(policy, side):
    cam = GradCam(half_model(side, conv=False))
    assert cam.method == "saliency" and cam.layer is None
    heat = cam.heatmaps(IMAGES, [2, 1, 0, 2])
    assert heat.shape == (4, 28, 28)
    assert left_share(heat) == pytest.approx(1.0 if side == "left" else 0.0, abs=1e-6)  # the unseen half has no gradient at all


def test_original_gradcam_weights_are_available():
    cam = GradCam(half_model("left"), channel_weights=True)
    assert left_share(cam.heatmaps(IMAGES, [0, 1, 2, 0])) > 0.95


def test_the_class_score_is_the_logit():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], "float32")
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    centred = logits - logits.mean(axis=1, keepdims=True)  # what softmax keeps of the logits
    assert float(class_scores(probs, np.array([0, 2]))) == pytest.approx(centred[0, 0] + centred[1, 2], abs=1e-5)
    assert float(class_scores(logits, np.array([1, 1]), from_logits=True)) == pytest.approx(2.0)


def test_find_conv_layer_and_normalise():
    assert find_conv_layer(half_model("left")).name == "conv"
    assert find_conv_layer(half_model("left", conv=False)) is None
    inner = half_model("left")  # the whole model nested as a layer: no feature map to look at
    outer = keras.Model(inputs := keras.Input((28, 28, 1)), inner(inputs))
    assert find_conv_layer(outer) is None and GradCam(outer).method == "saliency"
    assert left_share(GradCam(outer).heatmaps(IMAGES[:1], [0])) == pytest.approx(1.0, abs=1e-6)
    maps = np.zeros((2, 10, 10), "float32")
    maps[0, 0, 0] = 5.0  # one peak: its own maximum
    maps[1] = np.arange(100).reshape(10, 10)  # the top 3 % saturate
    out = normalise(maps)
    assert out[0, 0, 0] == 1.0 and out[0].sum() == 1.0
    assert out[1].max() == 1.0 and (out[1] == 1.0).sum() == 3 and 0 < out[1, 5, 0] < 1


def test_overlay_is_a_readable_tile():
    tile = overlay(np.full((28, 28), 128, np.uint8), np.eye(7, dtype="float32"))
    assert tile.shape == (84, 84, 3) and tile.dtype == np.uint8  # upscaled 3x, like the grid's tiles
    hot, cold = tile[2, 2], tile[2, 80]
    assert hot[0] > 150 and hot[2] < 100  # red where the heat is (the diagonal)
    assert cold[2] > cold[0]  # a faint blue elsewhere


def _hot_columns(image: np.ndarray) -> np.ndarray:
    red = (image[..., 0] > 180) & (image[..., 2] < 90) & (image[..., 1] < 200)
    return np.nonzero(red)[1]


def test_grid_draws_the_heatmap_of_the_predicted_class(tmp_path):
    model = half_model("left")
    predicted = model.predict(IMAGES, verbose=0).argmax(axis=1)
    metric = WorstMistakes(k=1)  # one tile, so its left and right halves are easy to find
    metric.update_state((predicted + 1) % 3, model.predict(IMAGES, verbose=0))
    images = np.rint(IMAGES[..., 0] * 255).astype(np.uint8)  # raw uint8, as the data is stored
    callback = GradCamGrid(tmp_path, metric, images, class_names=["a", "b", "c"])
    callback.set_model(model)
    callback.set_params({"epochs": 1, "steps": 1})
    callback.on_train_begin()
    callback.on_epoch_end(0, {"val_loss": 1.0})
    assert callback.log_test(3, images) is None  # the tiles are listed by MisclassifiedGrid
    callback.on_train_end()
    for split, step in (("validation", 0), ("test", 3)):
        events = read_run(tmp_path / split)
        assert set(events) == {IMAGE_TAG} and events[IMAGE_TAG][0][0] == step
        image = decode(events[IMAGE_TAG][0][1])
        tile_columns = np.nonzero((image[6:90] < 250).any(axis=(0, 2)))[0]
        middle = (tile_columns.min() + tile_columns.max()) / 2
        hot = _hot_columns(image[6:90])
        assert len(hot) > 200 and hot.max() <= middle + 3  # 84 px tile: red only in its left half


def test_the_heatmaps_are_traced_once_per_model(tmp_path):
    """The grid's heatmaps run as one traced function per model: the next epoch's grid, one of
    another size and the test set's grid reuse it; another model gets its own."""
    model = half_model("left")
    predicted = model.predict(IMAGES, verbose=0).argmax(axis=1)
    metric = WorstMistakes(k=4)
    images = np.rint(IMAGES[..., 0] * 255).astype(np.uint8)
    callback = GradCamGrid(tmp_path, metric, images)
    callback.set_model(model)
    callback.set_params({"epochs": 2, "steps": 1})
    callback.on_train_begin()
    for epoch, wrong in enumerate((4, 2)):  # 4 mistakes, then 2: another batch size
        metric.reset_state()
        metric.update_state(np.where(np.arange(4) < wrong, (predicted + 1) % 3, predicted), model.predict(IMAGES, verbose=0))
        callback.on_epoch_end(epoch, {"val_loss": 1.0})
    callback.log_test(2, images)
    cam = callback.cam()
    assert cam.traces == 1
    heat = cam.heatmaps(IMAGES[:3], [0, 1, 2])
    np.testing.assert_allclose(heat, cam.heatmaps(IMAGES, [0, 1, 2, 0])[:3], atol=1e-6)
    assert cam.traces == 1
    other = half_model("right")
    callback.set_model(other)
    assert callback.cam() is not cam and callback.cam().traces == 0
    assert left_share(callback.cam().heatmaps(IMAGES, [0, 1, 2, 0])) < 0.05  # the new model's own weights
    assert callback.cam().traces == 1 and cam.traces == 1
    callback.on_train_end()
    assert len(read_run(tmp_path / "validation")[IMAGE_TAG]) == 2


def nested_half_model(side: str) -> keras.Model:
    """``half_model`` with its convolution as a nested model's output (a keras.applications
    backbone without its top) after an identity 1x1 convolution in the outer model."""
    flat = half_model(side)
    inner_in = keras.Input((28, 28, 1))
    conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, activation="relu", name="conv")
    backbone = keras.Model(inner_in, conv(inner_in), name="backbone")
    inputs = keras.Input((28, 28, 1))
    x = flat.get_layer("look")(inputs)
    x = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="preprocess")(x)
    x = keras.layers.Flatten()(backbone(x, training=False))
    classes = keras.layers.Dense(3, activation="softmax", name="classes")
    model = keras.Model(inputs, classes(x))
    conv.set_weights(flat.get_layer("conv").get_weights())
    classes.set_weights(flat.get_layer("classes").get_weights())
    return flat, model


@pytest.mark.parametrize("side", ["left", "right"])
def test_gradcam_looks_at_a_nested_backbones_feature_map(policy, side):
    flat, nested = nested_half_model(side)
    cam = GradCam(nested)
    assert cam.method == "grad-cam" and cam.layer.name == "backbone"  # not the outer 1x1 "preprocess"
    heat = cam.heatmaps(IMAGES, [0, 1, 2, 0])
    np.testing.assert_allclose(heat, GradCam(flat).heatmaps(IMAGES, [0, 1, 2, 0]), atol=1e-3)
    assert left_share(heat) > 0.95 if side == "left" else left_share(heat) < 0.05


def test_a_transfer_model_gets_grad_cam_on_its_backbone():
    from architectures import transfer

    model = transfer.build((96, 96, 1), 3, weights="none")
    cam = GradCam(model)
    assert cam.method == "grad-cam" and cam.layer is transfer.backbone_of(model)
    heat = cam.heatmaps(np.random.default_rng(1).uniform(size=(2, 96, 96, 1)).astype("float32"), [0, 2])
    assert heat.shape == (2, 3, 3)  # 96 px / 32: the backbone's 3x3 feature map
    assert GradCam(model, layer=cam.layer.name).layer is cam.layer  # named: the same
    small = transfer.build((32, 32, 1), 3, weights="none")  # a 1x1 feature map: the layer before it
    assert GradCam(small).layer.name == "preprocess"
    with pytest.raises(ValueError, match=r"Received: layer='MobileNetV3Small', a nested model without a usable"):
        GradCam(small, layer="MobileNetV3Small")
