"""Stage 4 of a run: ``model.fit`` in phases, with the run's own callbacks around the monitors.

A run may need more than one ``model.fit`` call: a resumed run first finishes its interrupted
epoch (``skip`` batches already done), and when executions are too slow for a prompt display
the run continues from the next epoch with fewer batches per execution. Each phase reports
batch indices as the whole run sees them, so every callback's state stays continuous.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from callbacks import compat
from trainer.errors import Interrupted, TrainerError, UsageError

AUTO_STEPS_PER_EXECUTION = 16  # bounded so progress, Ctrl-C and NaN checks stay prompt
EXECUTION_TARGET_SECONDS = 1.0  # auto: fewer batches per execution when one takes much longer


class RunInterrupted(Interrupted):
    """Training stopped on SIGINT/SIGTERM; the state is saved and the run can be resumed."""


class StoppedBeforeTraining(Exception):
    """SIGINT/SIGTERM while the frozen features were computed: nothing trained since the last
    saved state, which is kept as it is (the callbacks have not restored theirs yet)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def check_optimizer(name: str) -> None:
    import keras

    try:
        keras.optimizers.get(name)
    except ValueError:
        raise UsageError(
            f"Invalid value for option `--optimizer`. Received: {name!r}. "
            "Expected a Keras optimizer name such as sgd, adam, adamw, rmsprop, adagrad, nadam."
        ) from None


