"""Batches for training and evaluation, from arrays in memory or from image files decoded on
the fly: the one place the run asks for them, whatever the data is."""

from __future__ import annotations

from trainer import data as datasets

EVAL_BATCH = 1024  # inference only: a larger batch makes the validation and test passes cheaper


def training_batches(x, y, batch_size: int, seed: int, cache: str = "auto", augment=None):
    """Training batches in an order that depends only on (seed, epoch), with ``.callback``,
    ``.skip`` and ``.dataset(batches)`` (see ``data.EpochOrder``)."""
    if datasets.is_files(x):
        from trainer.image_pipeline import EpochOrderedFiles

        return EpochOrderedFiles(x, batch_size, seed, cache=cache, augment=augment)
    return datasets.EpochOrderedData(x, y, batch_size, seed)


def eval_batches(x, y, batch_size: int, cache: str = "auto"):
    """Validation or test batches in sample order, never augmented."""
    batch_size = max(batch_size, EVAL_BATCH)
    if datasets.is_files(x):
        from trainer.image_pipeline import eval_pipeline

        return eval_pipeline(x, batch_size, cache=cache)
    return datasets.pipeline(x, y, batch_size)
