"""Hyperparameter sweeps: a grid (or a random sample of it) of ordinary runs under one directory,
with TensorBoard's HParams dashboard filled in::

    logs/<arch>/sweep-<timestamp>[-name]/
        sweep.json             the plan, each trial's status, best metrics and error (atomic)
        events...              hparams_config: the hyperparameters and metrics, written once
        trial-001-dropout=0.0/ an ordinary run directory (see ``trainer.run``), plus
                               hp.hparams(trial_id=<dir name>), the best metrics as scalars
                               (tags in METRICS) and the session's end status

A spec is ``a:b:step`` (inclusive range, exact in decimal), ``a,b,c`` (a list) or one value.
Keys that are ``RunConfig`` fields go to the configuration, the rest to ``build()``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import logging
import math
import os
import random
import re

from callbacks.files import atomic_write, read_json
from trainer.architecture import parse_value
from trainer.config import RunConfig, resolve
from trainer.errors import Interrupted, UsageError, describe

SWEEP_FILE = "sweep.json"
MAX_RANGE_VALUES = 1000
# RunConfig fields that describe the sweep itself, not a trial: never swept.
NOT_SWEPT = ("arch", "arch_source", "hyperparameters", "logdir", "name", "run_dir", "versions")
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in NOT_SWEPT)
# Metrics recorded per trial, written as scalars at the trial's root (HParams group "").
METRICS = (
    ("best_val_accuracy", "best val accuracy", "Highest validation accuracy over the epochs."),
    ("best_val_loss", "best val loss", "Lowest validation loss over the epochs."),
    ("best_epoch", "best epoch (val loss)",
     "Epoch (1-based) of the lowest validation loss: the model kept in best.keras."),
    ("test_accuracy", "test accuracy", "Accuracy of the final model on the test set."),
    ("test_loss", "test loss", "Loss of the final model on the test set."),
)
METRIC_TAGS = tuple(tag for tag, _, _ in METRICS)


# ---- specs --------------------------------------------------------------------------------------

def _bad_spec(item: str, expected: str) -> UsageError:
    return UsageError(f"Invalid value for option `--set`. Received: {item!r}. Expected {expected}.")


def _unify(values: list) -> list:
    """Ints become floats when the list mixes them (``0,0.5`` -> ``[0.0, 0.5]``)."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numbers and any(isinstance(v, float) for v in values):
        return [float(v) for v in values]
    return values


def _parse_range(item: str, text: str) -> list:
    expected = "a range start:stop:step of finite numbers"
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 3:
        raise _bad_spec(item, expected)
    try:
        start, stop, step = (decimal.Decimal(p) for p in parts)
    except decimal.InvalidOperation:
        raise _bad_spec(item, expected) from None
    if not all(d.is_finite() for d in (start, stop, step)):
        raise _bad_spec(item, expected)
    if step == 0:
        raise _bad_spec(item, "a range start:stop:step with a non-zero step")
    count = int((stop - start) / step) + 1  # exact decimal arithmetic: 0:0.8:0.1 has 9 values
    if (stop - start) / step < 0:
        raise _bad_spec(item, "a step that goes from start towards stop")
    if count > MAX_RANGE_VALUES:
        raise _bad_spec(item, f"at most {MAX_RANGE_VALUES} values (this range has {count})")
    values = [start + i * step for i in range(count)]
    if all(isinstance(parse_value(p), int) for p in parts):
        return [int(v) for v in values]
    return [float(v) for v in values]


