"""``trainer lr-find``: the learning-rate range test on the run's own data, model and devices.

The data, the architecture, the devices and the compiled model come from the same stages as
``trainer fit`` (``run.prepare`` and ``run.build``): nothing is loaded another way. The model is
built for the test and thrown away; the rate sweeps from ``start`` to ``end`` over at most
``batches`` training batches (``callbacks.lr_range``). It leaves a run directory of its own,
``logs/<arch>/lr-find-<timestamp>[-<name>]/``, never reused::

    lr_find.json        the configuration, the settings, every point, the suggestion, the command
    events.out.*        lr_find/{loss,smoothed_loss,learning_rate} by batch, lr_find/curve (image),
                        lr_find/summary (text)

It holds no ``config.json``: it is not a training run (``trainer runs`` and ``--resume`` skip it).
Ctrl-C (or SIGTERM) stops after the current batch; the partial curve is kept and suggested from
when it has enough points.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil

from trainer.errors import invalid_argument

RESULT_FILE = "lr_find.json"
PREFIX = "lr-find-"
RULE = "min/10"  # the suggested rule; callbacks.lr_range.suggest computes all of them
RULE_TEXT = {"steepest": "the steepest descent of the smoothed loss",
             "min/10": "a tenth of the rate at the lowest smoothed loss"}


@dataclasses.dataclass
class Settings:
    start: float = 1e-7
    end: float = 10.0
    batches: int = 100
    diverge: float = 4.0

    def validate(self) -> None:
        if not (isinstance(self.start, (int, float)) and self.start > 0):
            raise invalid_argument("start_lr", self.start, "a positive number")
        if not (isinstance(self.end, (int, float)) and self.end > self.start):
            raise invalid_argument("end_lr", self.end, f"a number above start_lr ({self.start})")
        if not (isinstance(self.batches, int) and self.batches >= 2):
            raise invalid_argument("batches", self.batches, "an integer >= 2")
        if not (isinstance(self.diverge, (int, float)) and self.diverge > 1):
            raise invalid_argument("diverge", self.diverge, "a number above 1 (a multiple of the lowest loss)")


@dataclasses.dataclass
class Result:
    run_dir: str
    points: list  # (batch, rate, loss, smoothed loss)
    suggestion: dict | None  # {rule: rate} (callbacks.lr_range.suggest)
    stopped: str  # "diverged", "completed" or "interrupted"
    command: str | None  # the `trainer fit` command with the suggested rate
    signum: int | None = None  # the signal that stopped it

    @property
    def rate(self) -> float | None:
        return (self.suggestion or {}).get(RULE)


def fit_command(base: str, rate: float | None) -> str | None:
    return None if rate is None else f"{base} --learning-rate {rate:.3g}"


def lr_find(config, settings: Settings, base_command: str = "", console=None) -> Result:
    """Runs the range test for ``config`` (a resolved ``RunConfig``) in a new run directory.
    ``base_command``: the ``trainer fit`` command the suggested rate is appended to."""
    from trainer import run
    from trainer.rundir import RunLock, create_run_dir
    from trainer.training import notifier

    settings.validate()
    config = dataclasses.replace(config, learning_rate=settings.start, lr_schedule="constant",
                                 steps_per_execution=1, log_every=0, misclassified=0)
    prepared = run.prepare(config)
    if config.seed is None:
        config.seed = int.from_bytes(os.urandom(3), "little")
    notify = notifier(console)
    for note in prepared.notes:
        notify(note)
    run_dir = create_run_dir(config.logdir, prepared.arch.name, config.name, prefix=PREFIX)
    config.run_dir = run_dir
    try:
        with RunLock(run_dir):
            return _run(prepared, config, settings, base_command, notify)
    except BaseException:
        if set(os.listdir(run_dir)) <= {".lock"}:  # failed before writing anything (a bad model)
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _run(prepared, config, settings: Settings, base_command: str, notify) -> Result:
    """The model (``run.build``), the sweep, and what it leaves in the run directory."""
    from trainer import run

    built = run.build(prepared, config, notify)
    notify(f"Learning-rate range test: {settings.start:.3g} -> {settings.end:.3g} over at most "
           f"{settings.batches} batches of {config.batch_size}, in {config.run_dir}")
    test, signum = _sweep(prepared, built, config, settings, notify)
    stopped = "interrupted" if signum else test.stopped or "completed"
    result = Result(config.run_dir, test.points, test.suggestion(), stopped, None, signum)
    result.command = fit_command(base_command, result.rate)
    _write(result, config, settings)
    return result


def _sweep(prepared, built, config, settings: Settings, notify):
    """``model.fit`` over enough epochs for ``settings.batches``, stopped by the range test or a signal."""
    import keras

    from callbacks.guards import SignalGuard
    from callbacks.lr_range import LearningRateRangeTest
    from trainer import batches

    x_train, y_train = prepared.split[:2]
    train_data = batches.training_batches(x_train, y_train, config.batch_size, config.seed,
                                          cache=config.cache, augment=config.augment)
    test = LearningRateRangeTest(config.run_dir, settings.start, settings.end, settings.batches,
                                 diverge=settings.diverge, rule=RULE)
    guard = SignalGuard(notify=notify)
    every = max(1, settings.batches // 10)

    class Watch(keras.callbacks.Callback):
        """Stops at the batch end after a signal; a line every tenth of the sweep."""

        def on_train_batch_end(self, batch, logs=None):
            if guard.signum is not None:
                self.model.stop_training = True
            step, rate, loss, _ = test.points[-1]
            if (step + 1) % every == 0:
                notify(f"lr-find batch {step + 1}/{settings.batches}: rate {rate:.3g}, loss {loss:.4f}")

    epochs = -(-settings.batches // built.steps)
    with guard:
        built.model.fit(train_data.dataset(built.steps), epochs=epochs, verbose=0, shuffle=False,
                        callbacks=[train_data.callback, test, Watch()])
    return test, guard.signum


def _write(result: Result, config, settings: Settings) -> None:
    """``lr_find.json``, the curve marked at the suggestion, and the summary text."""
    import tensorflow as tf

    from callbacks.base import acquire_writer, release_writer
    from callbacks.files import atomic_write_json

    atomic_write_json(os.path.join(result.run_dir, RESULT_FILE), {
        "kind": "lr-find", "status": result.stopped, "rule": RULE, "suggested_learning_rate": result.rate,
        "suggestion": result.suggestion, "command": result.command, "settings": dataclasses.asdict(settings),
        "config": dataclasses.asdict(config),
        "points": [{"batch": b, "learning_rate": r, "loss": _json_number(loss), "smoothed_loss": _json_number(s)}
                   for b, r, loss, s in result.points]})
    writer = acquire_writer(result.run_dir)  # the curve image is the callback's
    try:
        with writer.as_default():
            tf.summary.text("lr_find/summary", summary_markdown(result), step=0)
    finally:
        release_writer(result.run_dir)


def _json_number(value: float):
    return value if math.isfinite(value) else None


def summary_lines(result: Result, markdown: bool = False) -> list[str]:
    """What the command prints (``markdown``: TensorBoard's ``lr_find/summary`` text)."""
    from callbacks.lr_range import MIN_POINTS

    ended = {"diverged": "the loss diverged", "completed": "all batches done",
             "interrupted": "interrupted"}[result.stopped]
    lines = [f"Range test: {len(result.points)} batches ({ended}), in {result.run_dir}"]
    if result.rate is None:
        lines.append(f"No suggestion: {len(result.points)} batches recorded, at least {MIN_POINTS} are needed.")
        return lines
    found = result.suggestion
    lines.append(f"Suggested learning rate: {result.rate:.3g} ({RULE_TEXT[RULE]}, {found['minimum']:.3g}; "
                 f"the steepest descent is at {found['steepest']:.3g}).")
    lines.append(f"Train with it: `{result.command}`" if markdown else f"Train with it: {result.command}")
    return lines


def summary_markdown(result: Result) -> str:
    return "\n\n".join(summary_lines(result, markdown=True))
