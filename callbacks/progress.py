"""Terminal progress for ``fit`` (Keras's own bar is off: ``verbose=0``).

``RichProgress`` draws an epoch bar and a batch bar with rich, refreshed by hand at a
bounded rate (like Lightning's ``RichProgressBar``), and leaves one persistent line per
epoch above them. ``PlainProgress`` writes plain lines only, for files, pipes and CI.
``make_progress`` picks one; ``print_summary`` renders the final table.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
import time

import keras
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from callbacks.base import never_raise
from callbacks.text import PROGRESS_MODES

MODES = PROGRESS_MODES
# Logged for TensorBoard and metrics.json, but noise on a progress line (the line has its own
# time and speed; mistake counts and training-set F1 are in TensorBoard).
HIDDEN = frozenset({"errors", "val_errors", "macro_f1", "pr_auc", "ece", "seconds", "samples_per_second"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps no escape code in plain lines


def _invalid(name, received, expected) -> ValueError:
    return ValueError(
        f"Invalid value for argument `{name}`. Received: {name}={received!r}. Expected {expected}."
    )


def format_value(value) -> str:
    """``0.1234`` style for ordinary numbers, ``1.000e-05`` for tiny or huge ones."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v == 0 or not math.isfinite(v) or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4f}"
    return f"{v:.3e}"


def format_metrics(logs, metric_names=("loss", "accuracy"), sep=" - ") -> str:
    """``loss 0.1234 - accuracy 0.9612 - val_loss ... - <other keys>``.

    ``metric_names`` come first, then their ``val_`` counterparts, then any other key in
    the order Keras gives them.
    """
    logs = logs or {}
    first = [n for n in metric_names if n in logs]
    first += [f"val_{n}" for n in metric_names if f"val_{n}" in logs]
    keys = first + [k for k in logs if k not in first and k not in HIDDEN]
    return sep.join(f"{k} {format_value(logs[k])}" for k in keys)


def format_rate(steps: int, seconds: float, batch_size: int | None) -> str:
    """``4870 samples/s`` (or ``12.3 steps/s`` without a batch size); '' if unmeasurable."""
    if steps <= 0 or seconds <= 0:
        return ""
    if batch_size:
        return f"{steps * batch_size / seconds:.0f} samples/s"
    return f"{steps / seconds:.1f} steps/s"


def epoch_line(epoch, epochs, seconds, logs, metric_names, rate="") -> str:
    """The one line per epoch: ``Epoch 3/20 - 12.3s - loss 0.1234 - ... - 4870 samples/s``.

    ``epoch`` is Keras's 0-based index; ``epochs`` may be None.
    """
    parts = [f"Epoch {epoch + 1}/{epochs}" if epochs else f"Epoch {epoch + 1}", f"{seconds:.1f}s"]
    parts += [p for p in (format_metrics(logs, metric_names), rate) if p]
    return " - ".join(parts)


class _Timing(keras.callbacks.Callback):
    """Shared per-epoch bookkeeping: epoch start, batches done, training time."""

    def __init__(self, batch_size, metric_names, clock):
        super().__init__()
        integral = isinstance(batch_size, numbers.Integral)
        if batch_size is not None and (not integral or batch_size <= 0):
            raise _invalid("batch_size", batch_size, "a positive integer or None")
        self.batch_size = batch_size
        self.metric_names = tuple(metric_names)
        self.clock = clock
        self._epoch_start = self._train_end = 0.0
        self._done = 0

    def _param(self, name):
        return (self.params or {}).get(name)

    def _start_epoch(self):
        self._epoch_start = self._train_end = self.clock()
        self._done = 0

    def _batch_done(self, batch) -> float:
        now = self._train_end = self.clock()
        self._done = batch + 1  # steps_per_execution=k reports the last batch of k
        steps = self._param("steps")
        if steps:  # ... and a last, partial execution reports indices past the end
            self._done = min(self._done, steps)
        return now

    def _rate(self) -> str:
        """Training throughput so far this epoch (validation time excluded)."""
        return format_rate(self._done, self._train_end - self._epoch_start, self.batch_size)

    def _epoch_line(self, epoch, logs) -> str:
        seconds = self.clock() - self._epoch_start
        epochs = self._param("epochs")
        return epoch_line(epoch, epochs, seconds, logs, self.metric_names, self._rate())


