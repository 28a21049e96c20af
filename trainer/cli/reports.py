"""Commands that report without training, or with a saved model: ``show``, ``compare``,
``runs``, ``export``, ``evaluate``, ``predict``, ``list``, ``summary`` and ``devices``.

Only click is imported at module level; the commands that load a model import TensorFlow
(quietly) first, the others never do.
"""

from __future__ import annotations

import os

import click

from trainer.cli.common import command, make_console, quiet_tensorflow
from trainer.errors import TrainerError, UsageError

RUN_DIR = click.Path(exists=True, file_okay=False)


@command()
@click.argument("run_dir", type=RUN_DIR)
def show(run_dir: str) -> None:
    """A run's configuration, results, learning curves, per-class table and confusion matrix."""
    from trainer.cli import views

    views.print_run(views.load_with_metrics(run_dir), make_console())


@command()
@click.argument("paths", nargs=-1, required=True, type=RUN_DIR)
def compare(paths: tuple[str, ...]) -> None:
    """Runs side by side: each PATH is a run directory, or a sweep/log directory holding runs."""
    from trainer.cli import views

    views.print_table(make_console(), views.compare_table(paths))


@command()
@click.argument("logdir", default="logs", type=click.Path(file_okay=False))
def runs(logdir: str) -> None:
    """The runs under LOGDIR (default: logs), newest first, with status and headline metric."""
    from trainer.cli import views

    views.print_table(make_console(), views.runs_table(logdir))


@command()
@click.argument("run_dir", type=RUN_DIR)
@click.option("--png", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for the PNG files.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def export(run_dir: str, out_dir: str, force: bool) -> None:
    """Learning curves, per-class bars and the confusion matrix of RUN_DIR as PNG files."""
    from callbacks.files import atomic_path
    from trainer.cli import views

    images = views.export_images(views.load_with_metrics(run_dir))
    if not images:
        raise TrainerError(f"Run {run_dir!r} has nothing to plot yet (no epochs in metrics.json).")
    paths = {name: os.path.join(out_dir, name) for name in images}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UsageError(f"{existing[0]!r}{more} already exists. Use --force to overwrite.")
    try:
        os.makedirs(out_dir, exist_ok=True)
        for name, image in images.items():
            with atomic_path(paths[name]) as tmp:
                image.save(tmp, format="PNG")
            click.echo(paths[name])
    except OSError as exc:
        raise TrainerError(f"Cannot write PNG files to {out_dir!r}: {exc.strerror or exc}.") from None


@command()
@click.argument("run_dir", type=RUN_DIR)
@click.option("--data", type=click.Path(dir_okay=False),
              help="Evaluate on this .npz or .csv instead of the run's data (the run's --target applies).")
def evaluate(run_dir: str, data: str | None) -> None:
    """Reload RUN_DIR's model and evaluate it on the test set: every compiled metric."""
    quiet_tensorflow()
    from trainer import report

    report.evaluate_run(make_console(), run_dir, data)


@command()
@click.argument("run_dir", type=RUN_DIR)
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--index", type=click.IntRange(min=0), multiple=True, help="A test-set sample (repeatable).")
@click.option("--data", type=click.Path(dir_okay=False), help="Take --index samples from this .npz or .csv.")
def predict(run_dir: str, images: tuple[str, ...], index: tuple[int, ...], data: str | None) -> None:
    """Class probabilities (or, for regression, the predicted value) for test samples (--index N)
    and/or image files (PNG/JPEG)."""
    if not images and not index:
        raise UsageError("Nothing to predict. Expected --index N and/or image files.")
    quiet_tensorflow()
    from trainer import report

    report.predict(make_console(), run_dir, list(images), list(index), data)


@command("list")
def list_() -> None:
    """The built-in architectures, with their description and parameter count (on MNIST)."""
    quiet_tensorflow()
    from trainer import report

    report.print_architectures(make_console())


def _shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(click.IntRange(min=1).convert(d, None, None) for d in text.split(","))
    except click.BadParameter:
        raise click.BadParameter(f"Received: {text!r}. Expected integers like 28,28,1.",
                                 param_hint="--input-shape") from None


@command()
@click.argument("arch")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Architecture hyperparameter (repeatable).")
@click.option("--input-shape", callback=lambda c, p, v: _shape(v),
              help="Input shape, e.g. 32,32,3 (default: 28,28,1, or the module's INPUT_SHAPE).")
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True, help="Number of classes.")
def summary(arch: str, assignments: tuple[str, ...], input_shape: tuple[int, ...] | None, classes: int) -> None:
    """The layer table and parameter count of ARCH."""
    from trainer import architecture

    quiet_tensorflow()
    module = architecture.load(arch)
    from trainer import report, tasks

    report.print_summary(make_console(), module, input_shape or module.example_input_shape,
                         tasks.outputs(module.task, classes), architecture.parse_assignments(assignments))


@command()
@click.option("--gpu", is_flag=False, flag_value="all", default=None, metavar="[IDS]", help="Check these GPUs.")
@click.option("--cpu", is_flag=True, help="Hide GPUs.")
def devices(gpu: str | None, cpu: bool) -> None:
    """The device-placement report, without training."""
    quiet_tensorflow()
    from trainer import report

    report.print_devices(make_console(), gpu, cpu)


COMMANDS = (show, compare, runs, export, evaluate, predict, list_, summary, devices)
