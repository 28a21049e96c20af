"""``trainer fit``: train an architecture, or resume an interrupted run."""

from __future__ import annotations

import click

from trainer.cli.common import command, make_console, quiet_tensorflow
from trainer.cli.config_option import config_given, config_option, resolve_run_config
from trainer.config import CACHE_MODES, LR_SCHEDULES, PROGRESS_MODES
from trainer.data import DATASETS
from trainer.errors import UsageError


class _WordOrInt(click.ParamType):
    """``word`` (e.g. ``auto``, ``all``) or an integer >= ``minimum`` (checked by ``click.IntRange``)."""

    def __init__(self, word: str, minimum: int):
        self.word, self.minimum, self.name = word, minimum, f"{word}|N"

    def convert(self, value, param, ctx):
        if value is None or value == self.word or isinstance(value, int):
            return value
        try:
            return click.IntRange(min=self.minimum).convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"Received: {value!r}. Expected {self.word!r} or an integer >= {self.minimum}.", param, ctx)


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


@command()
@click.argument("arch", required=False)
@config_option(exclude=("resume_dir",))
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Continue an interrupted run in its own directory (ARCH and other options are taken from it).")
@click.option("--save-every", callback=lambda c, p, v: _save_every(v), metavar="N|Ns",
              help="Also save resumable state every N batches or N seconds (default 300s; always at epoch end).")
