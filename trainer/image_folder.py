"""A folder of your own images: listing, checking and decoding (Keras's conventions).

Layouts, as ``keras.utils.image_dataset_from_directory`` reads them (class names are the
sorted folder names, files are found recursively)::

    DIR/<class>/...                                   # a seeded share of each class is held out as test
    DIR/train/<class>/... + DIR/test/<class>/...      # optionally DIR/validation/<class>/...

:func:`scan` lists the files once (paths and labels, never pixels) and checks every one
before training, so a file that looks like an image but cannot be decoded is skipped and
reported instead of crashing an epoch. The check runs TensorFlow's own decoder, the one the
training pipeline uses, so "passed the check" means "decodes in training" by construction;
Pillow only reads the header first (cheap, and it names the format for the error message).

:class:`ImageFiles` is one split: ``decode(path)`` is the tf.data decoding step and
``load(indices)`` returns the same pixels as NumPy (for grids and ``predict``). The
pipelines built on it (epoch order, caching, augmentation) are in ``trainer.image_pipeline``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable, Sequence

import numpy as np

from trainer.errors import UsageError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
COLOR_MODES = {"rgb": 3, "grayscale": 1}
SPLITS = ("train", "validation", "test")
SPLIT_SEED = "trainer-image-split-v1"  # constant: the held-out test set never depends on the run's seed
DECODABLE = {"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP"}  # what tf.io.decode_image reads (MPO: camera JPEG)
SKIPPED_FILE = "skipped_images.txt"

Progress = Callable[[int, int], None]


@dataclasses.dataclass
class ImageFolder:
    """What :func:`scan` found: the lists of (path, label) per split, never pixels."""

    root: str
    layout: str  # "classes" (DIR/<class>) or "splits" (DIR/train/<class>, DIR/test/<class>)
    class_names: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    validation: list[tuple[str, int]] | None
    skipped: list[tuple[str, str]]  # (path, reason)
    color_mode: str
    image_size: tuple[int, int] | None
    crop_to_aspect_ratio: bool
    split_description: str  # e.g. "test: 20 % of each class held out (seeded), 40 of 200 images"

    @property
    def channels(self) -> int:
        return COLOR_MODES[self.color_mode]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def files(self, split: str, image_size=None) -> ImageFiles:
        """One split as :class:`ImageFiles`; ``image_size`` is needed if the scan had none."""
        size = parse_image_size(image_size) if image_size is not None else self.image_size
        if size is None:
            raise UsageError(f"No image size for the images in {self.root!r}. Expected --image-size H[,W].")
        items = {"train": self.train, "test": self.test, "validation": self.validation}.get(split)
        if items is None:
            raise UsageError(f"The image folder {self.root!r} has no {split!r} split. "
                             f"Expected one of: {', '.join(s for s in SPLITS if getattr(self, s))}.")
        return ImageFiles([p for p, _ in items], [y for _, y in items], size, self.channels,
                          self.crop_to_aspect_ratio)

    def skipped_summary(self, limit: int = 3) -> str:
        """One line for the console: how many files were skipped, the first few and why."""
        if not self.skipped:
            return ""
        first = "; ".join(f"{os.path.relpath(p, self.root)} ({why})" for p, why in self.skipped[:limit])
        more = f"; and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"Skipped {len(self.skipped)} unreadable image file(s): {first}{more}."

    def write_skipped(self, directory: str) -> str | None:
        """The full list, one ``path<TAB>reason`` a line, for the run directory."""
        if not self.skipped:
            return None
        path = os.path.join(directory, SKIPPED_FILE)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{p}\t{why}\n" for p, why in self.skipped)
        return path


# ---------------------------------------------------------------------------------- arguments

def parse_image_size(value) -> tuple[int, int]:
    """``64``, ``"64"``, ``"64,48"`` or ``(64, 48)`` -> ``(H, W)``."""
    try:
        if isinstance(value, str):
            parts = [int(v) for v in value.replace("x", ",").split(",")]
        elif isinstance(value, (int, np.integer)):
            parts = [int(value)]
        else:
            parts = [int(v) for v in value]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise UsageError(f"Invalid value for option `--image-size`. Received: {value!r}. "
                         "Expected H or H,W (positive integers), e.g. 64 or 64,48.")
    return parts[0], parts[1]


def _check_color_mode(color_mode: str | None) -> None:
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise UsageError(f"Invalid value for option `--color-mode`. Received: {color_mode!r}. "
                         f"Expected one of {', '.join(COLOR_MODES)}.")


# ---------------------------------------------------------------------------------- listing

def _subfolders(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _image_paths(folder: str) -> list[str]:
    """Image files under ``folder``, recursively, by extension; sorted so the order is stable."""
    found = []
    for top, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(top, n) for n in names
                  if not n.startswith(".") and n.lower().endswith(EXTENSIONS)]
    return sorted(found)


def _list_classes(folder: str) -> dict[str, list[str]]:
    """``{class name: paths}``; the errors name the folder and say what is expected."""
    classes = _subfolders(folder)
    if not classes:
        raise UsageError(f"No class subfolders in the image folder {folder!r}. "
                         "Expected DIR/<class>/<images> or DIR/train/<class>/... and DIR/test/<class>/...")
    if len(classes) == 1:
        raise UsageError(f"Only one class subfolder ({classes[0]!r}) in the image folder {folder!r}. "
                         "Expected at least two classes, one subfolder each.")
    found = {c: _image_paths(os.path.join(folder, c)) for c in classes}
    for c, paths in found.items():
        if not paths:
            raise UsageError(f"No images in the class folder {os.path.join(folder, c)!r}. "
                             f"Expected files ending in {', '.join(EXTENSIONS)} (found recursively).")
    return found


def _split_folder(root: str, split: str) -> str:
    """Where a split's class folders are: DIR/<split> in the split layout, else DIR itself."""
    return os.path.join(root, split) if "train" in _subfolders(root) else root


