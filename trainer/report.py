"""What the commands print: run summaries, architecture tables, evaluation and predictions.

Every function prints to the ``console`` it is given (the command line makes it); NumPy, rich
and Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import os

from trainer.errors import TrainerError, UsageError


def print_fit_summary(console, result) -> None:
    from callbacks.files import read_json
    from callbacks.progress import print_summary
    from trainer import tasks

    metrics = read_json(os.path.join(result.run_dir, "metrics.json")) or {}
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
    import numpy as np

    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def print_architectures(console) -> None:
    from rich.table import Table

    from architectures import BUILTINS
    from trainer import architecture, tasks

    table = Table(title="Built-in architectures (parameters on MNIST, or on 10 features for tabular ones)")
    table.add_column("name", style="bold")
    table.add_column("parameters", justify="right")
    table.add_column("description")
    table.add_column("task")
    for name in BUILTINS:
        arch = architecture.load(name)
        model = arch.build(arch.example_input_shape, tasks.outputs(arch.task, 10), **arch.example_hyperparameters)
        table.add_row(name, f"{count_params(model):,}", arch.description, arch.task)
    console.print(table)


def print_summary(console, arch, input_shape, num_classes: int, hyperparameters: dict) -> None:
    import numpy as np
    from rich.table import Table

    model = arch.build(input_shape, num_classes, **{**arch.example_hyperparameters, **hyperparameters})
    table = Table(title=f"{arch.name}: {arch.description}")
    for column, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("parameters", "right")):
        table.add_column(column, justify=justify)
    for layer in model.layers:
        shape = getattr(getattr(layer, "output", None), "shape", None)
        table.add_row(layer.name, type(layer).__name__, str(tuple(shape) if shape is not None else "?"),
                      f"{count_params(layer):,}")
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    frozen = count_params(model) - trainable
    table.caption = f"{count_params(model):,} parameters ({trainable:,} trainable, {frozen:,} frozen)"
    console.print(table)


def _load_run(run_dir: str):
    """(RunConfig, config.json as written, the saved model compiled for the run's task)."""
    from callbacks.files import read_json
    from trainer import tasks
    from trainer.config import RunConfig

    path = os.path.join(run_dir, "config.json")
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(path):
        raise UsageError(f"{run_dir!r} is not a run directory: no config.json. Expected logs/<arch>/<run>.")
    if not os.path.isfile(model_path):
        model_path = os.path.join(run_dir, "best.keras")
    if not os.path.isfile(model_path):
        raise TrainerError(f"Run {run_dir!r} has no saved model (model.keras or best.keras); did it finish?")
    try:
        raw = read_json(path)
    except ValueError as exc:
        raise TrainerError(str(exc)) from None
    import keras

    import callbacks.validation_metrics  # noqa: F401 - registers the metrics the model was compiled with

    config = RunConfig.load(path)
    model = keras.models.load_model(model_path)
    if not getattr(model, "compiled", True):  # saved without its compile config
        model.compile(loss=tasks.loss(config.task), metrics=tasks.metrics(config.task))
    return config, raw, model


def _test_data(config, data_path: str | None):
    """The run's test set (its task, CSV target and limits), or that of ``data_path``."""
    from trainer import data as datasets

    return datasets.load(config.dataset, data_path or config.data, None, config.test_limit,
                         task=config.task, target=config.target, images=_image_options(config))


def _image_options(config) -> dict:
    """How the run decoded an image folder: the same for its test set and for image files."""
    return {"image_size": config.image_size, "color_mode": config.color_mode,
            "crop_to_aspect_ratio": config.crop_to_aspect_ratio}


def _metric_order(task: str, names) -> list[str]:
    """loss, the task's headline metrics, then the others alphabetically."""
    from trainer import tasks

    first = ["loss", *tasks.HEADLINE[task]]
    return [n for n in first if n in names] + sorted(n for n in names if n not in first)


def evaluate_run(console, run_dir: str, data_path: str | None) -> None:
    """Every compiled metric of the run's saved model on its test set (as trained: task, target)."""
    from rich.table import Table


    config, _, model = _load_run(run_dir)
    data = _test_data(config, data_path)
    from trainer.batches import eval_batches

    ds = eval_batches(data.x_test, data.y_test, 1024, cache="none")
    results = model.evaluate(ds, return_dict=True, verbose=0)
    table = Table(title=f"{run_dir} on {data.name} test set ({len(data.x_test):,} samples, {config.task})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in _metric_order(config.task, results):
        table.add_row(key, f"{float(results[key]):.4f}")
    console.print(table)


def _load_image(path: str, shape):
    import numpy as np
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


def _load_folder_image(path: str, config, shape):
    """An image file decoded and resized exactly as the run's image folder was in training."""
    from trainer.image_folder import ImageFiles, check_file

    _, problem = check_file(path)
    if problem:
        raise UsageError(f"Cannot read image {path!r}: {problem}. Expected a JPEG, PNG, BMP or GIF file.")
    return ImageFiles([path], [0], config.image_size, shape[-1], config.crop_to_aspect_ratio).load([0])[0]


def _true_label(data, i: int) -> str:
    value = data.y_test[i]
    return f"{float(value):g}" if data.task == "regression" else data.class_names[int(value)]


def _samples(run_dir: str, config, shape, images: list[str], indices: list[int], data_path):
    """(inputs, labels, class names of the test data or None) for ``predict``."""
    samples, labels, class_names = [], [], None
    if indices:
        data = _test_data(config, data_path)
        class_names = data.class_names
        for i in indices:
            if i >= len(data.x_test):
                raise UsageError(f"Invalid value for option `--index`. Received: {i}. "
                                 f"Expected 0..{len(data.x_test) - 1} (test-set size {len(data.x_test)}).")
            samples.append(data.x_test[i])
            labels.append(f"test sample {i} (true: {_true_label(data, i)})")
    if images and len(shape) != 3:
        raise UsageError(f"Image files apply to image models; run {run_dir!r} takes {shape[0]} features. "
                         "Expected --index N (a test-set sample).")
    for path in images:
        samples.append(_load_folder_image(path, config, shape) if config.image_size else _load_image(path, shape))
        labels.append(path)
    return samples, labels, class_names


def predict(console, run_dir: str, images: list[str], indices: list[int], data_path: str | None) -> None:
    """Class probabilities (multiclass, binary) or the predicted value (regression) of test
    samples and image files, with the run's saved model."""
    import numpy as np

    from trainer import data as datasets

    config, raw, model = _load_run(run_dir)
    shape = tuple(model.inputs[0].shape[1:])
    samples, labels, class_names = _samples(run_dir, config, shape, images, indices, data_path)
    outputs = model.predict(datasets.to_float(np.stack(samples)), verbose=0)
    if config.task == "regression":
        _print_values(console, labels, outputs.reshape(len(samples), -1)[:, 0])
        return
    if config.task == "binary":  # one sigmoid unit: P(class 1)
        positive = outputs.reshape(len(samples), -1)[:, :1]
        outputs = np.concatenate([1.0 - positive, positive], axis=1)
    for label, probs in zip(labels, outputs):
        names = raw.get("class_names") or class_names or [str(i) for i in range(len(probs))]
        _print_probabilities(console, label, names, probs)


def _print_values(console, labels: list[str], values) -> None:
    from rich.table import Table

    table = Table(title="Predicted values")
    table.add_column("sample", overflow="fold")
    table.add_column("predicted", justify="right")
    for label, value in zip(labels, values):
        table.add_row(label, f"{float(value):.4f}")
    console.print(table)


def _print_probabilities(console, label: str, names: list[str], probs) -> None:
    import numpy as np
    from rich.bar import Bar
    from rich.table import Table

    table = Table(title=label, show_header=True)
    table.add_column("class")
    table.add_column("probability", justify="right")
    table.add_column("", width=30)
    for k in np.argsort(-probs):
        table.add_row(names[k], f"{probs[k]:.2%}", Bar(size=1.0, begin=0.0, end=float(probs[k]), width=30))
    console.print(table)


def print_devices(console, gpu: str | None, cpu: bool) -> None:
    from trainer import devices

    devices.select_devices(gpu, cpu)
    strategy = devices.make_strategy("auto")
    report = devices.device_report(strategy, devices.resolve_precision(None, False), "auto")
    console.print(devices.report_table(report))
