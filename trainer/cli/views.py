"""What ``show``, ``compare``, ``runs`` and ``export`` make of run directories: rich tables and
Pillow images. rich, Pillow and TensorBoard's event reader (never TensorFlow itself, see
``trainer.readback``) are imported inside the functions. Output to a file or pipe has no escape
codes and is as wide as its tables, so paths are never wrapped.
"""

from __future__ import annotations

import datetime
import math
import os

from trainer import readback
from trainer.errors import TrainerError, UsageError

SPARK_WIDTH = 40  # characters of a sparkline; longer histories are sampled
MATRIX_MAX_CLASSES = 20  # larger confusion matrices: pairs only (the PNG has the whole matrix)


# ---- formatting ---------------------------------------------------------------------------


def escape(text) -> str:
    """``text`` with rich markup escaped (paths and names may hold brackets)."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


def num(value, digits: int = 4) -> str:
    """``0.8860``; ``-`` for a missing value."""
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def duration(seconds) -> str:
    """``2.2 s``, ``3 m 05 s``, ``1 h 02 m``; ``-`` if unknown."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} m"


def param(value) -> str:
    """A parameter value: ``-`` for None, ``1e-05`` for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def sparkline(values, lo: float, hi: float, width: int = SPARK_WIDTH, ascii_only: bool = False) -> str:
    """One character per value (sampled down to ``width``), scaled between ``lo`` and ``hi``."""
    ticks = ".:-=+*#@" if ascii_only else "▁▂▃▄▅▆▇█"
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif hi <= lo:
            out.append(ticks[len(ticks) // 2])
        else:
            out.append(ticks[round((v - lo) / (hi - lo) * (len(ticks) - 1))])
    return "".join(out)


def print_table(console, table) -> None:
    """Title, table, caption; title and caption on lines of their own (rich would wrap them at
    the table's width). Not in a terminal, the console widens to the table's natural width, so
    nothing wraps; in a terminal, the columns allowed to fold do so when the table does not fit."""
    from rich.measure import Measurement
    from rich.text import Text

    if not console.is_terminal and table.row_count:
        needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
        console.width = max(console.width, needed)
    title, caption, table.title, table.caption = table.title, table.caption, None, None
    if title:
        console.print(Text(str(title), style="italic"), soft_wrap=True)
    console.print(table)
    if caption:
        console.print(Text(str(caption), style="dim"), soft_wrap=True)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _status_style(status: str) -> str:
    return {"finished": "green", "running": "yellow"}.get(status, "red")


# ---- show -------------------------------------------------------------------------------


def _config_rows(run) -> list[tuple[str, str]]:
    c = run.config
    hyper = ", ".join(f"{k}={param(v)}" for k, v in (c.get("hyperparameters") or {}).items())
    dataset = c.get("dataset", "?") + (f" ({c['data']})" if c.get("data") else "")
    limits = [f"{k.replace('_', ' ')} {c[k]:,}" for k in ("train_limit", "test_limit") if c.get(k)]
    validation = c.get("validation")
    validation = ("test set" if validation == "test" else "none" if not validation
                  else f"{param(validation)} of the training set")
    epochs = f"{run.epochs_run} of {c.get('epochs', '?')}"
    if c.get("early_stopping"):
        epochs += f" (early stopping, patience {c['early_stopping']})"
    rate = param(c.get("learning_rate")) + (f" ({c['lr_schedule']})" if c.get("lr_schedule", "constant") != "constant" else "")
    rows = [("architecture", c.get("arch", "?")), ("hyperparameters", hyper or "defaults"),
            ("dataset", ", ".join([dataset, *limits])), ("validation", validation), ("epochs", epochs),
            ("batch size", param(c.get("batch_size"))), ("optimizer", param(c.get("optimizer"))),
            ("learning rate", rate)]
    if c.get("seed") is not None:
        rows.append(("seed", str(c["seed"])))
    policy = ((c.get("devices") or {}).get("precision") or {}).get("policy") or c.get("precision")
    if policy:
        rows.append(("precision", policy))
    versions = c.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {versions[k]}" for k in ("tensorflow", "keras") if k in versions)))
    rows.append(("started", datetime.datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M:%S")))
    return rows


def _key_value_table(title: str, rows):
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, escape(value))
    return table


def _results_rows(run) -> list[tuple[str, str]]:
    m = run.metrics or {}
    test = run.test
    rows = [(f"test {k}", num(test[k])) for k in sorted(test, key=lambda k: (k != "loss", k != "accuracy", k))
            if k != "errors"]
    if "errors" in test:
        rows.append(("test errors", f"{int(test['errors']):,}"))
    best = run.best_epoch()
    if best:
        val_loss = m.get("best_val_loss")
        if val_loss is None:
            val_loss = next((h.get("val_loss") for h in run.history if h.get("epoch") == best), None)
        rows.append(("best epoch (val_loss)", f"{best} (val_loss {num(val_loss)})"))
    rows += [("training time", duration(m.get("train_seconds"))),
             ("wall time", duration(m.get("wall_seconds")))]
    if m.get("samples_per_second"):
        rows.append(("samples/s", f"{m['samples_per_second']:,.0f}"))
    if m.get("peak_rss_mib"):
        rows.append(("peak memory", f"{m['peak_rss_mib']:,.0f} MiB"))
    return [(k, v) for k, v in rows if v != "-"]


def _curves_table(run, ascii_only: bool):
    from rich.table import Table

    table = Table(title="Learning curves (per epoch)")
    for name, justify in (("metric", "left"), ("curve", "left"), ("first", "right"),
                          ("final", "right"), ("best", "right"), ("best epoch", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    groups = [("loss", "val_loss"), ("accuracy", "val_accuracy")]
    rates = run.series("learning_rate")
    if len({round(r, 12) for r in rates}) > 1:
        groups.append(("learning_rate",))
    for group in groups:
        keys = [k for k in group if run.series(k)]
        finite = [v for k in keys for v in run.series(k) if math.isfinite(v)]
        if not finite:
            continue
        lo, hi = min(finite), max(finite)  # one scale per group: train and val comparable
        for key in keys:
            values = run.series(key)
            best = run.best(key)
            table.add_row(key, sparkline(values, lo, hi, ascii_only=ascii_only), num(values[0]),
                          num(values[-1]), num(best[0]) if best else "-", str(best[1]) if best else "-")
        table.add_section()
    return table if table.row_count else None


def _per_class_table(source: str, details: dict):
    from rich.table import Table

    table = Table(title=f"Per-class metrics ({source})")
    table.add_column("class")
    for name in ("precision", "recall", "F1", "support"):
        table.add_column(name, justify="right")
    for name, s in details["classes"].items():
        table.add_row(escape(name), num(s.get("precision"), 3), num(s.get("recall"), 3), num(s.get("f1"), 3),
                      f"{int(s['support']):,}" if "support" in s else "-")
    macro = details.get("macro") or {}
    if macro:
        total = sum(int(s.get("support", 0)) for s in details["classes"].values())
        table.add_section()
        table.add_row("macro avg", *(num(macro.get(k), 3) for k in ("precision", "recall", "f1")),
                      f"{total:,}", style="bold")
    return table


def _confusion_table(counts, names: list[str], source: str):
    from rich.table import Table

    table = Table(title=f"Confusion matrix ({source}): rows true, columns predicted")
    table.add_column("true \\ pred", style="bold")
    for name in names:
        table.add_column(escape(name), justify="right")
    for t, row in enumerate(counts):
        table.add_row(escape(names[t]), *(f"[bold]{c}[/]" if t == p else str(c) for p, c in enumerate(row)))
    return table


def _class_names(run, n: int) -> list[str]:
    names = run.config.get("class_names") or []
    return [str(x) for x in names] if len(names) == n else [str(i) for i in range(n)]


def print_run(run: readback.Run, console) -> None:
    """Everything ``trainer show`` prints about one run."""
    from rich.text import Text

    header = Text.assemble((run.arch, "bold"), "  ", run.path, "  ", (run.status, _status_style(run.status)))
    console.print(header, soft_wrap=True)
    if (run.metrics or {}).get("error"):
        console.print(Text(f"error: {run.metrics['error']}", style="red"), soft_wrap=True)
    print_table(console, _key_value_table("Configuration", _config_rows(run)))
    results = _results_rows(run)
    if results:
        print_table(console, _key_value_table("Results", results))
    curves = _curves_table(run, ascii_only=not console.encoding.lower().startswith("utf"))
    if curves is not None:
        print_table(console, curves)
    source, details = readback.per_class_details(run)
    if details.get("classes"):
        print_table(console, _per_class_table(source, details))
    counts = details.get("confusion_matrix")
    if counts:
        if len(counts) <= MATRIX_MAX_CLASSES:
            print_table(console, _confusion_table(counts, _class_names(run, len(counts)), source))
        else:
            console.print(f"Confusion matrix: {len(counts)} classes, too many for the terminal; "
                          "`trainer export RUN_DIR --png DIR` draws it.")
    pairs = details.get("confused_pairs")
    if pairs:
        text = ", ".join(f"{p['true']} → {p['pred']}: {p['count']}" for p in pairs)
        console.print(f"Most confused (true → predicted): {escape(text)}")
    elif details.get("confused_pairs_text"):
        console.print("Most confused (true → predicted):")
        console.print(details["confused_pairs_text"], markup=False)
    note = readback.overfitting_note(run.path)
    if note:
        console.print(Text(note[1], style="yellow"), soft_wrap=True)


def load_with_metrics(run_dir: str) -> readback.Run:
    """The run in ``run_dir``; a ``TrainerError`` before its first epoch has ended."""
    run = readback.load_run(run_dir)
    if run.metrics is None:
        raise TrainerError(f"Run {run_dir!r} has no metrics yet ({run.status}): metrics.json is "
                           "written when the first epoch ends.")
    return run


# ---- compare and runs -------------------------------------------------------------------


def expand_runs(paths) -> list[str]:
    """Run directories: each path itself, or every run directory found below it."""
    found = []
    for path in paths:
        below = readback.find_runs(path)
        if not below:
            raise UsageError(f"No run directories in {path!r}. Expected a run directory "
                             "(with config.json) or a directory holding some (a sweep, a logdir).")
        found += [r for r in below if r not in found]
    return found


def _display_names(paths: list[str]) -> tuple[str, list[str]]:
    """(common parent, names relative to it)."""
    absolute = [os.path.abspath(p) for p in paths]
    common = os.path.commonpath(absolute)
    if common in absolute:
        common = os.path.dirname(common)
    return common, [os.path.relpath(p, common) for p in absolute]


def _best_val_accuracy(run) -> str:
    best = run.best("val_accuracy")
    return f"{num(best[0])} (ep {best[1]})" if best else "-"


def compare_table(paths) -> object:
    """Runs side by side (``trainer compare``): each path a run directory or a directory holding runs."""
    from rich.table import Table

    found = [readback.load_run(p) for p in expand_runs(paths)]
    keys = readback.differing_params(found)
    common, names = _display_names([r.path for r in found])
    show_status = any(r.status != "finished" for r in found)
    table = Table(title=f"{_plural(len(found), 'run')} in {common}")
    table.add_column("arch", no_wrap=True)
    if show_status:
        table.add_column("status", no_wrap=True)
    for key in keys:
        table.add_column(key, justify="right", no_wrap=True)
    for name in ("epochs", "best val acc", "test acc", "time"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("run", overflow="fold")  # last, and the only column that folds in a narrow terminal
    tests = [r.test.get("accuracy") for r in found]
    top = max((t for t in tests if t is not None), default=None)
    for run, name, test in zip(found, names, tests):
        cells = [escape(run.arch)]
        if show_status:
            cells.append(f"[{_status_style(run.status)}]{escape(run.status)}[/]")
        cells += [escape(param(readback.param_value(run, k))) for k in keys]
        cells += [f"{run.epochs_run}/{run.config.get('epochs', '?')}", _best_val_accuracy(run),
                  f"[bold]{num(test)}[/]" if test is not None and test == top and len(found) > 1 else num(test),
                  duration((run.metrics or {}).get("train_seconds")), escape(name)]
        table.add_row(*cells)
    if not keys and len(found) > 1:
        table.caption = "Same key parameters in every run."
    return table


def runs_table(logdir: str) -> object:
    """The runs under ``logdir``, newest first (``trainer runs``)."""
    from rich.table import Table

    if not os.path.isdir(logdir):
        raise UsageError(f"Invalid value for argument `LOGDIR`. Received: {logdir!r}, which is not a "
                         "directory. Expected the --logdir of `trainer fit` (default: logs).")
    found = sorted((readback.load_run(p, strict=False) for p in readback.find_runs(logdir)),
                   key=lambda r: -r.started)
    if not found:
        raise TrainerError(f"No runs under {logdir!r}. Start one with `trainer fit ARCH --logdir {logdir}`.")
    table = Table(title=f"{_plural(len(found), 'run')} under {logdir}, newest first",
                  caption="accuracy: on the test set, or (val) the best validation accuracy while there is no test result")
    for name, justify in (("started", "left"), ("status", "left"), ("arch", "left"), ("epochs", "right"),
                          ("accuracy", "right"), ("run dir", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "run dir", overflow="fold")
    for run in found:
        headline = run.headline()
        table.add_row(datetime.datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M"),
                      f"[{_status_style(run.status)}]{escape(run.status)}[/]", escape(run.arch),
                      f"{run.epochs_run}/{run.config.get('epochs', '?')}",
                      f"{num(headline[1])} ({headline[0]})" if headline else "-", escape(run.path))
    return table


# ---- export -----------------------------------------------------------------------------


def export_images(run: readback.Run) -> dict[str, object]:
    """{file name: Pillow image} for what the run has: loss.png, accuracy.png, per_class.png,
    confusion_matrix.png."""
    from PIL import Image

    from callbacks.drawing import COLOURS, bar_chart, line_plot, render_confusion

    images = {}
    for key, ylabel in (("loss", "loss"), ("accuracy", "accuracy")):
        series = []
        for label, name in (("train", key), ("validation", f"val_{key}")):
            points = [(h.get("epoch", i + 1), readback.as_float(h[name])) for i, h in enumerate(run.history) if name in h]
            if points:
                series.append((label, COLOURS[label], points))
        if series:
            images[f"{key}.png"] = line_plot(f"{run.arch}: {key} per epoch", ylabel, series)
    source, details = readback.per_class_details(run)
    if details.get("classes"):
        images["per_class.png"] = bar_chart(f"{run.arch}: per-class metrics ({source})", details)
    if details.get("confusion_matrix"):
        counts = details["confusion_matrix"]
        images["confusion_matrix.png"] = Image.fromarray(render_confusion(counts, _class_names(run, len(counts))))
    return images
