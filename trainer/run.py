"""One training run, from resolved configuration to saved model, as five named stages.

``fit(config)`` -> ``prepare`` (check and load everything, write nothing) -> ``build`` (model,
optimizer, compile, device report) -> ``monitor`` (the TensorBoard callbacks and the run's own:
progress, resumable state, signals) -> ``train`` (``model.fit`` in one or more phases) ->
``finish`` (test set, final model, ``metrics.json``). It leaves a run directory behind::

    logs/<arch>/<timestamp>[-<name>]/
        config.json        resolved configuration, library versions, device report
        metrics.json       per-epoch history, test results, wall time, speed, memory
        best.keras         best model by val_loss (written atomically)
        model.keras        final model
        train/ validation/ test/   TensorBoard event files (+ run-wide panels at the root)
        state/             resumable state
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

from callbacks.files import read_json
from callbacks.memory import peak_rss_mib
from trainer import architecture, batches, data as datasets, tasks
from trainer.config import RunConfig, library_versions
from trainer.errors import TrainerError, UsageError
from trainer.recorder import RunRecorder
from trainer.rundir import RunLock, claim_dir, create_run_dir, scratch_dir  # noqa: F401 - public here too
from trainer.training import (  # noqa: F401
    RunInterrupted,
    TrainingLoop,
    check_optimizer,
    make_optimizer,
    notifier,
    steps_per_execution,
)


@dataclasses.dataclass
class RunResult:
    run_dir: str
    config: RunConfig
    history: list
    test: dict
    best_epoch: int | None  # 1-based epoch of the best val_loss
    wall_seconds: float
    chief: bool = True  # False on a multi-worker run's other workers (their run_dir is removed)
    train_steps: int | None = None
    model: object = None  # the trained keras.Model (the Python API returns it)


@dataclasses.dataclass
class Prepared:
    """Stage 1: everything checked and loaded before anything is written."""

    arch: object
    data: object
    split: tuple  # x_train, y_train, x_val, y_val
    strategy: object
    policy: str
    notes: list = dataclasses.field(default_factory=list)


def prepare(config: RunConfig) -> Prepared:
    from trainer import devices

    devices.select_devices(config.gpu, config.cpu)
    policy = devices.resolve_precision(config.precision, config.mixed_precision)
    arch = architecture.load(config.arch_source or config.arch)
    config.task = arch.task
    image_size = config.image_size or arch.default_image_size(config.hyperparameters)  # e.g. a backbone's
    data = datasets.load(config.dataset, config.data, config.train_limit, config.test_limit,
                         task=arch.task, target=config.target,
                         images={"image_size": image_size, "color_mode": config.color_mode,
                                 "crop_to_aspect_ratio": config.crop_to_aspect_ratio})
    if datasets.is_files(data.x_train):  # record what was chosen, for resume and predict
        config.image_size, config.color_mode = list(data.x_train.image_size), data.folder.color_mode
    elif config.augment:
        raise UsageError(f"Invalid value for option `--augment`. Received: {config.augment!r} with array "
                         "data. Expected it only with an image folder (--data DIR).")
    if config.misclassified_class is not None and data.task == "multiclass":
        config.misclassified_class = datasets.class_index(config.misclassified_class, data.class_names)
    split = datasets.split_validation(data, config.validation)
    notes = list(data.notes)
    if config.batch_size > len(split[0]):
        notes.append(f"Note: --batch-size {config.batch_size} is larger than the {len(split[0])} training "
                     f"samples; using {len(split[0])}.")
        config.batch_size = len(split[0])
    strategy = devices.make_strategy(config.strategy)
    check_optimizer(config.optimizer)
    return Prepared(arch, data, split, strategy, policy, notes)


@dataclasses.dataclass
class Built:
    """Stage 2: the compiled model and what was chosen for it."""

    model: object
    compiled: object  # monitors.Compiled
    steps: int  # batches per epoch
    spe: int  # batches per execution
    report: dict  # the device report


def build(prepared: Prepared, config: RunConfig, notify) -> Built:
    import keras

    from trainer import devices, monitors

    data, strategy = prepared.data, prepared.strategy
    keras.utils.set_random_seed(config.seed)
    devices.apply_precision(prepared.policy)
    steps = -(-len(prepared.split[0]) // config.batch_size)
    spe = steps_per_execution(config, steps, strategy.num_replicas_in_sync, notify)
    with strategy.scope():
        model = devices.force_float32_outputs(
            prepared.arch.build(data.input_shape, tasks.outputs(data.task, data.num_classes),
                                **config.hyperparameters))
        tasks.check_outputs(model, data.task, data.num_classes)
        compiled = monitors.compiled_metrics(data.task, data.num_classes, config.misclassified,
                                             config.misclassified_class, strategy.num_replicas_in_sync, notify,
                                             pr_curves=bool(config.pr_curves_every),
                                             calibration=bool(config.calibration_every))
        optimizer, kernel = compile_model(model, config, steps, compiled.metrics, spe)
    devices.patch_multi_worker(model, strategy)
    jit = config.jit if config.jit is not None else f"auto ({'on' if model.jit_compile else 'off'})"
    update = f"fused kernel {kernel}" if kernel else "Keras's update"
    report = devices.device_report(strategy, prepared.policy, jit, model=model,
                                   global_batch_size=config.batch_size,
                                   optimizer=f"{type(optimizer).__name__}, {update}")
    return Built(model, compiled, steps, spe, report)


def compile_model(model, config: RunConfig, steps: int, metrics: list, spe: int, factor: float = 1.0,
                  jit=None):
    """Compiles ``model`` with a new optimizer at ``factor`` times the run's learning rate (a
    later training phase: the optimizer's step count continues, so a schedule goes on where it
    was); returns (optimizer, fused kernel name or None). Call inside the strategy's scope."""
    from trainer import fused

    previous = getattr(model, "optimizer", None)
    optimizer = make_optimizer(config, steps * config.epochs, factor)
    if previous is not None:
        optimizer.iterations.assign(previous.iterations)
    kernel = fused.fuse(optimizer)
    if jit is None:
        jit = "auto" if config.jit is None else config.jit
    model.compile(optimizer=optimizer, loss=tasks.loss(config.task), metrics=metrics,
                  steps_per_execution=spe, jit_compile=jit)
    return optimizer, kernel