class RichProgress(_Timing):
    """Epoch bar + batch bar (ETA, running metrics, samples/s) drawn with rich.

    ``auto_refresh=False``: the batch hook refreshes at most ``refresh_per_second`` times
    a second. ``close()`` stops the live display (restoring the cursor) and is idempotent.
    """

    def __init__(
        self,
        console: Console | None = None,
        refresh_per_second: float = 4,
        metric_names=("loss", "accuracy"),
        batch_size: int | None = None,
        clock=time.monotonic,
    ):
        super().__init__(batch_size, metric_names, clock)
        if not refresh_per_second or refresh_per_second <= 0:
            raise _invalid("refresh_per_second", refresh_per_second, "a positive number")
        self.console = console or Console()
        self.refresh_per_second = refresh_per_second
        self.progress: Progress | None = None
        self.live: Live | None = None
        self._info = ""
        self._last_refresh = -math.inf

    def _make_progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            auto_refresh=False,
            expand=True,
            get_time=self.clock,
        )

    def _render(self):
        return Group(self.progress, Text(self._info, overflow="ellipsis", no_wrap=True))

    def _refresh(self, force=False):
        now = self.clock()
        if force or now - self._last_refresh >= 1.0 / self.refresh_per_second:
            self._last_refresh = now
            self.live.refresh()

    @never_raise
    def on_train_begin(self, logs=None):
        self.close()
        self.progress = self._make_progress()
        self._epoch_task = self.progress.add_task("Epoch", total=self._param("epochs"))
        self._batch_task = self.progress.add_task("batch", total=self._param("steps"))
        self._val_task = self.progress.add_task("validating", total=None, visible=False)
        self._info = ""
        self._last_refresh = -math.inf
        self.live = Live(
            console=self.console, auto_refresh=False, transient=True, get_renderable=self._render
        )
        self.live.start(refresh=True)

    @never_raise
    def on_epoch_begin(self, epoch, logs=None):
        if self.progress is None:
            return
        self._start_epoch()
        epochs = self._param("epochs")
        label = f"Epoch {epoch + 1}/{epochs}" if epochs else f"Epoch {epoch + 1}"
        self.progress.update(self._epoch_task, description=label, completed=epoch)
        self.progress.reset(self._batch_task, total=self._param("steps"))
        self._info = ""
        self._refresh(force=True)

    @never_raise
    def on_train_batch_end(self, batch, logs=None):
        if self.progress is None:
            return
        self._batch_done(batch)
        parts = (format_metrics(logs, self.metric_names), self._rate())
        self._info = " - ".join(p for p in parts if p)
        self.progress.update(self._batch_task, completed=self._done)
        self._refresh()

    @never_raise
    def on_test_begin(self, logs=None):
        if self.progress is None:  # evaluate() outside fit: nothing to draw into
            return
        self.progress.reset(self._val_task, total=None, visible=True)
        self._refresh(force=True)

    @never_raise
    def on_test_batch_end(self, batch, logs=None):
        if self.progress is None:
            return
        self.progress.update(self._val_task, completed=batch + 1)
        self._refresh()

    @never_raise
    def on_test_end(self, logs=None):
        if self.progress is not None:
            self.progress.update(self._val_task, visible=False)

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        if self.progress is None:
            return
        line = Text(self._epoch_line(epoch, logs))
        line.stylize("bold", 0, line.plain.find(" - "))
        self.live.console.print(line, highlight=False)
        self.progress.update(self._epoch_task, completed=epoch + 1)
        self._refresh(force=True)

    @never_raise
    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Stops the live display; safe to call any number of times."""
        live, self.live = self.live, None
        if live is not None:
            live.stop()  # restores the cursor; transient: the bars go, epoch lines stay
        self.progress = None


class PlainProgress(_Timing):
    """Plain lines only (no escape codes, no cursor movement), flushed one by one.

    One line per epoch, plus ``  epoch 3: batch 120/469 - loss ...`` at most every
    ``interval`` seconds within an epoch.
    """

    def __init__(
        self,
        stream=None,
        batch_size: int | None = None,
        interval: float = 30.0,
        metric_names=("loss", "accuracy"),
        clock=time.monotonic,
    ):
        super().__init__(batch_size, metric_names, clock)
        if interval is None or interval < 0:
            raise _invalid("interval", interval, "a number of seconds >= 0")
        self.stream = stream
        self.interval = interval
        self._last_line = 0.0
        self._epoch = 0

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stdout
        stream.write(_CONTROL.sub("", line) + "\n")
        stream.flush()

    @never_raise
    def on_epoch_begin(self, epoch, logs=None):
        self._start_epoch()
        self._last_line = self._epoch_start
        self._epoch = epoch

    @never_raise
    def on_train_batch_end(self, batch, logs=None):
        now = self._batch_done(batch)
        if now - self._last_line < self.interval:
            return
        self._last_line = now
        steps = self._param("steps")
        where = f"batch {self._done}/{steps}" if steps else f"batch {self._done}"
        parts = [f"  epoch {self._epoch + 1}: {where}", format_metrics(logs, self.metric_names)]
        self._write(" - ".join(p for p in parts if p))

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        self._write(self._epoch_line(epoch, logs))

    @never_raise
    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Flushes the stream; nothing else to stop. Idempotent."""
        stream = self.stream or sys.stdout
        if not getattr(stream, "closed", False):
            stream.flush()


def jupyter_widgets() -> bool:
    """Whether ipywidgets is installed: rich's live display in a notebook is an ipywidgets output."""
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def make_progress(mode: str, batch_size: int | None, console: Console | None = None):
    """Returns a progress callback for ``mode`` ("auto" | "rich" | "plain" | "none") or None.

    "auto" is rich on an interactive terminal and in Jupyter with ipywidgets (what rich's live
    display needs there; Colab has it), plain otherwise (pipes, files, ``TERM=dumb``).
    """
    if mode not in MODES:
        raise _invalid("mode", mode, 'one of "auto", "rich", "plain", "none"')
    if mode == "none":
        return None
    console = console or Console()
    if mode == "auto":
        interactive = console.is_terminal and not console.is_dumb_terminal
        mode = "rich" if interactive or (console.is_jupyter and jupyter_widgets()) else "plain"
    if mode == "rich":
        return RichProgress(console=console, batch_size=batch_size)
    return PlainProgress(stream=console.file, batch_size=batch_size)


def print_summary(console: Console, rows: list[tuple[str, str]], title: str) -> None:
    """Renders ``rows`` as a two-column table; plain ASCII on a non-terminal console."""
    table = Table(
        title=title,
        show_header=False,
        box=box.ROUNDED if console.is_terminal else box.ASCII,
        title_justify="left",
    )
    table.add_column("key", style="bold" if console.is_terminal else None, no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(Text(str(key)), Text(str(value)))
    console.print(table)
