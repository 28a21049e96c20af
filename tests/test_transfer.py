"""The `transfer` architecture and the phase hook, in process: argument checks, the fixed
preprocessing layer against keras.applications' own, the phase plan, the bounded selection of
a backbone's layers for histograms and gradient norms, and every listed backbone building and
taking one gradient step (weights=none, 32x32: no download)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import architecture
from trainer.errors import UsageError


@pytest.fixture(scope="module")
def arch():
    return architecture.load("transfer")


def test_unknown_backbone_lists_the_known_ones(arch):
    with pytest.raises(UsageError) as info:
        arch.build((32, 32, 3), 3, backbone="vgg16", weights="none")
    assert str(info.value) == (
        "Invalid value for argument `backbone`. Received: backbone='vgg16'. Expected one of "
        "mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0, efficientnet_v2_b0, resnet50, convnext_tiny.")


@pytest.mark.parametrize("hyper, expected", [
    ({"weights": "nowhere.h5"}, "Expected imagenet, none, or the path of a weights file."),
    ({"fine_tune": 1.5}, "Expected a number of layers (an integer >= 0) or a fraction in (0, 1]."),
    ({"fine_tune_lr_factor": 0.0}, "Expected a positive number."),
])
def test_bad_hyperparameters_are_usage_errors(arch, hyper, expected):
    with pytest.raises(UsageError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        arch.build((32, 32, 3), 3, **{"weights": "none", **hyper})


def test_images_smaller_than_the_backbones_minimum_are_refused(arch):
    with pytest.raises(UsageError, match=r"Received: \(28, 28, 1\)\. Expected images of at least 32x32"):
        arch.build((28, 28, 1), 10, weights="none")


def test_image_size_defaults_to_the_backbones_native_size(arch):
    assert arch.default_image_size({}) == (224, 224)
    assert arch.default_image_size({"backbone": "resnet50"}) == (224, 224)
    assert architecture.load("cnn").default_image_size({}) is None


def test_fine_tune_counts_layers_or_a_fraction():
    from architectures.transfer import fine_tune_layers

    assert fine_tune_layers(30, 157) == 30
    assert fine_tune_layers(500, 157) == 157
    assert fine_tune_layers(0.2, 157) == 32  # rounded up
    assert fine_tune_layers(1.0, 157) == 157
    assert fine_tune_layers(0, 157) == 0


def test_phases_default_to_half_the_epochs(arch):
    (phase,) = arch.phases(10, {})
    assert (phase.epoch, phase.name, phase.learning_rate_factor) == (5, "fine-tune", 0.1)
    assert arch.phases(3, {})[0].epoch == 2  # half, rounded up
    assert arch.phases(10, {"freeze_epochs": 3, "fine_tune_lr_factor": 0.5})[0].epoch == 3
    assert arch.phases(10, {"fine_tune": 0}) == []  # no fine-tuning
    assert arch.phases(4, {"freeze_epochs": 4}) == []  # frozen all along
    assert architecture.load("cnn").phases(10, {}) == []  # modules without phases()


def test_preprocessing_matches_keras_applications():
    """The fixed 1x1 convolution: [0, 1] -> ResNet50's caffe preprocessing, and for the backbones
    that rescale themselves, x 255 (a gray channel repeated three times)."""
    import keras

    from architectures.transfer import preprocess_layer

    x = np.random.default_rng(0).random((2, 5, 5, 3)).astype("float32")
    caffe = preprocess_layer(3, "caffe")(x)
    expected = keras.applications.resnet50.preprocess_input(x * 255.0)
    np.testing.assert_allclose(np.asarray(caffe), expected, atol=1e-3)
    gray = x[..., :1]
    np.testing.assert_allclose(np.asarray(preprocess_layer(1, "rescale")(gray)), np.repeat(gray * 255, 3, -1),
                               rtol=1e-6)
    assert not preprocess_layer(3, "rescale").trainable_weights


def test_the_model_preprocesses_inside(arch):
    """ResNet50 (its random features vary with the input): the model's pooled features of [0, 1]
    images equal the backbone's on ``preprocess_input(255 x)`` (the saved model, loaded in plain
    Keras: the end-to-end test)."""
    import keras

    from architectures.transfer import backbone_of

    model = arch.build((32, 32, 3), 4, backbone="resnet50", weights="none")
    x = np.random.default_rng(1).random((3, 32, 32, 3)).astype("float32")
    expected = np.asarray(backbone_of(model)(keras.applications.resnet50.preprocess_input(x * 255.0))).mean(axis=(1, 2))
    pooled = np.asarray(keras.Model(model.input, model.get_layer("pool").output)(x))
    np.testing.assert_allclose(pooled, expected, rtol=1e-4, atol=1e-4)
    assert np.ptp(expected, axis=0).max() > 1e-2  # the images give different features
    wrong = np.asarray(backbone_of(model)(x * 255.0)).mean(axis=(1, 2))  # without the BGR/mean step
    assert np.abs(wrong - expected).max() > 1e-2


def test_nested_layers_are_a_bounded_selection(tmp_path):
    """Histograms and gradient norms log a nested model's top N layers (and all with None)."""
    import keras

    from callbacks.gradients import GradientNorms
    from callbacks.histograms import logged_layers

    inner_in = keras.Input((4,))
    h = inner_in
    for i in range(12):
        h = keras.layers.Dense(4, name=f"inner_{i}")(h)
    inner = keras.Model(inner_in, h, name="backbone")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)))
    names = [layer.name for layer in logged_layers(model)]
    assert names == [f"inner_{i}" for i in range(4, 12)] + ["head"]
    assert len(logged_layers(model, None)) == 13 and [x.name for x in logged_layers(model, 0)] == ["head"]
    model.compile("sgd", "sparse_categorical_crossentropy")
    gradients = GradientNorms(str(tmp_path), (np.ones((2, 4), "float32"), np.array([0, 1])), nested_layers=2)
    gradients.set_model(model)
    assert set(gradients.compute()) == {"backbone", "head", "inner_10", "inner_11", "global"}
    inner.trainable = False  # a frozen backbone: nothing of it is logged
    assert [x.name for x in logged_layers(model)] == ["head"]