def parse_spec(item: str) -> tuple[str, list]:
    """``"dropout=0:0.2:0.1"`` -> ``("dropout", [0.0, 0.1, 0.2])``; lists and single values too."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise _bad_spec(item, "KEY=VALUE, KEY=a,b,c or KEY=start:stop:step")
    if ":" in text:
        return key, _parse_range(item, text)
    parts = [p.strip() for p in text.split(",")]
    if any(not p for p in parts):
        raise _bad_spec(item, "a comma-separated list without empty items")
    values = _unify([parse_value(p) for p in parts])
    if len(set(map(repr, values))) != len(values):
        raise _bad_spec(item, "a list without repeated values")
    return key, values


def parse_specs(items) -> dict[str, list]:
    """Every ``--set``, in order: key -> the values it takes."""
    specs: dict[str, list] = {}
    for item in items:
        key, values = parse_spec(item)
        if key in specs:
            raise _bad_spec(item, f"each key once (`{key}` is given twice)")
        if key in NOT_SWEPT:
            raise _bad_spec(item, f"a hyperparameter or a run option; `{key}` belongs to the whole sweep")
        specs[key] = values
    return specs


def grid_size(specs: dict) -> int:
    return math.prod(len(v) for v in specs.values())


def combinations(specs: dict, sample: int | None = None, seed: int | None = None) -> list[dict]:
    """The full grid (first key slowest), or ``sample`` distinct combinations of it in grid order."""
    keys = list(specs)
    size = grid_size(specs)
    if sample is None:
        indices = range(size)
    elif sample > size:
        raise UsageError(f"Invalid value for option `--random`. Received: {sample}. "
                         f"Expected at most {size}, the size of the grid.")
    else:
        indices = sorted(random.Random(seed).sample(range(size), sample))
    result = []
    for index in indices:  # mixed-radix decoding: no need to build the whole grid
        combo = {}
        for key in reversed(keys):
            index, i = divmod(index, len(specs[key]))
            combo[key] = specs[key][i]
        result.append({k: combo[k] for k in keys})
    return result


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return repr(value) if isinstance(value, float) else str(value)


def trial_name(number: int, total: int, params: dict, swept) -> str:
    """``trial-003-dropout=0.1-learning_rate=0.001``: a safe, sortable directory name."""
    text = f"trial-{number:0{max(3, len(str(total)))}d}"
    text += "".join(f"-{key}={format_value(params[key])}" for key in swept)
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", text)[:150]


def hparam_value(value) -> bool | int | float | str:
    """A value the HParams plugin can store: bool, number or string."""
    return value if isinstance(value, (bool, int, float, str)) else format_value(value)


# ---- plan ---------------------------------------------------------------------------------------

def split_params(params: dict) -> tuple[dict, dict]:
    """(RunConfig overrides, build() hyperparameters)."""
    config = {k: v for k, v in params.items() if k in CONFIG_KEYS}
    return config, {k: v for k, v in params.items() if k not in CONFIG_KEYS}


def plan(arch, specs: dict, options: dict, sample: int | None = None,
         seed: int | None = None) -> list[dict]:
    """Every trial's record, with its resolved configuration (checked now, before any training)."""
    combos = combinations(specs, sample, seed)
    swept = [k for k, v in specs.items() if len(v) > 1]
    trials = []
    for number, params in enumerate(combos, start=1):
        overrides, hyper = split_params(params)
        config = resolve(arch, {**options, **overrides, "name": None,
                                "hyperparameters": hyper})
        record = dataclasses.asdict(config)
        for key in ("run_dir", "versions"):
            record.pop(key)
        trials.append({"number": number, "name": trial_name(number, len(combos), params, swept),
                       "params": params, "status": "pending", "run_dir": None,
                       "previous_run_dirs": [], "metrics": {}, "error": None, "config": record})
    return trials


def best_metrics(history: list[dict], test: dict | None) -> dict:
    """The best (not the last) validation values, and the test results: keys are METRIC_TAGS."""
    def finite(key: str) -> list[tuple[float, int]]:
        return [(h[key], h["epoch"]) for h in history
                if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]

    result = dict.fromkeys(METRIC_TAGS)
    accuracy, loss = finite("val_accuracy"), finite("val_loss")
    if accuracy:
        result["best_val_accuracy"] = float(max(value for value, _ in accuracy))
    if loss:  # best_epoch: the epoch of the lowest val_loss, as in metrics.json and best.keras
        best = min(loss, key=lambda pair: pair[0])  # min keeps the first of equal values
        result["best_val_loss"], result["best_epoch"] = float(best[0]), int(best[1])
    for key in ("accuracy", "loss"):
        if test and test.get(key) is not None:
            result[f"test_{key}"] = float(test[key])
    return result


