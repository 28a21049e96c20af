"""Pillow helpers that turn tiles and confusion counts into RGB ``uint8`` arrays."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (128, 128, 128)
_DARK = np.array([8, 48, 107], dtype=np.float64)  # colour of a fully populated row cell


def font(size: int):
    return ImageFont.load_default(size=size)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of a roughly square grid holding ``n`` tiles."""
    if n <= 0:
        return 0, 0
    columns = math.ceil(math.sqrt(n))
    return math.ceil(n / columns), columns


def to_rgb(tile: np.ndarray) -> np.ndarray:
    """A (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 or [0, 1] float image as RGB uint8."""
    tile = np.asarray(tile)
    if tile.dtype != np.uint8:
        tile = np.rint(np.clip(tile, 0.0, 1.0) * 255).astype(np.uint8)
    if tile.ndim == 3 and tile.shape[-1] == 1:
        tile = tile[..., 0]
    if tile.ndim == 2:
        tile = np.repeat(tile[..., None], 3, axis=-1)
    return tile[..., :3]


def _text_size(draw, text, fnt) -> tuple[int, int]:
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=fnt)
    return math.ceil(right - min(left, 0)), math.ceil(bottom - min(top, 0))


def render_grid(tiles, captions, columns=None, min_size=84, pad=6, font_size=12) -> np.ndarray:
    """Draws ``tiles`` in a grid, each upscaled (nearest) to ``>= min_size`` px, caption below.

    ``captions`` are strings, one per tile (may contain newlines). Returns HxWx3 uint8.
    """
    tiles = [to_rgb(t) for t in tiles]
    if len(tiles) != len(captions):
        raise ValueError(f"Got {len(tiles)} tiles but {len(captions)} captions.")
    if not tiles:
        return np.full((1, 1, 3), 255, dtype=np.uint8)
    rows, columns = grid_shape(len(tiles)) if columns is None else (
        math.ceil(len(tiles) / columns), columns)
    h, w = tiles[0].shape[:2]
    scale = max(1, math.ceil(min_size / max(h, w)))
    fnt = font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    sizes = [_text_size(measure, c, fnt) for c in captions]
    cell_w = max(w * scale, max(s[0] for s in sizes)) + pad
    cell_h = h * scale + max(s[1] for s in sizes) + 2 * pad
    canvas = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), WHITE)
    draw = ImageDraw.Draw(canvas)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        x, y = pad + (i % columns) * cell_w, pad + (i // columns) * cell_h
        image = Image.fromarray(tile).resize((w * scale, h * scale), Image.NEAREST)
        tile_x = x + (cell_w - pad - w * scale) // 2
        canvas.paste(image, (tile_x, y))
        draw.multiline_text((x + (cell_w - pad) / 2, y + h * scale + pad // 2), caption,
                            fill=BLACK, font=fnt, anchor="ma", align="center")
    return np.asarray(canvas)


def _vertical_text(text, fnt) -> Image.Image:
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    tw, th = _text_size(measure, text, fnt)
    label = Image.new("RGB", (tw + 2, th + 2), WHITE)
    ImageDraw.Draw(label).text((1, 1), text, fill=BLACK, font=fnt)
    return label.rotate(90, expand=True)


def render_confusion(counts, class_names=None, size=480, font_size=None) -> np.ndarray:
    """Confusion matrix image: counts in cells, row-normalised colours, labelled axes."""
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(n))]
    names = [s if len(s) <= 16 else s[:15] + "…" for s in names]
    cell = int(np.clip(size // max(n, 1), 8, 64))
    fnt = font(font_size or max(8, min(16, int(cell * 0.32))))
    title = font(14)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    name_w = max(_text_size(measure, s, fnt)[0] for s in names)
    name_h = _text_size(measure, "Ag", fnt)[1]
    title_h = _text_size(measure, "predicted", title)[1]
    rotate_columns = name_w > cell - 2
    column_h = name_w if rotate_columns else name_h
    left = title_h + 3 * 6 + name_w
    top = title_h + 3 * 6 + column_h
    canvas = Image.new("RGB", (left + n * cell + 6, top + n * cell + 6), WHITE)
    draw = ImageDraw.Draw(canvas)

    rows = counts.sum(axis=1, keepdims=True)
    fractions = counts / np.maximum(rows, 1)
    for t in range(n):
        for p in range(n):
            f = float(fractions[t, p])
            colour = tuple(int(v) for v in np.rint(255 + f * (_DARK - 255)))
            x0, y0 = left + p * cell, top + t * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=GREY)
            text = str(int(counts[t, p]))
            if _text_size(draw, text, fnt)[0] <= cell - 2:
                draw.text((x0 + cell / 2, y0 + cell / 2), text, font=fnt, anchor="mm",
                          fill=WHITE if f > 0.5 else BLACK)
    for i, name in enumerate(names):
        draw.text((left - 6, top + i * cell + cell / 2), name, font=fnt, anchor="rm", fill=BLACK)
        x = left + i * cell + cell / 2
        if rotate_columns:
            label = _vertical_text(name, fnt)
            canvas.paste(label, (int(x - label.width / 2), top - 6 - label.height))
        else:
            draw.text((x, top - 6), name, font=fnt, anchor="md", fill=BLACK)
    draw.text((left + n * cell / 2, 6), "predicted", font=title, anchor="ma", fill=BLACK)
    label = _vertical_text("true", title)
    canvas.paste(label, (6, int(top + n * cell / 2 - label.height / 2)))
    return np.asarray(canvas)
