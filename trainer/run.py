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
import shutil
import time

from trainer import architecture, data as datasets, tasks
from trainer.config import RunConfig, atomic_write_text, library_versions
from trainer.errors import TrainerError, UsageError

VALIDATION_BATCH = 1024  # inference only: a larger batch makes the validation pass cheaper
AUTO_STEPS_PER_EXECUTION = 16  # bounded so progress, Ctrl-C and NaN checks stay prompt
EXECUTION_TARGET_SECONDS = 1.0  # auto: fewer batches per execution when one takes much longer


def create_run_dir(logdir: str, arch: str, name: str | None = None, prefix: str = "") -> str:
    """A new directory ``logdir/arch/<prefix><timestamp>[-name]``; an existing one is never reused."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UsageError(
            f"Invalid value for option `--name`. Received: {name!r}. "
            "Expected letters, digits, '.', '_' or '-'."
        )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(logdir, arch, prefix + stamp + (f"-{name}" if name else ""))
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


def steps_per_execution(config: RunConfig, steps_per_epoch: int, replicas: int = 1) -> int:
    """Batches per compiled execution; always 1 with several replicas, where Keras 3's
    multi-step loop fails ("You must feed a value for placeholder tensor", keras-team/keras#19246)."""
    if replicas > 1:
        return 1
    if config.steps_per_execution != "auto":
        return int(config.steps_per_execution)
    return max(1, min(AUTO_STEPS_PER_EXECUTION, steps_per_epoch))


def _set_steps_per_execution(model, spe: int) -> None:
    """Recompiles the training and evaluation functions for ``spe`` batches per execution
    (weights, optimizer state and metrics are untouched)."""
    model.steps_per_execution = spe
    model.make_train_function(force=True)
    model.make_test_function(force=True)


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
    chief: bool = True  # False on a multi-worker run's other workers (their run_dir is removed)
    train_steps: int | None = None


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


class RunInterrupted(TrainerError):
    """Training stopped on SIGINT/SIGTERM; the state is saved and the run can be resumed."""

    prefix = ""  # the command line prints the message alone (what was saved, how to resume)

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass
class _Prepared:
    """Everything checked and loaded before anything is written."""

    arch: object
    data: object
    split: tuple
    strategy: object
    policy: str


def _prepare(config: RunConfig) -> _Prepared:
    from trainer import devices

    devices.select_devices(config.gpu, config.cpu)
    policy = devices.resolve_precision(config.precision, config.mixed_precision)
    arch = architecture.load(config.arch_source or config.arch)
    config.task = arch.task
    data = datasets.load(config.dataset, config.data, config.train_limit, config.test_limit,
                         task=arch.task, target=config.target)
    split = datasets.split_validation(data, config.validation)
    strategy = devices.make_strategy(config.strategy)
    check_optimizer(config.optimizer)
    return _Prepared(arch, data, split, strategy, policy)


def fit(config: RunConfig, console=None, on_start=None, show_devices=False,
        log_device_placement=False, profile=None) -> RunResult:
    """Trains ``config`` end to end in a new run directory.

    ``on_start(run_dir)`` is called once the run directory exists. ``show_devices``: print
    the device report to ``console``. ``log_device_placement``: TensorFlow's per-op
    placement log, summarised (``devices.PlacementLog``; before TensorFlow starts only).
    ``profile``: (start, end) training batches traced for TensorBoard's Profile tab.
    A non-chief worker trains in a scratch directory, removed at the end.
    """
    from trainer import devices

    placement = devices.PlacementLog().start() if log_device_placement else None
    prepared = _prepare(config)
    if config.seed is None:  # a run is always repeatable and resumable: pick and record a seed
        config.seed = int.from_bytes(os.urandom(3), "little")
    chief = devices.is_chief()
    if not chief:
        run_dir = _scratch_dir()
    elif config.run_dir:  # given by the caller (a sweep trial): created here, never reused
        run_dir = claim_dir(config.run_dir)
    else:
        run_dir = create_run_dir(config.logdir, prepared.arch.name, config.name)
    config.run_dir = run_dir
    if on_start:
        on_start(run_dir)
    try:
        with RunLock(run_dir):
            return _train(prepared, config, run_dir, state=None, console=console, chief=chief,
                          show_devices=show_devices, placement=placement, profile=profile)
    finally:
        if not chief:  # the chief writes the run; nothing of a worker's is kept
            shutil.rmtree(run_dir, ignore_errors=True)


def resume(run_dir: str, console=None, show_devices=False) -> RunResult | None:
    """Continues an interrupted run in its own directory; None if it had already finished."""
    from callbacks.backup import load_state
    from trainer import devices

    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise UsageError(f"Cannot resume {run_dir!r}: no config.json there. Expected a run directory "
                         "made by `trainer fit` (logs/<arch>/<run>).")
    metrics = _read_json(os.path.join(run_dir, "metrics.json")) or {}
    if metrics.get("status") == "finished":
        return None
    config = RunConfig.load(config_path)
    config.run_dir = run_dir
    with RunLock(run_dir):
        state = load_state(os.path.join(run_dir, "state"))
        prepared = _prepare(config)
        return _train(prepared, config, run_dir, state=state or {"epoch": 0, "batch": 0, "new": True},
                      console=console, chief=devices.is_chief(), previous=metrics,
                      show_devices=show_devices)


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class RunLock:
    """An exclusive lock on a run directory for as long as a process writes it.

    ``flock`` is released by the kernel when the process dies, even by ``kill -9``, so a
    crashed run can be resumed at once while a live one can never be opened twice.
    """

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, ".lock")
        self._file = None

    def __enter__(self):
        import fcntl

        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise TrainerError(
                f"Run {os.path.dirname(self.path)!r} is being written by a live process (pid {holder}); "
                "wait for it to finish or stop it first."
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return self

    def __exit__(self, *exc):
        self._file.close()  # releases the lock
        return False


def _shifted_callback_list(callbacks, offset: int, model, epochs: int, steps: int):
    """A CallbackList that reports batch indices shifted by ``offset``: in the first epoch of
    a resumed run, Keras counts from 0 but the run is ``offset`` batches into the epoch."""
    import keras

    class Shifted(keras.callbacks.CallbackList):
        def on_train_batch_begin(self, batch, logs=None):
            super().on_train_batch_begin(batch + offset, logs)

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch + offset, logs)

    return Shifted(callbacks, add_history=True, model=model, epochs=epochs, steps=steps, verbose=0)


