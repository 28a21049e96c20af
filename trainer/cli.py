"""The ``trainer`` command line. Only click is imported here; TensorFlow is imported inside the
commands that need it, so ``trainer --help`` answers at once."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


_NOISE = ("All log messages before absl::InitializeLog()", "I0000 ", "W0000 ", "cuInit",
          "cuda drivers", "Unable to register cu", "computation placer already registered")


@contextlib.contextmanager
def _filtered_stderr():
    """Captures file descriptor 2 (where TensorFlow's C++ start-up chatter goes, before any
    log level applies) and passes on only the lines that are not known start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(marker in line for marker in _NOISE):
                    sys.stderr.write(line)


def _quiet_tensorflow() -> None:
    """Imports TensorFlow with trainer's settings (``devices.tensorflow_environment``)."""
    from trainer.devices import tensorflow_environment

    tensorflow_environment()
    import_tensorflow_quietly()


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow, as the environment has it, and initialises its platforms with the
    start-up chatter filtered."""
    with _filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()


class _Group(click.Group):
    """Turns unexpected exceptions into one line and exit 1; Ctrl-C into exit 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - a one-line report instead of a traceback
            if os.environ.get("TRAINER_DEBUG"):
                raise
            from trainer.errors import one_line

            raise click.ClickException(
                f"{type(exc).__name__}: {one_line(exc)} (set TRAINER_DEBUG=1 for the traceback)"
            ) from None


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(package_name="trainer")
def main():
    """Train Keras models and watch everything in TensorBoard.

    \b
    Examples:
      trainer fit cnn                      train the default CNN on MNIST
      trainer fit mlp --set dropout=0.2    a hyperparameter of the architecture
      trainer fit my_model.py --epochs 3   your own architecture module
      tensorboard --logdir logs            watch the runs
    """


def _steps_per_execution(value):
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"Received: {value!r}. Expected 'auto' or a positive integer.") from None


def _profile_batches(value):
    """``START,END`` (or ``N``) -> (START, END): 1-based training batches to profile."""
    if value is None:
        return None
    parts = value.split(",")
    try:
        start, end = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, 0)
    except ValueError:
        start = end = 0
    if not 1 <= start <= end:
        raise click.BadParameter(f"Received: {value!r}. Expected START,END batch numbers with "
                                 "1 <= START <= END, e.g. 10,20 (or one batch: 10).")
    return start, end


def _save_every(value):
    """``500`` (batches) or ``60s`` (seconds) -> (batches, seconds)."""
    if value is None:
        return None
    text = value.strip().lower()
    try:
        number = float(text[:-1]) if text.endswith("s") else int(text)
    except ValueError:
        number = -1
    if number <= 0:
        raise click.BadParameter(f"Received: {value!r}. Expected N batches (500) or N seconds (60s).")
    return (0, number) if text.endswith("s") else (number, 0.0)


@main.command(context_settings=CONTEXT)
@click.argument("arch", required=False)
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Continue an interrupted run in its own directory (ARCH and other options are taken from it).")
@click.option("--save-every", callback=lambda c, p, v: _save_every(v), metavar="N|Ns",
              help="Also save resumable state every N batches or N seconds (default 300s; always at epoch end).")