def _list_splits(root: str) -> dict[str, dict[str, list[str]]]:
    """``{split: {class: paths}}``; DIR/train (+ test, validation) if DIR/train exists."""
    if not os.path.isdir(root):
        raise UsageError(f"Image folder not found: {root!r}. Expected a directory of class subfolders.")
    subs = _subfolders(root)
    if "train" not in subs:
        return {"train": _list_classes(root)}
    splits = {s: _list_classes(os.path.join(root, s)) for s in SPLITS if s in subs}
    names = sorted(splits["train"])
    for s, found in splits.items():
        if sorted(found) != names:
            raise UsageError(
                f"The classes in {os.path.join(root, s)!r} ({', '.join(sorted(found))}) differ from those "
                f"in {os.path.join(root, 'train')!r} ({', '.join(names)}). Expected the same class folders.")
    return splits


# ---------------------------------------------------------------------------------- checking

def _short(exc: BaseException) -> str:
    """A TensorFlow or Pillow error as a short phrase (TF prefixes a graph node name)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "}}" in text:
        text = text.split("}}", 1)[1].strip()
    return text[:120]


def check_file(path: str) -> tuple[int | None, str | None]:
    """``(channels, None)`` when TensorFlow decodes the file, ``(None, reason)`` when not.

    Pillow reads the header (is it an image at all, which format); TensorFlow then decodes
    the whole file exactly as the training pipeline will, so a truncated JPEG fails here
    rather than mid-epoch. An 8-bit palette BMP is refused: TensorFlow would return the
    palette indices as gray levels, silently wrong pixels.
    """
    import tensorflow as tf
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes)"
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
    except UnidentifiedImageError:
        return None, "not an image (unknown format)"
    except (OSError, ValueError, SyntaxError) as exc:
        return None, f"unreadable header ({_short(exc)})"
    if fmt not in DECODABLE:
        return None, f"{fmt} format, not readable by TensorFlow"
    if fmt == "BMP" and mode == "P":
        return None, "palette BMP, not readable by TensorFlow (would give palette indices)"
    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
    except (tf.errors.OpError, ValueError) as exc:
        return None, f"cannot be decoded ({_short(exc)})"
    return int(image.shape[-1]), None


CACHE_ENV = "TRAINER_CACHE_DIR"
SCANS = "scans"  # under the cache root: what check_files found, per folder (see check_files)
RECORD_FORMAT = 1  # raise when check_file changes: older records are then not trusted
RECORD_DAYS = 90  # a folder's record is removed when no run has scanned it for this long


def cache_root() -> str:
    """The disk cache folder: ``$TRAINER_CACHE_DIR`` or ``~/.cache/trainer/images``."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "trainer", "images")


def scan_record(root: str) -> str:
    """Where :func:`check_files` keeps what it found in the folder ``root``."""
    name = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:24]
    return os.path.join(cache_root(), SCANS, f"{name}.json")


