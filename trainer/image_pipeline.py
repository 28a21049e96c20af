"""tf.data pipelines over :class:`trainer.image_folder.ImageFiles`: epoch order, caching, augmentation.

Exact resume. Training batches are gathered by index from an order that is a pure function
of (seed, epoch) (a stateless shuffle), as for arrays (``trainer.data.EpochOrder``, the shared base): a resumed
run skips the batches already done and sees exactly the rest, in the same order. Each
decoded image must therefore be reachable by its index, which decides the caches:

* ``memory``: every image decoded once into one uint8 array (one pass before training, in
  parallel); from then on exactly like in-memory data. Costs N*H*W*C bytes of RAM (twice that
  briefly, while the array becomes a tensor).
* ``disk``: every image decoded once into its own small file (``tf.io.serialize_tensor``) in
  ``$TRAINER_CACHE_DIR`` (default ``~/.cache/trainer/images``), under a key hashing the file
  list (path, size, mtime, label), the image size, channels and crop. Batches read the files
  of their indices in parallel, so random access costs one small read per image and memory
  stays bounded. A ``tf.data`` ``cache(filename)`` or ``snapshot`` was not used: both are
  read sequentially, so a per-epoch order would have to shuffle with a buffer (not a
  function of (seed, epoch) alone) or read everything per batch. The folder is filled under a
  temporary name and renamed when complete, so an interrupted fill is never read and two runs
  filling at once do not mix; a later run with the same key reuses it. Each use touches the
  folder's ``meta.json``; then :func:`prune_cache` removes the least recently used folders
  beyond the ``$TRAINER_CACHE_KEEP`` most recent (default 4) or beyond ``$TRAINER_CACHE_MAX_MB``
  in all (default 20 GiB), never the one in use nor one used in the last hour (another run
  may be reading it), and fills that a killed run left half-done after a day.
* ``none``: each batch decodes its files (parallel decode, prefetch); memory bounded.
* ``auto``: memory if the decoded images fit a fixed share of RAM (``MEMORY_SHARE``), else disk
  if the cache folder's disk has room, else none.

Augmentation (Keras preprocessing layers) is applied to training batches only, after scaling
to [0, 1]. Its random draws are re-seeded per batch from (seed, global batch number), so a
resumed run also repeats the same augmented pixels. The price: re-seeding shared layer state
means augmenting one batch at a time (flip, rotate and zoom: about 13 ms of CPU for 32 images
of 64x64, overlapped with training by the prefetch), where a parallel map would draw in a
nondeterministic order. On 2 cores a parallel map of the same layers was no faster (the step
uses both cores); see docs/benchmarks.md, section 6.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid

import numpy as np

from trainer.data import EpochOrder, scale
from trainer.errors import UsageError
from trainer.image_folder import CACHE_ENV, ImageFiles, Progress, cache_root  # noqa: F401 - public here too

CACHE_MODES = ("auto", "memory", "disk", "none")
MEMORY_SHARE = 0.25  # auto: decoded images in RAM if they take at most this share of it
FILL_BATCH = 64  # images per step while filling a cache (progress granularity)
KEEP_ENV, KEEP_DEFAULT = "TRAINER_CACHE_KEEP", 4  # disk cache folders kept, most recently used first
MAX_MB_ENV, MAX_MB_DEFAULT = "TRAINER_CACHE_MAX_MB", 20480  # and their total size at most
RECENT_SECONDS = 3600  # a cache folder used this recently is never pruned
STALE_PARTIAL_SECONDS = 86400  # an unfinished fill older than this was left by a killed run

AUGMENTATIONS = {  # name -> default factor
    "flip": None, "rotate": 0.1, "zoom": 0.1, "translate": 0.1, "contrast": 0.2, "brightness": 0.2,
}


# ---------------------------------------------------------------------------------- cache policy

@dataclasses.dataclass(frozen=True)
class CacheDecision:
    mode: str  # memory, disk or none
    reason: str  # one line for the console




def total_ram() -> int | None:
    """Physical memory in bytes (Linux and macOS via ``sysconf``), None when unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def free_disk(path: str) -> int | None:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        path = parent if parent != path else ""
    try:
        return shutil.disk_usage(path or ".").free
    except OSError:
        return None


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:,.0f} MiB"


