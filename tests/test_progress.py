import io
import re
import sys

import numpy as np
import pytest
from rich.console import Console

from callbacks.progress import (
    PlainProgress,
    RichProgress,
    epoch_line,
    format_metrics,
    format_rate,
    format_value,
    make_progress,
    print_summary,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


class CountingStream(io.StringIO):
    flushes = 0

    def flush(self):
        self.flushes += 1
        super().flush()


# --- pure formatting ---------------------------------------------------------------


def test_format_value():
    assert format_value(0.1234) == "0.1234"
    assert format_value(3) == "3.0000"
    assert format_value(0) == "0.0000"
    assert format_value(1e-5) == "1.000e-05"
    assert format_value(123456.0) == "1.235e+05"
    assert format_value(float("nan")) == "nan"
    assert format_value("abc") == "abc"


def test_format_metrics_orders_named_then_val_then_rest():
    logs = {"learning_rate": 0.001, "val_accuracy": 0.5, "accuracy": 0.75, "val_loss": 1, "loss": 2}
    assert format_metrics(logs) == (
        "loss 2.0000 - accuracy 0.7500 - val_loss 1.0000 - val_accuracy 0.5000 - "
        "learning_rate 0.0010"
    )
    assert format_metrics({"loss": 1.0}, ("loss", "mae")) == "loss 1.0000"
    assert format_metrics(None) == ""


def test_format_rate_and_epoch_line():
    assert format_rate(10, 2.0, 128) == "640 samples/s"
    assert format_rate(10, 4.0, None) == "2.5 steps/s"
    assert format_rate(0, 1.0, 32) == ""
    assert epoch_line(2, 20, 12.34, {"loss": 0.1234}, ("loss",), "4870 samples/s") == (
        "Epoch 3/20 - 12.3s - loss 0.1234 - 4870 samples/s"
    )
    assert epoch_line(0, None, 1.0, {}, ("loss",)) == "Epoch 1 - 1.0s"


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"batch_size": 2.5}, {"interval": -1}]
)
def test_plain_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=r"Invalid value for argument `\w+`\. Received: "):
        PlainProgress(**kwargs)


def test_rich_rejects_bad_refresh_rate():
    with pytest.raises(ValueError, match="refresh_per_second=0"):
        RichProgress(console=Console(file=io.StringIO()), refresh_per_second=0)


# --- plain ----------------------------------------------------------------------


def run_plain_epoch(cb, clock, epoch, batches, logs, step_seconds, end_time, val_logs=None):
    clock.t = 0.0
    cb.on_epoch_begin(epoch)
    for b in batches:
        clock.t = (b + 1) * step_seconds
        cb.on_train_batch_end(b, logs)
    clock.t = end_time
    cb.on_epoch_end(epoch, {**logs, **(val_logs or {})})


def test_plain_epoch_and_interval_lines_exact():
    clock, out = FakeClock(), CountingStream()
    cb = PlainProgress(stream=out, batch_size=128, interval=30.0, clock=clock)
    cb.set_params({"epochs": 20, "steps": 469})
    cb.on_train_begin()
    logs = {"loss": 0.25, "accuracy": 0.875}
    val = {"val_loss": 0.3, "val_accuracy": 0.8}
    # 0.125 s a batch: the 240th batch ends at 30 s; 469 batches take 58.625 s.
    run_plain_epoch(cb, clock, 2, range(469), logs, 0.125, 60.0, val)
    cb.on_train_end()
    assert out.getvalue().splitlines() == [
        "  epoch 3: batch 240/469 - loss 0.2500 - accuracy 0.8750",
        "Epoch 3/20 - 60.0s - loss 0.2500 - accuracy 0.8750 - val_loss 0.3000 - "
        "val_accuracy 0.8000 - 1024 samples/s",
    ]
    assert out.flushes >= 2


