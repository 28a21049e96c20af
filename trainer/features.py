"""Frozen features: each image through a model's frozen part once, not once per epoch.

An architecture module may name the layer where its frozen part ends (``FEATURE_LAYER``; in
``architectures/transfer.py`` the global average pooling after the backbone). While no layer up
to it has trainable weights and the training images are not augmented, every epoch of
``model.fit`` computes the same output of that layer for the same image: the Keras
transfer-learning guide's "fast feature extraction". trainer then computes it once per training
and validation image (in sample order, in inference mode) and runs that phase's ``model.fit`` on
the rest of the model, its *head* (the same layers, weights, optimizer and metrics), fed with the
features in the run's own batch order. Training is the same (the head's dropout draws the same
masks); the callbacks keep the whole model, whose head weights are the ones being trained, and
Keras's validation pass on the head gives the same results as on the whole model.

The features are computed again after a phase switch (a backbone unfrozen: the whole model
trains again) and on resume; ``--no-feature-cache`` turns this off. They are kept in memory,
at most ``TRAINER_FEATURE_CACHE_MAX_MB`` (default 2048) MiB; a larger set trains the whole model.
"""

from __future__ import annotations

import os
import time

import numpy as np

DEFAULT_MAX_MIB = 2048
EXTRACT_BATCH = 256  # images per forward pass while computing the features


def max_bytes() -> int:
    """The memory the features may take: ``TRAINER_FEATURE_CACHE_MAX_MB`` MiB (default 2048)."""
    value = os.environ.get("TRAINER_FEATURE_CACHE_MAX_MB", "")
    try:
        return int(float(value) * 2**20) if value.strip() else DEFAULT_MAX_MIB * 2**20
    except ValueError:
        return DEFAULT_MAX_MIB * 2**20


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

    def __init__(self, model, layer: str, order, val_size: int, eval_batch: int, compile_head, notify=print):
        import keras

        self.model, self.layer, self.order, self.val_size = model, layer, order, int(val_size)
        self.eval_batch, self.compile_head, self.notify = eval_batch, compile_head, notify
        output = model.get_layer(layer).output
        self.extractor = keras.Model(model.inputs, output, name=f"{model.name}_features")
        self.head = keras.Model(output, model.outputs, name=f"{model.name}_head")
        self.shape = tuple(output.shape[1:])
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
                self.notify(f"Note: the frozen {self.layer!r} features would take {size / 2**20:,.0f} MiB, over "
                            f"TRAINER_FEATURE_CACHE_MAX_MB={max_bytes() // 2**20}: training through the whole model.")
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
        train = self._extract(self.order.in_order(EXTRACT_BATCH), check)
        val = self._extract(val_data, check) if val_data is not None else None
        self._features = train, val
        shown = f"{len(train[0]):,} training" + (f" and {len(val[0]):,} validation" if val else "")
        self.notify(f"Features of the frozen layers (up to {self.layer!r}) computed once for {shown} images "
                    f"in {time.perf_counter() - start:.1f} s; the head trains on them "
                    "(--no-feature-cache: the whole model every epoch).")

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
        with tf.device("/cpu:0"):
            x, y = tf.constant(x), tf.constant(y)
        train = datasets.gathered(self.order.index_batches(batches), x, y)
        if val is not None:
            val = datasets.pipeline(*val, self.eval_batch)
        self.compile_head(self.head)
        self.head.history = None  # Keras's History callback is given the whole model
        return self.head, train, val
