"""The learning-rate range test (Smith, "Cyclical Learning Rates", 2015; fastai's ``lr_find``)
as a Keras callback, its suggestion rules, and its plot.

In a throw-away ``model.fit`` the rate grows exponentially from ``start`` to ``end`` over at most
``num_batches`` batches; the loss of each batch is smoothed (an exponential moving average with
bias correction, ``beta``) and the test stops early once the smoothed loss exceeds ``diverge``
times its minimum, or the loss is not finite. The curve goes to TensorBoard as scalars stepped by
batch (``lr_find/loss``, ``lr_find/smoothed_loss``, ``lr_find/learning_rate``) and, at the end,
as an image of the loss against the rate on a log axis (``lr_find/curve``).

The smoothing spans about 5 % of the sweep (``beta = 1 - 20 / num_batches``, kept within
[0.8, 0.98]; fastai's 0.98 over 100 batches lags about half the sweep, which puts the minimum
of the smoothed curve several decades of rate too far).

Suggestion rules (``suggest``), on the smoothed loss: ``min/10`` (the default) is a tenth of the
rate at its minimum (Smith's and fastai v1's advice: the minimum is already too fast);
``steepest`` is the rate where it falls fastest per decade of rate, between the first tenth of
the points and the minimum (noisier with small batches: a late dip in the noise wins).
"""

from __future__ import annotations

import math

import numpy as np

from callbacks.base import TensorBoardCallback, never_raise
from callbacks.text import check_int

MIN_POINTS = 10  # fewer recorded batches give no suggestion
RULES = ("steepest", "min/10")


def sweep_rate(start: float, end: float, num_batches: int, batch: int) -> float:
    """The rate of batch ``batch`` (0-based): ``start`` at the first, ``end`` at the last."""
    return start * (end / start) ** (batch / max(1, num_batches - 1))


def auto_beta(num_batches: int) -> float:
    """Smoothing over about 5 % of a sweep of ``num_batches``."""
    return min(0.98, max(0.8, 1 - 20 / num_batches))


def smooth(losses, beta: float = 0.98) -> list[float]:
    """The bias-corrected exponential moving average of ``losses`` (as fastai's recorder)."""
    average, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return out