def resolve_cache(mode: str, n_images: int, image_shape, ram: int | None = None,
                  disk: int | None = None, share: float = MEMORY_SHARE) -> CacheDecision:
    """The cache to use and why; a pure function of its arguments (``ram`` and ``disk`` in
    bytes, None = unknown). Explicit modes are taken as asked."""
    if mode not in CACHE_MODES:
        raise UsageError(f"Invalid value for option `--cache`. Received: {mode!r}. "
                         f"Expected one of {', '.join(CACHE_MODES)}.")
    need = int(n_images) * int(np.prod(image_shape))
    if mode != "auto":
        return CacheDecision(mode, f"--cache {mode} ({_mib(need)} of decoded images)")
    if ram is not None and need <= share * ram:
        return CacheDecision("memory", f"auto: {_mib(need)} of decoded images fit in "
                                       f"{share * 100:g} % of RAM ({_mib(int(share * ram))})")
    why = "RAM unknown" if ram is None else f"more than {share * 100:g} % of RAM ({_mib(int(share * ram))})"
    if disk is None or need * 1.1 + 2 ** 20 <= disk:
        return CacheDecision("disk", f"auto: {_mib(need)} of decoded images, {why}: cached on disk")
    return CacheDecision("none", f"auto: {_mib(need)} of decoded images, {why}, and only {_mib(disk)} "
                                 "free on the cache disk: decoded every epoch")


def decide(files: ImageFiles, cache="auto") -> CacheDecision:
    """``resolve_cache`` with this machine's RAM and the cache disk's free space."""
    if isinstance(cache, CacheDecision):
        return cache
    return resolve_cache(cache, len(files), files.image_shape, ram=total_ram(), disk=free_disk(cache_root()))


# ---------------------------------------------------------------------------------- caches

def decode_all(files: ImageFiles, progress: Progress | None = None) -> np.ndarray:
    """Every image, decoded in parallel into one uint8 array (the memory cache)."""
    out = np.empty((len(files), *files.image_shape), dtype=np.uint8)
    done = 0
    for images, _ in files.decoded().batch(FILL_BATCH).as_numpy_iterator():
        out[done:done + len(images)] = images
        done += len(images)
        if progress is not None:
            progress(done, len(files))
    return out


def _cached_paths(folder: str, n: int) -> list[str]:
    return [os.path.join(folder, f"{i // 1000:05d}", f"{i:08d}.tensor") for i in range(n)]


def _fill(files: ImageFiles, folder: str, progress: Progress | None) -> None:
    """Decodes every file and writes it to ``folder`` (parallel; nothing kept in memory)."""
    import tensorflow as tf

    targets = _cached_paths(folder, len(files))
    for d in sorted({os.path.dirname(t) for t in targets}):
        os.makedirs(d, exist_ok=True)

    def write(path, target):
        tf.io.write_file(target, tf.io.serialize_tensor(files.decode(path)))
        return 0

    ds = tf.data.Dataset.from_tensor_slices((files.paths, targets))
    ds = ds.map(write, num_parallel_calls=tf.data.AUTOTUNE).batch(FILL_BATCH)
    done = 0
    for written in ds.as_numpy_iterator():
        done += len(written)
        if progress is not None:
            progress(done, len(files))
    size = sum(os.path.getsize(t) for t in targets)
    meta = {"images": len(files), "shape": list(files.image_shape), "crop": files.crop_to_aspect_ratio,
            "bytes": size}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f)


def disk_cache(files: ImageFiles, progress: Progress | None = None, root: str | None = None) -> tuple[str, bool]:
    """The filled cache folder for ``files`` and whether it was already there (reused); the
    cache root is pruned after (:func:`prune_cache`)."""
    root = root or cache_root()
    folder, reused = _filled(files, root, progress)
    os.utime(os.path.join(folder, "meta.json"))  # last used: now
    prune_as_configured(root, protect=(folder,))
    return folder, reused


def prune_as_configured(root: str, protect=()) -> list[str]:
    """:func:`prune_cache` with the limits ``TRAINER_CACHE_KEEP`` / ``TRAINER_CACHE_MAX_MB`` set."""
    return prune_cache(root, keep=_env_int(KEEP_ENV, KEEP_DEFAULT),
                       max_bytes=_env_int(MAX_MB_ENV, MAX_MB_DEFAULT) * 2 ** 20, protect=protect)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        import warnings

        warnings.warn(f"Invalid value for the environment variable `{name}`. Received: {value!r}. "
                      f"Expected a non-negative integer; using {default}.", RuntimeWarning, stacklevel=2)
        return default
    return int(value)


