"""TensorBoard's Embedding Projector, filled: the penultimate-layer activations of a fixed
sample of validation data, with their labels and their images.

Keras 3's own ``TensorBoard(embeddings_freq=...)`` leaves the Projector tab empty
(keras-team/keras#20210). ``EmbeddingProjector`` writes what the projector plugin reads, in
``<log_dir>/validation`` (so the run ``validation`` lists it):

- ``embeddings.ckpt-<epoch>.*`` and ``checkpoint``: a TF checkpoint holding one tensor, the
  activations that enter the classifier (the last layer with weights), ``(samples, features)``
  float32; the plugin takes the newest checkpoint of the directory, so the run stays movable;
- ``projector_metadata.tsv``: a header row, then per sample its index in the validation data,
  true label, predicted label and ``correct``/``wrong`` (and its file, for an image folder);
- ``projector_sprite.png``: the samples' images in a square grid (when the inputs are images),
  so points are drawn as their images;
- ``projector_config.pbtxt``: a ``ProjectorConfig`` tying them together.

Written after the last epoch (and every ``every`` epochs), overwriting the previous one. A model
without a usable penultimate layer (a subclassed model, several inputs or outputs, a classifier
straight on the inputs) gets a note through ``notify``, and nothing is written.
"""

from __future__ import annotations

import contextlib
import glob
import io
import math
import os

import numpy as np

from .base import TensorBoardCallback, never_raise
from .drawing import to_rgb
from .files import atomic_write
from .samples import gather, looks_like_images, single, to_model_input
from .text import check_int

CONFIG_FILE = "projector_config.pbtxt"  # tensorboard.plugins.projector.metadata.PROJECTOR_FILENAME
METADATA_FILE = "projector_metadata.tsv"
SPRITE_FILE = "projector_sprite.png"
CHECKPOINT_PREFIX = "embeddings.ckpt"
SPRITE_MAX_SIDE = 8192  # the largest sprite the projector's WebGL texture takes
THUMBNAIL_MAX = 64  # px per sample in the sprite


def embedding_tensor(model):
    """``(classifier, None)``: the last layer with weights, whose input is the embedding; or
    ``(None, reason)`` when the model has no usable penultimate layer."""
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        return None, "the model has no symbolic inputs and outputs (a subclassed model)"
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None, "the model has several inputs or outputs"
    weighted = [layer for layer in model.layers if layer.weights]
    if len(weighted) < 2:
        return None, "the model has no hidden layer with weights before its classifier"
    classifier = weighted[-1]
    try:
        tensor = classifier.input
    except (AttributeError, ValueError):
        return None, f"its classifier `{classifier.name}` is used more than once"
    shape = getattr(tensor, "shape", None)
    if shape is None or len(shape) != 2 or not shape[-1] or shape[-1] < 2:
        return None, (f"the input of its classifier `{classifier.name}` has shape {shape}; "
                      "expected (batch, features) with at least 2 features")
    return classifier, None


def sample_indices(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """A fixed, seeded choice of ``min(samples, n)`` of ``n`` indices, in increasing order."""
    if samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, samples, replace=False))


def _clean(value) -> str:
    return " ".join(str(value).split())  # no tab or newline inside a TSV field


def metadata_tsv(indices, true, predicted, class_names=None, paths=None) -> str:
    """The metadata file: a header row, one row per sample. ``true``/``predicted`` are class
    indices (``correct`` says whether they agree) or, without ``class_names``, numbers."""
    header = ["index", "true", "predicted"]
    classes = class_names is not None
    if classes:
        header.append("correct")
    if paths is not None:
        header.append("file")
    rows = ["\t".join(header)]
    for k, i in enumerate(indices):
        if classes:
            row = [str(int(i)), class_names[int(true[k])], class_names[int(predicted[k])],
                   "correct" if int(true[k]) == int(predicted[k]) else "wrong"]
        else:
            row = [str(int(i)), f"{float(true[k]):.6g}", f"{float(predicted[k]):.6g}"]
        if paths is not None:
            row.append(os.path.basename(paths[int(i)]))
        rows.append("\t".join(_clean(v) for v in row))
    return "\n".join(rows) + "\n"


