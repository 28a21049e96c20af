"""Datasets: Keras's own loaders or a local ``.npz`` in the Keras layout, and the tf.data pipeline.

Images are kept as they were loaded (usually uint8, 4x smaller than float32) and scaled to
[0, 1] float32 per batch inside the pipeline, so nothing is held twice in memory.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from trainer import tasks
from trainer.errors import TrainerError, UsageError, invalid_argument

DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATA_ENV = "TRAINER_DATA"  # a local .npz used when --data is not given (tests and CI set it)

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
    "cifar10": [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ],
}


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (N, H, W, C) images or (N, F) features, as stored (uint8 or float)
    y_train: np.ndarray  # (N,) int32 labels, or float32 targets for regression
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None  # None for regression
    task: str = "multiclass"
    x_val: object = None  # a validation split of its own (an image folder's validation/)
    y_val: object = None
    notes: list = dataclasses.field(default_factory=list)  # what the user should be told
    folder: object = None  # the scanned image folder (trainer.image_folder.ImageFolder)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 1


def _with_channels(x: np.ndarray) -> np.ndarray:
    return x[..., np.newaxis] if x.ndim == 3 else x


def scale(x):
    """Pixels to float32 in [0, 1]: uint8 is divided by 255, floats are taken as they are."""
    import tensorflow as tf

    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return tf.cast(x, tf.float32)


def to_float(x: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`scale`, for images given to ``predict``."""
    x = _with_channels(np.asarray(x))
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def _finish(name, x, y, class_names, task, bad) -> Dataset:
    """Checks arrays from any source against the task; ``bad(problem)`` makes the error."""
    for s in ("train", "test"):
        if x[s].ndim not in (2, 3, 4):
            raise bad(f"x_{s} has shape {x[s].shape}; expected (N, H, W), (N, H, W, C) or (N, features)")
        if x[s].dtype.kind not in "uif":
            raise bad(f"x_{s} has dtype {x[s].dtype}; expected uint8 or float")
        if len(x[s]) != len(y[s]):
            raise bad(f"x_{s} has {len(x[s])} samples but y_{s} has {len(y[s])}")
        if len(x[s]) == 0:
            raise bad(f"x_{s} is empty")
        if x[s].dtype.kind == "f" and not np.isfinite(x[s]).all():
            count = int(np.size(x[s]) - np.count_nonzero(np.isfinite(x[s])))
            raise bad(f"x_{s} has {count} NaN or infinite values; expected finite numbers")
    x = {s: _with_channels(v) for s, v in x.items()}
    if x["train"].shape[1:] != x["test"].shape[1:]:
        raise bad(f"x_train samples are {x['train'].shape[1:]} but x_test samples are {x['test'].shape[1:]}")
    if task == "multiclass" and class_names is None:
        for s in ("train", "test"):  # labels must be integers before their range says the classes
            if y[s].dtype.kind not in "ui" or y[s].ndim not in (1, 2):
                problem = tasks.label_problem(y[s], task, None)
                raise bad(f"y_{s} {problem or 'has dtype ' + str(y[s].dtype)}")
        class_names = [str(i) for i in range(int(max(y["train"].max(), y["test"].max())) + 1)]
    if task == "binary" and class_names is None:
        class_names = ["0", "1"]
    for s in ("train", "test"):
        problem = tasks.label_problem(y[s], task, len(class_names) if class_names else None)
        if problem:
            raise bad(f"y_{s} {problem}")
        y[s] = y[s].reshape(-1).astype(np.float32 if task == "regression" else np.int32)
    return Dataset(name=name, x_train=x["train"], y_train=y["train"], x_test=x["test"], y_test=y["test"],
                   class_names=None if task == "regression" else class_names, task=task)