def score(trial: dict) -> float | None:
    """Ranking key: best val accuracy, or test accuracy when there is no validation."""
    metrics = trial.get("metrics") or {}
    value = metrics.get("best_val_accuracy")
    return value if value is not None else metrics.get("test_accuracy")


# ---- TensorBoard --------------------------------------------------------------------------------

def _hparam_defs(specs: dict) -> list:
    from tensorboard.plugins.hparams import api as hp

    defs = []
    for key, values in specs.items():
        values = [hparam_value(v) for v in values]
        kinds = {type(v) for v in values}
        domain = hp.Discrete(values) if len(kinds) == 1 else None
        defs.append(hp.HParam(key, domain))
    return defs


def write_experiment(sweep_dir: str, specs: dict) -> None:
    """The HParams experiment (hyperparameters and metrics), once, at the sweep's root."""
    from tensorboard.plugins.hparams import api as hp

    from callbacks.base import acquire_writer, release_writer

    metrics = [hp.Metric(tag, display_name=name, description=text,
                         dataset_type=hp.Metric.VALIDATION if "val" in tag else None)
               for tag, name, text in METRICS]
    writer = acquire_writer(sweep_dir)
    try:
        with writer.as_default():
            hp.hparams_config(hparams=_hparam_defs(specs), metrics=metrics)
    finally:
        release_writer(sweep_dir)


def write_trial_end(writer, metrics: dict | None, step: int, status: int | None) -> None:
    """The trial's metrics (scalars tagged as in METRICS) and its session end status (if any)."""
    import tensorflow as tf

    with writer.as_default():
        for tag, value in (metrics or {}).items():
            if value is not None:
                tf.summary.scalar(tag, value, step=step)
        if status is not None:
            from callbacks.compat import hparams_session_end

            tf.summary.experimental.write_raw_pb(hparams_session_end(status), step=0)
    writer.flush()


# ---- the sweep ----------------------------------------------------------------------------------

def create_sweep_dir(logdir: str, arch: str, name: str | None = None) -> str:
    from trainer.run import create_run_dir

    return create_run_dir(logdir, arch, name, prefix="sweep-")


def _run_metrics(run_dir: str) -> dict:
    """A trial run's metrics.json; {} while there is none or it cannot be read (a run that died)."""
    try:
        return read_json(os.path.join(run_dir, "metrics.json")) or {}
    except ValueError:
        return {}


class SweepInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during a trial: the sweep stops, its state is saved."""


class Sweep:
    """The sweep's state, mirrored in ``sweep.json`` after every change."""

    def __init__(self, sweep_dir: str, state: dict):
        self.dir = sweep_dir
        self.state = state

    @property
    def trials(self) -> list[dict]:
        return self.state["trials"]

    @property
    def swept(self) -> list[str]:
        return [k for k, v in self.state["specs"].items() if len(v) > 1]

    @classmethod
    def create(cls, arch, specs: dict, trials: list[dict], logdir: str, name: str | None = None,
               sample: int | None = None, seed: int | None = None) -> Sweep:
        sweep_dir = create_sweep_dir(logdir, arch.name, name)
        state = {"arch": arch.name, "arch_source": arch.source,
                 "created": datetime.datetime.now().isoformat(timespec="seconds"),
                 "specs": specs, "random": sample, "seed": seed, "trials": trials}
        sweep = cls(sweep_dir, state)
        sweep.save()
        write_experiment(sweep_dir, specs)
        return sweep

    @classmethod
    def load(cls, sweep_dir: str) -> Sweep:
        try:
            state = read_json(os.path.join(sweep_dir, SWEEP_FILE))
        except ValueError:
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("trials"), list):
            raise UsageError(f"Invalid value for option `--resume`. Received: {sweep_dir!r}. "
                             f"Expected a sweep directory with a readable {SWEEP_FILE}.")
        return cls(sweep_dir, state)

    def save(self) -> None:
        atomic_write(os.path.join(self.dir, SWEEP_FILE), json.dumps(self.state, indent=2, default=str) + "\n")

    def fresh_dir(self, trial: dict) -> str:
        """The trial's directory, or ``<name>.retryN`` when an earlier attempt left one behind."""
        path = os.path.join(self.dir, trial["name"])
        attempt = 0
        while os.path.exists(path):
            attempt += 1
            path = os.path.join(self.dir, f"{trial['name']}.retry{attempt}")
        return path

    def run(self, console=None, echo=print) -> None:
        """Runs every trial not finished yet, one after another, in this process."""
        _hide_retracing_warnings()
        total = len(self.trials)
        for trial in self.trials:
            label = f"[{trial['number']}/{total}] {trial['name']}"
            if trial["status"] == "finished":
                echo(f"{label}: finished before, skipped")
            elif self._adopt(trial):
                echo(f"{label}: finished before (recorded from its metrics.json), skipped")
            else:
                self._run_trial(trial, console, echo, label)

    def _adopt(self, trial: dict) -> bool:
        """A trial whose run finished but whose sweep record did not get written."""
        run_dir = trial.get("run_dir")
        metrics = _run_metrics(run_dir) if run_dir else {}
        if metrics.get("status") != "finished":
            return False
        from tensorboard.plugins.hparams import api_pb2

        from callbacks.base import acquire_writer, release_writer

        history = metrics.get("history") or []
        trial.update(status="finished", error=None, metrics=best_metrics(history, metrics.get("test")))
        writer = acquire_writer(run_dir)
        try:
            write_trial_end(writer, trial["metrics"], max(0, len(history) - 1), api_pb2.STATUS_SUCCESS)
        finally:
            release_writer(run_dir)
        self.save()
        return True

    def _start_trial(self, trial: dict) -> RunConfig:
        """The trial's configuration, in a fresh directory; the trial recorded as running."""
        config = RunConfig(**{f.name: trial["config"][f.name] for f in dataclasses.fields(RunConfig)
                              if f.name in trial["config"]})
        config.run_dir = self.fresh_dir(trial)
        if trial.get("run_dir") and trial["run_dir"] != config.run_dir:
            trial["previous_run_dirs"].append(trial["run_dir"])
        trial.update(status="running", run_dir=config.run_dir, error=None, metrics={})
        self.save()
        return config

    def _run_trial(self, trial: dict, console, echo, label: str) -> None:
        from tensorboard.plugins.hparams import api as hp, api_pb2

        from callbacks.base import acquire_writer
        from trainer import run

        config = self._start_trial(trial)
        echo(f"{label}: {config.run_dir}")
        held = {}

        def on_start(run_dir):
            held[run_dir] = writer = acquire_writer(run_dir)  # to the end: one event file at the root
            with writer.as_default():
                hp.hparams({k: hparam_value(v) for k, v in trial["params"].items()},
                           trial_id=os.path.basename(run_dir))
            writer.flush()

        status = api_pb2.STATUS_FAILURE
        try:
            result = run.fit(config, console=console, on_start=on_start)
            trial["metrics"] = best_metrics(result.history, result.test)
            trial["status"], status = "finished", api_pb2.STATUS_SUCCESS
            echo(f"{label}: finished, {describe_metrics(trial['metrics'])}")
        except (KeyboardInterrupt, Interrupted, run.RunInterrupted) as exc:  # stops the whole sweep
            trial.update(status="interrupted", error=describe(exc) if str(exc) else "interrupted")
            status = None  # neither success nor failure: TensorBoard shows it as unknown
            raise SweepInterrupted(f"Sweep interrupted in {trial['name']}. Resume with: "
                                   f"trainer sweep --resume {self.dir}",
                                   getattr(exc, "exit_code", 130)) from None
        except Exception as exc:  # noqa: BLE001 - one failing trial never stops the sweep
            trial.update(status="failed", error=describe(exc))
            echo(f"{label}: failed: {trial['error']}")
        finally:
            self._end_trial(trial, held, status, config.run_dir)

    def _end_trial(self, trial: dict, held: dict, status: int | None, run_dir: str) -> None:
        """Closes the trial's writers with its metrics and end status; saves the sweep."""
        import keras

        from callbacks.base import release_writer

        for path, writer in held.items():
            epochs = len(_run_metrics(path).get("history", []))
            try:
                write_trial_end(writer, trial["metrics"], max(0, epochs - 1), status)
            finally:
                release_writer(path)
        if not held and not os.path.isdir(run_dir):
            trial["run_dir"] = None  # failed before the run directory existed
        self.save()
        keras.backend.clear_session()


