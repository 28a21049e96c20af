"""A few samples of a data set, as images and as model inputs: the shared bottom layer of the
panels that look at individual samples (the Grad-CAM grid, the embedding projector).

Images are kept as they were loaded (uint8, or floats in [0, 1]); an image folder's images are
a lazy sequence (``image_shape``, ``__len__``, ``load(indices)``), decoded only when asked.
"""

from __future__ import annotations

import numpy as np


def is_lazy(images) -> bool:
    """A lazy sequence of images (an image folder's files), not an array."""
    return hasattr(images, "image_shape") and hasattr(images, "__getitem__") and not isinstance(images, np.ndarray)


def gather(images, indices) -> np.ndarray:
    """``images[indices]`` as one array; a lazy sequence decodes only these (in one pass when it
    has ``load``)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if is_lazy(images):
        if hasattr(images, "load"):
            return np.asarray(images.load(indices))
        return np.stack([np.asarray(images[int(i)]) for i in indices]) if len(indices) else np.empty((0,))
    return np.asarray(images)[indices]


def looks_like_images(images) -> bool:
    """(N, H, W) or (N, H, W, C) with C in 1, 3, 4 (or a lazy sequence of images)."""
    if is_lazy(images):
        return True
    shape = np.shape(images)
    return len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3, 4))


def to_model_input(raw) -> np.ndarray:
    """Images as the model receives them: uint8 divided by 255, floats as they are, float32,
    a channel axis added to (N, H, W). Features (N, F) are only made float32."""
    raw = np.asarray(raw)
    x = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32)
    return x[..., np.newaxis] if x.ndim == 3 else x


def single(tensors):
    """A model's one input as itself, not a list of one: Keras then takes a tensor without
    warning that the structure of the inputs does not match."""
    return tensors[0] if isinstance(tensors, (list, tuple)) and len(tensors) == 1 else tensors