def load_npz(path: str, task: str = "multiclass") -> Dataset:
    """Loads and checks a local file; every problem is one line naming the file."""
    def bad(problem: str) -> UsageError:
        return UsageError(f"Invalid dataset file {path!r}: {problem}.")

    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise bad(f"cannot be read as .npz ({exc})") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise bad(f"missing keys {', '.join(missing)} (found: {', '.join(sorted(arrays)) or 'none'})")
    class_names = [str(c) for c in arrays["class_names"].tolist()] if "class_names" in arrays else None
    return _finish(os.path.splitext(os.path.basename(path))[0],
                   {s: arrays[f"x_{s}"] for s in ("train", "test")},
                   {s: arrays[f"y_{s}"] for s in ("train", "test")}, class_names, task, bad)


def load_csv(path: str, target: str | None, task: str = "multiclass", test_fraction: float = 0.2) -> Dataset:
    """A table with a header row and numeric columns; ``target`` is the column to predict.

    The test set is a fixed, seeded ``test_fraction`` of the rows (the same on every run).
    """
    import csv

    def bad(problem: str) -> UsageError:
        return UsageError(f"Invalid dataset file {path!r}: {problem}.")

    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise bad(f"cannot be read as CSV ({exc})") from None
    if len(rows) < 3:
        raise bad("expected a header row and at least two data rows")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if target is None:
        raise UsageError(f"A CSV dataset needs --target COLUMN. Received: --data {path!r}. "
                         f"Expected one of the columns: {', '.join(header)}.")
    if target not in header:
        raise UsageError(f"Invalid value for option `--target`. Received: {target!r}. "
                         f"Expected one of the columns of {path!r}: {', '.join(header)}.")
    try:
        table = np.array([[float(v) for v in r] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise bad(f"has a non-numeric value ({exc}); expected numbers in every column") from None
    if table.ndim != 2 or table.shape[1] != len(header):
        raise bad(f"rows have different numbers of columns than the header ({len(header)})")
    column = header.index(target)
    x = np.delete(table, column, axis=1).astype(np.float32)
    y = table[:, column]
    order = np.random.default_rng(0).permutation(len(x))
    cut = len(x) - max(1, int(round(len(x) * test_fraction)))
    train, test = order[:cut], order[cut:]
    if task != "regression":
        y = y.astype(np.int64) if np.all(np.mod(y, 1) == 0) else y
    return _finish(os.path.splitext(os.path.basename(path))[0], {"train": x[train], "test": x[test]},
                   {"train": y[train], "test": y[test]}, None, task, bad)


def load_keras(name: str) -> Dataset:
    if name not in DATASETS:
        raise UsageError(
            f"Invalid value for option `--dataset`. Received: {name!r}. Expected one of {', '.join(DATASETS)}."
        )
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # no network and no cached copy, mostly
        raise TrainerError(
            f"Could not load {name} with Keras's downloader ({type(exc).__name__}: {exc}). "
            f"Offline? Pass a local file with --data PATH.npz (Keras layout) or set {DATA_ENV}."
        ) from None
    return Dataset(
        name=name,
        x_train=_with_channels(x_train), y_train=y_train.reshape(-1).astype(np.int32),
        x_test=_with_channels(x_test), y_test=y_test.reshape(-1).astype(np.int32),
        class_names=list(CLASS_NAMES[name]),
    )


ACCEPTED = ("a folder of images (DIR/<class>/*, or DIR/train/<class>/* and DIR/test/<class>/*), "
            "a .npz file in the Keras layout (x_train, y_train, x_test, y_test) or a .csv file with --target")


def load(dataset: str = "mnist", path: str | None = None, train_limit: int | None = None,
         test_limit: int | None = None, task: str = "multiclass", target: str | None = None,
         images: dict | None = None) -> Dataset:
    """``--data`` wins, then ``$TRAINER_DATA``, then Keras's loader for ``--dataset``.
    ``images``: the options of an image folder (``image_size``, ``color_mode``,
    ``crop_to_aspect_ratio``)."""
    path = path or os.environ.get(DATA_ENV) or None
    if path and not os.path.exists(path):
        raise UsageError(f"Dataset not found: {path!r}. Expected {ACCEPTED}.")
    if path and os.path.isdir(path):
        data = load_folder(path, task, **(images or {}))
    elif path and path.lower().endswith(".csv"):
        data = load_csv(path, target, task)
    elif path and path.lower().endswith(".npz"):
        data = load_npz(path, task)
    elif path:
        raise UsageError(f"Invalid value for option `--data`. Received: {path!r}, a file of an unknown kind. "
                         f"Expected {ACCEPTED}.")
    elif task != "multiclass":
        raise UsageError(f"A {task} architecture needs its own data: pass --data FILE.npz or FILE.csv "
                         f"(the Keras datasets are multiclass: {', '.join(DATASETS)}).")
    else:
        data = load_keras(dataset)
    if train_limit:
        data.x_train, data.y_train = data.x_train[:train_limit], data.y_train[:train_limit]
    if test_limit:
        data.x_test, data.y_test = data.x_test[:test_limit], data.y_test[:test_limit]
    return data


def split_validation(data: Dataset, validation):
    """Returns ``(x_train, y_train, x_val, y_val)``; validation is a fraction, ``"test"`` or 0.

    A fraction takes the last samples of the training set, as Keras's ``validation_split`` does;
    an image folder with its own ``validation/`` split uses that instead.
    """
    if validation == "test":
        return data.x_train, data.y_train, data.x_test, data.y_test
    if not validation:
        return data.x_train, data.y_train, None, None
    if data.x_val is not None:
        return data.x_train, data.y_train, data.x_val, data.y_val
    n_val = int(round(len(data.x_train) * float(validation)))
    if n_val < 1 or n_val >= len(data.x_train):
        raise UsageError(
            f"Invalid value for option `--validation`. Received: {validation!r}, which leaves "
            f"{n_val} of {len(data.x_train)} samples for validation. Expected a fraction that leaves "
            "samples for both, or 'test'."
        )
    cut = len(data.x_train) - n_val
    return data.x_train[:cut], data.y_train[:cut], data.x_train[cut:], data.y_train[cut:]


def pipeline(x, y, batch_size: int, shuffle: bool = False, seed: int | None = None):
    """tf.data: shuffle whole samples, batch, scale per batch, prefetch."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda xb, yb: (scale(xb), yb), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class EpochOrder:
    """The base of training batches in an order that depends only on (seed, epoch).

    A resumed run therefore sees exactly the batches the interrupted one would have seen:
    ``callback`` sets the epoch at each epoch start, and ``skip`` (batches already done in
    the first epoch of a resumed run) is set by the run. A subclass's ``dataset(batches)``
    is one epoch or its last ``batches`` batches, built from :meth:`remaining` inside
    ``tf.data`` so that it is re-read from the variables every epoch.
    """

    def __init__(self, size: int, batch_size: int, seed: int):
        import keras
        import tensorflow as tf

        self.size, self.batch_size, self.seed = int(size), int(batch_size), int(seed)
        self.steps = -(-self.size // self.batch_size)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.skip = tf.Variable(0, dtype=tf.int64, trainable=False)
        data = self

        class _SetEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                data.epoch.assign(epoch)

        self.callback = _SetEpoch()

    def order(self, epoch):
        """The epoch's permutation of the indices: a stateless shuffle of (seed, epoch)."""
        import tensorflow as tf

        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(epoch, tf.int64)])
        return tf.random.experimental.stateless_shuffle(tf.range(self.size, dtype=tf.int64), seed=seed)

    def remaining(self):
        """``(indices, global batch numbers)`` of the rest of the current epoch, one per sample."""
        import tensorflow as tf

        epoch, skip = self.epoch.read_value(), self.skip.read_value()
        start = skip * self.batch_size
        numbers = epoch * self.steps + tf.range(start, self.size, dtype=tf.int64) // self.batch_size
        return self.order(epoch)[start:], numbers

    def index_batches(self, batches: int):
        """The rest of the current epoch as batches of sample indices (``batches`` of them),
        re-read from the variables each time the dataset is iterated."""
        import tensorflow as tf

        def one_epoch(_):
            return tf.data.Dataset.from_tensor_slices(self.remaining()[0]).batch(self.batch_size)

        ds = tf.data.Dataset.range(1).flat_map(one_epoch)
        return ds.apply(tf.data.experimental.assert_cardinality(batches))

    def dataset(self, batches: int):
        raise NotImplementedError

    def in_order(self, batch_size: int):
        """Every sample once, in index order, never augmented: (float32 images, labels)."""
        raise NotImplementedError


