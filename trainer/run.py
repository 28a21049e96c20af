"""One training run, from resolved configuration to saved model: the whole path in one file.

``fit(config)`` loads the data, builds and compiles the model, attaches the monitors, trains,
evaluates on the test set and leaves a run directory behind::

    logs/<arch>/<timestamp>[-<name>]/
        config.json        resolved configuration, library versions, device report
        metrics.json       per-epoch history, test results, wall time, speed, memory
        best.keras         best model by val_loss (written atomically)
        model.keras        final model
        train/ validation/ test/   TensorBoard event files (+ run-wide panels at the root)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import time

from trainer import architecture, data as datasets
from trainer.config import RunConfig, atomic_write_text, library_versions
from trainer.errors import TrainerError, UsageError

VALIDATION_BATCH = 1024  # inference only: a larger batch makes the validation pass cheaper
AUTO_STEPS_PER_EXECUTION = 16  # bounded so progress, Ctrl-C and NaN checks stay prompt


def create_run_dir(logdir: str, arch: str, name: str | None = None) -> str:
    """A new directory ``logdir/arch/<timestamp>[-name]``; an existing one is never reused."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UsageError(
            f"Invalid value for option `--name`. Received: {name!r}. "
            "Expected letters, digits, '.', '_' or '-'."
        )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(logdir, arch, stamp + (f"-{name}" if name else ""))
    try:
        os.makedirs(os.path.dirname(base), exist_ok=True)
        for attempt in range(1000):
            path = base if attempt == 0 else f"{base}.{attempt}"
            try:
                os.mkdir(path)
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise UsageError(
            f"Invalid value for option `--logdir`. Received: {logdir!r}, which cannot be written "
            f"({exc.strerror or exc}). Expected a writable directory."
        ) from None
    raise TrainerError(f"Could not find a free run directory name under {os.path.dirname(base)!r}.")


