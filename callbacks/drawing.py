"""All of trainer's Pillow drawing: image grids and confusion matrices as RGB ``uint8`` arrays
(for TensorBoard), and line plots and bar charts as Pillow images (``trainer export``)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (128, 128, 128)
_DARK = np.array([8, 48, 107], dtype=np.float64)  # colour of a fully populated row cell
PLOT_SIZE = (800, 500)
COLOURS = {"train": (31, 119, 180), "validation": (255, 127, 14), "precision": (31, 119, 180),
           "recall": (255, 127, 14), "f1": (44, 160, 44)}  # matplotlib's first three colours


def font(size: int) -> ImageFont.ImageFont:
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


# ---- plots ------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (about ``count`` intervals)."""
    if not hi > lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start, stop = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(start, stop + 1)]


def _tick_label(value: float, ticks: list[float]) -> str:
    """``value`` with as many decimals as the tick step needs (0.25 -> 2, 0.2 -> 1, 5 -> 0)."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = len(f"{step:.10f}".rstrip("0").split(".")[1])
    return f"{value:.{decimals}f}"


def _epoch_ticks(last: int) -> list[int]:
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10**9) if last / s <= 10)
    return sorted({1, *range(step, last + 1, step)})


class Axes:
    """A plot area on a Pillow canvas: title, ticks, grid, axis labels and a legend on top."""

    def __init__(self, size, title, xlabel, ylabel, yticks, xrange, left=72, right=24, top=56, bottom=56):
        self.image = Image.new("RGB", size, WHITE)
        self.draw = ImageDraw.Draw(self.image)
        self.box = (left, top, size[0] - right, size[1] - bottom)
        self.yticks, self.xrange = yticks, xrange
        self.small, self.big = font(13), font(16)
        self.draw.text((left, 14), title, font=self.big, fill=BLACK)
        self._draw_yticks()
        self.draw.rectangle(self.box, outline=BLACK)
        x0, y0, x1, y1 = self.box
        self.draw.text(((x0 + x1) / 2, size[1] - 8), xlabel, font=self.small, fill=BLACK, anchor="md")
        label = Image.new("RGB", (y1 - y0, 18), WHITE)
        ImageDraw.Draw(label).text(((y1 - y0) / 2, 9), ylabel, font=self.small, fill=BLACK, anchor="mm")
        self.image.paste(label.rotate(90, expand=True), (6, y0))

    def _draw_yticks(self) -> None:
        x0, _, x1, _ = self.box
        for tick in self.yticks:
            y = self.y(tick)
            self.draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
            self.draw.line([(x0 - 5, y), (x0, y)], fill=BLACK)
            self.draw.text((x0 - 8, y), _tick_label(tick, self.yticks), font=self.small, fill=BLACK, anchor="rm")

    def x(self, value: float) -> float:
        (a, b), (x0, _, x1, _) = self.xrange, self.box
        return x0 + (value - a) / (b - a) * (x1 - x0)

    def y(self, value: float) -> float:
        lo, hi, (_, y0, _, y1) = self.yticks[0], self.yticks[-1], self.box
        return y1 - (value - lo) / (hi - lo) * (y1 - y0)

    def xtick(self, value: float, label: str) -> None:
        x, y1 = self.x(value), self.box[3]
        self.draw.line([(x, y1), (x, y1 + 5)], fill=BLACK)
        self.draw.text((x, y1 + 8), label, font=self.small, fill=BLACK, anchor="ma")

    def legend(self, entries) -> None:
        """(label, colour) entries right-aligned above the plot area."""
        x, y = self.box[2], self.box[1] - 14
        for label, colour in reversed(entries):
            width = self.draw.textlength(label, font=self.small)
            x -= width
            self.draw.text((x, y), label, font=self.small, fill=BLACK, anchor="lm")
            self.draw.rectangle([x - 26, y - 2, x - 6, y + 2], fill=colour)
            x -= 44


def draw_series(axes: Axes, colour, points) -> None:
    """One line, broken where a value is not finite; dots on each point when there are few."""
    segment = []
    for epoch, value in points + [(None, math.nan)]:
        if math.isfinite(value):
            segment.append((axes.x(epoch), axes.y(value)))
            continue
        if len(segment) > 1:
            axes.draw.line(segment, fill=colour, width=3, joint="curve")
        if len(points) <= 30:
            for px, py in segment:
                axes.draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)
        segment = []


def line_plot(title: str, ylabel: str, series, size=PLOT_SIZE) -> Image.Image:
    """``series``: (label, colour, [(epoch, value)]) each; NaN values break the line."""
    values = [v for _, _, points in series for _, v in points if math.isfinite(v)]
    epochs = [e for _, _, points in series for e, _ in points]
    if not values:
        values = [0.0]
    last = max(epochs, default=1)
    axes = Axes(size, title, "epoch", ylabel, nice_ticks(min(values), max(values)),
                (0.5, 1.5) if last <= 1 else (1, last))
    for epoch in _epoch_ticks(last):
        axes.xtick(epoch, str(epoch))
    for _, colour, points in series:
        draw_series(axes, colour, points)
    axes.legend([(label, colour) for label, colour, _ in series])
    return axes.image


def bar_chart(title: str, details: dict, size=PLOT_SIZE) -> Image.Image:
    """Per-class precision, recall and F1 (``details["classes"]``) as grouped bars on a 0..1 axis."""
    classes = details["classes"]
    metrics = ("precision", "recall", "f1")
    width = max(size[0], 96 + 48 * len(classes))
    axes = Axes((width, size[1]), title, "class", "score", [i / 5 for i in range(6)], (0, len(classes)))
    group = (axes.box[2] - axes.box[0]) / max(1, len(classes))
    bar = group * 0.8 / len(metrics)
    for i, (name, scores) in enumerate(classes.items()):
        left = axes.box[0] + i * group + group * 0.1
        for j, metric in enumerate(metrics):
            value = min(1.0, max(0.0, float(scores.get(metric, 0.0))))
            x = left + j * bar
            axes.draw.rectangle([x, axes.y(value), x + bar - 1, axes.y(0)], fill=COLOURS[metric])
        label = name
        while len(label) > 1 and axes.draw.textlength(label, font=axes.small) > group - 2:
            label = label[:-2] + "…"
        axes.xtick(i + 0.5, label)
    axes.legend([(m if m != "f1" else "F1", COLOURS[m]) for m in metrics])
    return axes.image
