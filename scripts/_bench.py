"""Shared helpers of the benchmark scripts: arguments, machine description, timing, tables.

Each side of a comparison runs in one long-lived process of its own (:func:`side_processes`:
plain Keras with TensorFlow's settings as the environment gives them, trainer with what its CLI
sets before importing TensorFlow), the runs interleaved, and both are timed by the same
:func:`epoch_timer` callback: ``train`` seconds (epoch begin to the start of the validation
pass, or to epoch end) and ``epoch`` seconds (epoch begin to the next epoch begin or to train
end: validation and every callback's end-of-epoch work included), each in wall time and in CPU
time of the process that trains (all threads; less disturbed by other processes on a shared
machine, though TensorFlow's spinning worker threads count too).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as `python scripts/x.py` from anywhere
    sys.path.insert(0, REPO)
# What the environment said about TensorFlow's settings when the script started (the plain side
# runs with exactly this), before anything here sets trainer's own.
STARTING_ENVIRONMENT = {"TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def default_data() -> str:
    return os.environ.get("TRAINER_DATA") or os.path.normpath(
        os.path.join(REPO, "..", "shared", "data", "mnist.npz"))


class _Defaults(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help where there is a default worth showing and the
    help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default:" in text:
            return text
        return f"{text} (default: %(default)s)"


def parser(description: str, repeats: int | None = 5, epochs: int = 3,
           timing: bool = True) -> argparse.ArgumentParser:
    """The options every script shares; ``timing=False`` leaves out ``--repeats``/``--epochs``
    (for a script that runs each recipe once, as it is)."""
    p = argparse.ArgumentParser(description=description, formatter_class=_Defaults)
    p.add_argument("--data", default=default_data(), help="MNIST-like .npz (Keras layout)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds, numbers meaningless)")
    if timing:
        p.add_argument("--repeats", type=int, default=repeats, help="interleaved repeats (median taken)")
        p.add_argument("--epochs", type=int, default=epochs, help="epochs per run; the first is not timed")
    p.add_argument("--train-limit", type=int, default=None, help="first N training samples only")
    p.add_argument("--test-limit", type=int, default=None, help="first N test samples only")
    return p


def apply_quick(args, repeats=2, epochs=2, train_limit=512, test_limit=256) -> None:
    """``--quick``: tiny sizes, unless given explicitly."""
    if not args.quick:
        return
    args.repeats = min(args.repeats, repeats)
    args.epochs = min(args.epochs, epochs)
    args.train_limit = args.train_limit or train_limit
    args.test_limit = args.test_limit or test_limit


# --------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(wanted=("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")) -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def trainer_environment() -> None:
    """For a script whose runs are all ``trainer fit``: trainer's TensorFlow settings, applied
    before TensorFlow is imported, as the CLI does."""
    from trainer.devices import tensorflow_environment

    tensorflow_environment()


def code_version() -> str:
    """The commit measured, and the files of the framework changed since (read-only git)."""
    import subprocess

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "trainer", "callbacks",
                                            "architectures").splitlines()]
    return commit + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def repo_relative(path: str) -> str:
    """``path`` relative to the repository when it is a path on this machine, so the command
    printed in a report (and pasted into docs/) names no machine's directories; an interpreter
    outside the repository is shown as ``python``."""
    if not os.path.isabs(path) or not os.path.exists(path):
        return path
    relative = os.path.relpath(path, REPO)
    if path == sys.executable and relative.startswith(os.pardir):
        return "python"
    return relative


def shown_command(argv=None) -> str:
    """The command that ran this script, as one runs it from the repository's root."""
    argv = sys.argv if argv is None else argv
    return " ".join(shlex.quote(repo_relative(a)) for a in [sys.executable, *argv])


def machine_info() -> dict:
    from trainer.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import numpy
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "command": shown_command(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model(),
        "cores": cores,
        "cpu_flags": cpu_flags(),
        "gpus": gpus,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "code": code_version(),
    }


def print_header(title: str) -> dict:
    info = machine_info()
    print(f"# {title}\n")
    print(f"- command: `{info['command']}`")
    print(f"- code: {info['code']}; date: {info['date']}, load average at start: {info['load_average']}")
    print(f"- machine: {info['cpu']}, {info['cores']} cores (flags: {', '.join(info['cpu_flags']) or '-'}), "
          f"GPUs: {', '.join(info['gpus']) or 'none'}")
    print(f"- Python {info['python']}, TensorFlow {info['tensorflow']}, Keras {info['keras']}, "
          f"NumPy {info['numpy']}\n", flush=True)
    return info


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one process per side
SIDES = ("plain", "trainer")


