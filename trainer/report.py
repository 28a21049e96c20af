"""What the commands print: run summaries, architecture tables, evaluation and predictions."""

from __future__ import annotations

import json
import os

import numpy as np
from rich.bar import Bar
from rich.console import Console
from rich.table import Table

from trainer import architecture, data as datasets
from trainer.config import RunConfig
from trainer.errors import TrainerError, UsageError


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a log file: do not wrap descriptions and paths
    return console


def print_fit_summary(console: Console, result) -> None:
    from callbacks.progress import print_summary

    with open(os.path.join(result.run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    from trainer import tasks

    test = result.test
    rows = [(f"test {name}", f"{test[name]:.4f}") for name in tasks.HEADLINE[result.config.task] if name in test]
    rows += [
        ("test loss", f"{test.get('loss', float('nan')):.4f}"),
        ("epochs run", str(metrics.get("epochs_run"))),
        ("best epoch (val_loss)", str(metrics.get("best_epoch") or "-")),
        ("training time", f"{metrics.get('train_seconds', 0):.1f} s"),
        ("samples/s", f"{metrics.get('samples_per_second') or 0:,.0f}"),
        ("peak memory", f"{metrics.get('peak_rss_mib', 0):,.0f} MiB"),
        ("run directory", result.run_dir),
        ("watch it", f"tensorboard --logdir {result.config.logdir}"),
    ]
    print_summary(console, rows, title=f"{result.config.arch} finished")


def count_params(model) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def print_architectures() -> None:
    from architectures import BUILTINS

    table = Table(title="Built-in architectures (parameters on MNIST, or on 10 features for tabular ones)")
    table.add_column("name", style="bold")
    table.add_column("parameters", justify="right")
    table.add_column("description")
    from trainer import tasks

    table.add_column("task")
    for name in BUILTINS:
        arch = architecture.load(name)
        model = arch.build(arch.example_input_shape, tasks.outputs(arch.task, 10))
        table.add_row(name, f"{count_params(model):,}", arch.description, arch.task)
    _console().print(table)


def print_summary(arch, input_shape, num_classes, hyperparameters) -> None:
    model = arch.build(input_shape, num_classes, **hyperparameters)
    table = Table(title=f"{arch.name}: {arch.description}")
    for column, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("parameters", "right")):
        table.add_column(column, justify=justify)
    for layer in model.layers:
        shape = getattr(getattr(layer, "output", None), "shape", None)
        table.add_row(layer.name, type(layer).__name__, str(tuple(shape) if shape is not None else "?"),
                      f"{count_params(layer):,}")
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    table.caption = f"{count_params(model):,} parameters ({trainable:,} trainable)"
    _console().print(table)


def _load_run(run_dir: str):
    path = os.path.join(run_dir, "config.json")
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(path):
        raise UsageError(f"{run_dir!r} is not a run directory: no config.json. Expected logs/<arch>/<run>.")
    if not os.path.isfile(model_path):
        model_path = os.path.join(run_dir, "best.keras")
    if not os.path.isfile(model_path):
        raise TrainerError(f"Run {run_dir!r} has no saved model (model.keras or best.keras); did it finish?")
    with open(path) as f:
        raw = json.load(f)
    import keras

    import callbacks.validation_metrics  # noqa: F401 - registers the metrics the model was compiled with

    model = keras.models.load_model(model_path)
    return RunConfig.load(path), raw, model


def _run_data(config: RunConfig, data_path: str | None):
    return datasets.load(config.dataset, data_path or config.data, None, config.test_limit)


def evaluate_run(run_dir: str, data_path: str | None) -> None:
    config, _, model = _load_run(run_dir)
    data = _run_data(config, data_path)
    ds = datasets.pipeline(data.x_test, data.y_test, 1024)
    results = model.evaluate(ds, return_dict=True, verbose=0)
    table = Table(title=f"{run_dir} on {data.name} test set ({len(data.x_test):,} samples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("loss", "accuracy"):
        if key in results:
            table.add_row(key, f"{float(results[key]):.4f}")
    _console().print(table)


def _load_image(path: str, shape) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    height, width, channels = shape
    try:
        image = Image.open(path)
        image = image.convert("L" if channels == 1 else "RGB").resize((width, height))
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"Cannot read image {path!r}: {exc}. Expected a PNG or JPEG file.") from None
    array = np.asarray(image, dtype=np.uint8)
    if channels == 1:
        array = array[..., None]
        if array.mean() > 127:  # dark digit on a light background: MNIST is the other way round
            array = 255 - array
    return array


def predict(run_dir: str, images: list[str], indices: list[int], data_path: str | None) -> None:
    config, raw, model = _load_run(run_dir)
    shape = tuple(model.inputs[0].shape[1:])
    samples, labels = [], []
    class_names = raw.get("class_names")
    if indices:
        data = _run_data(config, data_path)
        class_names = class_names or data.class_names
        for i in indices:
            if i >= len(data.x_test):
                raise UsageError(f"Invalid value for option `--index`. Received: {i}. "
                                 f"Expected 0..{len(data.x_test) - 1} (test-set size {len(data.x_test)}).")
            samples.append(data.x_test[i])
            labels.append(f"test sample {i} (true: {data.class_names[data.y_test[i]]})")
    for path in images:
        samples.append(_load_image(path, shape))
        labels.append(path)
    probabilities = model.predict(datasets.to_float(np.stack(samples)), verbose=0)
    console = _console()
    for label, probs in zip(labels, probabilities):
        names = class_names or [str(i) for i in range(len(probs))]
        table = Table(title=label, show_header=True)
        table.add_column("class")
        table.add_column("probability", justify="right")
        table.add_column("", width=30)
        for k in np.argsort(-probs):
            table.add_row(names[k], f"{probs[k]:.2%}", Bar(size=1.0, begin=0.0, end=float(probs[k]), width=30))
        console.print(table)


def print_devices(gpu, cpu) -> None:
    from trainer import devices

    devices.select_devices(gpu, cpu)
    strategy = devices.make_strategy("auto")
    report = devices.device_report(strategy, devices.resolve_precision(None, False), "auto")
    _console().print(devices.report_table(report))
