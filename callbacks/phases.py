"""The number of trainable parameters, logged every epoch: a fine-tuning phase that unfreezes
layers (or any change of what trains) shows as a step in the curve.

Writes ``trainable_parameters`` to ``<log_dir>/train`` at step = epoch index, counted at the
end of the epoch (so the first epoch of a new phase shows the new count).
"""

from __future__ import annotations

import numpy as np

from callbacks.base import TensorBoardCallback, never_raise

TAG = "trainable_parameters"


def trainable_parameters(model) -> int:
    """The number of values in ``model``'s trainable weights."""
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


class TrainableParameters(TensorBoardCallback):
    """``trainable_parameters`` every epoch (one scalar: cheap on any model)."""

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        if self.model is None:
            return
        import tensorflow as tf

        with self.writer("train").as_default(step=epoch):
            tf.summary.scalar(TAG, trainable_parameters(self.model))
        self.writer("train").flush()
