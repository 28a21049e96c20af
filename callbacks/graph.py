"""The model's forward graph for TensorBoard's Graphs tab.

At ``on_train_begin`` the model's inference function (``model(x, training=False)``) is
traced once from the model's input signature, without running it, and its ``tf.Graph``
is written with ``tf.summary.graph`` to ``<log_dir>/train``. Models without a known input
signature (subclassed models that were never built on symbolic inputs) are skipped.
"""

from __future__ import annotations

import keras

from callbacks.base import TensorBoardCallback, never_raise


def input_signature(model):
    """``tf.TensorSpec`` structure matching ``model.input``, or None when it is unknown."""
    import tensorflow as tf

    try:
        inputs = model.input
    except (AttributeError, ValueError):
        return None
    return keras.tree.map_structure(
        lambda t: tf.TensorSpec(t.shape, t.dtype), inputs
    )


def forward_graph(model):
    """The ``tf.Graph`` of ``model(x, training=False)`` traced on its input signature, or None."""
    import tensorflow as tf

    spec = input_signature(model)
    if spec is None:
        return None
    forward = tf.function(lambda x: model(x, training=False))
    return forward.get_concrete_function(spec).graph


class ModelGraph(TensorBoardCallback):
    """Writes the model's forward graph once per model at the start of training."""

    def __init__(self, log_dir: str):
        super().__init__(log_dir)
        self._written_for = None

    @never_raise
    def on_train_begin(self, logs=None):
        # A second fit of the same model into the same log_dir would only duplicate it.
        if self.model is None or self._written_for is self.model:
            return
        import tensorflow as tf

        graph = forward_graph(self.model)
        if graph is None:
            return
        with self.writer("train").as_default():
            tf.summary.graph(graph)
        self.writer("train").flush()
        self._written_for = self.model