def sprite(images, max_thumbnail: int = THUMBNAIL_MAX) -> tuple[bytes, tuple[int, int]]:
    """PNG of ``images`` in a square grid (row by row, as the projector reads it) and the
    (width, height) of one thumbnail."""
    from PIL import Image

    n = len(images)
    side = max(1, math.ceil(math.sqrt(n)))
    h, w = np.shape(images[0])[:2]
    scale = min(1.0, max_thumbnail / max(h, w), SPRITE_MAX_SIDE / (side * max(h, w)))
    tw, th = max(1, int(w * scale)), max(1, int(h * scale))
    canvas = Image.new("RGB", (side * tw, side * th), (255, 255, 255))
    for k, image in enumerate(images):
        tile = Image.fromarray(to_rgb(image))
        if (tw, th) != (w, h):
            tile = tile.resize((tw, th), Image.BILINEAR)
        canvas.paste(tile, ((k % side) * tw, (k // side) * th))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue(), (tw, th)


def predicted_labels(outputs: np.ndarray, class_names) -> np.ndarray:
    """Class indices (argmax; > 0.5 for one sigmoid output), or the outputs for regression."""
    outputs = np.asarray(outputs, dtype=np.float32)
    if class_names is None:
        return outputs.reshape(len(outputs), -1)[:, 0]
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        return (outputs[:, 0] > 0.5).astype(np.int64)
    return np.argmax(outputs, axis=-1)


def write_checkpoint(directory: str, name: str, tensor: np.ndarray, step: int) -> str:
    """Saves ``tensor`` as ``name`` in the checkpoint ``embeddings.ckpt-<step>``, makes it the
    directory's latest (a relative path in ``checkpoint``, so the directory can move) and
    removes older ones. Returns the checkpoint's prefix."""
    import tensorflow as tf

    prefix = f"{CHECKPOINT_PREFIX}-{int(step)}"
    with tf.device("/cpu:0"):
        tf.raw_ops.SaveV2(prefix=os.path.join(directory, prefix), tensor_names=[name], shape_and_slices=[""],
                          tensors=[tf.constant(tensor, tf.float32)])
    atomic_write(os.path.join(directory, "checkpoint"),
                 f'model_checkpoint_path: "{prefix}"\nall_model_checkpoint_paths: "{prefix}"\n')
    for old in glob.glob(os.path.join(directory, f"{CHECKPOINT_PREFIX}-*")):
        if not os.path.basename(old).startswith(prefix + "."):
            with contextlib.suppress(OSError):
                os.remove(old)
    return prefix


def projector_config(tensor_name: str, shape, sprite_dim=None) -> str:
    """``projector_config.pbtxt``'s text (paths relative to it; the checkpoint is found by the
    plugin as the directory's latest)."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector import ProjectorConfig

    config = ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = tensor_name
    embedding.tensor_shape.extend(int(d) for d in shape)
    embedding.metadata_path = METADATA_FILE
    if sprite_dim is not None:
        embedding.sprite.image_path = SPRITE_FILE
        embedding.sprite.single_image_dim.extend(int(d) for d in sprite_dim)
    return text_format.MessageToString(config)


class EmbeddingProjector(TensorBoardCallback):
    """Writes the penultimate-layer activations of up to ``samples`` of ``x`` (validation
    inputs as stored: uint8 or float images, features, or an image folder's files) with labels
    ``y`` for TensorBoard's Projector, after the last epoch and every ``every`` epochs.

    ``preprocess`` turns stored inputs into model inputs (default: uint8 / 255, a channel
    axis for (N, H, W)); ``class_names`` (None for regression) name the labels; ``notify``
    receives the note when the model has no usable penultimate layer.
    """

    def __init__(self, log_dir: str, x, y, class_names: list[str] | None = None, samples: int = 1000,
                 every: int | None = None, preprocess=None, notify=print, batch_size: int = 256,
                 subdir: str = "validation", seed: int = 0):
        super().__init__(log_dir)
        check_int("samples", samples, minimum=1)
        if every is not None:
            check_int("every", every, minimum=1)
        if len(x) != len(y):
            raise ValueError(f"Invalid value for argument `y`. Received: {len(y)} labels for {len(x)} inputs. "
                             "Expected one label per input.")
        self.x, self.y = x, np.asarray(y).reshape(len(y), -1)[:, 0]
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.every, self.notify, self.batch_size = every, notify, int(batch_size)
        self.preprocess = preprocess or to_model_input
        self.subdir, self.directory = subdir, os.path.join(self.log_dir, subdir)
        self.indices = sample_indices(len(x), samples, seed)
        self._noted = False
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self._last_epoch = self._written_epoch = None
        self._model_for = self._features = self._tensor_name = None
        self._sprite_dim = None
        if self.model is not None:
            self._check_model()

    @never_raise
    def _check_model(self):
        self._feature_model()  # the note, if any, when training starts

    def _feature_model(self):
        """(inputs -> [embedding, outputs]) for the current model, or None (noted once)."""
        import keras

        if self._model_for is not self.model:
            self._model_for = self.model
            classifier, reason = embedding_tensor(self.model)
            self._features = None if classifier is None else keras.Model(
                single(self.model.inputs), [classifier.input, self.model.outputs[0]])
            self._tensor_name = None if classifier is None else f"{classifier.name}_input"
            if reason and not self._noted:
                self._noted = True
                self.notify(f"Note: no embedding projector: {reason}.")
        return self._features

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        last = (self.params or {}).get("epochs")
        if epoch + 1 == last or (self.every and (epoch + 1) % self.every == 0):
            self.write(epoch)

    def on_train_end(self, logs=None):
        try:
            self._write_if_stopped()
        finally:
            super().on_train_end(logs)

    @never_raise
    def _write_if_stopped(self):
        stopped = self.model is not None and getattr(self.model, "stop_training", False)
        if stopped and self._last_epoch is not None and self._written_epoch != self._last_epoch:
            self.write(self._last_epoch)  # early stopping: the last epoch trained

    def _embed(self, features):
        embeddings, outputs = [], []
        for start in range(0, len(self.indices), self.batch_size):
            batch = self.preprocess(gather(self.x, self.indices[start:start + self.batch_size]))
            embedding, output = features(batch, training=False)
            embeddings.append(np.asarray(embedding, dtype=np.float32))
            outputs.append(np.asarray(output, dtype=np.float32))
        return np.concatenate(embeddings), np.concatenate(outputs)

    def write(self, epoch: int) -> bool:
        """Writes the projector files for the model as it is now; False when it has no
        usable penultimate layer."""
        features = self._feature_model()
        if features is None:
            return False
        embeddings, outputs = self._embed(features)
        os.makedirs(self.directory, exist_ok=True)
        self.writer(self.subdir).flush()  # an event file: TensorBoard lists the run
        if self._sprite_dim is None and looks_like_images(self.x):
            png, self._sprite_dim = sprite(gather(self.x, self.indices))
            atomic_write(os.path.join(self.directory, SPRITE_FILE), png)
        metadata = metadata_tsv(self.indices, self.y[self.indices], predicted_labels(outputs, self.class_names),
                                self.class_names, getattr(self.x, "paths", None))
        atomic_write(os.path.join(self.directory, METADATA_FILE), metadata)
        atomic_write(os.path.join(self.directory, CONFIG_FILE),
                     projector_config(self._tensor_name, embeddings.shape, self._sprite_dim))
        write_checkpoint(self.directory, self._tensor_name, embeddings, epoch + 1)
        self._written_epoch = epoch
        return True