def suggest(rates, smoothed) -> dict | None:
    """{rule: rate} for ``RULES`` (and ``"minimum"``: the rate at the lowest smoothed loss), or
    None with fewer than ``MIN_POINTS`` finite points."""
    rates, smoothed = np.asarray(rates, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(smoothed)
    n = int(np.argmin(finite)) if not finite.all() else len(smoothed)  # up to the first non-finite
    if n < MIN_POINTS:
        return None
    rates, smoothed = rates[:n], smoothed[:n]
    lowest = int(np.argmin(smoothed))
    first = n // 10
    window = slice(first, max(lowest, first + 2) + 1)
    slopes = np.gradient(smoothed[window], np.log10(rates[window]))
    return {"steepest": float(rates[window][int(np.argmin(slopes))]), "min/10": float(rates[lowest] / 10),
            "minimum": float(rates[lowest])}


class LearningRateRangeTest(TensorBoardCallback):
    """Sweeps the optimizer's rate from ``start`` to ``end`` and records the loss of each batch.

    Args:
        log_dir: where the scalars and the curve image go (None: record only).
        start, end: the first and last rates (``0 < start < end``).
        num_batches: the most batches to run; training stops after them (or on divergence).
        beta: smoothing of the loss (0: none; None: ``auto_beta(num_batches)``).
        diverge: stop when the smoothed loss exceeds this multiple of its minimum.
        rule: the suggestion rule marked on the curve (``RULES``).

    After training, ``points`` holds (batch, rate, loss, smoothed loss) per batch, ``stopped``
    why it ended ("diverged", "completed", or None if the fit ended first) and
    ``suggestion()`` the rate of every rule and ``suggested_rate`` the one of ``rule``. Needs ``steps_per_execution=1`` (it sets the rate
    before every batch) and a float learning rate; it resets the fit's metrics before every
    batch so that the logged loss is that batch's (a range test's running means mean nothing).
    """

    def __init__(self, log_dir: str | None = None, start: float = 1e-7, end: float = 10.0,
                 num_batches: int = 100, beta: float | None = None, diverge: float = 4.0, rule: str = "min/10"):
        super().__init__(log_dir or "")
        if not (0 < start < end):
            raise ValueError(f"Invalid value for argument `start`. Received: start={start!r}, end={end!r}. "
                             "Expected 0 < start < end.")
        self.start, self.end = float(start), float(end)
        self.num_batches = check_int("num_batches", num_batches, minimum=2)
        if rule not in RULES:
            raise ValueError(f"Invalid value for argument `rule`. Received: rule={rule!r}. Expected one of "
                             f"{', '.join(RULES)}.")
        self.beta = auto_beta(self.num_batches) if beta is None else float(beta)
        self.diverge, self.rule = float(diverge), rule
        self.record_only = log_dir is None

    def on_train_begin(self, logs=None):
        spe = getattr(self.model, "steps_per_execution", 1)
        if spe not in (1, None):
            raise ValueError(f"Invalid value for argument `steps_per_execution`. Received: steps_per_execution="
                             f"{spe}. Expected 1: the range test sets the rate before every batch.")
        self.points: list[tuple[int, float, float, float]] = []
        self.stopped = None
        self._average, self._best = 0.0, math.inf

    def on_train_batch_begin(self, batch, logs=None):
        self.model.reset_metrics()
        self.model.optimizer.learning_rate = sweep_rate(self.start, self.end, self.num_batches, len(self.points))

    def on_train_batch_end(self, batch, logs=None):
        step = len(self.points)
        loss = float((logs or {}).get("loss", math.nan))
        rate = sweep_rate(self.start, self.end, self.num_batches, step)
        if math.isfinite(loss):
            self._average = self.beta * self._average + (1 - self.beta) * loss
            smoothed = self._average / (1 - self.beta ** (step + 1))
        else:
            smoothed = math.nan
        self.points.append((step, rate, loss, smoothed))
        self._log(step, rate, loss, smoothed)
        if not math.isfinite(smoothed) or smoothed > self.diverge * self._best:
            self.stopped = "diverged"
        elif step + 1 >= self.num_batches:
            self.stopped = "completed"
        self._best = min(self._best, smoothed) if math.isfinite(smoothed) else self._best
        if self.stopped:
            self.model.stop_training = True

    @never_raise
    def _log(self, step, rate, loss, smoothed) -> None:
        if self.record_only:
            return
        import tensorflow as tf

        with self.writer().as_default():
            tf.summary.scalar("lr_find/learning_rate", rate, step=step)
            if math.isfinite(loss):
                tf.summary.scalar("lr_find/loss", loss, step=step)
            if math.isfinite(smoothed):
                tf.summary.scalar("lr_find/smoothed_loss", smoothed, step=step)

    def suggestion(self) -> dict | None:
        return suggest([p[1] for p in self.points], [p[3] for p in self.points])

    @property
    def suggested_rate(self) -> float | None:
        return (self.suggestion() or {}).get(self.rule)

    def on_train_end(self, logs=None):
        self.write_curve()
        super().on_train_end(logs)

    @never_raise
    def write_curve(self) -> None:
        """The curve image, marked at the suggested rate."""
        if self.record_only or not self.points:
            return
        import tensorflow as tf

        image = curve_plot(self.points, self.suggested_rate)
        with self.writer().as_default():
            tf.summary.image("lr_find/curve", np.asarray(image)[None], step=0)
        self.writer().flush()


def _decade_label(exponent: int) -> str:
    return f"1e{exponent}" if exponent else "1"


def curve_plot(points, mark: float | None = None, size=(800, 500)):
    """Loss (grey) and smoothed loss (blue) against the rate on a log axis, a red line at ``mark``;
    the y axis ends a little above the first smoothed loss so the divergence does not squash it."""
    from .drawing import COLOURS, Axes, draw_series, nice_ticks

    rates = [p[1] for p in points]
    finite = [v for p in points for v in p[2:] if math.isfinite(v)] or [0.0]
    smoothed = [p[3] for p in points if math.isfinite(p[3])] or finite
    top = min(max(finite), max(smoothed[0] * 1.5, min(finite) * 2))
    lo, hi = math.log10(rates[0]), math.log10(rates[-1]) if len(rates) > 1 else math.log10(rates[0]) + 1
    axes = Axes(size, "Learning-rate range test", "learning rate (log scale)", "loss",
                nice_ticks(min(finite), top), (lo, hi))
    for exponent in range(math.ceil(lo), math.floor(hi) + 1):
        axes.xtick(exponent, _decade_label(exponent))
    ceiling = axes.yticks[-1]

    def series(column):
        """(log rate, loss); a run of losses above the axis is drawn up to its edge, then broken."""
        out, above = [], False
        for p in points:
            value = p[column] if math.isfinite(p[column]) else math.inf
            out.append((math.log10(p[1]), min(value, ceiling) if not above else math.nan))
            above = value > ceiling
        return out

    draw_series(axes, (190, 190, 190), series(2))
    draw_series(axes, COLOURS["train"], series(3))
    entries = [("loss", (190, 190, 190)), ("smoothed", COLOURS["train"])]
    if mark:
        x = axes.x(math.log10(mark))
        axes.draw.line([(x, axes.box[1]), (x, axes.box[3])], fill=(214, 39, 40), width=2)
        entries.append((f"suggested {mark:.2g}", (214, 39, 40)))
    axes.legend(entries)
    return axes.image