def test_learning_rate_factor_scales_the_schedule():
    from trainer.config import RunConfig
    from trainer.training import make_optimizer

    config = RunConfig(arch="transfer", learning_rate=0.01, lr_schedule="cosine")
    full, tenth = make_optimizer(config, 100), make_optimizer(config, 100, 0.1)
    for step in (0, 50):
        full.iterations.assign(step)
        tenth.iterations.assign(step)
        assert float(tenth.learning_rate) == pytest.approx(0.1 * float(full.learning_rate))


@pytest.mark.parametrize("backbone, step", [
    ("mobilenet_v3_small", True), ("mobilenet_v3_large", True), ("efficientnet_b0", True),
    ("efficientnet_v2_b0", True), ("resnet50", False), ("convnext_tiny", False)])
def test_every_backbone_builds_and_fine_tunes_one_step(arch, backbone, step):
    """Phase 1: only the head trains; after ``unfreeze_top`` one SGD step changes the head and
    the top of the backbone, never a BatchNormalization layer or the preprocessing (the two
    big backbones: a forward pass only, to keep the suite fast)."""
    import keras
    import tensorflow as tf

    from architectures.transfer import backbone_of, unfreeze_top

    model = arch.build((32, 32, 1), 3, backbone=backbone, weights="none")
    assert {v.path.split("/")[0] for v in model.trainable_variables} == {"classifier"}
    unfreeze_top(model, 0.25)
    base = backbone_of(model)
    assert not any(layer.trainable_weights for layer in base.layers
                   if isinstance(layer, keras.layers.BatchNormalization))
    variables = model.trainable_variables
    assert len(variables) > 2  # the backbone's top is trainable now
    if not step:
        assert model(np.zeros((1, 32, 32, 1), "float32")).shape == (1, 3)
        return
    before = [v.numpy().copy() for v in variables]
    x, y = np.random.default_rng(2).random((2, 32, 32, 1)).astype("float32"), np.array([0, 2])
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
    keras.optimizers.SGD(0.1).apply(tape.gradient(loss, variables), variables)
    changed = {v.path for v, b in zip(variables, before) if not np.array_equal(v.numpy(), b)}
    assert any(p.startswith("classifier") for p in changed)
    assert len(changed) > 1  # the backbone's top trains too


def test_summary_shows_trainable_and_frozen_parameters_without_a_download():
    from click.testing import CliRunner

    from trainer.cli import main

    result = CliRunner().invoke(main, ["summary", "transfer", "--input-shape", "32,32,3", "--classes", "5"])
    assert result.exit_code == 0, result.output
    assert "MobileNetV3Small" in result.output and "Functional" in result.output
    # the head: 576 x 5 + 5 trainable; the backbone's 939,120 and the preprocessing's 12 frozen
    assert "942,017 parameters (2,885 trainable, 939,132 frozen)" in result.output


def test_weights_from_a_file(arch, tmp_path):
    """``weights=PATH``: the backbone's weights from a local file (no download)."""
    from architectures.transfer import backbone_of

    source = backbone_of(arch.build((32, 32, 3), 3, weights="none"))
    path = str(tmp_path / "backbone.weights.h5")
    source.save_weights(path)
    loaded = backbone_of(arch.build((32, 32, 3), 3, weights=path))
    fresh = backbone_of(arch.build((32, 32, 3), 3, weights="none"))
    kernel = next(i for i, w in enumerate(source.weights) if "kernel" in w.path)
    np.testing.assert_array_equal(loaded.weights[kernel].numpy(), source.weights[kernel].numpy())
    assert not np.array_equal(fresh.weights[kernel].numpy(), source.weights[kernel].numpy())