def fit(config: RunConfig, console=None, on_start=None, show_devices: bool = False,
        log_device_placement: bool = False, profile: tuple[int, int] | None = None,
        callbacks: list | tuple = ()) -> RunResult:
    """Trains ``config`` end to end in a new run directory.

    ``on_start(run_dir)`` is called once the run directory exists. ``show_devices``: print
    the device report to ``console``. ``log_device_placement``: TensorFlow's per-op
    placement log, summarised (before TensorFlow starts only). ``profile``: (start, end)
    training batches traced for TensorBoard's Profile tab. ``callbacks``: more Keras
    callbacks, run after trainer's own monitors. A non-chief worker trains in a scratch
    directory, removed at the end.
    """
    from trainer import devices

    placement = devices.PlacementLog().start() if log_device_placement else None
    prepared = prepare(config)
    if config.seed is None:  # a run is always repeatable and resumable: pick and record a seed
        config.seed = int.from_bytes(os.urandom(3), "little")
    chief = devices.is_chief()
    if not chief:
        run_dir = scratch_dir()
    elif config.run_dir:  # given by the caller (a sweep trial): created here, never reused
        run_dir = claim_dir(config.run_dir)
    else:
        run_dir = create_run_dir(config.logdir, prepared.arch.name, config.name)
    config.run_dir = run_dir
    if on_start:
        on_start(run_dir)
    try:
        with RunLock(run_dir):
            run = Run(prepared, config, console, chief=chief, extra_callbacks=callbacks)
            return run.execute(show_devices=show_devices, placement=placement, profile=profile)
    except BaseException:
        if set(os.listdir(run_dir)) <= {".lock"}:  # failed before writing anything (a bad model)
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if not chief:  # the chief writes the run; nothing of a worker's is kept
            shutil.rmtree(run_dir, ignore_errors=True)


def resume(run_dir: str, console=None, show_devices: bool = False,
           callbacks: list | tuple = ()) -> RunResult | None:
    """Continues an interrupted run in its own directory; None if it had already finished."""
    from callbacks.backup import load_state
    from trainer import devices

    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise UsageError(f"Cannot resume {run_dir!r}: no config.json there. Expected a run directory "
                         "made by `trainer fit` (logs/<arch>/<run>).")
    try:
        metrics = read_json(os.path.join(run_dir, "metrics.json")) or {}
    except ValueError:
        metrics = {}
    if metrics.get("status") == "finished":
        return None
    config = RunConfig.load(config_path)
    config.run_dir = run_dir
    with RunLock(run_dir):
        state = load_state(os.path.join(run_dir, "state")) or {"epoch": 0, "batch": 0, "new": True}
        run = Run(prepare(config), config, console, chief=devices.is_chief(), extra_callbacks=callbacks,
                  state=state, previous=metrics)
        return run.execute(show_devices=show_devices)