def check_files(paths: Sequence[str], progress: Progress | None = None, workers: int | None = None,
                record: str | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Checks every file in a thread pool (decoders release the GIL).

    Returns ``({path: channels}, [(path, reason), ...])``; ``progress(done, total)`` is
    called from this thread after each file, for a progress bar on large folders.
    ``record``: a JSON file of earlier results by path, size and modification time (and the
    versions of the check and its decoders): a file unchanged since is not decoded again (a
    second run on a large folder starts at once);
    the record is rewritten (atomically) when something changed, and a record that cannot be
    read or written only costs the time.
    """
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    known, found = _read_record(record), {}
    stamps = {p: _stamp(p) for p in paths}
    todo = [p for p in paths if stamps[p] is None or not _fresh(known.get(p), stamps[p])]
    for p in paths:
        if p not in todo:
            found[p] = known[p][2:]
    done = len(found)
    if progress is not None and done:
        progress(done, len(paths))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(check_file, p): p for p in todo}
        for future in concurrent.futures.as_completed(futures):
            found[futures[future]] = list(future.result())
            done += 1
            if progress is not None:
                progress(done, len(paths))
    if record is not None and (todo or set(known) != set(paths)):
        _write_record(record, {p: [*stamps[p], *found[p]] for p in paths if stamps[p] is not None})
    channels = {p: c for p, (c, reason) in found.items() if reason is None}
    return channels, sorted((p, reason) for p, (c, reason) in found.items() if reason is not None)


def _fresh(entry, stamp) -> bool:
    """A recorded ``[size, mtime_ns, channels, reason]`` that still describes the file."""
    return isinstance(entry, list) and len(entry) == 4 and entry[:2] == stamp


def _stamp(path: str) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_record(path: str | None) -> dict:
    if path is None:
        return {}
    from callbacks.files import read_json

    try:
        record = read_json(path) or {}
    except (OSError, ValueError):
        return {}
    files = record.get("files") if record.get("checked_with") == _checker() else None
    return files if isinstance(files, dict) else {}


def _checker() -> list:
    """What a recorded result depends on besides the file: the check itself and its decoders."""
    import PIL
    import tensorflow as tf

    return [RECORD_FORMAT, tf.__version__, PIL.__version__]


def _write_record(path: str, record: dict) -> None:
    """Writes a scan record (atomically) and removes those of folders not scanned for
    ``RECORD_DAYS`` days."""
    import json
    import time

    from callbacks.files import atomic_write

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps({"checked_with": _checker(), "files": record}, separators=(",", ":")))
        for entry in os.scandir(os.path.dirname(path)):
            if entry.name.endswith(".json") and time.time() - entry.stat().st_mtime > RECORD_DAYS * 86400:
                os.remove(entry.path)
    except OSError:
        pass


# ---------------------------------------------------------------------------------- splitting

def _split_key(relative: str) -> str:
    return hashlib.sha256(f"{SPLIT_SEED}:{relative}".encode()).hexdigest()


def hold_out(paths: Sequence[str], class_folder: str, fraction: float) -> tuple[list[str], list[str]]:
    """``(train, test)`` for one class: the ``round(n * fraction)`` files first in a seeded order.

    The order is a hash of each path relative to its class folder (and a constant), so the
    choice is the same on every run and machine, and adding a file moves at most one other.
    At least one file stays in training; a class of one file gives none to the test set.
    """
    n_test = min(int(round(len(paths) * fraction)), len(paths) - 1)
    if fraction > 0 and len(paths) > 1:
        n_test = max(n_test, 1)
    ranked = sorted(paths, key=lambda p: _split_key(os.path.relpath(p, class_folder)))
    test = set(ranked[:n_test])
    return [p for p in paths if p not in test], [p for p in paths if p in test]


def _labelled(found: dict[str, list[str]], names: list[str]) -> list[tuple[str, int]]:
    return [(p, names.index(c)) for c in names for p in found[c]]


def _no_readable(found: dict[str, list[str]], folder: str) -> None:
    for c, paths in found.items():
        if not paths:
            raise UsageError(f"No readable images in the class folder {os.path.join(folder, c)!r} "
                             "(every image file was skipped). Expected at least one decodable image.")


def _assign(splits: dict, root: str, fraction: float) -> tuple[dict, str]:
    """Lists per split, and the line that says how the test set was chosen."""
    names = sorted(splits["train"])
    out = {s: _labelled(found, names) for s, found in splits.items()}
    if "test" in splits:
        return out, f"test: {os.path.join(root, 'test')} ({len(out['test'])} images)"
    if not 0 < fraction < 1:
        raise UsageError(f"Invalid test fraction {fraction!r} for the image folder {root!r}, which has no "
                         "test split. Expected a number between 0 and 1.")
    folder = _split_folder(root, "train")
    parts = {c: hold_out(p, os.path.join(folder, c), fraction) for c, p in splits["train"].items()}
    out["train"] = _labelled({c: tr for c, (tr, _) in parts.items()}, names)
    out["test"] = _labelled({c: te for c, (_, te) in parts.items()}, names)
    total = len(out["train"]) + len(out["test"])
    if not out["test"]:
        most = max(len(p) for p in splits["train"].values())
        raise UsageError(f"Too few images in the image folder {root!r} to hold out a test set ({total} images, "
                         f"{most} per class at most). Expected at least two images in a class, "
                         "or DIR/train/<class> and DIR/test/<class>.")
    return out, (f"test: {fraction * 100:g} % of each class held out (seeded), "
                 f"{len(out['test'])} of {total} images")


def scan(root: str, image_size=None, color_mode: str | None = None, crop_to_aspect_ratio: bool = False,
         test_fraction: float = 0.2, progress: Progress | None = None) -> ImageFolder:
    """Lists and checks an image folder; nothing is decoded for keeps.

    ``image_size`` None leaves the choice to the caller (``ImageFolder.files(split, size)``).
    ``color_mode`` None means rgb unless every readable image is grayscale.
    """
    _check_color_mode(color_mode)
    size = parse_image_size(image_size) if image_size is not None else None
    root = os.path.abspath(root)
    splits = _list_splits(root)
    every = [p for found in splits.values() for paths in found.values() for p in paths]
    channels, skipped = check_files(every, progress, record=scan_record(root))
    for s, found in splits.items():
        splits[s] = {c: [p for p in paths if p in channels] for c, paths in found.items()}
        _no_readable(splits[s], _split_folder(root, s))
    if color_mode is None:
        color_mode = "grayscale" if all(c <= 2 for c in channels.values()) else "rgb"
    lists, description = _assign(splits, root, test_fraction)
    layout = "splits" if "train" in _subfolders(root) else "classes"
    return ImageFolder(root=root, layout=layout, class_names=sorted(splits["train"]), train=lists["train"], test=lists["test"],
                       validation=lists.get("validation"), skipped=skipped, color_mode=color_mode,
                       image_size=size, crop_to_aspect_ratio=crop_to_aspect_ratio,
                       split_description=description)


# ---------------------------------------------------------------------------------- decoding

def _to_channels(image, channels: int):
    """Any decoded channel count (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to 1 or 3, alpha dropped."""
    import tensorflow as tf

    have = tf.shape(image)[-1]
    if channels == 1:
        return tf.cond(have >= 3, lambda: tf.image.rgb_to_grayscale(image[..., :3]), lambda: image[..., :1])
    return tf.cond(have >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))


def _crop_box(height, width, size):
    """Keras's ``smart_resize`` crop: the largest centred box with the target aspect ratio."""
    import tensorflow as tf

    th, tw = float(size[0]), float(size[1])
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    crop_h = tf.maximum(tf.minimum(height, tf.cast(w * th / tw, tf.int32)), 1)
    crop_w = tf.maximum(tf.minimum(width, tf.cast(h * tw / th, tf.int32)), 1)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def resize(image, size: tuple[int, int], crop_to_aspect_ratio: bool = False):
    """uint8 HxWxC -> uint8 ``size``: bilinear (as Keras), optionally centre-cropped first."""
    import tensorflow as tf

    if crop_to_aspect_ratio:
        shape = tf.shape(image)
        top, left, h, w = _crop_box(shape[0], shape[1], size)
        image = image[top:top + h, left:left + w]
    resized = tf.image.resize(image, size, method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def decode_file(path, image_size: tuple[int, int], channels: int, crop_to_aspect_ratio: bool = False):
    """TF: a path (string tensor) -> uint8 ``(*image_size, channels)``: read, decode (any
    format, first frame), convert the channels, resize."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, None])
    image = resize(_to_channels(image, channels), image_size, crop_to_aspect_ratio)
    return tf.ensure_shape(image, (*image_size, channels))


FEW_IMAGES = 64  # ImageFiles.load: up to this many images decoded one by one, more in a pipeline
# ImageFiles.load keeps the images it decoded one by one, the most recent first, up to this many
# bytes: the misclassified and Grad-CAM grids draw the same tiles, and mostly the same from one
# epoch to the next (32 MiB: about 1,200 images of 96x96x3, 220 of 224x224x3).
RECENT_BYTES = 32 * 2**20


@functools.lru_cache(maxsize=8)
def _compiled_decoder(image_size: tuple[int, int], channels: int, crop_to_aspect_ratio: bool):
    """``decode_file`` for one shape as a ``tf.function`` of a scalar path, traced once."""
    import tensorflow as tf

    return tf.function(lambda path: decode_file(path, image_size, channels, crop_to_aspect_ratio),
                       input_signature=[tf.TensorSpec([], tf.string)])


class ImageFiles:
    """One split of an image folder: paths, labels and how to decode them to uint8 pixels."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], image_size, channels: int,
                 crop_to_aspect_ratio: bool = False):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int32).reshape(-1)
        self.image_size = parse_image_size(image_size)
        self.channels = int(channels)
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self._recent: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()  # see load

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, self.channels)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """As an array of the decoded images would have it (nothing is decoded)."""
        return (len(self), *self.image_shape)

    def subset(self, indices) -> ImageFiles:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        return ImageFiles([self.paths[i] for i in indices], self.labels[indices], self.image_size,
                          self.channels, self.crop_to_aspect_ratio)

    def __getitem__(self, key):
        """``files[i]``: one decoded uint8 image; ``files[a:b]``: the files a..b, not decoded."""
        if isinstance(key, slice):
            return self.subset(np.arange(len(self))[key])
        return self.load([key])[0]

    def __array__(self, dtype=None, copy=None):
        """All the images decoded (for a few images only: a fixed batch, a grid)."""
        images = self.load(np.arange(len(self)))
        return images if dtype is None else images.astype(dtype)

    def decode(self, path):
        """TF: a path (string tensor) -> uint8 ``image_shape``; the tf.data decoding step."""
        return decode_file(path, self.image_size, self.channels, self.crop_to_aspect_ratio)

    def decoded(self, indices=None, parallel: bool = True):
        """tf.data of (uint8 image, int32 label) in file order (or ``indices`` order), unbatched."""
        import tensorflow as tf

        indices = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        paths = np.asarray(self.paths, dtype=object)[indices] if len(indices) else np.array([], dtype=str)
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), self.labels[indices]))
        return ds.map(lambda p, y: (self.decode(p), y),
                      num_parallel_calls=tf.data.AUTOTUNE if parallel else None)

    def load(self, indices) -> np.ndarray:
        """uint8 ``(n, H, W, C)`` for a few images (grids, a fixed batch, predict): the very
        pixels the training pipeline decodes, since it is the same TF function. Up to
        ``FEW_IMAGES`` are decoded one by one by a compiled function traced once per image
        shape (a tile of the misclassified grid costs a millisecond, not a new tf.data
        pipeline), and kept (``RECENT_BYTES``): the grids of one epoch, and of the next, mostly
        draw the same images. More go through a parallel ``decoded`` pipeline."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(indices), *self.image_shape), dtype=np.uint8)
        if len(indices) <= FEW_IMAGES:
            for k, i in enumerate(indices.tolist()):
                out[k] = self._recent_image(i)
            return out
        for k, (image, _) in enumerate(self.decoded(indices).as_numpy_iterator()):
            out[k] = image
        return out

    def _recent_image(self, i: int) -> np.ndarray:
        """Image ``i`` decoded, from the recent ones if it is there (read-only: ``load`` copies)."""
        image = self._recent.get(i)
        if image is not None:
            self._recent.move_to_end(i)
            return image
        import tensorflow as tf

        decode = _compiled_decoder(self.image_size, self.channels, self.crop_to_aspect_ratio)
        image = decode(tf.constant(self.paths[i])).numpy()
        self._recent[i] = image
        while len(self._recent) > max(1, RECENT_BYTES // max(1, image.nbytes)):
            self._recent.popitem(last=False)
        return image

    def fingerprint(self) -> str:
        """A hash of what the decoded pixels depend on: each file's path, size and mtime, the
        image size, channels and crop. Keys the disk cache, so a changed file misses it."""
        digest = hashlib.sha256(repr((self.image_shape, self.crop_to_aspect_ratio, "v1")).encode())
        for path, label in zip(self.paths, self.labels.tolist()):
            st = os.stat(path)
            digest.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
        return digest.hexdigest()[:24]
