"""Grid of the most confident misclassified validation images, one image per epoch.

Tag ``misclassified`` (run ``validation`` each ``every`` epochs, ``test`` from
``log_test``): up to ``k`` tiles, most confident mistake first, each captioned
"true T / pred P" and the confidence. Nothing is written when there is no mistake. When the
images are decoded from files (an image folder), the text ``misclassified_files`` lists the
file of each tile, so the user can open them.
"""

from __future__ import annotations

import warnings

import numpy as np

from .base import never_raise
from .drawing import grid_shape, render_grid  # noqa: F401 - grid_shape is re-exported
from .samples import gather, is_lazy
from .validation_metrics import MetricSummaryCallback, WorstMistakes

IMAGE_TAG = "misclassified"
FILES_TAG = "misclassified_files"


def files_markdown(tiles: list[dict]) -> str:
    """The files of the grid's tiles, most confident mistake first, as a Markdown table."""
    rows = [f"| {n} | {t['true']} | {t['pred']} | {t['confidence']:.0%} | `{t['path']}` |"
            for n, t in enumerate(tiles, 1)]
    return "\n".join(["| # | true | predicted | confidence | file |", "|---|---|---|---|---|", *rows])


def check_images(images, name="images"):
    """Validates (N, H, W) or (N, H, W, C) uint8, or float in [0, 1]; returns it, not copied.
    A lazy sequence of images (with ``image_shape``, ``__len__`` and ``__getitem__``, such as
    an image folder's files decoded on demand) is taken as it is: only the tiles drawn are read."""
    if is_lazy(images):
        return images
    array = np.asarray(images)
    ok = array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (1, 3, 4))
    if ok and array.dtype != np.uint8:
        ok = np.issubdtype(array.dtype, np.floating) and (
            array.size == 0 or (array.min() >= 0.0 and array.max() <= 1.0)
        )
    if not ok:
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: array of shape {array.shape} "
            f"and dtype {array.dtype}. Expected the raw images, shape (N, H, W) or "
            "(N, H, W, C) with C in 1, 3, 4, as uint8 or as floats in [0, 1]."
        )
    return array


class MisclassifiedGrid(MetricSummaryCallback):
    """Draws the mistakes kept by a compiled ``WorstMistakes`` metric.

    ``images`` are the validation images in the order the model sees them (the
    sample indices recorded by the metric address this array); ``test_images`` the same for
    the test set, drawn by ``log_test`` after ``model.evaluate(test)``.
    """

    metric_type = WorstMistakes

    def __init__(self, log_dir: str, metric: WorstMistakes, images, class_names: list[str] | None = None,
                 every: int = 1, test_images=None):
        super().__init__(log_dir, metric, class_names, every)
        self.images = check_images(images)
        self.test_images = None if test_images is None else check_images(test_images, "test_images")
        self._warned_index = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._warned_index = False

    def _caption(self, true, pred, confidence):
        def short(i):
            name = self.class_name(i)
            return name if len(name) <= 12 else name[:11] + "…"

        return f"true {short(true)} / pred {short(pred)}\n{confidence:.0%}"

    image_tag = IMAGE_TAG  # a subclass drawing other tiles of the same mistakes writes its own tag
    files_tag = FILES_TAG

    def _mistakes(self, images):
        """The metric's mistakes, [] if none, None (warned once) if ``images`` is too short."""
        mistakes = self.metric.mistakes()
        if mistakes and max(m[0] for m in mistakes) >= len(images):
            if not self._warned_index:
                self._warned_index = True
                warnings.warn(
                    f"{type(self).__name__}: the metric saw sample index {max(m[0] for m in mistakes)}"
                    f" but `images` has {len(images)} images; pass the evaluated images, in "
                    "order. Nothing was logged.",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return None
        return mistakes

    def _tiles(self, images, mistakes) -> list:
        """The images drawn in the grid, one per mistake (here: the images themselves)."""
        return list(gather(images, [i for i, _, _, _ in mistakes]))

    def _write(self, subdir, step, images=None):
        import tensorflow as tf

        images = self.images if images is None else images
        mistakes = self._mistakes(images)
        if not mistakes:
            return mistakes
        grid = render_grid(self._tiles(images, mistakes), [self._caption(t, p, c) for _, t, p, c in mistakes])
        tiles = [{"index": i, "true": self.class_name(t), "pred": self.class_name(p), "confidence": c}
                 for i, t, p, c in mistakes]
        paths = getattr(images, "paths", None)  # images decoded from files: name the files
        with self.writer(subdir).as_default():
            tf.summary.image(self.image_tag, grid[None], step=step)
            if paths is not None and self.files_tag:
                for tile in tiles:
                    tile["path"] = paths[tile["index"]]
                tf.summary.text(self.files_tag, files_markdown(tiles), step=step)
        return tiles

    @never_raise
    def log_test(self, step, images=None):
        """After ``model.evaluate(test)``: draws its mistakes from the test images (``images``,
        else ``test_images``); returns ``{"misclassified": [...]}``, the tiles drawn."""
        images = self.test_images if images is None else check_images(images)
        if images is None:
            raise ValueError("MisclassifiedGrid.log_test needs the test images: pass `test_images` "
                             "to the constructor or `images` here.")
        tiles = self._log_test(step, images=images)
        return None if tiles is None else {"misclassified": tiles}