def claim_dir(path: str) -> str:
    """Creates ``path`` (and its parents); an existing run directory is an error, never reused."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        os.mkdir(path)
    except FileExistsError:
        raise UsageError(f"Run directory {path!r} already exists; runs are never overwritten.") from None
    except OSError as exc:
        raise UsageError(f"Cannot create run directory {path!r}: {exc.strerror or exc}.") from None
    return path


def check_optimizer(name: str) -> None:
    import keras

    try:
        keras.optimizers.get(name)
    except ValueError:
        raise UsageError(
            f"Invalid value for option `--optimizer`. Received: {name!r}. "
            "Expected a Keras optimizer name such as sgd, adam, adamw, rmsprop, adagrad, nadam."
        ) from None


def make_optimizer(config: RunConfig, total_steps: int):
    import keras

    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, total_steps))
    return keras.optimizers.get({"class_name": config.optimizer, "config": {"learning_rate": rate}})


def steps_per_execution(config: RunConfig, steps_per_epoch: int) -> int:
    if config.steps_per_execution != "auto":
        return int(config.steps_per_execution)
    return max(1, min(AUTO_STEPS_PER_EXECUTION, steps_per_epoch))


class RunRecorder:
    """Collects the per-epoch history and writes ``metrics.json`` atomically after each epoch."""

    def __init__(self, path: str):
        import keras

        recorder = self

        class _Hook(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                recorder.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
                recorder.write(status="running")

        self.path = path
        self.history: list[dict] = []
        self.summary: dict = {}
        self.callback = _Hook()

    def write(self, status: str, **summary) -> None:
        self.summary.update(summary)
        payload = {"status": status, **self.summary, "history": self.history}
        atomic_write_text(self.path, json.dumps(payload, indent=2, default=float) + "\n")


@dataclasses.dataclass
class RunResult:
    run_dir: str
    config: RunConfig
    history: list
    test: dict
    best_epoch: int | None
    wall_seconds: float


def peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit(config: RunConfig, console=None, on_start=None) -> RunResult:
    """Trains ``config`` end to end. ``on_start(run_dir)`` is called once the run exists."""
    from trainer import devices

    devices.select_devices(config.gpu, config.cpu)
    import keras
    import tensorflow as tf

    policy = devices.resolve_precision(config.precision, config.mixed_precision)
    data = datasets.load(config.dataset, config.data, config.train_limit, config.test_limit)
    arch = architecture.load(config.arch_source or config.arch)
    x_train, y_train, x_val, y_val = datasets.split_validation(data, config.validation)
    strategy = devices.make_strategy(config.strategy)
    check_optimizer(config.optimizer)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    devices.apply_precision(policy)

    steps = math.ceil(len(x_train) / config.batch_size)
    spe = steps_per_execution(config, steps)
    chief = devices.is_chief()
    if not chief:
        run_dir = _scratch_dir()
    elif config.run_dir:  # given by the caller (a sweep trial): created here, never reused
        run_dir = claim_dir(config.run_dir)
    else:
        run_dir = create_run_dir(config.logdir, arch.name, config.name)
    config.run_dir, config.versions = run_dir, library_versions()
    if on_start:
        on_start(run_dir)

    monitors = {}
    notify = print
    with strategy.scope():
        model = devices.force_float32_outputs(
            arch.build(data.input_shape, data.num_classes, **config.hyperparameters))
        optimizer = make_optimizer(config, steps * config.epochs)
        metrics = ["accuracy"]
        if _is_classifier(model, data.num_classes):
            from callbacks.validation_metrics import ConfusionMatrix, WorstMistakes

            monitors["confusion"] = ConfusionMatrix(data.num_classes)
            metrics.append(monitors["confusion"])
            if config.misclassified and strategy.num_replicas_in_sync > 1:
                notify("Misclassified grid off: its sample indices are per replica under "
                       f"{type(strategy).__name__}.")
            elif config.misclassified:
                monitors["mistakes"] = WorstMistakes(config.misclassified, config.misclassified_class)
                metrics.append(monitors["mistakes"])
        model.compile(
            optimizer=optimizer,
            loss="sparse_categorical_crossentropy",
            metrics=metrics,
            steps_per_execution=spe,
            jit_compile="auto" if config.jit is None else config.jit,
        )

    report = devices.device_report(strategy, policy, config.jit, model=model,
                                   global_batch_size=config.batch_size)
    config.save(os.path.join(run_dir, "config.json"),
                extra={"class_names": data.class_names, "devices": report})

    train_ds = datasets.pipeline(x_train, y_train, config.batch_size, shuffle=True, seed=config.seed)
    val_ds = (datasets.pipeline(x_val, y_val, max(config.batch_size, VALIDATION_BATCH))
              if x_val is not None else None)
    test_ds = datasets.pipeline(data.x_test, data.y_test, max(config.batch_size, VALIDATION_BATCH))

    from callbacks.progress import make_progress

    progress = make_progress(config.progress, config.batch_size, console=console)
    notify = progress.notify if progress is not None and hasattr(progress, "notify") else print
    recorder = RunRecorder(os.path.join(run_dir, "metrics.json"))
    callbacks, test_loggers = build_callbacks(config, run_dir, model, data, x_val, y_val, len(x_train),
                                              monitors, notify)
    callbacks.append(recorder.callback)
    if progress is not None:
        callbacks.append(progress)

    from callbacks.base import acquire_writer, release_writer
    from callbacks.checkpoint import atomic_save

    # Hold one writer per directory for the whole run, so every callback shares it and each
    # directory gets a single event file; released (flushed, closed) on every exit path.
    held = [os.path.join(run_dir, d) for d in ("", "train", "validation", "test")]
    writers = {path: acquire_writer(path) for path in held}
    start = time.perf_counter()
    try:
        _write_run_text(writers[held[0]], config, report)
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks,
                      shuffle=False, verbose=0)  # the pipeline shuffles
        finally:
            if progress is not None:
                progress.close()
        train_seconds = time.perf_counter() - start

        test = {k: float(v) for k, v in model.evaluate(test_ds, return_dict=True, verbose=0).items()}
        epochs_run = len(recorder.history)
        step = max(0, epochs_run - 1)
        per_class = {}
        for logger, args in test_loggers:
            result = logger.log_test(step, *args)
            if isinstance(result, dict):
                per_class.update(result)
        _write_test_scalars(writers[held[3]], test, step)
        if chief:
            atomic_save(model, os.path.join(run_dir, "model.keras"))
    finally:
        for path in held:
            release_writer(path)
    best = next((cb for cb in callbacks if type(cb).__name__ == "BestCheckpoint"), None)
    wall = time.perf_counter() - start
    recorder.write(
        status="finished",
        test=test,
        test_details=per_class,
        best_epoch=(best.best_epoch + 1) if best and best.best_epoch is not None else None,
        best_val_loss=best.best if best and best.best_epoch is not None else None,
        epochs_run=epochs_run,
        train_seconds=train_seconds,
        wall_seconds=wall,
        samples_per_second=(len(x_train) * epochs_run / train_seconds) if train_seconds else None,
        peak_rss_mib=peak_rss_mib(),
        steps_per_execution=spe,
    )
    return RunResult(run_dir=run_dir, config=config, history=recorder.history, test=test,
                     best_epoch=recorder.summary["best_epoch"], wall_seconds=wall)


def _scratch_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="trainer-worker-")


def _is_classifier(model, num_classes: int) -> bool:
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    return shape is not None and len(shape) == 2 and shape[-1] == num_classes


def build_callbacks(config, run_dir, model, data, x_val, y_val, train_samples, monitors, notify):
    """The monitors ``trainer fit`` attaches, each switched by its own option."""
    import keras

    from callbacks.checkpoint import BestCheckpoint
    from callbacks.scalars import Scalars

    cbs = [Scalars(run_dir, samples_per_epoch=train_samples, log_every=config.log_every)]
    test_loggers = []
    has_val = x_val is not None
    if has_val:
        cbs.append(BestCheckpoint(os.path.join(run_dir, "best.keras")))
    if config.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss" if has_val else "loss",
                                                 patience=config.early_stopping))
    if config.graph:
        from callbacks.graph import ModelGraph

        cbs.append(ModelGraph(run_dir))
    if config.histograms_every:
        from callbacks.histograms import WeightHistograms

        cbs.append(WeightHistograms(run_dir, every=config.histograms_every))
    if config.gradients_every and has_val:
        from callbacks.gradients import GradientNorms

        n = min(len(x_val), 256)
        batch = (datasets.to_float(x_val[:n]), y_val[:n])
        cbs.append(GradientNorms(run_dir, batch, every=config.gradients_every))
    if has_val and config.overfitting_patience:
        from callbacks.overfitting import OverfittingMonitor

        cbs.append(OverfittingMonitor(run_dir, patience=config.overfitting_patience, notify=notify))
    if "confusion" in monitors:
        if config.per_class:
            from callbacks.per_class import PerClassMetrics

            cb = PerClassMetrics(run_dir, monitors["confusion"], class_names=data.class_names)
            cbs.append(cb)
            test_loggers.append((cb, ()))
        if config.confusion_every:
            from callbacks.confusion import ConfusionMatrixImage

            cb = ConfusionMatrixImage(run_dir, monitors["confusion"], class_names=data.class_names,
                                      every=config.confusion_every)
            cbs.append(cb)
            test_loggers.append((cb, ()))
    if "mistakes" in monitors and has_val:
        from callbacks.misclassified import MisclassifiedGrid

        cb = MisclassifiedGrid(run_dir, monitors["mistakes"], x_val, class_names=data.class_names)
        cbs.append(cb)
        test_loggers.append((cb, (data.x_test,)))
    from callbacks.devices import DeviceScalars

    cbs.append(DeviceScalars(run_dir))
    return cbs, test_loggers


def _write_run_text(writer, config: RunConfig, report: dict) -> None:
    """The configuration and device report as TensorBoard text, at the run's root."""
    import tensorflow as tf

    from trainer.devices import report_markdown

    with writer.as_default():
        tf.summary.text("config", "```\n" + config.to_json() + "\n```", step=0)
        tf.summary.text("devices", report_markdown(report), step=0)


def _write_test_scalars(writer, test: dict, step: int) -> None:
    import tensorflow as tf

    with writer.as_default():
        for name, value in test.items():
            tf.summary.scalar(f"epoch_{name}", value, step=step)
