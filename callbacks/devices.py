"""DeviceScalars: host and GPU memory per epoch, as scalars in the ``train`` run."""

from __future__ import annotations

from callbacks.base import TensorBoardCallback, never_raise
from trainer.devices import memory_scalars, memory_tag


class DeviceScalars(TensorBoardCallback):
    """Writes ``memory/host_rss_mib``, ``memory/host_peak_mib`` and, per GPU,
    ``memory/gpu{i}_current_mib`` / ``memory/gpu{i}_peak_mib`` to ``<log_dir>/train``
    at the end of every epoch (step = epoch index)."""

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        with self.writer("train").as_default():
            for key, value in memory_scalars().items():
                tf.summary.scalar(memory_tag(key), value, step=epoch)