class Run:
    """One run's stages 2-5 in a run directory that exists and is locked."""

    def __init__(self, prepared: Prepared, config: RunConfig, console, chief: bool = True,
                 extra_callbacks=(), state: dict | None = None, previous: dict | None = None):
        self.prepared, self.config, self.console, self.chief = prepared, config, console, chief
        self.run_dir = config.run_dir
        self.extra_callbacks = list(extra_callbacks)
        self.state, self.previous = state, previous or {}
        self.notify = notifier(console)
        self.recorder = RunRecorder(os.path.join(self.run_dir, "metrics.json"))

    @property
    def resuming(self) -> bool:
        return self.state is not None

    def execute(self, show_devices: bool = False, placement=None, profile=None) -> RunResult:
        for note in self.prepared.notes:
            self.notify(note)
        folder = self.prepared.data.folder
        if folder is not None and not self.resuming:
            folder.write_skipped(self.run_dir)
        self.config.versions = library_versions()
        self.built = build(self.prepared, self.config, self.notify)
        if not self.resuming:  # after build: a model that fails to build leaves no run directory
            self._keep_architecture()
        self._show_devices(show_devices)
        loop = self.monitor(placement, profile)
        start = time.perf_counter()
        with loop.writers() as writers:
            if not self.resuming:
                writers.write_run_text(self.config, self.built.report)
            self.train(loop)
            test, details = self.finish(loop, writers)
        return self._result(loop, test, details, time.perf_counter() - start)

    def _show_devices(self, show: bool) -> None:
        from trainer import devices

        if show and self.console is not None:
            self.console.print(devices.report_table(self.built.report, ascii=not self.console.is_terminal))
        if not self.resuming:
            self._save_config()

    def _keep_architecture(self) -> None:
        """A copy of the user's architecture file in the run directory: a rerun of this run
        (``--config RUN_DIR/config.json``) trains this code even after the file changed."""
        source = self.config.arch_source
        if source.endswith(".py") and os.path.isfile(source) and self.chief:
            try:
                shutil.copyfile(source, os.path.join(self.run_dir, os.path.basename(source)))
            except OSError as exc:
                self.notify(f"Note: could not keep a copy of {source!r} in the run directory: {exc}")

    def _save_config(self) -> None:
        self.config.save(os.path.join(self.run_dir, "config.json"),
                         extra={"class_names": self.prepared.data.class_names, "devices": self.built.report})

    def monitor(self, placement=None, profile=None) -> TrainingLoop:
        """Stage 3: the monitors, then the run's own callbacks, wired into one training loop."""
        from trainer import monitors

        config, built = self.config, self.built
        attached = monitors.attach(config, self.run_dir, self.prepared.data, self.prepared.split,
                                   built.compiled, self.notify)
        extra = list(self.extra_callbacks)
        if placement is not None:
            extra.append(self._placement_callback(placement))
        if profile:
            from callbacks.profiler import Profiler

            extra.append(Profiler(self.run_dir, *profile, notify=self.notify))
        x_train, y_train = self.prepared.split[:2]
        train_data = batches.training_batches(x_train, y_train, config.batch_size, config.seed,
                                              cache=config.cache, augment=config.augment)
        if datasets.is_files(x_train):
            extra.insert(0, self._inputs_grid(train_data))
        return TrainingLoop(config, self.run_dir, built.model, train_data, attached, extra,
                            self.recorder, built.steps, built.spe, self.console,
                            phases=self.prepared.arch.phases(config.epochs, config.hyperparameters),
                            recompile=self._recompile, features=self._frozen_features(train_data))

    def _frozen_features(self, train_data):
        """trainer.features.FrozenFeatures when the architecture names the layer its frozen
        part ends in (``FEATURE_LAYER``) and nothing rules it out; else None."""
        from trainer.features import FrozenFeatures

        config, model, layer = self.config, self.built.model, self.prepared.arch.feature_layer
        if layer is None or not config.feature_cache:
            return None
        if config.augment:
            self.notify("Note: with --augment the frozen backbone reads every (augmented) image in every "
                        "epoch; without it, its features would be computed once.")
            return None
        if self.prepared.strategy.num_replicas_in_sync > 1:
            return None
        from trainer.features import store_root, unusable

        why = unusable(model, layer)
        if why is None:
            x_train, y_train, x_val, y_val = self.prepared.split[:4]
            try:
                return FrozenFeatures(model, layer, train_data, len(x_val) if x_val is not None else 0,
                                      max(config.batch_size, batches.EVAL_BATCH), self._compile_head, self.notify,
                                      data=(x_train, y_train, x_val, y_val),
                                      store=store_root() if self.chief else None)
            except ValueError as exc:
                why = str(exc).splitlines()[0]
        self.notify(f"Note: {self.prepared.arch.name}.FEATURE_LAYER={layer!r} cannot be used ({why}); "
                    "training the whole model every epoch.")
        return None

    def _compile_head(self, head) -> None:
        """The head that trains on frozen features, compiled like the whole model: the same
        optimizer (object), loss, metrics, batches per execution and XLA setting."""
        model = self.built.model
        with self.prepared.strategy.scope():
            head.compile(optimizer=model.optimizer, loss=tasks.loss(self.config.task),
                         metrics=self.built.compiled.metrics, steps_per_execution=model.steps_per_execution,
                         jit_compile=model.jit_compile)

    def _recompile(self, factor: float) -> None:
        """A training phase's new optimizer (see ``TrainingLoop._switch``), compiled in with the
        same loss, metrics, batches per execution and XLA setting."""
        model = self.built.model
        with self.prepared.strategy.scope():
            compile_model(model, self.config, self.built.steps, self.built.compiled.metrics,
                          model.steps_per_execution, factor, jit=model.jit_compile)

    def _placement_callback(self, placement):
        from callbacks.devices import PlacementSummary
        from trainer import devices

        def placement_known(summary):
            self.built.report["placement"] = summary
            self._save_config()
            self.notify(devices.placement_line(summary))

        return PlacementSummary(self.run_dir, placement, placement_known)

    def train(self, loop: TrainingLoop) -> None:
        """Stage 4: ``model.fit`` from the start or from the saved position."""
        x_val, y_val = self.prepared.split[2:]
        val_ds = self._pipeline(x_val, y_val) if x_val is not None else None
        if self.resuming:
            loop.resume_from(self.state, self.previous)
        loop.run(val_ds)

    def _pipeline(self, x, y):
        return batches.eval_batches(x, y, self.config.batch_size, cache=self.config.cache)

    def _inputs_grid(self, train_data):
        """The ``inputs`` panel: the first training batch exactly as the model receives it."""
        from callbacks.inputs import InputsGrid

        images, labels = next(iter(train_data.dataset(train_data.steps).take(1)))
        return InputsGrid(self.run_dir, images.numpy(), labels.numpy(), self.prepared.data.class_names)

    def finish(self, loop: TrainingLoop, writers) -> tuple[dict, dict]:
        """Stage 5: the test set through every test logger, and the final model."""
        from callbacks.checkpoint import atomic_save

        data, model = self.prepared.data, self.built.model
        try:
            results = model.evaluate(self._pipeline(data.x_test, data.y_test), return_dict=True, verbose=0)
            test = {k: float(v) for k, v in results.items()}
            step = max(0, len(self.recorder.history) - 1)
            details = {}
            for logger in loop.monitors.test_loggers:
                details.update(logger.log_test(step) or {})
            writers.write_test_scalars(test, step)
            if self.chief:
                atomic_save(model, os.path.join(self.run_dir, "model.keras"))
        except OSError as exc:
            raise TrainerError(f"Cannot write to run directory {self.run_dir!r}: {exc.strerror or exc}. "
                               "What was written before is kept.") from None
        return test, details

    def _result(self, loop: TrainingLoop, test: dict, details: dict, wall: float) -> RunResult:
        best = loop.monitors.best
        found = best is not None and best.best_epoch is not None
        history = self.recorder.history
        self.recorder.write(
            status="finished", test=test, test_details=details,
            best_epoch=best.best_epoch + 1 if found else None,
            best_val_loss=best.best if found else None,
            epochs_run=len(history),
            train_seconds=sum(h.get("seconds", 0.0) for h in history),
            wall_seconds=wall,
            samples_per_second=_mean_speed(history),
            peak_rss_mib=peak_rss_mib(),
            steps_per_execution=loop.spe,
            train_steps=int(self.built.model.optimizer.iterations.numpy()),
        )
        return RunResult(run_dir=self.run_dir, config=self.config, history=history, test=test,
                         best_epoch=self.recorder.summary["best_epoch"], wall_seconds=wall,
                         chief=self.chief, train_steps=self.recorder.summary["train_steps"],
                         model=self.built.model)


def _mean_speed(history: list) -> float | None:
    """Training samples per second over the epochs after the first (which includes tracing)."""
    speeds = [h["samples_per_second"] for h in history if h.get("samples_per_second")]
    speeds = speeds[1:] or speeds
    return sum(speeds) / len(speeds) if speeds else None


