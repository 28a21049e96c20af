"""A folder of images: ``trainer fit --data DIR`` against the plain Keras recipe, and its memory.

The data is a generated folder of small JPEGs (MNIST digits, tinted on a noisy background,
40-100 px, ``DIR/train/<digit>`` and ``DIR/test/<digit>``), written once into a cache folder and
reused by later runs. Two measurements:

* **Speed.** ``trainer fit ARCH --data DIR --image-size S --validation test`` (every monitor
  on, ``--cache auto``) against what a Keras user writes by hand, as in Keras's guide "Image
  classification from scratch": ``keras.utils.image_dataset_from_directory`` for both splits
  (Keras defaults: shuffled, bilinear, its own prefetch), a ``map`` that scales to [0, 1] (and
  applies the same augmentation layers, with ``--augment``) with ``num_parallel_calls=AUTOTUNE``
  and ``prefetch``, and ``model.fit`` of the same model (same ``build``, optimizer, learning
  rate, batch size) with the test split as validation data. Each side runs in a process of its
  own, interleaved; training images/s over the epochs after the first.
* **Memory.** Peak RSS (``wait4``'s ``ru_maxrss``) of a ``trainer fit`` subprocess on the folder
  and on one with ``--scale`` times as many images, with ``--cache disk`` (an empty cache folder
  each run: filling it is included) and ``--cache none``: streaming must not grow with the
  number of images.

    python scripts/bench_data.py --repeats 5 --epochs 3
    python scripts/bench_data.py --quick   # seconds; numbers meaningless
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import _bench
from _bench import log, markdown_table, median

SPEED_TARGET = 1.5  # trainer images/s / plain Keras images/s
RSS_TARGET = 1.15  # peak RSS with --scale x the images / with 1x
FOLDER_VERSION = "v2"


# --------------------------------------------------------------------------- the folder
def folder_root() -> str:
    """Where generated folders are kept: ``$TRAINER_BENCH_DIR`` or a folder in the temp dir."""
    return os.environ.get("TRAINER_BENCH_DIR") or os.path.join(tempfile.gettempdir(), "trainer-bench-data")


def _digit_jpeg(digit, rng):
    """One MNIST digit as an RGB JPEG-ready Pillow image: tinted, on noise, 40-100 px a side."""
    import numpy as np
    from PIL import Image

    color = rng.integers(120, 256, 3)
    noise = rng.integers(0, 70, (28, 28, 3))
    alpha = digit[..., None].astype(np.float32) / 255.0
    pixels = (alpha * color + (1 - alpha) * noise).clip(0, 255).astype(np.uint8)
    size = (int(rng.integers(40, 101)), int(rng.integers(40, 101)))
    return Image.fromarray(pixels).resize(size, Image.BILINEAR)


def _write_split(folder, images, labels, seed) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    for i, (image, label) in enumerate(zip(images, labels)):
        target = os.path.join(folder, str(int(label)), f"{i:06d}.jpg")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        _digit_jpeg(image, rng).save(target, "JPEG", quality=90)


def _balanced(labels, n: int):
    """``n`` indices taking every class in turn (so even a tiny folder has every class);
    beyond the dataset's size, the digits again (other sizes and tints)."""
    import numpy as np

    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    order = np.lexsort((labels, rank))  # the first of each class, then the second of each, ...
    return order[np.arange(n) % len(order)]


