"""Frozen features: each image through a model's frozen part once, not once per epoch.

An architecture module may name the layer where its frozen part ends (``FEATURE_LAYER``; in
``architectures/transfer.py`` the global average pooling after the backbone). While no layer up
to it has trainable weights and the training images are not augmented, every epoch of
``model.fit`` computes the same output of that layer for the same image: the Keras
transfer-learning guide's "fast feature extraction". trainer then computes it once per training
and validation image (in sample order, in inference mode) and runs that phase's ``model.fit`` on
the rest of the model, its *head* (the same layers, weights, optimizer and metrics), fed with the
features in the run's own batch order. (A callback of your own that evaluates the whole model
inside such a phase sees the shared metrics' running state: Keras resets a model's compiled
metrics only once that model has used them.) Training is the same (the head's dropout draws the same
masks); the callbacks keep the whole model, whose head weights are the ones being trained, and
Keras's validation pass on the head gives the same results as on the whole model.

The features are needed again after a phase switch (a backbone unfrozen: the whole model
trains again); ``--no-feature-cache`` turns this off. They are kept in memory, at most
``TRAINER_FEATURE_CACHE_MAX_MB`` (default 2048) MiB (twice that for a moment while they are
computed); a larger set trains the whole model. They
are also stored under the image cache folder (``features/``), keyed by a hash of the frozen
layers' weights, the data (files: paths, sizes, modification times, image size; arrays: their
bytes) and the library versions, so a resumed run, a rerun or the next trial of a sweep with the
same frozen backbone reads them instead of computing them; the ``TRAINER_CACHE_KEEP`` most
recently used sets within ``TRAINER_CACHE_MAX_MB`` are kept (as the decoded-image cache).
"""

from __future__ import annotations

import os
import time

import numpy as np

DEFAULT_MAX_MIB = 2048
EXTRACT_BATCH = 256  # images per forward pass while computing the features


def max_bytes() -> int:
    """The memory the features may take: ``TRAINER_FEATURE_CACHE_MAX_MB`` MiB (default 2048)."""
    value = os.environ.get("TRAINER_FEATURE_CACHE_MAX_MB", "").strip()
    try:
        mib = float(value) if value else DEFAULT_MAX_MIB
        if mib < 0:
            raise ValueError
    except ValueError:
        import warnings

        warnings.warn(f"Invalid value for the environment variable `TRAINER_FEATURE_CACHE_MAX_MB`. Received: "
                      f"{value!r}. Expected a number of MiB >= 0; using {DEFAULT_MAX_MIB}.", RuntimeWarning, stacklevel=2)
        mib = DEFAULT_MAX_MIB
    return int(mib * 2**20)


def unusable(model, layer: str) -> str | None:
    """Why the head cannot stand in for ``model`` in ``fit`` (None: it can): the layer is not
    one of the model's, or the model has its own training step or loss, which a head would lose."""
    import keras

    if layer not in {each.name for each in model.layers}:
        return "not a layer of the model"
    for name in ("train_step", "test_step", "compute_loss"):
        if getattr(type(model), name) is not getattr(keras.Model, name):
            return f"the model has its own {name}"
    return None


