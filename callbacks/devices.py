"""DeviceScalars: host and GPU memory per epoch; PlacementSummary: ops per device."""

from __future__ import annotations

from callbacks.base import TensorBoardCallback, never_raise
from callbacks.memory import memory_scalars, memory_tag
from callbacks.placement import placement_markdown


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


class PlacementSummary(TensorBoardCallback):
    """At the end of the first epoch (or of training, if sooner), takes ``placement.summary()``
    (such as ``trainer.devices.PlacementLog``: ops per device), writes it as the text
    ``device_placement`` at ``<log_dir>`` (step 0) and hands it to ``on_summary(summary)``.
    Once per instance: a resumed run's later ``fit`` phases do not repeat it."""

    def __init__(self, log_dir: str, placement, on_summary=None):
        super().__init__(log_dir)
        self.placement = placement
        self.on_summary = on_summary
        self.summary = None

    def on_epoch_end(self, epoch, logs=None):
        self._summarise()

    def on_train_end(self, logs=None):
        self._summarise()
        super().on_train_end(logs)

    @never_raise
    def _summarise(self):
        if self.summary is not None:
            return
        import tensorflow as tf

        self.summary = self.placement.summary()
        with self.writer("").as_default():
            tf.summary.text("device_placement", placement_markdown(self.summary), step=0)
        if self.on_summary:
            self.on_summary(self.summary)