@click.option("--epochs", type=int, help="Epochs to train (default: the architecture's).")
@click.option("--batch-size", type=int, help="Global batch size (default: the architecture's).")
@click.option("--optimizer", help="Keras optimizer name: sgd, adam, rmsprop, … (default: the architecture's).")
@click.option("--learning-rate", "--lr", "learning_rate", type=float, help="Learning rate.")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), help="Learning-rate schedule.")
@click.option("--validation", help="Validation: a fraction of the training set (0.1), 'test', or 0 for none.")
@click.option("--dataset", type=click.Choice(["mnist", "fashion_mnist", "cifar10"]), help="Keras dataset (default mnist).")
@click.option("--data", type=click.Path(dir_okay=False), help="Local .npz in the Keras layout (or set TRAINER_DATA).")
@click.option("--target", help="The column to predict, for --data FILE.csv.")
@click.option("--train-limit", type=click.IntRange(min=1), help="Use only the first N training samples.")
@click.option("--test-limit", type=click.IntRange(min=1), help="Use only the first N test samples.")
@click.option("--logdir", default="logs", show_default=True, help="Where run directories are created.")
@click.option("--name", help="Suffix for the run directory name.")
@click.option("--seed", type=int, help="Random seed: makes a CPU run repeatable.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Architecture hyperparameter (repeatable).")
@click.option("--early-stopping", type=int, metavar="PATIENCE", help="Stop when val_loss has not improved for PATIENCE epochs.")
@click.option("--progress", type=click.Choice(["auto", "rich", "plain", "none"]), default="auto", show_default=True,
              help="Terminal display: rich bars in a terminal, plain lines otherwise.")
@click.option("--log-every", type=click.IntRange(min=0), default=0, help="Also log the batch loss every N batches.")
@click.option("--steps-per-execution", callback=lambda c, p, v: _steps_per_execution(v),
              help="Batches per compiled execution ('auto' by default).")
@click.option("--histograms-every", type=click.IntRange(min=0), default=1, show_default=True, help="Weight histograms every N epochs (0 = off).")
@click.option("--gradients-every", type=click.IntRange(min=0), default=1, show_default=True, help="Gradient norms every N epochs (0 = off).")
@click.option("--confusion-every", type=click.IntRange(min=0), default=1, show_default=True, help="Confusion-matrix image every N epochs (0 = off).")
@click.option("--per-class/--no-per-class", default=True, show_default=True, help="Per-class precision/recall/F1.")
@click.option("--misclassified", type=click.IntRange(min=0), default=36, show_default=True, help="Misclassified samples in the grid (0 = off).")
@click.option("--misclassified-class", type=click.IntRange(min=0), help="Only mistakes whose true or predicted class is K.")
@click.option("--overfitting-patience", type=click.IntRange(min=0), default=3, show_default=True, help="Epochs of rising val_loss before the overfitting note (0 = off).")
@click.option("--graph/--no-graph", default=True, show_default=True, help="Model graph in TensorBoard's Graphs tab.")
@click.option("--gpu", is_flag=False, flag_value="all", default=None, metavar="[IDS]", help="Train on the GPU(s): all, or ids like 0,2.")
@click.option("--cpu", is_flag=True, help="Hide GPUs and train on the CPU.")
@click.option("--precision", type=str, help="float32, mixed_float16 or mixed_bfloat16.")
@click.option("--mixed-precision", is_flag=True, help="Shortcut: float16 on GPU, bfloat16 on CPU.")
@click.option("--jit/--no-jit", default=None, help="XLA compilation (default: Keras's auto).")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multi-worker"]), default="auto", show_default=True,
              help="tf.distribute strategy (multi-worker: set TF_CONFIG on every worker).")
@click.option("--log-device-placement", is_flag=True,
              help="Log where TensorFlow places each op; summarised as ops per device, not printed.")
@click.option("--profile", callback=lambda c, p, v: _profile_batches(v), metavar="START,END",
              help="Profiler trace of training batches START..END for TensorBoard's Profile tab.")