def _start_side(side: str, environment: dict) -> None:
    """First thing in a side's process, before TensorFlow is imported there (settings such as
    oneDNN are read once, at import): "plain" gets the environment the script was started with,
    so TensorFlow's own defaults unless the user set something; "trainer" also gets what the
    ``trainer`` CLI sets before it imports TensorFlow."""
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if side == "trainer":
        trainer_environment()


def side_settings() -> str:
    """This process's TensorFlow settings that differ between the sides, in words."""
    from trainer.cli import import_tensorflow_quietly
    from trainer.devices import ONEDNN_VARIABLE, onednn_enabled, onednn_text

    import_tensorflow_quietly()
    return "oneDNN " + onednn_text(onednn_enabled(), os.environ.get(ONEDNN_VARIABLE))


@contextlib.contextmanager
def side_processes(sides=SIDES):
    """``{side: executor}``: one long-lived process per side (spawned, so each imports TensorFlow
    with its own settings), each running what is submitted to it one call at a time; each
    side's settings are printed first. The runs stay interleaved because the caller waits for
    each result before submitting the next."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    pools = {side: ProcessPoolExecutor(1, mp_context=context, initializer=_start_side,
                                       initargs=(side, STARTING_ENVIRONMENT)) for side in sides}
    try:
        settings = {side: pool.submit(side_settings).result() for side, pool in pools.items()}
        print("- each side runs in a process of its own: "
              + "; ".join(f"{side}: {text}" for side, text in settings.items()) + "\n", flush=True)
        yield pools
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


def run_interleaved(repeats: int, variants, call, *args, describe=str) -> dict:
    """``call(variant, *args)`` ``repeats`` times per variant, interleaved: the variant "keras" in
    the plain side's process, every other in trainer's; each result logged as ``describe(result)``.
    Returns ``{variant: [results]}``."""
    runs = {v: [] for v in variants}
    with side_processes() as sides:
        for r, variant in interleaved(repeats, list(variants)):
            res = sides["plain" if variant == "keras" else "trainer"].submit(call, variant, *args).result()
            runs[variant].append(res)
            log(f"[{r + 1}/{repeats}] {variant:7s} {describe(res)}")
    return runs


# --------------------------------------------------------------------------- numbers
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def markdown_table(headers, rows) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def interleaved(repeats: int, variants):
    """``(repeat, variant)`` in ABAB... order, reversed every other repeat (BA, AB, ...)."""
    for r in range(repeats):
        for v in (variants if r % 2 == 0 else list(reversed(variants))):
            yield r, v


# --------------------------------------------------------------------------- timing
def epoch_timer():
    """A Keras callback recording per-epoch ``train`` and ``epoch`` seconds (see module doc)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        fit_seconds = 0.0  # model.fit calls, begin to end, summed

        def on_train_begin(self, logs=None):
            self.train, self.epoch, self.train_cpu, self.epoch_cpu = [], [], [], []
            self._start = self._train = None
            self._fit_start = time.perf_counter()

        @staticmethod
        def _now():
            return time.perf_counter(), time.process_time()

        def _since(self):
            now = self._now()
            return now[0] - self._start[0], now[1] - self._start[1]

        def _close(self):
            if self._start is not None:
                wall, cpu = self._since()
                self.epoch.append(wall)
                self.epoch_cpu.append(cpu)
                self._start = None

        def on_epoch_begin(self, epoch, logs=None):
            self._close()
            self._start, self._train = self._now(), None

        def on_test_begin(self, logs=None):
            if self._start is not None and self._train is None:
                self._train = self._since()

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu = self._train if self._train is not None else self._since()
            self.train.append(wall)
            self.train_cpu.append(cpu)

        def on_train_end(self, logs=None):
            self._close()
            self.fit_seconds += time.perf_counter() - self._fit_start

    return EpochTimer()


@dataclasses.dataclass
class Result:
    """One training run: per-epoch seconds, samples per epoch, and whatever else was measured."""
    train: list
    epoch: list
    samples: int
    test_accuracy: float | None = None
    fit_seconds: float | None = None  # the model.fit call
    wall_seconds: float | None = None  # everything: load, build, fit, test, save
    train_cpu: list = dataclasses.field(default_factory=list)
    epoch_cpu: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)

    def _timed(self, seconds):
        return seconds[1:] if len(seconds) > 1 else seconds  # the first epoch traces/compiles

    def samples_per_second(self, cpu: bool = False) -> float:
        """Training samples per (wall or CPU) second over the epochs after the first."""
        timed = self._timed(self.train_cpu if cpu else self.train)
        return self.samples * len(timed) / sum(timed)

    def epoch_seconds(self, cpu: bool = False) -> float:
        return median(self._timed(self.epoch_cpu if cpu else self.epoch))


def reset_keras(policy: str = "float32") -> None:
    import keras

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)