class EpochOrderedData(EpochOrder):
    """Training batches of in-memory arrays (see :class:`EpochOrder`), gathered from the whole
    arrays by index, which is also cheaper than shuffling samples one by one."""

    def __init__(self, x, y, batch_size: int, seed: int):
        import tensorflow as tf

        super().__init__(len(x), batch_size, seed)
        with tf.device("/cpu:0"):
            self._x, self._y = tf.constant(x), tf.constant(y)

    def dataset(self, batches: int):
        """One epoch (or its last ``batches`` batches), re-read from the variables each epoch."""
        return gathered(self.index_batches(batches), self._x, self._y)

    def in_order(self, batch_size: int):
        import tensorflow as tf

        return gathered(tf.data.Dataset.range(self.size).batch(batch_size), self._x, self._y)


def gathered(index_batches, x, y):
    """Batches of ``(scale(x[i]), y[i])`` for a dataset of index batches, prefetched."""
    import tensorflow as tf

    ds = index_batches.map(lambda i: (scale(tf.gather(x, i)), tf.gather(y, i)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def class_index(value, class_names) -> int | None:
    """``--misclassified-class``: a class name (``"cat"``) or an index (``"3"``, ``3``) -> the
    index. A string is a name first (a folder of classes named by digits), an int always an
    index (the resolved value in config.json, so a resumed run keeps it). None stays None."""
    if value is None:
        return None
    names = [str(c) for c in class_names or []]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= value < len(names):
            return int(value)
    else:
        text = str(value).strip()
        if text in names:
            return names.index(text)
        if text.isdigit() and int(text) < len(names):
            return int(text)
    shown = ", ".join(names[:20]) + (f", … ({len(names)} classes)" if len(names) > 20 else "")
    raise invalid_argument("misclassified_class", value,
                           f"a class index 0..{len(names) - 1} or a class name: {shown}")


def is_files(x) -> bool:
    """Whether ``x`` is a split of an image folder (decoded on the fly) rather than an array."""
    from trainer.image_folder import ImageFiles

    return isinstance(x, ImageFiles)


DEFAULT_IMAGE_SIZE = (128, 128)
ORDER_SEED = 20261129  # a fixed order of a folder's files, the same on every run


def load_folder(path: str, task: str = "multiclass", image_size=None, color_mode: str | None = None,
                crop_to_aspect_ratio: bool = False) -> Dataset:
    """A folder of images: listed and checked once, decoded on the fly during training."""
    from trainer import image_folder

    if task != "multiclass":
        raise UsageError(f"An image folder is a multiclass dataset (one subfolder per class); the "
                         f"architecture's TASK is {task!r}. Expected a multiclass architecture.")
    folder = image_folder.scan(path, image_size, color_mode, crop_to_aspect_ratio)
    notes = [f"Image folder {path}: {len(folder.class_names)} classes, {len(folder.train)} training images; "
             f"{folder.split_description}; {folder.color_mode}."]
    if folder.skipped:
        notes.append(folder.skipped_summary() + " The full list is in skipped_images.txt in the run directory.")
    size = folder.image_size or DEFAULT_IMAGE_SIZE
    if folder.image_size is None:
        notes.append(f"Note: images are resized to {size[0]}x{size[1]} (--image-size H[,W] to change it).")

    def split(name):  # a fixed mixed order, so --train-limit and --validation take every class
        files = folder.files(name, size)
        files = files.subset(np.random.default_rng(ORDER_SEED).permutation(len(files)))
        return files, files.labels

    (x_train, y_train), (x_test, y_test) = split("train"), split("test")
    x_val, y_val = split("validation") if folder.validation else (None, None)
    return Dataset(name=os.path.basename(os.path.normpath(path)), x_train=x_train, y_train=y_train,
                   x_test=x_test, y_test=y_test, class_names=folder.class_names, x_val=x_val, y_val=y_val,
                   notes=notes, folder=folder)