def make_folder(data_path: str, n_train: int, n_test: int, root: str | None = None) -> str:
    """``root/mnist-jpeg-<train>-<test>`` (created once, atomically; reused when there)."""
    import numpy as np

    root = root or folder_root()
    folder = os.path.join(root, f"mnist-jpeg-{n_train}-{n_test}-{FOLDER_VERSION}")
    if os.path.isdir(folder):
        return folder
    os.makedirs(root, exist_ok=True)
    start = time.perf_counter()
    partial = tempfile.mkdtemp(prefix=os.path.basename(folder) + ".partial-", dir=root)
    try:
        with np.load(data_path) as f:
            x, y, xt, yt = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
        train, test = _balanced(y, n_train), _balanced(yt, n_test)
        _write_split(os.path.join(partial, "train"), x[train], y[train], seed=1)
        _write_split(os.path.join(partial, "test"), xt[test], yt[test], seed=2)
        os.rename(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log(f"wrote {n_train + n_test} JPEGs to {folder} in {time.perf_counter() - start:.1f} s")
    return folder


# --------------------------------------------------------------------------- the two sides
def trainer_side(arch, folder, image_size, epochs, augment) -> _bench.Result:
    """``trainer fit ARCH --data DIR --image-size S --validation test`` (defaults otherwise);
    its console notes go to stderr, with the script's progress lines."""
    config = _bench.trainer_config(arch, folder, image_size=image_size, epochs=epochs,
                                   validation="test", augment=augment)
    with contextlib.redirect_stdout(sys.stderr):
        return _bench.run_trainer(config)


def plain_side(arch, folder, image_size, epochs, augment) -> _bench.Result:
    """The Keras guide's recipe: ``image_dataset_from_directory`` + a parallel map + prefetch +
    ``model.fit`` of the same model, optimizer, learning rate and batch size."""
    import keras
    import tensorflow as tf

    from trainer import architecture
    from trainer.image_pipeline import build_augmentation
    from trainer.run import make_optimizer

    config = _bench.trainer_config(arch, folder, image_size=image_size, epochs=epochs, validation="test")
    _bench.reset_keras()
    start = time.perf_counter()
    size = tuple(config.image_size)
    train = keras.utils.image_dataset_from_directory(os.path.join(folder, "train"), image_size=size,
                                                     batch_size=config.batch_size, seed=config.seed,
                                                     verbose=False)
    test = keras.utils.image_dataset_from_directory(os.path.join(folder, "test"), image_size=size,
                                                    batch_size=config.batch_size, shuffle=False, verbose=False)
    # The same Keras layers as trainer's --augment, applied as the guide does (a parallel map).
    augmentation = build_augmentation(augment, config.seed or 0).model if augment else None

    def prepare(x, y, training):
        x = x / 255.0
        return (augmentation(x, training=True) if training and augmentation is not None else x), y

    class_names = train.class_names
    train = train.map(lambda x, y: prepare(x, y, True), num_parallel_calls=tf.data.AUTOTUNE)
    test = test.map(lambda x, y: prepare(x, y, False), num_parallel_calls=tf.data.AUTOTUNE)
    train, test = train.prefetch(tf.data.AUTOTUNE), test.prefetch(tf.data.AUTOTUNE)
    arch_module = architecture.load(config.arch_source or config.arch)
    model = arch_module.build((*size, 3), len(class_names), **config.hyperparameters)
    steps = int(train.cardinality())
    model.compile(optimizer=make_optimizer(config, steps * epochs), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    timer = _bench.epoch_timer()
    with warnings.catch_warnings():  # "shuffle=True ... ignored": the dataset is shuffled already
        warnings.simplefilter("ignore", UserWarning)
        model.fit(train, epochs=epochs, validation_data=test, verbose=0, callbacks=[timer])
    samples = sum(len(files) for _, _, files in os.walk(os.path.join(folder, "train")))
    return _bench.Result(train=timer.train, epoch=timer.epoch, samples=samples,
                         train_cpu=timer.train_cpu, epoch_cpu=timer.epoch_cpu,
                         fit_seconds=timer.fit_seconds, wall_seconds=time.perf_counter() - start)


def compare(args, folder, sides) -> list[dict]:
    runs = {"plain": [], "trainer": []}
    for r, side in _bench.interleaved(args.repeats, list(runs)):
        run = trainer_side if side == "trainer" else plain_side
        res = sides[side].submit(run, args.arch, folder, args.image_size, args.epochs, args.augment).result()
        runs[side].append(res)
        log(f"[{r + 1}/{args.repeats}] {side:7s} {res.samples_per_second():9,.0f} images/s"
            f" ({res.samples_per_second(cpu=True):,.0f} per CPU s)"
            f"  train s/epoch {[round(s, 2) for s in res.train]}  epoch s {[round(s, 2) for s in res.epoch]}")
    plain, trainer = runs["plain"], runs["trainer"]
    return [{
        "samples": plain[0].samples,
        "plain": median([p.samples_per_second() for p in plain]),
        "trainer": median([t.samples_per_second() for t in trainer]),
        "ratios": [t.samples_per_second() / p.samples_per_second() for p, t in zip(plain, trainer)],
        "cpu_ratios": [t.samples_per_second(True) / p.samples_per_second(True) for p, t in zip(plain, trainer)],
        "plain_epoch": median([p.epoch_seconds() for p in plain]),
        "trainer_epoch": median([t.epoch_seconds() for t in trainer]),
    }]


# --------------------------------------------------------------------------- memory
def peak_rss(args, folder, cache) -> tuple[float, float]:
    """``(peak RSS MiB, wall s)`` of one ``trainer fit`` subprocess on ``folder``, with an empty
    disk cache folder of its own and an empty logdir (both removed after)."""
    scratch = tempfile.mkdtemp(prefix="bench-data-rss-")
    env = {k: v for k, v in os.environ.items() if k != "TRAINER_DATA"}
    env.update({"TRAINER_CACHE_DIR": os.path.join(scratch, "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"})
    cmd = [sys.executable, "-m", "trainer.cli", "fit", args.arch, "--data", folder, "--image-size",
           str(args.image_size), "--validation", "test", "--epochs", str(args.rss_epochs), "--cache", cache,
           "--progress", "none", "--logdir", os.path.join(scratch, "logs")]
    if args.augment:
        cmd += ["--augment", args.augment]
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=_bench.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"trainer fit --cache {cache} on {folder} exited {proc.returncode}:\n{output[-3000:]}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return usage.ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 1024), time.perf_counter() - start


def memory(args, folders) -> list[dict]:
    """Peak RSS per (cache, scale), interleaved over ``--rss-repeats``; medians."""
    caches = args.caches.split(",")
    variants = [(cache, scale) for cache in caches for scale in (1, args.scale)]
    runs = {v: [] for v in variants}
    for r, (cache, scale) in _bench.interleaved(args.rss_repeats, variants):
        rss, wall = peak_rss(args, folders[scale], cache)
        runs[cache, scale].append(rss)
        log(f"[{r + 1}/{args.rss_repeats}] --cache {cache:4s} x{scale}: peak RSS {rss:,.0f} MiB ({wall:.0f} s)")
    rows = []
    for cache in caches:
        one, many = median(runs[cache, 1]), median(runs[cache, args.scale])
        rows.append({"cache": cache, "one": one, "many": many, "ratio": many / one})
    return rows


# --------------------------------------------------------------------------- report
def print_speed(rows, args) -> None:
    row = rows[0]
    ratio, cpu_ratio = median(row["ratios"]), median(row["cpu_ratios"])
    print(f"Training images/s, epochs 2..{args.epochs} of each run, median of {args.repeats} interleaved "
          f"repeats; ratio = median of the per-repeat trainer/plain ratios (wall time); CPU ratio = the "
          f"same in images per CPU-second of the side's process. {args.arch}, {args.image_size}x"
          f"{args.image_size} RGB, augmentation: {args.augment or 'none'}.\n")
    print(markdown_table(
        ["arch", "train images", "plain images/s", "trainer images/s", "ratio", "per repeat", "CPU ratio",
         "plain epoch s", "trainer epoch s", "target", "met"],
        [[args.arch, row["samples"], row["plain"], row["trainer"], f"{ratio:.2f}",
          " ".join(f"{r:.2f}" for r in row["ratios"]), f"{cpu_ratio:.2f}", f"{row['plain_epoch']:.2f}",
          f"{row['trainer_epoch']:.2f}", f">= {SPEED_TARGET:.2f}", "yes" if ratio >= SPEED_TARGET else "**no**"]]))
    print()


def print_memory(rows, args, sizes) -> None:
    print(f"Peak RSS of `trainer fit {args.arch}` (a subprocess; {args.rss_epochs} epochs, median of "
          f"{args.rss_repeats}) on {sizes[1]:,} and on {sizes[args.scale]:,} images:\n")
    print(markdown_table(
        ["cache", f"{sizes[1]} images MiB", f"{sizes[args.scale]} images MiB", "ratio", "target", "met"],
        [[f"--cache {r['cache']}", r["one"], r["many"], f"{r['ratio']:.3f}", f"<= {RSS_TARGET:.2f}",
          "yes" if r["ratio"] <= RSS_TARGET else "**no**"] for r in rows]))
    print()


def main(argv=None) -> None:
    p = _bench.parser(__doc__.splitlines()[0], repeats=5, epochs=3)
    p.add_argument("--images", type=int, default=8000, help="training images in the folder (plus a quarter for test)")
    p.add_argument("--image-size", type=int, default=32, help="--image-size of both sides")
    p.add_argument("--arch", default="cnn_small", help="built-in architecture (its defaults)")
    p.add_argument("--augment", default=None, help="augmentation on both sides, e.g. flip,rotate=0.1,zoom=0.1")
    p.add_argument("--scale", type=int, default=4, help="the memory runs: this many times the images too")
    p.add_argument("--caches", default="disk,none", help="the memory runs: these --cache modes")
    p.add_argument("--rss-repeats", type=int, default=2, help="runs per memory variant (median)")
    p.add_argument("--rss-epochs", type=int, default=2, help="epochs of each memory run")
    p.add_argument("--skip-speed", action="store_true", help="the memory measurement only")
    p.add_argument("--skip-memory", action="store_true", help="the speed measurement only")
    args = p.parse_args(argv)
    if args.quick:
        _bench.apply_quick(args, repeats=1, epochs=2)
        args.images, args.rss_repeats, args.rss_epochs = min(args.images, 256), 1, 1
        args.image_size = min(args.image_size, 16)
    sizes = {s: (args.images * s, max(args.images * s // 4, 1)) for s in {1, args.scale}}
    folders = {s: make_folder(args.data, *n) for s, n in sizes.items()}
    _bench.print_header("trainer fit --data DIR vs image_dataset_from_directory + model.fit")
    print(f"- folder: {args.images:,} training + {sizes[1][1]:,} test JPEGs (MNIST digits, 40-100 px, RGB), "
          "generated once and reused (TRAINER_BENCH_DIR)\n")
    if not args.skip_speed:
        with _bench.side_processes() as sides:
            rows = compare(args, folders[1], sides)
        print_speed(rows, args)
    if not args.skip_memory:
        print_memory(memory(args, folders), args, {s: sum(n) for s, n in sizes.items()})


if __name__ == "__main__":
    main()
