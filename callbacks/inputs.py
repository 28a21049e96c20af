"""The ``inputs`` image panel: training samples exactly as the model receives them (after
resizing and augmentation), each captioned with its label, written once when training starts,
so a wrong label, a wrong colour mode or an augmentation that is too strong shows at once."""

from __future__ import annotations

import numpy as np

from callbacks.base import TensorBoardCallback, never_raise
from callbacks.drawing import render_grid

IMAGE_TAG = "inputs"
MAX_TILES = 36


class InputsGrid(TensorBoardCallback):
    """Writes ``images`` (float in [0, 1] or uint8, NHWC) with ``labels`` to ``train/inputs``.

    Written at the first ``on_train_begin`` only: ``written`` is saved with a resumable state,
    so a resumed run does not write it twice."""

    state_attributes = ("written",)

    def __init__(self, log_dir: str, images, labels, class_names: list[str] | None = None,
                 max_tiles: int = MAX_TILES):
        super().__init__(log_dir)
        images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"Invalid value for argument `images`. Received: shape {images.shape} with "
                             f"{len(labels)} labels. Expected (N, H, W, C) and one label per image.")
        self.images, self.labels = images[:max_tiles], labels[:max_tiles]
        self.class_names = class_names
        self.written = False

    def _caption(self, label) -> str:
        name = self.class_names[int(label)] if self.class_names else str(int(label))
        return name if len(name) <= 14 else name[:13] + "…"

    @never_raise
    def on_train_begin(self, logs=None):
        if self.written:
            return
        import tensorflow as tf

        grid = render_grid(list(self.images), [self._caption(y) for y in self.labels])
        with self.writer("train").as_default():
            tf.summary.image(IMAGE_TAG, grid[None], step=0)
        self.written = True
        self.close_writers()