# --------------------------------------------------------------------------- the two sides
def mnist_architectures() -> list[str]:
    """The built-ins that are MNIST recipes: every multiclass one on 28x28x1 images (``binary_mlp``
    and ``regressor`` are examples for tabular data, tested on generated data in tests/test_tasks.py;
    ``transfer`` is for image folders, benchmarked by scripts/bench_transfer.py)."""
    from architectures import BUILTINS
    from trainer import architecture

    return [name for name in BUILTINS if architecture.load(name).task == "multiclass"
            and architecture.load(name).example_input_shape == (28, 28, 1)]


def trainer_config(arch: str, data_path: str, **overrides):
    """``trainer fit ARCH`` defaults (every monitor on) with ``overrides``; no terminal output."""
    from trainer import architecture, config

    module = architecture.load(arch)
    return config.resolve(module, {"data": data_path, "progress": "none", **overrides})


def run_trainer(config, keep_dir: str | None = None) -> Result:
    """``trainer.run.fit(config)`` in this process, in a temporary logdir (removed after)."""
    from trainer import run

    reset_keras()
    logdir = keep_dir or tempfile.mkdtemp(prefix="bench-trainer-")
    config.logdir = logdir
    timer = epoch_timer()
    start = time.perf_counter()
    try:
        # An extra Keras callback, appended to trainer's own (instrumentation only).
        result = run.fit(config, callbacks=[timer])
        wall = time.perf_counter() - start
        with open(os.path.join(result.run_dir, "metrics.json")) as f:
            metrics = json.load(f)
    finally:
        if keep_dir is None:
            shutil.rmtree(logdir, ignore_errors=True)
    samples = round(metrics["history"][0]["samples_per_second"] * metrics["history"][0]["seconds"])
    return Result(train=timer.train, epoch=timer.epoch, samples=samples,
                  train_cpu=timer.train_cpu, epoch_cpu=timer.epoch_cpu,
                  test_accuracy=metrics["test"].get("accuracy"), fit_seconds=timer.fit_seconds,
                  wall_seconds=wall,
                  extra={"history_seconds": [h["seconds"] for h in metrics["history"]],
                         "epochs_run": metrics["epochs_run"],
                         "steps_per_execution": metrics.get("steps_per_execution")})


def trainer_arch(arch: str, data_path: str, **overrides) -> Result:
    """``run_trainer`` of ``trainer fit ARCH`` with its defaults and ``overrides``."""
    return run_trainer(trainer_config(arch, data_path, **overrides))


def plain_arch(arch: str, data_path: str, **overrides) -> Result:
    """``run_plain`` of the model, optimizer and data ``trainer fit ARCH`` would use."""
    return run_plain(trainer_config(arch, data_path, **overrides))


_DATA_CACHE: dict = {}


def plain_data(config):
    """The arrays trainer would use for ``config``, as NumPy float32 (images) and int32 (labels)."""
    from trainer import data as datasets

    key = (config.data, config.train_limit, config.test_limit, str(config.validation))
    if key not in _DATA_CACHE:
        data = datasets.load(config.dataset, config.data, config.train_limit, config.test_limit)
        x, y, xv, yv = datasets.split_validation(data, config.validation)
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = (data, datasets.to_float(x), y, None if xv is None else datasets.to_float(xv), yv,
                            datasets.to_float(data.x_test), data.y_test)
    return _DATA_CACHE[key]


def run_plain(config, callbacks=(), evaluate: bool = False) -> Result:
    """A plain ``model.fit`` of the same model: same ``build``, optimizer, learning rate, batch
    size and validation data; loss/metrics as in the Keras guides; NumPy float32 arrays; Keras
    defaults for everything else (steps_per_execution=1, its own array adapter)."""
    import math

    from trainer import architecture
    from trainer.run import make_optimizer

    reset_keras()
    start = time.perf_counter()
    data, x, y, xv, yv, xt, yt = plain_data(config)
    arch = architecture.load(config.arch_source or config.arch)
    model = arch.build(data.input_shape, data.num_classes, **config.hyperparameters)
    steps = math.ceil(len(x) / config.batch_size)
    model.compile(optimizer=make_optimizer(config, steps * config.epochs),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = epoch_timer()
    model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, verbose=0,
              validation_data=(xv, yv) if xv is not None else None, callbacks=[timer, *callbacks])
    accuracy = None
    if evaluate:
        accuracy = float(model.evaluate(xt, yt, batch_size=config.batch_size, verbose=0,
                                        return_dict=True)["accuracy"])
    return Result(train=timer.train, epoch=timer.epoch, samples=len(x), test_accuracy=accuracy,
                  train_cpu=timer.train_cpu, epoch_cpu=timer.epoch_cpu,
                  fit_seconds=timer.fit_seconds, wall_seconds=time.perf_counter() - start)
