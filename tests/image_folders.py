"""Builds small image folders with Pillow at test time: one drawn shape per class, mixed sizes,
modes and formats, plus the files a real folder has (corrupt images, notes, .DS_Store)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
FORMATS = (("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("gif", "GIF"), ("JPEG", "JPEG"))


def draw(shape: str, size: tuple[int, int], seed: int, mode: str = "RGB") -> Image.Image:
    """A shape on a noisy background, so every image differs; ``size`` is (W, H)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 80, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(background)
    pen = ImageDraw.Draw(image)
    w, h = size
    box = [w * 0.2, h * 0.2, w * 0.8, h * 0.8]
    color = tuple(int(c) for c in rng.integers(150, 256, 3))
    if shape == "circle":
        pen.ellipse(box, fill=color)
    elif shape == "square":
        pen.rectangle(box, fill=color)
    else:
        pen.polygon([(w * 0.5, h * 0.15), (w * 0.85, h * 0.85), (w * 0.15, h * 0.85)], fill=color)
    return image.convert(mode)


def save(image: Image.Image, path: str, fmt: str | None = None) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    allowed = {"JPEG": ("L", "RGB", "CMYK"), "BMP": ("L", "RGB", "RGBA", "1")}.get(fmt)
    if allowed and image.mode not in allowed:  # keep gray images gray
        image = image.convert("L" if image.mode in ("LA", "I;16") else "RGB")
    image.save(path, fmt)
    return path


def write_class(folder: str, shape: str, n: int, seed: int = 0, modes=("RGB", "L", "RGBA"),
                formats=FORMATS, nested: bool = True) -> list[str]:
    """``n`` images of one shape: sizes 8-32 px, the given modes and formats, some in a subfolder."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        ext, fmt = formats[i % len(formats)]
        mode = modes[i % len(modes)]
        size = (int(rng.integers(8, 33)), int(rng.integers(8, 33)))
        sub = "more" if nested and i % 4 == 3 else ""
        path = os.path.join(folder, sub, f"{shape}_{i:03d}.{ext}")
        paths.append(save(draw(shape, size, seed * 1000 + i, mode), path, fmt))
    return paths


def write_junk(folder: str) -> dict[str, str]:
    """Files a real folder has: non-images (ignored) and broken images (skipped, with a reason)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not an image\n")
    with open(os.path.join(folder, ".DS_Store"), "wb") as f:
        f.write(b"\0\0\0\1Bud1")
    empty = os.path.join(folder, "empty.png")
    open(empty, "wb").close()
    truncated = os.path.join(folder, "truncated.jpg")
    save(draw("square", (32, 32), 7), truncated, "JPEG")
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    fake = os.path.join(folder, "fake.gif")
    with open(fake, "w") as f:
        f.write("GIF? no, text")
    return {"empty": empty, "truncated": truncated, "fake": fake}


def make_classes(root: str, counts=None, **kwargs) -> dict[str, list[str]]:
    """``root/<shape>/...`` with ``counts[shape]`` images each (default 10)."""
    counts = counts or {s: 10 for s in SHAPES}
    return {s: write_class(os.path.join(root, s), s, n, seed=k, **kwargs)
            for k, (s, n) in enumerate(counts.items())}


def make_splits(root: str, train: int = 6, test: int = 3, validation: int = 0, **kwargs) -> str:
    """``root/train/<shape>``, ``root/test/<shape>`` (and ``root/validation/<shape>``)."""
    for split, n, seed in (("train", train, 0), ("test", test, 10), ("validation", validation, 20)):
        if n:
            for k, s in enumerate(SHAPES):
                write_class(os.path.join(root, split, s), s, n, seed=seed + k, **kwargs)
    return root


def reference_load(path: str, size: tuple[int, int], channels: int, crop: bool = False) -> np.ndarray:
    """The NumPy path: Pillow decodes, NumPy converts the channels, Keras's ``smart_resize``
    (or a plain bilinear resize) resizes; uint8 (H, W, C) like ``ImageFiles.load``."""
    import keras

    with Image.open(path) as im:
        im.seek(0)
        if im.mode in ("I;16", "I;16B", "I"):
            image = (np.asarray(im, dtype=np.float64) / 257.0).round()[..., None]
        elif im.mode in ("1", "L", "LA"):
            image = np.asarray(im.convert("L"), dtype=np.float64)[..., None]
        else:
            image = np.asarray(im.convert("RGB"), dtype=np.float64)
    if channels == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if channels == 1 and image.shape[-1] == 3:
        image = (image @ np.array([0.2989, 0.587, 0.114]))[..., None].round()
    image = image.astype(np.float32)
    if crop:
        out = keras.preprocessing.image.smart_resize(image, size, interpolation="bilinear")
    else:
        out = keras.ops.image.resize(image, size, interpolation="bilinear", antialias=False)
    return np.clip(np.round(np.asarray(out)), 0, 255).astype(np.uint8)