def test_plain_steps_per_execution_unknown_steps_and_no_escape_codes():
    clock, out = FakeClock(), io.StringIO()
    cb = PlainProgress(stream=out, batch_size=None, interval=1.0, clock=clock)
    cb.set_params({"epochs": 1, "steps": None})
    cb.on_train_begin()
    # steps_per_execution=4: Keras reports batches 3, 7, 11; one per simulated second.
    logs = {"loss": 1.5, "\x1b[31mred\x1b[0m": 2.0}
    clock.t = 0.0
    cb.on_epoch_begin(0)
    for i, b in enumerate((3, 7, 11)):
        clock.t = float(i + 1)
        cb.on_train_batch_end(b, logs)
    clock.t = 4.0
    cb.on_epoch_end(0, logs)
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        "  epoch 1: batch 4 - loss 1.5000 - [31mred[0m 2.0000",
        "  epoch 1: batch 8 - loss 1.5000 - [31mred[0m 2.0000",
        "  epoch 1: batch 12 - loss 1.5000 - [31mred[0m 2.0000",
        "Epoch 1/1 - 4.0s - loss 1.5000 - [31mred[0m 2.0000 - 4.0 steps/s",
    ]


def test_plain_instance_is_reusable_and_close_idempotent():
    clock, out = FakeClock(), io.StringIO()
    cb = PlainProgress(stream=out, batch_size=10, interval=100.0, clock=clock)
    for _ in range(2):
        cb.set_params({"epochs": 1, "steps": 2})
        cb.on_train_begin()
        run_plain_epoch(cb, clock, 0, range(2), {"loss": 1.0}, 1.0, 2.0)
        cb.on_train_end()
        cb.close()
    assert out.getvalue().splitlines() == ["Epoch 1/1 - 2.0s - loss 1.0000 - 10 samples/s"] * 2


def test_hooks_never_raise():
    cb = PlainProgress(stream=io.StringIO(), interval=0.0, clock=FakeClock())
    cb.set_params({"epochs": 1, "steps": 1})
    cb.on_epoch_begin(0)
    with pytest.warns(RuntimeWarning, match="PlainProgress.on_train_batch_end failed"):
        cb.on_train_batch_end(0, logs=123)  # not a dict: formatting fails, training goes on


# --- rich -----------------------------------------------------------------------


def rich_console():
    return Console(file=io.StringIO(), force_terminal=True, width=80)


def test_rich_shows_epoch_lines_and_stops_cleanly():
    console, clock = rich_console(), FakeClock()
    cb = RichProgress(console=console, batch_size=32, clock=clock)
    cb.set_params({"epochs": 2, "steps": 4})
    stdout = sys.stdout
    cb.on_train_begin()
    live = cb.live
    assert live.is_started
    for epoch in range(2):
        clock.t = 10.0 * epoch
        cb.on_epoch_begin(epoch)
        for b in range(4):
            clock.t += 1.0
            cb.on_train_batch_end(b, {"loss": 0.5, "accuracy": 0.25})
        assert cb.progress.tasks[1].completed == 4
        cb.on_test_begin()
        assert cb.progress.tasks[2].visible
        cb.on_test_batch_end(0)
        cb.on_test_end()
        assert not cb.progress.tasks[2].visible
        clock.t += 1.0
        val = {"val_loss": 0.75, "val_accuracy": 0.125}
        cb.on_epoch_end(epoch, {"loss": 0.5, "accuracy": 0.25, **val})
    cb.on_train_end()
    assert not live.is_started and cb.live is None
    assert sys.stdout is stdout  # Live's stdout redirection undone
    raw = console.file.getvalue()
    text = ANSI.sub("", raw)
    for epoch in (1, 2):
        assert (
            f"Epoch {epoch}/2 - 5.0s - loss 0.5000 - accuracy 0.2500 - val_loss 0.7500 - "
            "val_accuracy 0.1250 - 32 samples/s" in text.replace("\n", "")
        )
    assert "\x1b[?25l" in raw  # cursor hidden while drawing...
    assert raw.rfind("\x1b[?25h") > raw.rfind("\x1b[?25l")  # cursor shown again at the end
    cb.close()  # idempotent: nothing more written
    assert console.file.getvalue() == raw


def test_rich_close_without_train_end_like_ctrl_c():
    console, clock = rich_console(), FakeClock()
    cb = RichProgress(console=console, clock=clock)
    cb.set_params({"epochs": 3, "steps": 100})
    stdout = sys.stdout
    cb.on_train_begin()
    live = cb.live
    cb.on_epoch_begin(0)
    cb.on_train_batch_end(0, {"loss": 1.0})
    cb.close()  # what the orchestration's `finally:` does after a KeyboardInterrupt
    cb.close()
    assert not live.is_started and sys.stdout is stdout
    assert cb.on_train_batch_end(1, {"loss": 1.0}) is None  # late hooks are no-ops
    raw = console.file.getvalue()
    assert raw.rfind("\x1b[?25h") > raw.rfind("\x1b[?25l")