def fit(arch, assignments, resume_dir, save_every, log_device_placement, profile, **options):
    """Train ARCH (a built-in name, a .py file or package.module) and evaluate it on the test set.

    Ctrl-C (or SIGTERM) stops at the end of the current batch, saves, and prints the command
    that resumes the run; a second Ctrl-C aborts at once.
    """
    from rich.console import Console

    from trainer import architecture, config as configuration

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 200)  # a log file: never wrap a path mid-line
    if resume_dir:
        if arch:
            raise click.UsageError(f"Got both ARCH ({arch!r}) and --resume; a resumed run keeps its own "
                                   "architecture and options.")
        if log_device_placement or profile:
            raise click.UsageError("--log-device-placement and --profile apply to new runs, not --resume.")
        _quiet_tensorflow()
        from trainer import report, run

        result = run.resume(resume_dir, console=console, show_devices=True)
        if result is None:
            console.print(f"Run {resume_dir} has already finished; nothing to resume.")
            return
        report.print_fit_summary(console, result)
        return
    if not arch:
        raise click.UsageError("Missing argument 'ARCH' (or --resume RUN_DIR). Try 'trainer list'.")
    hyper = architecture.parse_assignments(assignments)
    _quiet_tensorflow()  # before the architecture module imports Keras
    module = architecture.load(arch)
    if save_every:
        options["save_every_batches"], options["save_every_seconds"] = save_every
    config = configuration.resolve(module, {**options, "hyperparameters": hyper})
    from trainer import report, run

    result = run.fit(config, console=console, show_devices=True,
                     log_device_placement=log_device_placement, profile=profile)
    if result.chief:
        report.print_fit_summary(console, result)
    else:  # a multi-worker run's other worker: the chief (worker 0) writes the run directory
        console.print(f"Worker finished: {result.train_steps} training steps, test accuracy "
                      f"{result.test.get('accuracy', float('nan')):.4f}; the chief writes the run directory.")


@main.command("list", context_settings=CONTEXT)
def list_():
    """The built-in architectures, with their description and parameter count (on MNIST)."""
    _quiet_tensorflow()
    from trainer import report

    report.print_architectures()


@main.command(context_settings=CONTEXT)
@click.argument("arch")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Architecture hyperparameter (repeatable).")
@click.option("--input-shape", help="Input shape, e.g. 32,32,3 (default: 28,28,1, or the module's INPUT_SHAPE).")
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True, help="Number of classes.")
def summary(arch, assignments, input_shape, classes):
    """The layer table and parameter count of ARCH."""
    from trainer import architecture

    _quiet_tensorflow()
    try:
        shape = tuple(int(d) for d in input_shape.split(",")) if input_shape else None
    except ValueError:
        raise click.BadParameter(f"Received: {input_shape!r}. Expected integers like 28,28,1.", param_hint="--input-shape") from None
    module = architecture.load(arch)
    from trainer import report, tasks

    report.print_summary(module, shape or module.example_input_shape, tasks.outputs(module.task, classes),
                         architecture.parse_assignments(assignments))


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", type=click.Path(dir_okay=False), help="Evaluate on this .npz instead of the run's dataset.")
def evaluate(run_dir, data):
    """Reload RUN_DIR's model and evaluate it on the test set."""
    _quiet_tensorflow()
    from trainer import report

    report.evaluate_run(run_dir, data)


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--index", type=click.IntRange(min=0), multiple=True, help="A test-set sample (repeatable).")
@click.option("--data", type=click.Path(dir_okay=False), help="Take --index samples from this .npz.")
def predict(run_dir, images, index, data):
    """Class probabilities for test samples (--index N) and/or image files (PNG/JPEG)."""
    if not images and not index:
        raise click.UsageError("Nothing to predict. Expected --index N and/or image files.")
    _quiet_tensorflow()
    from trainer import report

    report.predict(run_dir, list(images), list(index), data)


@main.command(context_settings=CONTEXT)
@click.option("--gpu", is_flag=False, flag_value="all", default=None, metavar="[IDS]", help="Check these GPUs.")
@click.option("--cpu", is_flag=True, help="Hide GPUs.")
def devices(gpu, cpu):
    """The device-placement report, without training."""
    _quiet_tensorflow()
    from trainer import report

    report.print_devices(gpu, cpu)


def _register_commands() -> None:
    """Commands that live in their own modules (each imports only click at the top)."""
    from trainer.cli_sweep import sweep

    main.add_command(sweep)
    try:
        from trainer import cli_reports
    except ImportError:  # pragma: no cover - while the reports module is being written
        return
    for name in ("show", "compare", "runs", "export"):
        if hasattr(cli_reports, name):
            main.add_command(getattr(cli_reports, name))


_register_commands()

if __name__ == "__main__":
    main()
