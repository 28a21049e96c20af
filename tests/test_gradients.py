import keras
import numpy as np
import pytest
import tensorflow as tf

from callbacks.gradients import GradientNorms, gradient_norm_tag
from tests.test_histograms import drive, plugin_tags, read_run, tensor_values, tiny_model

TAGS = {"gradient_norm/dense_1", "gradient_norm/dense_2", "gradient_norm/global"}


def batch(n=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, size=n), 2)
    return x, y


def compiled_model(dtype=None):
    model = tiny_model(dtype)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model


def direct_norms(model, x, y):
    """Reference: the same gradient computed by hand with a tape and the Keras loss."""
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(y, model(x, training=False))
        loss = tf.reduce_mean(loss)
    layers = model.layers[1:]
    grads = tape.gradient(loss, [w for layer in layers for w in layer.trainable_weights])
    squares = [float(tf.reduce_sum(tf.cast(g, tf.float64) ** 2)) for g in grads]
    return {
        "dense_1": np.sqrt(sum(squares[:2])),
        "dense_2": np.sqrt(sum(squares[2:])),
        "global": np.sqrt(sum(squares)),
    }


def test_tag():
    assert gradient_norm_tag("dense_1") == "gradient_norm/dense_1"


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4)), (np.zeros((4, 4)),), (np.zeros((4, 4)), np.zeros((3, 2))),
     (np.zeros((0, 4)), np.zeros((0, 2)))],
)
def test_invalid_batch(tmp_path, bad):
    with pytest.raises(ValueError, match="argument `batch`"):
        GradientNorms(tmp_path, bad)


def test_invalid_every(tmp_path):
    with pytest.raises(ValueError, match="argument `every`"):
        GradientNorms(tmp_path, batch(), every=-1)


def test_norms_equal_direct_computation(tmp_path):
    model, (x, y) = compiled_model(), batch()
    callback = GradientNorms(tmp_path, (x, y))
    drive(callback, model, [{}, {}, {}])
    acc = read_run(tmp_path / "train")
    assert plugin_tags(acc, "scalars") == TAGS
    expected = direct_norms(model, x, y)
    for name, value in expected.items():
        written = tensor_values(acc, gradient_norm_tag(name))
        assert set(written) == {0, 1, 2}
        assert written[0] > 0
        assert written[0] == pytest.approx(value, rel=1e-5)
    assert callback._fn.experimental_get_tracing_count() == 1  # compiled once, reused


def test_mixed_precision(tmp_path):
    model, (x, y) = compiled_model("mixed_float16"), batch()
    drive(GradientNorms(tmp_path, (x, y)), model, [{}])
    acc = read_run(tmp_path / "train")
    assert plugin_tags(acc, "scalars") == TAGS
    assert tensor_values(acc, "gradient_norm/global")[0] == pytest.approx(
        direct_norms(model, x, y)["global"], rel=1e-2
    )


def test_skips_uncompiled_model_and_every_zero(tmp_path):
    drive(GradientNorms(tmp_path / "a", batch()), tiny_model(), [{}])
    drive(GradientNorms(tmp_path / "b", batch(), every=0), compiled_model(), [{}])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_many_models_in_one_process_do_not_warn_of_retracing(tmp_path, caplog):
    x, y = batch()
    for i in range(7):  # a sweep: a new model per trial
        cb = GradientNorms(str(tmp_path / str(i)), (x, y))
        cb.set_model(compiled_model())
        cb.compute()
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