def stop_forwarder(head):
    """A callback (given the whole model, as every callback of the run) that stops the head's
    ``fit`` when a callback asks the whole model to stop (early stopping, the execution pace)."""
    import keras

    class ForwardStop(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model.stop_training = False

        def on_train_batch_end(self, batch, logs=None):
            head.stop_training = head.stop_training or self.model.stop_training

        def on_epoch_end(self, epoch, logs=None):
            head.stop_training = head.stop_training or self.model.stop_training

    return ForwardStop()


class FrozenFeatures:
    """The frozen part's output for a run's training and validation images, and the head that
    trains on it. ``order``: the run's training batches (``trainer.data.EpochOrder``), whose
    epoch and skip the feature batches follow; ``val_size``: validation samples (0: none);
    ``compile_head(head)`` compiles the head like the whole model (same optimizer object)."""

    def __init__(self, model, layer: str, order, val_size: int, eval_batch: int, compile_head, notify=print,
                 data=(), store: str | None = None):
        """``data``: what the features are computed from (the training and validation inputs:
        ``ImageFiles`` or arrays), hashed into the store's key; ``store``: the folder of stored
        features (None: nothing stored)."""
        import keras

        self.model, self.layer, self.order, self.val_size = model, layer, order, int(val_size)
        self.eval_batch, self.compile_head, self.notify = eval_batch, compile_head, notify
        self.data, self.store = tuple(data), store
        output = model.get_layer(layer).output
        self.shape = tuple(output.shape[1:])
        if None in self.shape:
            raise ValueError(f"its output shape {self.shape} is not fully known")
        self.extractor = keras.Model(model.inputs, output, name=f"{model.name}_features")
        # ValueError when the layers after it also need tensors from before it (a skip connection)
        self.head = keras.Model(output, model.outputs, name=f"{model.name}_head")
        self._features = None
        self._told = False

    def usable(self) -> bool:
        """Whether the frozen part can be read once now: nothing up to the layer trains, and the
        features fit in the memory bound (said once when they do not)."""
        if self.extractor.trainable_weights:
            return False
        size = (self.order.size + self.val_size) * int(np.prod(self.shape)) * 4
        if size > max_bytes():
            if not self._told:
                self._told = True
                self.notify(f"Note: the frozen {self.layer!r} features would take {size / 2**20:,.3g} MiB, over "
                            f"TRAINER_FEATURE_CACHE_MAX_MB={max_bytes() / 2**20:.3g}: training through the whole model.")
            return False
        return True

    def invalidate(self) -> None:
        """The frozen part changed (a new phase): the features are computed again when next used."""
        self._features = None

    def compute(self, val_data, check=lambda: None) -> None:
        """The features of every training and validation image, once: ``val_data`` is the
        validation batches in sample order (or None); ``check()`` runs between batches and may
        raise to stop (Ctrl-C)."""
        if self._features is not None:
            return
        start = time.perf_counter()
        folder = os.path.join(self.store, self.key()) if self.store is not None else None
        stored = load_features(folder) if folder is not None else None
        if stored is not None:
            self._features = stored
            how = "read from the feature cache (computed by an earlier run)"
        else:
            train = self._extract(self.order.in_order(EXTRACT_BATCH), check)
            val = self._extract(val_data, check) if val_data is not None else None
            self._features = train, val
            how = "computed once"
            if folder is not None:
                save_features(folder, self._features, self.notify)
        self._features = _on_cpu(self._features)  # one copy, in TensorFlow's memory
        train, val = self._features
        shown = f"{len(train[0]):,} training" + (f" and {len(val[0]):,} validation" if val else "")
        self.notify(f"Features of the frozen layers (up to {self.layer!r}) {how} for {shown} images "
                    f"in {time.perf_counter() - start:.1f} s; the head trains on them "
                    "(--no-feature-cache: the whole model every epoch).")

    def key(self) -> str:
        """A hash of what the features depend on: the frozen layers' weights, the layer, the
        precision policy, the data and the library versions."""
        import hashlib

        import keras
        import tensorflow as tf

        digest = hashlib.sha256(repr((self.layer, self.shape, keras.__version__, tf.__version__,
                                      keras.mixed_precision.global_policy().name, self.val_size, "v1")).encode())
        for variable in self.extractor.weights:
            digest.update(variable.path.encode())
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
        for item in self.data:
            if item is None:
                digest.update(b"none")
            elif hasattr(item, "fingerprint"):  # image files
                digest.update(item.fingerprint().encode())
            else:
                array = np.ascontiguousarray(item)
                digest.update(repr((array.shape, array.dtype.str)).encode())
                digest.update(memoryview(array).cast("B"))
        return digest.hexdigest()[:24]

    def _extract(self, ds, check) -> tuple[np.ndarray, np.ndarray]:
        features, labels = [], []
        for x, y in ds:
            check()
            features.append(np.asarray(self.extractor.predict_on_batch(x), np.float32))
            labels.append(y.numpy())
        return np.concatenate(features), np.concatenate(labels)

    def fit_inputs(self, batches: int):
        """(the compiled head, its training batches, its validation batches or None)."""
        import tensorflow as tf

        from trainer import data as datasets

        (x, y), val = self._features
        train = datasets.gathered(self.order.index_batches(batches), x, y)
        if val is not None:
            val = datasets.gathered(tf.data.Dataset.range(len(val[0])).batch(self.eval_batch), *val)
        self.compile_head(self.head)
        self.head.history = None  # Keras's History callback is given the whole model
        return self.head, train, val


def _on_cpu(features):
    """((x, y), (x, y) or None) as tensors in host memory; the NumPy arrays are let go."""
    import tensorflow as tf

    with tf.device("/cpu:0"):
        return tuple(None if pair is None else tuple(tf.constant(a) for a in pair) for pair in features)


def store_root() -> str:
    """Where features are stored: ``features/`` in the image cache folder."""
    from trainer.image_folder import cache_root

    return os.path.join(cache_root(), "features")


def load_features(folder: str):
    """((train x, y), (val x, y) or None) stored in ``folder``, or None (not there, unreadable)."""
    path = os.path.join(folder, "features.npz")
    if not os.path.isfile(os.path.join(folder, "meta.json")):
        return None
    try:
        with np.load(path) as f:
            train = f["train_x"], f["train_y"]
            val = (f["val_x"], f["val_y"]) if "val_x" in f else None
        os.utime(os.path.join(folder, "meta.json"))  # last used: now
    except (OSError, ValueError, KeyError):
        return None
    return train, val


def save_features(folder: str, features, notify=print) -> None:
    """Stores ``features`` in ``folder`` (filled under a temporary name, then renamed, so an
    interrupted save is never read), then prunes the store; a failure only costs a note."""
    import json
    import shutil
    import uuid

    from trainer.image_pipeline import prune_as_configured

    (train_x, train_y), val = features
    arrays = {"train_x": train_x, "train_y": train_y}
    if val is not None:
        arrays.update(val_x=val[0], val_y=val[1])
    partial = f"{folder}.partial-{uuid.uuid4().hex[:8]}"
    try:
        os.makedirs(partial)
        np.savez(os.path.join(partial, "features.npz"), **arrays)
        size = sum(a.nbytes for a in arrays.values())
        with open(os.path.join(partial, "meta.json"), "w") as f:
            json.dump({"bytes": size, "images": len(train_x) + (len(val[0]) if val else 0)}, f)
        os.replace(partial, folder)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if not os.path.isdir(folder):  # another run stored the same features first: fine
            notify(f"Note: the features could not be stored in {os.path.dirname(folder)!r}: {exc}")
        return
    prune_as_configured(os.path.dirname(folder), protect=[folder])
