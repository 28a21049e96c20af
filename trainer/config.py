"""The one resolved configuration of a run: framework defaults, then the architecture's
``DEFAULTS``, then the command-line flags. It is saved as ``config.json`` in the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from typing import Any

from callbacks.files import atomic_write as atomic_write_text
from callbacks.text import PROGRESS_MODES
from trainer import schedules
from trainer.errors import invalid_argument

LR_SCHEDULES = schedules.SCHEDULES
CACHE_MODES = ("auto", "memory", "disk", "none")


@dataclasses.dataclass
class RunConfig:
    arch: str
    arch_source: str = ""
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    # data
    dataset: str = "mnist"
    data: str | None = None
    target: str | None = None  # the column to predict, for a CSV file
    task: str = "multiclass"  # set from the architecture module's TASK
    train_limit: int | None = None
    test_limit: int | None = None
    validation: Any = 0.1  # fraction of the training set, "test", or 0
    image_size: Any = None  # an image folder: [H, W] (None: the architecture's, else 128x128)
    color_mode: str | None = None  # rgb | grayscale (None: rgb unless every image is grayscale)
    crop_to_aspect_ratio: bool = False
    cache: str = "auto"  # decoded images: auto | memory | disk | none
    feature_cache: bool = True  # a frozen backbone's features computed once (trainer/features.py)
    augment: str | None = None  # e.g. "flip,rotate=0.1,zoom=0.1" (training batches only)
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 0.001
    lr_schedule: str = "constant"
    warmup_epochs: float | None = None  # warmup-cosine, onecycle (trainer/schedules.py)
    warmup_steps: int | None = None
    min_learning_rate: float = 0.0  # where cosine schedules end; plateau's floor
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    plateau_min_delta: float = 1e-4
    early_stopping: int | None = None
    seed: int | None = None
    steps_per_execution: int | str = "auto"
    save_every_batches: int = 0  # resumable state: every epoch end, and every N batches ...
    save_every_seconds: float = 300.0  # ... or every N seconds within long epochs
    # output
    logdir: str = "logs"
    name: str | None = None
    progress: str = "auto"
    log_every: int = 0
    # monitors
    histograms_every: int = 1
    histograms_layers: int | str = 8  # layers of a nested model (a backbone) in histograms/gradients; "all"
    gradients_every: int = 1
    per_class: bool = True
    confusion_every: int = 1
    misclassified: int = 36
    misclassified_class: int | str | None = None  # an index or a class name (resolved on loading)
    gradcam: bool = True  # a Grad-CAM heatmap over each tile of the misclassified grid
    embeddings: int = 1000  # validation samples in the embedding projector (0 = off)
    embeddings_every: int | None = None  # epochs between projector writes (None: after the last epoch)
    overfitting_patience: int = 3
    pr_curves_every: int = 1  # PR curves per class every N epochs (0: off, and not counted)
    calibration_every: int = 1  # reliability diagram every N epochs (0: off, no epoch_ece)
    graph: bool = True
    # devices
    gpu: str | None = None
    cpu: bool = False
    precision: str | None = None
    mixed_precision: bool = False
    jit: bool | None = None  # None: Keras's "auto"
    strategy: str = "auto"
    # filled in when the run starts
    run_dir: str | None = None
    versions: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False, default=str)

    def save(self, path: str, extra: dict | None = None) -> None:
        payload = dataclasses.asdict(self)
        payload.update(extra or {})
        atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, path: str) -> RunConfig:
        with open(path) as f:
            payload = json.load(f)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in names})


def library_versions() -> dict:
    import keras
    import numpy
    import tensorboard
    import tensorflow as tf

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorboard": tensorboard.__version__,
        "numpy": numpy.__version__,
    }


def parse_validation(value):
    """``"test"``, or a fraction in [0, 1)."""
    if value is None or value == "test":
        return value
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = -1.0
    if not 0.0 <= fraction < 1.0:
        raise invalid_argument("validation", value, "a fraction in [0, 1) or 'test'")
    return fraction


def resolve(arch, overrides: dict) -> RunConfig:
    """Framework defaults < ``arch.defaults`` < ``overrides`` (flags given on the command line)."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values: dict = {}
    for key, value in arch.defaults.items():
        if key in fields:
            values[key] = value
        else:  # anything else in DEFAULTS is a hyperparameter default for build()
            values.setdefault("hyperparameters", {})[key] = value
    hyper = dict(values.pop("hyperparameters", {}))
    hyper.update(overrides.pop("hyperparameters", None) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = RunConfig(arch=arch.name, arch_source=arch.source, hyperparameters=hyper, **values)
    validate(config)
    arch.check_hyperparameters(config.hyperparameters)
    return config


def validate(config: RunConfig) -> None:
    """Checks every value once, before anything is loaded or written."""
    for name in ("epochs", "batch_size"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise invalid_argument(name, value, "a positive integer")
    if not isinstance(config.learning_rate, (int, float)) or not config.learning_rate > 0:
        raise invalid_argument("learning_rate", config.learning_rate, "a positive number")
    config.validation = parse_validation(config.validation)
    for name in ("log_every", "histograms_every", "gradients_every", "confusion_every",
                 "misclassified", "overfitting_patience", "pr_curves_every", "calibration_every", "embeddings"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 0:
            raise invalid_argument(name, value, "an integer >= 0 (0 turns it off)")
    every = config.embeddings_every
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
        raise invalid_argument("embeddings_every", every, "a positive number of epochs (default: after the last epoch)")
    if config.early_stopping is not None and config.early_stopping < 1:
        raise invalid_argument("early_stopping", config.early_stopping, "a patience of at least 1 epoch")
    if config.progress not in PROGRESS_MODES:
        raise invalid_argument("progress", config.progress, f"one of {', '.join(PROGRESS_MODES)}")
    schedules.validate(config)
    if config.cache not in CACHE_MODES:
        raise invalid_argument("cache", config.cache, f"one of {', '.join(CACHE_MODES)}")
    if config.color_mode not in (None, "rgb", "grayscale"):
        raise invalid_argument("color_mode", config.color_mode, "rgb or grayscale")
    if config.image_size is not None:
        from trainer.image_folder import parse_image_size

        config.image_size = list(parse_image_size(config.image_size))
    if config.augment:
        from trainer.image_pipeline import parse_augment

        parse_augment(config.augment)
    layers = config.histograms_layers
    if layers != "all" and (not isinstance(layers, int) or isinstance(layers, bool) or layers < 0):
        raise invalid_argument("histograms_layers", layers, "'all' or an integer >= 0")
    spe = config.steps_per_execution
    if spe != "auto" and (not isinstance(spe, int) or spe < 1):
        raise invalid_argument("steps_per_execution", spe, "'auto' or a positive integer")