def _train(prepared: _Prepared, config: RunConfig, run_dir: str, state: dict | None, console,
           chief: bool, previous: dict | None = None, show_devices=False, placement=None,
           profile=None) -> RunResult:
    import keras

    from callbacks.backup import Backup
    from callbacks.base import acquire_writer, release_writer
    from callbacks.checkpoint import atomic_save
    from callbacks.guards import Interrupted, NonFiniteLoss, SignalGuard, StopOnNonFinite, StopOnSignal
    from callbacks.progress import make_progress
    from trainer import devices, fused
    from trainer.events import truncate_events

    arch, data, strategy, policy = prepared.arch, prepared.data, prepared.strategy, prepared.policy
    x_train, y_train, x_val, y_val = prepared.split
    keras.utils.set_random_seed(config.seed)
    devices.apply_precision(policy)
    steps = math.ceil(len(x_train) / config.batch_size)
    spe = steps_per_execution(config, steps, strategy.num_replicas_in_sync)
    if spe == 1 and config.steps_per_execution not in ("auto", 1):
        print(f"steps_per_execution={config.steps_per_execution} not used: Keras runs one batch per "
              f"execution with {strategy.num_replicas_in_sync} replicas.")
    resuming = state is not None
    config.versions = library_versions()

    monitors = {}
    with strategy.scope():
        model = devices.force_float32_outputs(
            arch.build(data.input_shape, tasks.outputs(data.task, data.num_classes),
                       **config.hyperparameters))
        optimizer = make_optimizer(config, steps * config.epochs)
        kernel = fused.fuse(optimizer)
        metrics = tasks.metrics(data.task)
        if data.task != "multiclass":
            notify = _notifier(None, console)
            notify(f"Note: per-class metrics, confusion matrix and misclassified grid are off for a "
                   f"{data.task} task.")
        if data.task == "regression":
            from callbacks.regression import PredictionSample

            monitors["sample"] = PredictionSample()
            metrics.append(monitors["sample"])
        elif _is_classifier(model, data.num_classes):
            from callbacks.validation_metrics import ConfusionMatrix, WorstMistakes

            monitors["confusion"] = ConfusionMatrix(data.num_classes)
            metrics.append(monitors["confusion"])
            if config.misclassified and strategy.num_replicas_in_sync > 1:
                print("Misclassified grid off: its sample indices are per replica under "
                      f"{type(strategy).__name__}.")
            elif config.misclassified:
                monitors["mistakes"] = WorstMistakes(config.misclassified, config.misclassified_class)
                metrics.append(monitors["mistakes"])
        model.compile(
            optimizer=optimizer,
            loss=tasks.loss(data.task),
            metrics=metrics,
            steps_per_execution=spe,
            jit_compile="auto" if config.jit is None else config.jit,
        )
    devices.patch_multi_worker(model, strategy)

    jit = config.jit if config.jit is not None else f"auto ({'on' if model.jit_compile else 'off'})"
    report = devices.device_report(strategy, policy, jit, model=model,
                                   global_batch_size=config.batch_size,
                                   optimizer=f"{type(optimizer).__name__}, " + (
                                       f"fused kernel {kernel}" if kernel else "Keras's update"))
    if show_devices and console is not None:
        console.print(devices.report_table(report, ascii=not console.is_terminal))
    if not resuming:
        config.save(os.path.join(run_dir, "config.json"),
                    extra={"class_names": data.class_names, "devices": report})

    train_data = datasets.EpochOrderedData(x_train, y_train, config.batch_size, config.seed)
    val_ds = (datasets.pipeline(x_val, y_val, max(config.batch_size, VALIDATION_BATCH))
              if x_val is not None else None)
    test_ds = datasets.pipeline(data.x_test, data.y_test, max(config.batch_size, VALIDATION_BATCH))

    progress = make_progress(config.progress, config.batch_size, console=console)
    notify = _notifier(progress, console)
    recorder = RunRecorder(os.path.join(run_dir, "metrics.json"))
    monitors_cbs, test_loggers = build_callbacks(config, run_dir, model, data, x_val, y_val,
                                                 len(x_train), monitors, notify)
    if placement is not None:
        from callbacks.devices import PlacementSummary

        def placement_known(summary):
            report["placement"] = summary
            config.save(os.path.join(run_dir, "config.json"),
                        extra={"class_names": data.class_names, "devices": report})
            notify(devices.placement_line(summary))

        monitors_cbs.append(PlacementSummary(run_dir, placement, placement_known))
    if profile:
        from callbacks.profiler import Profiler

        monitors_cbs.append(Profiler(run_dir, *profile, notify=notify))
    held = [os.path.join(run_dir, d) for d in ("", "train", "validation", "test")]
    writers = {}

    def flush():
        for writer in writers.values():
            writer.flush()

    backup = Backup(os.path.join(run_dir, "state"), steps, every_batches=config.save_every_batches,
                    every_seconds=config.save_every_seconds, before_save=flush)
    guard = SignalGuard(notify=notify)
    callbacks = [train_data.callback, StopOnNonFinite(), *monitors_cbs, recorder.callback, backup]
    if progress is not None:
        callbacks.append(progress)
    callbacks.append(StopOnSignal(guard, steps))
    pace = None
    if config.steps_per_execution == "auto" and spe > 1:
        from callbacks.pace import ExecutionPace

        pace = ExecutionPace(target_seconds=EXECUTION_TARGET_SECONDS)
        callbacks.append(pace)
    backup.callbacks = callbacks
    backup.set_model(model)

    start_epoch, start_batch = (state["epoch"], state["batch"]) if resuming else (0, 0)
    if resuming:
        truncate_events(run_dir, start_epoch, start_epoch * steps + start_batch)
        recorder.history = [h for h in (previous or {}).get("history", []) if h["epoch"] <= start_epoch]
        recorder.summary["resumed"] = (previous or {}).get("resumed", []) + [
            {"epoch": start_epoch + 1, "batch": start_batch, "at": time.time()}]
        if "weights" in state:
            backup.restore(state)
            backup.pending = state.get("callbacks")

    phases = []
    if start_batch:
        phases.append((start_epoch, start_epoch + 1, steps - start_batch, start_batch))
    first_full = start_epoch + (1 if start_batch else 0)
    if first_full < config.epochs:
        phases.append((first_full, config.epochs, steps, 0))

    writers.update({path: acquire_writer(path) for path in held})
    start = time.perf_counter()
    try:
        if not resuming:
            _write_run_text(writers[held[0]], config, report)
        with guard:
            try:
                while phases:
                    initial, end, batches, skip = phases.pop(0)
                    train_data.skip.assign(skip)
                    history = model.fit(
                        train_data.dataset(batches), validation_data=val_ds, initial_epoch=initial,
                        epochs=end, verbose=0, shuffle=False,
                        callbacks=_shifted_callback_list(callbacks, skip, model, config.epochs, steps))
                    if pace is not None and pace.requested:
                        # Executions were too slow for a prompt display and Ctrl-C: go on from
                        # the next epoch with fewer batches per execution.
                        epoch = history.epoch[-1] + 1
                        notify(f"One execution of {spe} batches took {spe * pace.seconds_per_batch:.1f} s: "
                               f"running {pace.requested} per execution from epoch {epoch + 1}.")
                        spe = pace.requested
                        _set_steps_per_execution(model, spe)
                        phases = [(epoch, config.epochs, steps, 0)]
                    elif model.stop_training:  # early stopping
                        break
            except Interrupted as exc:
                backup.save(exc.epoch, exc.batch)
                recorder.write(status="interrupted")
                where = (f"at epoch {exc.epoch + 1}, batch {exc.batch}/{steps}" if exc.batch
                         else f"after epoch {exc.epoch}")
                raise RunInterrupted(
                    f"Interrupted by {_signal_name(exc.signum)} {where}; state saved. "
                    f"Resume with: trainer fit --resume {run_dir}", exc.exit_code) from None
            except KeyboardInterrupt:
                recorder.write(status="interrupted")
                raise RunInterrupted(f"Aborted; the last saved state is kept. Resume with: "
                                     f"trainer fit --resume {run_dir}", 130) from None
            except NonFiniteLoss as exc:
                message = (f"{exc}; training stopped. The last good state is kept in "
                           f"{os.path.join(run_dir, 'state')} (and the best model in best.keras).")
                _write_text(writers[held[0]], "non_finite_loss", message, exc.epoch)
                recorder.write(status="failed", error=str(exc))
                raise TrainerError(message) from None
            finally:
                if progress is not None:
                    progress.close()
        test = {k: float(v) for k, v in model.evaluate(test_ds, return_dict=True, verbose=0).items()}
        epochs_run = len(recorder.history)
        step = max(0, epochs_run - 1)
        details = {}
        for logger, args in test_loggers:
            result = logger.log_test(step, *args)
            if isinstance(result, dict):
                details.update(result)
        _write_test_scalars(writers[held[3]], test, step)
        if chief:
            atomic_save(model, os.path.join(run_dir, "model.keras"))
    except OSError as exc:
        raise TrainerError(f"Cannot write to run directory {run_dir!r}: {exc.strerror or exc}. "
                           "What was written before is kept.") from None
    finally:
        for path in held:
            release_writer(path)

    best = next((cb for cb in callbacks if type(cb).__name__ == "BestCheckpoint"), None)
    wall = time.perf_counter() - start
    recorder.write(
        status="finished",
        test=test,
        test_details=details,
        best_epoch=(best.best_epoch + 1) if best and best.best_epoch is not None else None,
        best_val_loss=best.best if best and best.best_epoch is not None else None,
        epochs_run=epochs_run,
        train_seconds=sum(h.get("seconds", 0.0) for h in recorder.history),
        wall_seconds=wall,
        samples_per_second=_mean_speed(recorder.history),
        peak_rss_mib=peak_rss_mib(),
        steps_per_execution=spe,
        train_steps=int(model.optimizer.iterations.numpy()),
    )
    return RunResult(run_dir=run_dir, config=config, history=recorder.history, test=test,
                     best_epoch=recorder.summary["best_epoch"], wall_seconds=wall, chief=chief,
                     train_steps=recorder.summary["train_steps"])


def _mean_speed(history: list) -> float | None:
    """Training samples per second over the epochs after the first (which includes tracing)."""
    speeds = [h["samples_per_second"] for h in history if h.get("samples_per_second")]
    speeds = speeds[1:] or speeds
    return sum(speeds) / len(speeds) if speeds else None


def _signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _notifier(progress, console):
    """Messages for the user while training runs: above the live display, or as a plain line."""
    if console is None:
        return print

    def notify(message: str) -> None:
        console.print(message, markup=False, highlight=False)

    return notify


def _write_text(writer, tag: str, text: str, step: int) -> None:
    import tensorflow as tf

    with writer.as_default():
        tf.summary.text(tag, text, step=step)
    writer.flush()


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
    if "sample" in monitors and has_val:
        from callbacks.regression import PredictionScatter

        cb = PredictionScatter(run_dir, monitors["sample"])
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