def _folder_bytes(folder: str) -> int:
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            return int(json.load(f)["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return sum(os.path.getsize(os.path.join(top, n)) for top, _, names in os.walk(folder) for n in names)


def prune_cache(root: str, keep: int, max_bytes: int, protect=(), now: float | None = None) -> list[str]:
    """Removes the least recently used cache folders under ``root`` beyond the ``keep`` most
    recent or beyond ``max_bytes`` in all (last use: the mtime of a folder's ``meta.json``),
    except those in ``protect`` and those used in the last ``RECENT_SECONDS``; also unfinished
    fills older than ``STALE_PARTIAL_SECONDS``. Returns the folders removed."""
    import time

    now = time.time() if now is None else now
    protect = {os.path.abspath(p) for p in protect}
    try:
        entries = [e for e in os.scandir(root) if e.is_dir()]
    except OSError:
        return []
    removed, caches = [], []
    for e in entries:
        meta = os.path.join(e.path, "meta.json")
        if os.path.isfile(meta):
            caches.append((os.path.getmtime(meta), e.path))
        elif ".partial-" in e.name and now - e.stat().st_mtime > STALE_PARTIAL_SECONDS:
            removed.append(e.path)
    total = 0
    for k, (used, path) in enumerate(sorted(caches, reverse=True)):
        size = _folder_bytes(path)
        spare = os.path.abspath(path) in protect or now - used < RECENT_SECONDS
        if spare or (k < keep and total + size <= max_bytes):
            total += size
        else:
            removed.append(path)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _filled(files: ImageFiles, root: str, progress: Progress | None) -> tuple[str, bool]:
    folder = os.path.join(root, files.fingerprint())
    if os.path.isfile(os.path.join(folder, "meta.json")):
        return folder, True
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    partial = f"{folder}.partial-{uuid.uuid4().hex[:8]}"
    try:
        _fill(files, partial, progress)
        os.rename(partial, folder)
    except OSError:
        if not os.path.isfile(os.path.join(folder, "meta.json")):  # not another run finishing first
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder, False


class _Source:
    """Decoded uint8 images by index, from the chosen cache; ``batches(ds)`` turns a dataset of
    (index, batch number) into batched (uint8 images, labels, batch numbers)."""

    def __init__(self, files: ImageFiles, decision: CacheDecision, progress: Progress | None):
        import tensorflow as tf

        self.files, self.mode, self.reused = files, decision.mode, False
        with tf.device("/cpu:0"):
            self.labels = tf.constant(files.labels)
            if self.mode == "memory":
                self.images = tf.constant(decode_all(files, progress))
            elif self.mode == "disk":
                self.folder, self.reused = disk_cache(files, progress)
                self.paths = tf.constant(_cached_paths(self.folder, len(files)))
            else:
                self.paths = tf.constant(files.paths, tf.string)

    def read(self, i):
        """One image by index (disk and none)."""
        import tensorflow as tf

        if self.mode == "disk":
            image = tf.io.parse_tensor(tf.io.read_file(tf.gather(self.paths, i)), tf.uint8)
            return tf.ensure_shape(image, self.files.image_shape)
        return self.files.decode(tf.gather(self.paths, i))

    def batches(self, ds, batch_size: int):
        import tensorflow as tf

        if self.mode == "memory":
            return ds.batch(batch_size).map(
                lambda i, b: (tf.gather(self.images, i), tf.gather(self.labels, i), b),
                num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda i, b: (self.read(i), tf.gather(self.labels, i), b),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size)


# ---------------------------------------------------------------------------------- pipelines

class EpochOrderedFiles(EpochOrder):
    """Training batches of image files in an order that depends only on (seed, epoch).

    ``trainer.data.EpochOrder`` gives the order, the epoch callback and ``skip``;
    ``dataset(batches)`` is one epoch or its last ``batches`` batches. ``cache`` is a mode
    (see the module docstring) or a :class:`CacheDecision`; ``decision`` says what was chosen
    and why. ``augment`` is a spec string, a list of (name, factor), or None.
    """

    def __init__(self, files: ImageFiles, batch_size: int, seed: int, cache="auto", augment=None,
                 progress: Progress | None = None):
        super().__init__(len(files), batch_size, seed)
        self.files = files
        self.decision = decide(files, cache)
        self.source = _Source(files, self.decision, progress)
        self.augmentation = build_augmentation(augment, self.seed) if augment else None

    def _one_epoch(self, _):
        """(index, global batch number) for the rest of the current epoch, read from the variables."""
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices(self.remaining())

    def dataset(self, batches: int):
        """(float32 images in [0, 1], int32 labels) batches, augmented if asked, prefetched."""
        import tensorflow as tf

        ds = tf.data.Dataset.range(1).flat_map(self._one_epoch)
        ds = self.source.batches(ds, self.batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
        if self.augmentation is None:
            ds = ds.map(lambda x, y, b: (scale(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            # Sequential on purpose: each batch re-seeds the layers' generators before drawing.
            ds = ds.map(lambda x, y, b: (self.augmentation.apply(scale(x), b), y))
        return ds.prefetch(tf.data.AUTOTUNE)


    def in_order(self, batch_size: int):
        """Every image once, in file order, never augmented, from the same decoded cache."""
        return _in_order(self.source, len(self.files), batch_size)


def _in_order(source: _Source, size: int, batch_size: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((tf.range(size, dtype=tf.int64), tf.zeros(size, tf.int64)))
    ds = source.batches(ds, batch_size)
    ds = ds.map(lambda x, y, b: (scale(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_pipeline(files: ImageFiles, batch_size: int, cache="none", progress: Progress | None = None):
    """Validation / test batches in file order, never augmented: (float32 images, int32 labels)."""
    return _in_order(_Source(files, decide(files, cache), progress), len(files), batch_size)


# ---------------------------------------------------------------------------------- augmentation

def _augment_error(received: str, problem: str) -> UsageError:
    return UsageError(f"Invalid value for option `--augment`. Received: {received!r} ({problem}). "
                      f"Expected a comma-separated list of name[=factor] with names "
                      f"{', '.join(AUGMENTATIONS)}, e.g. flip,rotate=0.1,zoom=0.1.")


def parse_augment(spec: str) -> list[tuple[str, float | None]]:
    """``"flip,rotate=0.1,zoom=0.1"`` -> ``[("flip", None), ("rotate", 0.1), ("zoom", 0.1)]``;
    a missing factor takes the default. Factors are fractions in (0, 1]."""
    out = []
    for item in (s.strip() for s in str(spec).split(",")):
        if not item:
            continue
        name, _, value = item.partition("=")
        name = name.strip().lower()
        if name not in AUGMENTATIONS:
            raise _augment_error(spec, f"unknown name {name!r}")
        if not value:
            out.append((name, AUGMENTATIONS[name]))
            continue
        if name == "flip":
            raise _augment_error(spec, "flip takes no factor")
        try:
            factor = float(value)
        except ValueError:
            raise _augment_error(spec, f"{value!r} is not a number") from None
        if not 0 < factor <= 1:
            raise _augment_error(spec, f"factor {factor:g} for {name} is not in (0, 1]")
        out.append((name, factor))
    if not out:
        raise _augment_error(spec, "no augmentation named")
    return out


def _layer(name: str, factor, seed: int):
    import keras

    layers = keras.layers
    if name == "flip":
        return layers.RandomFlip("horizontal", seed=seed)
    if name == "rotate":
        return layers.RandomRotation(factor, seed=seed)
    if name == "zoom":
        return layers.RandomZoom(factor, seed=seed)
    if name == "translate":
        return layers.RandomTranslation(factor, factor, seed=seed)
    if name == "contrast":
        return layers.RandomContrast(factor, seed=seed, value_range=(0, 1))
    return layers.RandomBrightness(factor, value_range=(0, 1), seed=seed)


class Augmentation:
    """A ``keras.Sequential`` of random layers whose draws are a function of (seed, batch).

    Keras's random layers draw from a ``SeedGenerator`` whose state advances with each call,
    so after a resume they would draw differently. ``apply`` sets every generator's state to
    (layer seed, batch number) first; it must run sequentially (tf.data map without
    parallel calls), which is cheap next to decoding.
    """

    def __init__(self, spec, seed: int):
        import keras

        items = parse_augment(spec) if isinstance(spec, str) else list(spec)
        self.spec = items
        self.model = keras.Sequential([_layer(n, f, seed * 31 + k) for k, (n, f) in enumerate(items)],
                                      name="augmentation")
        self.generators = [layer.generator for layer in self.model.layers]
        self.seeds = [seed * 31 + k for k in range(len(items))]

    def apply(self, images, batch_number):
        import tensorflow as tf

        for generator, seed in zip(self.generators, self.seeds):
            state = tf.stack([tf.constant(seed, tf.int64), tf.cast(batch_number[0], tf.int64)])
            generator.state.assign(tf.cast(state, generator.state.dtype))
        return self.model(images, training=True)

    def __call__(self, images, training: bool = True):
        return self.model(images, training=training)


def build_augmentation(spec, seed: int) -> Augmentation:
    """Keras preprocessing layers for ``spec`` (a string or (name, factor) pairs), seeded;
    ``.model`` is the ``keras.Sequential``."""
    return Augmentation(spec, int(seed))