def test_rich_refresh_is_rate_limited():
    console, clock = rich_console(), FakeClock()
    cb = RichProgress(console=console, refresh_per_second=4, clock=clock)
    cb.set_params({"epochs": 1, "steps": 1000})
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    calls = []
    real_refresh = cb.live.refresh
    cb.live.refresh = lambda: (calls.append(clock.t), real_refresh())
    for b in range(1000):  # 1000 batches in one fake second
        clock.t = (b + 1) / 1000
        cb.on_train_batch_end(b, {"loss": 1.0})
    assert 3 <= len(calls) <= 4 + 2
    assert all(b - a >= 0.25 - 1e-9 for a, b in zip(calls, calls[1:]))
    cb.close()


def test_rich_steps_per_execution_and_unknown_steps():
    console, clock = rich_console(), FakeClock()
    cb = RichProgress(console=console, refresh_per_second=1e9, clock=clock)
    cb.set_params({"epochs": 1, "steps": None})
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    for b in (2, 5):  # steps_per_execution=3
        clock.t += 1.0
        cb.on_train_batch_end(b, {"loss": 1.0})
    task = cb.progress.tasks[1]
    assert task.completed == 6 and task.total is None
    assert "6/?" in ANSI.sub("", console.file.getvalue())
    cb.close()


# --- choosing a display, summary ---------------------------------------------------


def test_make_progress_modes(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    pipe = Console(file=io.StringIO(), force_terminal=False)
    plain = make_progress("auto", 64, console=pipe)
    assert isinstance(plain, PlainProgress) and plain.stream is pipe.file and plain.batch_size == 64
    assert isinstance(make_progress("auto", 64, console=rich_console()), RichProgress)
    assert isinstance(make_progress("rich", None, console=pipe), RichProgress)
    assert make_progress("none", 64) is None
    with pytest.raises(ValueError, match=r"Received: mode='fancy'"):
        make_progress("fancy", 64)


def test_make_progress_dumb_terminal_is_plain(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_progress("auto", 8, console=rich_console()), PlainProgress)


def test_plain_mode_on_a_colour_terminal_still_writes_no_escape_codes(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    console = rich_console()
    cb = make_progress("plain", 4, console=console)
    cb.set_params({"epochs": 1, "steps": 1})
    cb.on_epoch_begin(0)
    cb.on_train_batch_end(0, {"loss": 1.0})
    cb.on_epoch_end(0, {"loss": 1.0})
    out = console.file.getvalue()
    assert out.startswith("Epoch 1/1 - ") and "\x1b" not in out


def test_print_summary_plain_and_terminal():
    rows = [("model", "mlp"), ("val_accuracy", "0.9612")]
    plain = Console(file=io.StringIO(), force_terminal=False, no_color=True, width=60)
    print_summary(plain, rows, "Summary")
    out = plain.file.getvalue()
    assert "\x1b" not in out
    assert [line.rstrip() for line in out.splitlines()] == [
        "Summary",
        "+-----------------------+",
        "| model        | mlp    |",
        "| val_accuracy | 0.9612 |",
        "+-----------------------+",
    ]
    term = rich_console()
    print_summary(term, rows, "Summary")
    assert "\x1b[" in term.file.getvalue() and "0.9612" in term.file.getvalue()


# --- a real fit -----------------------------------------------------------------


def test_real_fit_with_plain_progress():
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(
        "sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=2
    )
    out = io.StringIO()
    cb = PlainProgress(stream=out, batch_size=16, interval=0.0)
    history = model.fit(
        x, y, batch_size=16, epochs=2, validation_data=(x[:16], y[:16]), callbacks=[cb], verbose=0
    )
    lines = out.getvalue().splitlines()
    assert [line.split(" - ")[0] for line in lines] == [
        "  epoch 1: batch 2/4", "  epoch 1: batch 4/4", "Epoch 1/2",
        "  epoch 2: batch 2/4", "  epoch 2: batch 4/4", "Epoch 2/2",
    ]  # fmt: skip
    h = history.history
    for epoch, line in ((0, lines[2]), (1, lines[5])):
        assert re.fullmatch(
            r"Epoch \d/2 - \d+\.\ds - loss (\S+) - accuracy (\S+) - val_loss (\S+) - "
            r"val_accuracy (\S+) - \d+ samples/s",
            line,
        ).groups() == tuple(
            f"{h[k][epoch]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
        )