def make_optimizer(config, total_steps: int, factor: float = 1.0):
    """The optimizer named in ``config`` with its learning rate or schedule (trainer/schedules.py);
    ``total_steps``: epochs x batches per epoch. ``factor`` scales the rate, the schedule and its
    minimum for a later training phase (e.g. 0.1 when fine-tuning a backbone)."""
    import dataclasses

    import keras

    from trainer import schedules

    if factor != 1.0:
        config = dataclasses.replace(config, learning_rate=config.learning_rate * factor,
                                     min_learning_rate=config.min_learning_rate * factor)
    rate = schedules.learning_rate(config, max(1, total_steps // config.epochs))
    return keras.optimizers.get({"class_name": config.optimizer, "config": {"learning_rate": rate}})


def steps_per_execution(config, steps_per_epoch: int, replicas: int = 1, notify=print) -> int:
    """Batches per compiled execution.

    Always 1 with several replicas, where Keras 3's multi-step loop fails ("You must feed a
    value for placeholder tensor", keras-team/keras#19246). ``auto`` is up to 16, lowered to a
    divisor of ``--log-every`` so that the batch loss is logged exactly every N batches (batch
    logs arrive at the end of each execution); an explicit value that does not divide
    ``--log-every`` is kept, and the user is told how often the loss is logged instead.
    """
    requested, log_every = config.steps_per_execution, config.log_every
    if replicas > 1:
        if requested not in ("auto", 1):
            notify(f"steps_per_execution={requested} not used: Keras runs one batch per execution "
                   f"with {replicas} replicas.")
        return 1
    if requested != "auto":
        spe = int(requested)
        if log_every and log_every % spe:
            every = -(-log_every // spe) * spe
            notify(f"Note: --log-every {log_every} with {spe} batches per execution logs batch_loss every "
                   f"{every} batches (at the end of an execution); use a --steps-per-execution that "
                   f"divides {log_every} to log every {log_every}.")
        return spe
    spe = max(1, min(AUTO_STEPS_PER_EXECUTION, steps_per_epoch))
    if log_every:
        spe = max(d for d in range(1, spe + 1) if log_every % d == 0)
    return spe


class Writers:
    """The run-level event writers (root, train, validation, test), shared with the callbacks."""

    def __init__(self, run_dir: str):
        from callbacks.base import acquire_writer

        self.paths = {name: os.path.join(run_dir, name) for name in ("", "train", "validation", "test")}
        self._writers = {name: acquire_writer(path) for name, path in self.paths.items()}

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        from callbacks.base import release_writer

        for path in self.paths.values():
            release_writer(path)

    def write_text(self, tag: str, text: str, step: int, where: str = "") -> None:
        import tensorflow as tf

        with self._writers[where].as_default():
            tf.summary.text(tag, text, step=step)
        self._writers[where].flush()

    def write_run_text(self, config, report: dict) -> None:
        """The configuration and device report as TensorBoard text, at the run's root."""
        from trainer.devices import report_markdown

        self.write_text("config", "```\n" + config.to_json() + "\n```", 0)
        self.write_text("devices", report_markdown(report), 0)

    def write_test_scalars(self, test: dict, step: int) -> None:
        import tensorflow as tf

        with self._writers["test"].as_default():
            for name, value in test.items():
                tf.summary.scalar(f"epoch_{name}", value, step=step)


class TrainingLoop:
    """The callbacks of one run in their order, and the ``model.fit`` phases that use them."""

    def __init__(self, config, run_dir: str, model, train_data, monitors, extra: list, recorder,
                 steps: int, spe: int, console=None, phases=(), recompile=None, features=None):
        from callbacks.backup import Backup
        from callbacks.guards import SignalGuard, StopOnNonFinite, StopOnSignal
        from callbacks.progress import make_progress

        self.config, self.run_dir, self.model = config, run_dir, model
        self.train_data, self.monitors, self.recorder = train_data, monitors, recorder
        self.steps, self.spe = steps, spe
        self.progress = make_progress(config.progress, config.batch_size, console=console)
        self.notify = notifier(console)
        self.guard = SignalGuard(notify=self.notify)
        self._writers: Writers | None = None
        stateful = [train_data.callback, StopOnNonFinite(), *monitors.callbacks, *extra, recorder.callback]
        self.backup = Backup(os.path.join(run_dir, "state"), steps, every_batches=config.save_every_batches,
                             every_seconds=config.save_every_seconds, callbacks=stateful,
                             before_save=self._flush)
        self.callbacks = [*stateful, self.backup]
        if self.progress is not None:
            self.callbacks.append(self.progress)
        self.callbacks.append(StopOnSignal(self.guard, steps))
        self.pace = None
        if config.steps_per_execution == "auto" and spe > 1:
            from callbacks.pace import ExecutionPace

            self.pace = ExecutionPace(target_seconds=EXECUTION_TARGET_SECONDS)
            self.callbacks.append(self.pace)
        for callback in self.callbacks:  # also when no fit runs (a run resumed after its last epoch)
            callback.set_model(model)
        self.phases = [(0, config.epochs, steps, 0)]
        # The architecture's training phases (trainer.architecture.Phase): applied between two
        # model.fit calls; ``recompile(factor)`` compiles in a new optimizer at that rate factor.
        self.arch_phases, self.recompile, self.applied = list(phases), recompile, 0
        # trainer.features.FrozenFeatures: a frozen backbone's output computed once, the head
        # trained on it (None: always the whole model).
        self.features = features

    def _flush(self) -> None:
        if self._writers is not None:
            self._writers.flush()

    @contextlib.contextmanager
    def writers(self):
        """The run-level writers, open for the whole of training and testing."""
        self._writers = Writers(self.run_dir)
        try:
            yield self._writers
        finally:
            self._writers.close()
            self._writers = None

    def resume_from(self, state: dict, previous: dict) -> None:
        """Continue at ``state``'s position: events written after it are removed, the history
        kept up to it, and the weights, optimizer and callback state put back."""
        from trainer.events import truncate_events

        epoch, batch = state["epoch"], state["batch"]
        truncate_events(self.run_dir, epoch, epoch * self.steps + batch)
        self.recorder.history = [h for h in previous.get("history", []) if h["epoch"] <= epoch]
        self.recorder.summary["resumed"] = previous.get("resumed", []) + [
            {"epoch": epoch + 1, "batch": batch, "at": time.time()}]
        # A state is saved at an epoch end or within an epoch, never at a phase switch: a phase
        # was in force when the state was saved iff the state lies after the phase's start.
        for phase in self.arch_phases:
            if phase.epoch * self.steps < epoch * self.steps + batch:  # its text was truncated
                self._switch(phase.epoch, announce=phase.epoch == epoch)  # with the epoch: again
        if "weights" in state:
            self.backup.resume_from(state)
        self.phases = []
        if batch:
            self.phases.append((epoch, epoch + 1, self.steps - batch, batch))
        first_full = epoch + (1 if batch else 0)
        if first_full < self.config.epochs:
            self.phases.append((first_full, self.config.epochs, self.steps, 0))

    def run(self, val_ds) -> None:
        """All phases, with Ctrl-C/SIGTERM, a second Ctrl-C and a NaN loss made into errors."""
        from callbacks.guards import Interrupted, NonFiniteLoss

        try:
            with self.guard:
                self._phases(val_ds)
        except Interrupted as exc:
            self.backup.save(exc.epoch, exc.batch)
            self.recorder.write(status="interrupted")
            where = (f"at epoch {exc.epoch + 1}, batch {exc.batch}/{self.steps}" if exc.batch
                     else f"after epoch {exc.epoch}")
            raise RunInterrupted(f"Interrupted by {signal.Signals(exc.signum).name} {where}; state saved. "
                                 f"Resume with: trainer fit --resume {self.run_dir}", exc.exit_code) from None
        except StoppedBeforeTraining as exc:
            self.recorder.write(status="interrupted")
            raise RunInterrupted(f"Interrupted by {signal.Signals(exc.signum).name} while the frozen features were "
                                 f"computed; the last saved state is kept. Resume with: trainer fit --resume "
                                 f"{self.run_dir}", 128 + exc.signum) from None
        except KeyboardInterrupt:
            self.recorder.write(status="interrupted")
            raise RunInterrupted(f"Aborted; the last saved state is kept. Resume with: "
                                 f"trainer fit --resume {self.run_dir}", 130) from None
        except NonFiniteLoss as exc:
            message = (f"{exc}; training stopped. The last good state is kept in "
                       f"{os.path.join(self.run_dir, 'state')} (and the best model in best.keras).")
            self._writers.write_text("non_finite_loss", message, exc.epoch)
            self.recorder.write(status="failed", error=str(exc))
            raise TrainerError(message) from None
        finally:
            if self.progress is not None:
                self.progress.close()

    def _phases(self, val_ds) -> None:
        while self.phases:
            initial, end, batches, skip = self.phases.pop(0)
            while self.applied < len(self.arch_phases) and self.arch_phases[self.applied].epoch <= initial:
                self._switch(initial)
            if self.applied < len(self.arch_phases) and self.arch_phases[self.applied].epoch < end:
                self.phases.insert(0, (self.arch_phases[self.applied].epoch, end, self.steps, 0))
                end = self.arch_phases[self.applied].epoch
            self.train_data.skip.assign(skip)
            fitted, train_ds, val = self._fit_inputs(batches, val_ds)
            callbacks = self.callbacks
            if fitted is not self.model:
                from trainer.features import stop_forwarder

                callbacks = [*callbacks, stop_forwarder(fitted)]
            fitted.fit(train_ds, validation_data=val, initial_epoch=initial, epochs=end, verbose=0, shuffle=False,
                       callbacks=compat.offset_callback_list(callbacks, skip, self.model, self.config.epochs,
                                                             self.steps))
            if fitted is not self.model:
                # The metric objects are shared, and Keras resets a model's compiled metrics only
                # once that model has used them: the whole model's next pass starts from zero.
                fitted.reset_metrics()
            if self.pace is not None and self.pace.requested:
                self._slow_down(self.model.history.epoch[-1] + 1)
            elif self.model.stop_training:  # early stopping
                break

    def _fit_inputs(self, batches: int, val_ds):
        """What the next ``model.fit`` trains and on what: the whole model on the training
        batches, or, while its frozen part's features can be computed once, its head on them.
        The callbacks see the whole model either way."""
        features = self.features
        if features is None or not features.usable():
            return self.model, self.train_data.dataset(batches), val_ds

        def check():  # Ctrl-C while the features are computed: the saved state as it was
            if self.guard.signum is not None:
                raise StoppedBeforeTraining(self.guard.signum)

        features.compute(val_ds, check)
        return features.fit_inputs(batches)

    def _switch(self, epoch: int, announce: bool = True) -> None:
        """The architecture's next phase from epoch ``epoch`` on: the model changed by the phase,
        a new optimizer compiled in (Keras 3 optimizers take no new variables once built), and
        the change told in the terminal and as the TensorBoard text ``phase``."""
        from callbacks.phases import trainable_parameters

        phase = self.arch_phases[self.applied]
        before = trainable_parameters(self.model)
        description = phase.apply(self.model)
        if self.features is not None:
            self.features.invalidate()
        self.recompile(phase.learning_rate_factor)
        self.applied += 1
        if not announce:  # a resumed run back in the phase it was in: told when it began
            return
        text = (f"Epoch {epoch + 1}: phase {phase.name!r}: {description}; trainable parameters "
                f"{before:,} -> {trainable_parameters(self.model):,}; learning rate x {phase.learning_rate_factor:g}.")
        self.notify(text)
        if self._writers is not None:
            self._writers.write_text("phase", text, epoch)

    def _slow_down(self, epoch: int) -> None:
        """Executions were too slow for a prompt display and Ctrl-C: go on from the next epoch
        with fewer batches per execution."""
        self.notify(f"One execution of {self.spe} batches took {self.spe * self.pace.seconds_per_batch:.1f} s: "
                    f"running {self.pace.requested} per execution from epoch {epoch + 1}.")
        self.spe = self.pace.requested
        compat.set_steps_per_execution(self.model, self.spe)
        self.phases = [(epoch, self.config.epochs, self.steps, 0)]


def notifier(console):
    """Messages for the user while training runs: through the console, or as a plain line."""
    if console is None:
        return print
    return lambda message: console.print(message, markup=False, highlight=False)
