"""Per-layer gradient norms of the loss on one fixed batch, written every few epochs.

Writes to ``<log_dir>/train`` at step = epoch index: ``gradient_norm/<layer>`` (L2 norm
of the gradients of the layer's trainable weights) and ``gradient_norm/global`` (L2 norm
of all gradients). A nested model (a backbone) gets one norm for all its weights,
``gradient_norm/<nested model>``, and one per layer for its top ``nested_layers`` layers with
trainable weights (as ``WeightHistograms``). The gradient is taken with a ``training=False`` forward pass and the
model's ``compute_loss`` (compiled loss plus regularization losses), in float32.
"""

from __future__ import annotations

import keras

from callbacks import compat
from callbacks.base import TensorBoardCallback, never_raise
from callbacks.histograms import NESTED_LAYERS, check_nested_layers, due, logged_layers, validate_every

GLOBAL = "global"


def gradient_norm_tag(layer_name: str) -> str:
    """Scalar tag of a layer's gradient norm: ``"gradient_norm/<layer>"``."""
    return f"gradient_norm/{layer_name}"


class GradientNorms(TensorBoardCallback):
    """Gradient norms per layer on ``batch = (x, y)``, every ``every`` epochs (0 = off)."""

    def __init__(self, log_dir: str, batch, every: int = 1, nested_layers: int | None = NESTED_LAYERS):
        super().__init__(log_dir)
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                f"Invalid value for argument `batch`. Received: batch of type "
                f"{type(batch).__name__}. Expected a pair (x, y) of arrays."
            )
        sizes = {len(a) for a in keras.tree.flatten(tuple(batch))}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(
                f"Invalid value for argument `batch`. Received: arrays of lengths "
                f"{sorted(sizes)}. Expected inputs and targets with the same nonzero length."
            )
        self.batch = tuple(batch)
        self.every = validate_every(every)
        self.nested_layers = check_nested_layers(nested_layers)
        self._fn = self._fn_model = None
        self._names: list[str] = []

    def _gradient_function(self):
        """Builds (once per model) a ``tf.function`` returning per-layer and global norms."""
        import tensorflow as tf

        model = self.model
        key = (id(model), tuple(id(v) for v in model.trainable_variables))  # a new phase: new variables
        if self._fn is not None and self._fn_model == key:
            return self._fn
        # Group the model's trainable variables by the top-level layer that owns them.
        variables = model.trainable_variables
        index = {id(v): i for i, v in enumerate(variables)}
        groups, seen = [], set()
        for layer in model.layers:
            ids = [index[id(v)] for v in layer.trainable_variables if id(v) in index]
            ids = [i for i in ids if i not in seen]
            seen.update(ids)
            if ids:
                groups.append((layer.name, ids))
        top = {layer.name for layer in model.layers}
        for layer in logged_layers(model, self.nested_layers):  # a nested model's top layers
            if layer.name not in top:
                groups.append((layer.name, [index[id(v)] for v in layer.trainable_variables if id(v) in index]))

        @tf.function(reduce_retracing=True)
        def norms(x, y):
            with tf.GradientTape() as tape:
                y_pred = model(x, training=False)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
            grads = tape.gradient(loss, variables, unconnected_gradients="zero")
            grads = [tf.cast(g, tf.float32) for g in grads]
            per_layer = [tf.linalg.global_norm([grads[i] for i in ids]) for _, ids in groups]
            return per_layer, tf.linalg.global_norm(grads)

        # One function per model: in a process that trains many models (a sweep), TensorFlow
        # would count each model's first trace as a retrace and warn from the fifth on.
        compat.quiet_retracing(norms)
        self._names = [name for name, _ in groups]
        self._fn, self._fn_model = norms, key
        return norms

    def compute(self) -> dict[str, float]:
        """Gradient norms on the fixed batch: ``{layer_name: norm, ..., "global": norm}``."""
        fn = self._gradient_function()
        per_layer, total = fn(*self.batch)
        norms = {name: float(v) for name, v in zip(self._names, per_layer)}
        norms[GLOBAL] = float(total)
        return norms

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        if not due(epoch, self.every) or model is None or not model.trainable_variables:
            return
        if not getattr(model, "compiled", False):
            return
        import tensorflow as tf

        norms = self.compute()
        with self.writer("train").as_default(step=epoch):
            for name, value in norms.items():
                tf.summary.scalar(gradient_norm_tag(name), value)
        self.writer("train").flush()