class _RetracingFilter(logging.Filter):
    """Each trial builds new tf.functions by design: TensorFlow's retracing warning is noise here."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def _hide_retracing_warnings() -> None:
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _RetracingFilter) for f in logger.filters):
        logger.addFilter(_RetracingFilter())


def describe_metrics(metrics: dict) -> str:
    """``best val_accuracy 0.9333, best val_loss 0.2101 (epoch 2), test accuracy 0.9833``."""
    parts = []
    if metrics.get("best_val_accuracy") is not None:
        parts.append(f"best val_accuracy {_fmt(metrics['best_val_accuracy'])}")
    if metrics.get("best_val_loss") is not None:
        parts.append(f"best val_loss {_fmt(metrics['best_val_loss'])} (epoch {metrics['best_epoch']})")
    if metrics.get("test_accuracy") is not None:
        parts.append(f"test accuracy {_fmt(metrics['test_accuracy'])}")
    return ", ".join(parts) or "no accuracy recorded"


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_ranking(console, sweep: Sweep) -> None:
    """The trials, best first; plain ASCII when the console is not a terminal."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    trials = sorted(sweep.trials, key=lambda t: (t["status"] != "finished", score(t) is None,
                                                 -(score(t) or 0.0), t["number"]))
    has_val = any((t.get("metrics") or {}).get("best_val_accuracy") is not None for t in trials)
    ranked_by = "best val_accuracy" if has_val else "test accuracy"
    table = Table(title=f"Sweep {sweep.dir}: {len(trials)} trials, ranked by {ranked_by}",
                  box=box.ROUNDED if console.is_terminal else box.ASCII, title_justify="left")
    table.add_column("#", justify="right")
    keys = sweep.swept or list(sweep.state["specs"])
    for key in keys:
        table.add_column(key, justify="right")
    for column in ("best val acc", "best val loss", "best epoch (val loss)", "test acc"):
        table.add_column(column, justify="right")
    table.add_column("status")
    table.add_column("run dir", overflow="fold")
    rank = 0
    for t in trials:
        m = t.get("metrics") or {}
        finished = t["status"] == "finished"
        rank += finished
        status = t["status"] if finished or not t.get("error") else f"{t['status']}: {t['error']}"
        table.add_row(str(rank) if finished else "-",
                      *(Text(format_value(t["params"].get(k))) for k in keys),
                      *(_fmt(m.get(k)) for k in ("best_val_accuracy", "best_val_loss", "best_epoch",
                                                  "test_accuracy")),
                      Text(status), Text(t.get("run_dir") or "-"))
    console.print(table)
    console.print(f"Compare them: tensorboard --logdir {sweep.dir}  (HParams tab)")
