import warnings

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.plugin_event_accumulator import (
    GRAPH,
    TENSORS,
    EventAccumulator,
)
from tensorboard.util.tensor_util import make_ndarray

from callbacks.histograms import WeightHistograms, nonfinite_tag, weight_norm_tag, weight_tag

HISTOGRAM_TAGS = {"dense_1/kernel", "dense_1/bias", "dense_2/kernel", "dense_2/bias"}


# --- helpers shared by the monitoring-callback tests ------------------------------------


def tiny_model(dtype=None):
    """Input(4) -> Dense(3) -> Dense(2, softmax) with known, distinct weights."""
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(3, activation="tanh", name="dense_1", dtype=dtype)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="dense_2", dtype=dtype)(hidden)
    model = keras.Model(inputs, outputs)
    model.set_weights(
        [
            np.linspace(-1.0, 1.0, 12).reshape(4, 3),
            np.array([0.1, -0.2, 0.3]),
            np.linspace(0.5, -0.5, 6).reshape(3, 2),
            np.array([0.05, -0.05]),
        ]
    )
    return model


def drive(callback, model, epoch_logs):
    """Runs the callback's hooks as ``fit`` would; any swallowed failure fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        callback.set_model(model)
        callback.on_train_begin()
        for epoch, logs in enumerate(epoch_logs):
            callback.on_epoch_end(epoch, logs)
        callback.on_train_end()


def read_run(path):
    """TensorBoard's own reader over one run directory."""
    acc = EventAccumulator(str(path), size_guidance={TENSORS: 0, GRAPH: 0})
    acc.Reload()
    return acc


def plugin_tags(acc, plugin):
    return set(acc.PluginTagToContent(plugin)) if plugin in acc.ActivePlugins() else set()


def tensor_values(acc, tag):
    """``{step: ndarray}`` of one tag."""
    return {e.step: make_ndarray(e.tensor_proto) for e in acc.Tensors(tag)}


# --- tests ---------------------------------------------------------------------------------


def test_tags():
    assert weight_tag("dense_1", "dense_1/kernel") == "dense_1/kernel"
    assert weight_tag("dense_1", "kernel") == "dense_1/kernel"
    assert weight_tag("block", "block/inner/bias") == "block/inner/bias"
    assert weight_tag("dense", "dense_1/kernel") == "dense/dense_1/kernel"
    assert weight_tag("d", "d/kernel:0") == "d/kernel_0"
    assert weight_norm_tag("dense_1") == "weight_norm/dense_1"
    assert nonfinite_tag("dense_1", "dense_1/kernel") == "nonfinite/dense_1/kernel"


@pytest.mark.parametrize("every", [-1, 1.5, True, "2"])
def test_invalid_every(tmp_path, every):
    with pytest.raises(ValueError, match="argument `every`"):
        WeightHistograms(tmp_path, every=every)


def test_histograms_and_norms(tmp_path):
    model = tiny_model()
    drive(WeightHistograms(tmp_path), model, [{}])
    acc = read_run(tmp_path / "train")
    assert plugin_tags(acc, "histograms") == HISTOGRAM_TAGS
    assert plugin_tags(acc, "scalars") == {
        "weight_norm/dense_1",
        "weight_norm/dense_2",
        "nonfinite_weights",
    }
    for layer in model.layers[1:]:
        (kernel, bias) = [w.numpy() for w in layer.weights]
        expected = np.sqrt(np.sum(kernel**2) + np.sum(bias**2))
        norm = tensor_values(acc, f"weight_norm/{layer.name}")
        assert list(norm) == [0]
        assert norm[0] == pytest.approx(expected, rel=1e-6)
    buckets = tensor_values(acc, "dense_1/kernel")[0]  # rows of (left, right, count)
    assert buckets[:, 2].sum() == 12
    assert buckets[0, 0] == pytest.approx(-1.0) and buckets[-1, 1] == pytest.approx(1.0)
    assert tensor_values(acc, "nonfinite_weights") == {0: 0}


def test_nonfinite_weights_are_counted(tmp_path):
    model = tiny_model()
    kernel = model.get_layer("dense_1").kernel
    bad = kernel.numpy()
    bad[0, 0], bad[1, 1] = np.nan, np.inf
    kernel.assign(bad)
    drive(WeightHistograms(tmp_path), model, [{}])
    acc = read_run(tmp_path / "train")
    assert plugin_tags(acc, "histograms") == HISTOGRAM_TAGS
    assert tensor_values(acc, "nonfinite/dense_1/kernel") == {0: 2}
    assert tensor_values(acc, "nonfinite_weights") == {0: 2}
    assert "nonfinite/dense_1/bias" not in plugin_tags(acc, "scalars")
    buckets = tensor_values(acc, "dense_1/kernel")[0]
    assert buckets[:, 2].sum() == 10 and np.isfinite(buckets).all()
    finite = bad[np.isfinite(bad)]
    bias = model.get_layer("dense_1").bias.numpy()
    expected = np.sqrt(np.sum(finite**2) + np.sum(bias**2))
    assert tensor_values(acc, "weight_norm/dense_1")[0] == pytest.approx(expected, rel=1e-6)


def test_every_n_epochs_and_off(tmp_path):
    drive(WeightHistograms(tmp_path / "a", every=2), tiny_model(), [{}] * 5)
    acc = read_run(tmp_path / "a" / "train")
    assert set(tensor_values(acc, "dense_2/bias")) == {1, 3}
    drive(WeightHistograms(tmp_path / "b", every=0), tiny_model(), [{}] * 3)
    assert not (tmp_path / "b").exists()


def test_half_precision_weights(tmp_path):
    model = tiny_model(dtype="float16")
    assert model.get_layer("dense_1").kernel.dtype == "float16"
    drive(WeightHistograms(tmp_path), model, [{}])
    acc = read_run(tmp_path / "train")
    assert plugin_tags(acc, "histograms") == HISTOGRAM_TAGS
    layer = model.get_layer("dense_2")
    expected = np.sqrt(sum(np.sum(w.numpy().astype(np.float64) ** 2) for w in layer.weights))
    assert tensor_values(acc, "weight_norm/dense_2")[0] == pytest.approx(expected, rel=1e-6)


def test_frozen_model_writes_nothing(tmp_path):
    model = tiny_model()
    model.trainable = False
    drive(WeightHistograms(tmp_path), model, [{}])
    assert not (tmp_path / "train").exists()
