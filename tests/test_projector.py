"""The embedding projector on a tiny model in a plain ``model.fit``: the files it writes, what
TensorBoard's own projector plugin serves from them, and the note for a model without a
usable penultimate layer."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from callbacks.projector import (
    CONFIG_FILE,
    METADATA_FILE,
    SPRITE_FILE,
    EmbeddingProjector,
    embedding_tensor,
    metadata_tsv,
    sample_indices,
)

NAMES = [str(i) for i in range(10)]


def projector_client(logdir: str):
    """A werkzeug client of TensorBoard's WSGI app on ``logdir`` with the projector plugin,
    the event files loaded once before the first request (as ``tensorboard --logdir`` does)."""
    from tensorboard import program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester
    from tensorboard.plugins.core import core_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client

    plugins = [core_plugin.CorePluginLoader(include_debug_info=False), ProjectorPlugin]
    tensorboard = program.TensorBoard(plugins=plugins)
    tensorboard.configure(logdir=str(logdir), reload_task="blocking", reload_interval=0, load_fast="false")
    ingester = data_ingester.LocalDataIngester(tensorboard.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(tensorboard.flags, plugins, ingester.data_provider, None,
                                         ingester.deprecated_multiplexer)
    return Client(app)


def served(client, route: str, **query):
    """``/data/plugin/projector/<route>``'s body; fails on any status but 200."""
    response = client.get(f"/data/plugin/projector/{route}", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data()


def served_embedding(client, run: str) -> tuple[dict, np.ndarray, str, bytes]:
    """The run's one embedding as the Projector tab loads it: info, tensor, metadata, sprite."""
    (info,) = json.loads(served(client, "info", run=run))["embeddings"]
    name, shape = info["tensorName"], [int(d) for d in info["tensorShape"]]
    tensor = np.frombuffer(served(client, "tensor", run=run, name=name), np.float32).reshape(shape)
    metadata = served(client, "metadata", run=run, name=name).decode()
    sprite = served(client, "sprite_image", run=run, name=name)
    return info, tensor, metadata, sprite


@pytest.fixture(scope="module")
def mnist(mnist_path):
    with np.load(mnist_path) as f:
        return f["x_train"][:400], f["y_train"][:400].astype("int32")


def mlp(hidden: bool = True) -> keras.Model:
    layers = [keras.Input((28, 28, 1)), keras.layers.Flatten()]
    if hidden:
        layers.append(keras.layers.Dense(8, activation="relu", name="hidden"))
    model = keras.Sequential([*layers, keras.layers.Dense(10, activation="softmax", name="classes")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def fit(model, x, y, callback, epochs):
    inputs = x[..., None] / 255.0
    model.fit(inputs[:300], y[:300], validation_data=(inputs[300:], y[300:]), epochs=epochs, batch_size=100,
              callbacks=[callback], verbose=0)


@pytest.fixture(scope="module")
def projected(mnist, tmp_path_factory):
    """Three epochs, written every 2 and after the last: the files left are epoch 3's."""
    x, y = mnist
    log_dir = tmp_path_factory.mktemp("projector")
    model = mlp()
    callback = EmbeddingProjector(log_dir, x[300:], y[300:], class_names=NAMES, samples=64, every=2)
    fit(model, x, y, callback, epochs=3)
    return log_dir, model, callback, x[300:], y[300:]


def test_files_hold_the_activations_labels_and_images(projected):
    import tensorflow as tf
    from PIL import Image

    log_dir, model, callback, x, y = projected
    directory = os.path.join(log_dir, "validation")
    assert tf.train.latest_checkpoint(directory) == os.path.join(directory, "embeddings.ckpt-3")
    assert not [f for f in os.listdir(directory) if f.startswith("embeddings.ckpt-2")]  # epoch 2's is gone
    indices = callback.indices
    assert len(indices) == 64 and list(indices) == sorted(set(indices)) and indices.max() < 100
    stored = tf.train.load_checkpoint(directory).get_tensor("classes_input")
    hidden = keras.Model(model.inputs, model.get_layer("hidden").output)
    expected = hidden.predict(x[indices][..., None] / 255.0, verbose=0)
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)

    rows = [line.split("\t") for line in open(os.path.join(directory, METADATA_FILE)).read().splitlines()]
    assert rows[0] == ["index", "true", "predicted", "correct"] and len(rows) == 65
    predicted = model.predict(x[indices][..., None] / 255.0, verbose=0).argmax(axis=1)
    assert rows[1:] == [[str(i), str(y[i]), str(p), "correct" if y[i] == p else "wrong"]
                        for i, p in zip(indices, predicted)]

    sprite = np.asarray(Image.open(os.path.join(directory, SPRITE_FILE)))
    assert sprite.shape == (8 * 28, 8 * 28, 3)  # 64 thumbnails, 8 per row, at 28 px
    assert (sprite[28:56, 3 * 28:4 * 28, 0] == x[indices[11]]).all()  # row 1, column 3: sample 11
    config = open(os.path.join(directory, CONFIG_FILE)).read()
    assert 'tensor_name: "classes_input"' in config and "single_image_dim: 28" in config


def test_tensorboard_projector_plugin_serves_them(projected):
    import tensorflow as tf

    log_dir, _, callback, x, y = projected
    client = projector_client(log_dir)
    assert json.loads(served(client, "runs")) == ["validation"]
    info, tensor, metadata, sprite = served_embedding(client, "validation")
    assert info["tensorName"] == "classes_input" and info["tensorShape"] == [64, 8]
    directory = os.path.join(log_dir, "validation")
    np.testing.assert_array_equal(tensor, tf.train.load_checkpoint(directory).get_tensor("classes_input"))
    assert metadata == open(os.path.join(directory, METADATA_FILE)).read()
    assert sprite == open(os.path.join(directory, SPRITE_FILE), "rb").read()
    assert info["sprite"]["singleImageDim"] == [28, 28]


def test_a_model_without_hidden_layer_gets_a_note_not_a_failure(mnist, tmp_path):
    x, y = mnist
    notes = []
    callback = EmbeddingProjector(tmp_path, x[300:], y[300:], class_names=NAMES, samples=10, notify=notes.append)
    fit(mlp(hidden=False), x, y, callback, epochs=2)
    assert notes == ["Note: no embedding projector: the model has no hidden layer with weights before its "
                     "classifier."]
    assert not os.path.exists(tmp_path / "validation")


def test_early_stopping_writes_the_last_epoch_trained(mnist, tmp_path):
    x, y = mnist
    model = mlp()
    model(np.zeros((1, 28, 28, 1), "float32"))
    callback = EmbeddingProjector(tmp_path, x[:50], y[:50], samples=20)
    callback.set_model(model)
    callback.set_params({"epochs": 10, "steps": 1})
    callback.on_train_begin()
    for epoch in range(3):
        callback.on_epoch_end(epoch, {})
    assert not os.path.exists(tmp_path / "validation")  # not the last epoch, no `every`
    model.stop_training = True
    callback.on_train_end()
    assert sorted(f for f in os.listdir(tmp_path / "validation") if f.startswith("embeddings")) == \
        ["embeddings.ckpt-3.data-00000-of-00001", "embeddings.ckpt-3.index"]


def test_embedding_tensor_and_reasons():
    assert embedding_tensor(mlp())[0].name == "classes"
    assert embedding_tensor(mlp(hidden=False)) == (
        None, "the model has no hidden layer with weights before its classifier")

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert "subclassed" in embedding_tensor(Subclassed())[1]


def test_metadata_and_sample_helpers():
    assert list(sample_indices(5, 10)) == [0, 1, 2, 3, 4]
    chosen = sample_indices(1000, 10, seed=3)
    assert len(set(chosen)) == 10 and list(chosen) == sorted(chosen) and list(chosen) == list(sample_indices(1000, 10, 3))
    text = metadata_tsv([4, 7], [0.5, 2.0], [0.25, 3.5])  # regression: numbers, no `correct`
    assert text == "index\ttrue\tpredicted\n4\t0.5\t0.25\n7\t2\t3.5\n"
    text = metadata_tsv([1], [0], [1], class_names=["a\tb", "c"], paths=["/x/y/z.png", "/x/q r.jpg"])
    assert text.splitlines() == ["index\ttrue\tpredicted\tcorrect\tfile", "1\ta b\tc\twrong\tq r.jpg"]
    with pytest.raises(ValueError, match="Invalid value for argument `y`"):
        EmbeddingProjector("logs", np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="`samples`"):
        EmbeddingProjector("logs", np.zeros((3, 4)), np.zeros(3), samples=0)


@pytest.mark.parametrize("flags, expected", [
    ({}, {"GradCamGrid", "EmbeddingProjector"}),
    ({"gradcam": False, "embeddings_every": 3}, {"EmbeddingProjector"}),
    ({"embeddings": 0}, {"GradCamGrid"}),
    ({"misclassified": 0, "embeddings": 0}, set()),
])
def test_flags_switch_the_panels(tmp_path, flags, expected):
    from callbacks.gradcam import GradCamGrid
    from trainer import data, monitors
    from trainer.config import RunConfig, validate

    config = RunConfig(arch="cnn", **flags)
    validate(config)
    x, y = np.zeros((20, 8, 8, 1), np.uint8), np.arange(20) % 10
    dataset = data.Dataset("tiny", x, y, x, y, NAMES)
    compiled = monitors.compiled_metrics("multiclass", 10, config.misclassified, None, 1, print)
    attached = monitors.attach(config, str(tmp_path), dataset, (x, y, x, y), compiled, print)
    found = {type(c).__name__ for c in attached.callbacks} & {"GradCamGrid", "EmbeddingProjector"}
    assert found == expected
    projector = [c for c in attached.callbacks if isinstance(c, EmbeddingProjector)]
    assert [(p.every, len(p.indices)) for p in projector] == ([(flags.get("embeddings_every"), 20)] if projector else [])
    assert [c for c in attached.test_loggers if isinstance(c, GradCamGrid)] == \
        [c for c in attached.callbacks if isinstance(c, GradCamGrid)]


@pytest.mark.parametrize("field, value", [("embeddings", -1), ("embeddings_every", 0)])
def test_config_checks_the_new_values(field, value):
    from trainer.config import RunConfig, validate
    from trainer.errors import TrainerError

    with pytest.raises(TrainerError, match=f"Invalid value for argument `{field}`. Received: {field}={value}"):
        validate(RunConfig(arch="cnn", **{field: value}))
