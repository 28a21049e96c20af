"""Weight histograms and per-layer weight norms, written every few epochs.

Writes to ``<log_dir>/train`` at step = epoch index:

* ``<layer>/<weight>`` histograms (e.g. ``dense_1/kernel``) of the finite values of every
  trainable weight, cast to float32 first so float16/bfloat16 weights work;
* ``weight_norm/<layer>`` scalars: the L2 norm of the finite values of all the layer's
  trainable weights (one section in the Scalars tab);
* ``nonfinite_weights``: the total number of NaN/inf weight values, every logged epoch,
  and ``nonfinite/<layer>/<weight>`` with the count of one weight, only when it is nonzero.

A nested model (a pretrained backbone with hundreds of weight tensors) is logged layer by
layer, but only its top ``nested_layers`` layers with trainable weights (default
``NESTED_LAYERS``; ``None``: all), so the cost stays bounded; a frozen backbone has no
trainable weights and costs nothing.
"""

from __future__ import annotations

import numpy as np

from callbacks.base import TensorBoardCallback, never_raise
from callbacks.text import check_int


def weight_tag(layer_name: str, weight_path_or_name: str) -> str:
    """Histogram tag of one weight: ``"<layer>/<weight>"``, e.g. ``"dense_1/kernel"``.

    Accepts a Keras 3 weight path (already prefixed by the layer name, ``"dense_1/kernel"``;
    nested models give ``"block/dense/kernel"``) or a bare name (``"kernel"``).
    """
    name = weight_path_or_name.replace(":", "_")
    if name == layer_name or name.startswith(layer_name + "/"):
        return name
    return f"{layer_name}/{name}"


def weight_norm_tag(layer_name: str) -> str:
    """Scalar tag of a layer's weight norm: ``"weight_norm/<layer>"``."""
    return f"weight_norm/{layer_name}"


def nonfinite_tag(layer_name: str, weight_path_or_name: str) -> str:
    """Scalar tag of one weight's NaN/inf count: ``"nonfinite/<layer>/<weight>"``."""
    return f"nonfinite/{weight_tag(layer_name, weight_path_or_name)}"


NESTED_LAYERS = 8  # layers of a nested model (a backbone) logged by default, from its top


def check_nested_layers(nested_layers) -> int | None:
    """``nested_layers``: an int >= 0, or None for all."""
    return None if nested_layers is None else check_int("nested_layers", nested_layers, minimum=0)


def logged_layers(model, nested_layers: int | None = NESTED_LAYERS) -> list:
    """The layers whose trainable weights are logged: every top-level layer with trainable
    weights, except that a nested model is replaced by its top ``nested_layers`` layers with
    trainable weights (``None``: all of them), recursively."""
    found = []
    for layer in model.layers:
        if not layer.trainable_weights:
            continue
        inner = getattr(layer, "layers", None)
        if isinstance(inner, list) and inner:
            nested = logged_layers(layer, None)
            if nested_layers is not None:
                nested = nested[len(nested) - nested_layers:] if nested_layers else []
            found += nested
        else:
            found.append(layer)
    return found


def validate_every(every) -> int:
    """``every`` must be an int >= 0 (0 turns the callback off)."""
    return check_int("every", every, minimum=0)


def due(epoch: int, every: int) -> bool:
    """True when epoch index ``epoch`` is one of every ``every``-th epochs (0 = never)."""
    return every > 0 and (epoch + 1) % every == 0


class WeightHistograms(TensorBoardCallback):
    """Histograms and L2 norms of every trainable weight, every ``every`` epochs (0 = off); of a
    nested model, only the top ``nested_layers`` layers (None: all)."""

    def __init__(self, log_dir: str, every: int = 1, nested_layers: int | None = NESTED_LAYERS):
        super().__init__(log_dir)
        self.every = validate_every(every)
        self.nested_layers = check_nested_layers(nested_layers)

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        if not due(epoch, self.every) or self.model is None or not self.model.trainable_weights:
            return
        import tensorflow as tf

        total_nonfinite = 0
        with self.writer("train").as_default(step=epoch):
            for layer in logged_layers(self.model, self.nested_layers):
                weights = layer.trainable_weights
                squares = 0.0
                for weight in weights:
                    values = np.asarray(weight.numpy(), dtype=np.float32).ravel()
                    finite = values[np.isfinite(values)]
                    tf.summary.histogram(weight_tag(layer.name, weight.path), finite)
                    squares += float(np.sum(np.square(finite, dtype=np.float64)))
                    bad = values.size - finite.size
                    if bad:
                        tf.summary.scalar(nonfinite_tag(layer.name, weight.path), bad)
                        total_nonfinite += bad
                tf.summary.scalar(weight_norm_tag(layer.name), np.sqrt(squares))
            tf.summary.scalar("nonfinite_weights", total_nonfinite)
        self.writer("train").flush()