@click.option("--epochs", type=int, help="Epochs to train (default: the architecture's).")
@click.option("--batch-size", type=int, help="Global batch size (default: the architecture's).")
@click.option("--optimizer", help="Keras optimizer name: sgd, adam, rmsprop, … (default: the architecture's).")
@click.option("--learning-rate", "--lr", "learning_rate", type=float, help="Learning rate.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), help="Learning-rate schedule (default constant; "
              "the README's Schedules section has each formula).")
@click.option("--warmup-epochs", type=float, help="warmup-cosine/onecycle: epochs of linear warm-up "
              "(default 10 % / 30 % of the run).")
@click.option("--warmup-steps", type=int, help="warmup-cosine/onecycle: the warm-up in batches instead.")
@click.option("--min-learning-rate", "--min-lr", "min_learning_rate", type=float,
              help="Where cosine, warmup-cosine and onecycle end, and plateau's floor (default 0).")
@click.option("--plateau-patience", type=int, help="plateau: epochs without a val_loss improvement before "
              "the rate is cut (default 2).")
@click.option("--plateau-factor", type=float, help="plateau: the cut, new rate = rate x FACTOR (default 0.5).")
@click.option("--plateau-min-delta", type=float, help="plateau: the smallest change of val_loss that counts "
              "as an improvement (default 1e-4).")
@click.option("--validation", help="Validation: a fraction of the training set (0.1), 'test', or 0 for none.")
@click.option("--dataset", type=click.Choice(DATASETS), help="Keras dataset (default mnist).")
@click.option("--data", type=click.Path(), help="A folder of images (DIR/<class>/*), a .npz in the Keras layout, "
              "or a .csv with --target (or set TRAINER_DATA).")
@click.option("--image-size", metavar="H[,W]", help="Image folder: resize every image to H×W "
              "(default: the architecture's image_size, else 128).")
@click.option("--color-mode", type=click.Choice(["rgb", "grayscale"]),
              help="Image folder: channels (default: rgb unless every image is grayscale).")
@click.option("--crop-to-aspect-ratio", is_flag=True, default=None,
              help="Image folder: crop the centre to the target aspect ratio before resizing (as Keras).")
@click.option("--cache", type=click.Choice(CACHE_MODES), default="auto", show_default=True,
              help="Image folder: keep decoded images in memory, in a disk cache, or neither "
                   "(auto: memory if they fit in a quarter of RAM, else disk).")
@click.option("--feature-cache/--no-feature-cache", default=True, show_default=True,
              help="While a pretrained backbone is frozen (and without --augment): compute its features "
                   "once per image and train the head on them; the same training, much faster.")
@click.option("--augment", metavar="NAME[=F],…", help="Image folder: training-batch augmentation with "
              "Keras layers: flip, rotate, zoom, translate, contrast, brightness (e.g. flip,rotate=0.1).")
@click.option("--target", help="The column to predict, for --data FILE.csv.")
@click.option("--train-limit", type=click.IntRange(min=1), help="Use only the first N training samples.")
@click.option("--test-limit", type=click.IntRange(min=1), help="Use only the first N test samples.")
@click.option("--logdir", default="logs", show_default=True, help="Where run directories are created.")
@click.option("--name", help="Suffix for the run directory name.")
@click.option("--seed", type=int, help="Random seed: makes a CPU run repeatable.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Architecture hyperparameter (repeatable).")
@click.option("--early-stopping", type=int, metavar="PATIENCE", help="Stop when val_loss has not improved for PATIENCE epochs.")
@click.option("--progress", type=click.Choice(PROGRESS_MODES), default="auto", show_default=True,
              help="Terminal display: rich bars in a terminal, plain lines otherwise.")
@click.option("--log-every", type=click.IntRange(min=0), default=0, help="Also log the batch loss every N batches.")
@click.option("--steps-per-execution", type=_WordOrInt("auto", 1),
              help="Batches per compiled execution ('auto' by default).")
@click.option("--histograms-every", type=click.IntRange(min=0), default=1, show_default=True, help="Weight histograms every N epochs (0 = off).")
@click.option("--histograms-layers", type=_WordOrInt("all", 0), default=8, show_default=True,
              help="Layers of a nested model (a pretrained backbone) in the histograms and gradient norms, "
                   "from its top: N or all.")
@click.option("--gradients-every", type=click.IntRange(min=0), default=1, show_default=True, help="Gradient norms every N epochs (0 = off).")
@click.option("--confusion-every", type=click.IntRange(min=0), default=1, show_default=True, help="Confusion-matrix image every N epochs (0 = off).")
@click.option("--pr-curves-every", type=click.IntRange(min=0), default=1, show_default=True,
              help="PR curve per class (PR Curves tab) every N epochs (0 = off).")
@click.option("--calibration-every", type=click.IntRange(min=0), default=1, show_default=True,
              help="Reliability diagram every N epochs, and epoch_ece (0 = off).")
@click.option("--per-class/--no-per-class", default=True, show_default=True, help="Per-class precision/recall/F1.")
@click.option("--misclassified", type=click.IntRange(min=0), default=36, show_default=True, help="Misclassified samples in the grid (0 = off).")
@click.option("--misclassified-class", metavar="K|NAME", help="Only mistakes whose true or predicted class is K "
              "(an index, or a class name such as an image folder's).")
@click.option("--gradcam/--no-gradcam", default=True, show_default=True,
              help="Grad-CAM heatmap of the predicted class over each tile of the misclassified grid.")
@click.option("--embeddings", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Validation samples shown in the Embedding Projector (0 = off).")
@click.option("--embeddings-every", type=click.IntRange(min=1), metavar="N",
              help="Also write the projector's embeddings every N epochs (default: after the last epoch only).")
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
def fit(arch: str | None, assignments: tuple, resume_dir: str | None, save_every, log_device_placement: bool,
        profile, **options):
    """Train ARCH (a built-in name, a .py file or package.module) and evaluate it on the test set.

    Ctrl-C (or SIGTERM) stops at the end of the current batch, saves, and prints the command
    that resumes the run; a second Ctrl-C aborts at once.
    """
    ctx = click.get_current_context()
    if resume_dir:
        if arch or config_given(ctx):
            raise UsageError(f"Got both {'--config' if config_given(ctx) else f'ARCH ({arch!r})'} and --resume; a "
                             "resumed run keeps its own architecture and options.")
        if log_device_placement or profile:
            raise UsageError("--log-device-placement and --profile apply to new runs, not --resume.")
        return _resume(resume_dir)
    if not arch:
        raise UsageError("Missing argument 'ARCH' (or --config FILE, or --resume RUN_DIR). Try 'trainer list'.")
    from trainer import architecture

    hyper = architecture.parse_assignments(assignments)
    quiet_tensorflow()  # before the architecture module imports Keras
    module = architecture.load(arch)
    extra = dict(zip(("save_every_batches", "save_every_seconds"), save_every)) if save_every else {}
    config = resolve_run_config(ctx, module, options, hyper, extra)
    from trainer import report, run

    console = make_console()
    result = run.fit(config, console=console, show_devices=True,
                     log_device_placement=log_device_placement, profile=profile)
    if result.chief:
        report.print_fit_summary(console, result)
    else:  # a multi-worker run's other worker: the chief (worker 0) writes the run directory
        console.print(f"Worker finished: {result.train_steps} training steps, test accuracy "
                      f"{result.test.get('accuracy', float('nan')):.4f}; the chief writes the run directory.")
    return result


def _resume(resume_dir: str):
    quiet_tensorflow()
    from trainer import report, run

    console = make_console()
    result = run.resume(resume_dir, console=console, show_devices=True)
    if result is None:
        console.print(f"Run {resume_dir} has already finished; nothing to resume.")
        return None
    report.print_fit_summary(console, result)
    return result
