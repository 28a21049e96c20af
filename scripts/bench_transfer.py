"""Transfer learning throughput: ``trainer fit transfer`` (mobilenet_v3_small, frozen backbone,
every monitor on) against the Keras guide's recipe: ``image_dataset_from_directory`` with
``.cache().prefetch()``, the same backbone called with ``training=False`` and frozen, global
average pooling, dropout and a dense softmax, ``model.fit``. Training images per second over
the epochs after the first, medians of interleaved repeats, on a generated image folder; and
the whole run's wall time (trainer: load, decode, build, the frozen features, every epoch with
its monitors, the test pass and the saved models; Keras: the dataset, the model and ``fit``).
trainer runs with its frozen-feature cache (the default) and with ``--no-feature-cache``.

    python scripts/bench_transfer.py --repeats 5 --epochs 4
    python scripts/bench_transfer.py --cost --repeats 3 --epochs 3   # monitors on resnet50

``--cost``: what the monitors' end-of-epoch work costs on ``resnet50`` while fine-tuning (all
layers trainable from the start, so histograms and gradient norms have the most to log):
trainer with every monitor on (the default bounded selection of backbone layers), with
``--histograms-layers all``, and with every monitor off; the epoch-end part (validation pass +
callbacks) against the epoch time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import _bench
from _bench import markdown_table, median

TARGET = 1.2  # trainer images/s / the Keras guide's recipe, every monitor on
MONITORS_OFF = {"histograms_every": 0, "gradients_every": 0, "confusion_every": 0, "per_class": False,
                "misclassified": 0, "graph": False, "overfitting_patience": 0}


def make_folder(images: int, size: int) -> str:
    """``images`` per class (3 classes) of generated shapes, ``size`` px, in a temporary folder."""
    from tests.image_folders import SHAPES, draw, save

    root = tempfile.mkdtemp(prefix="bench-transfer-")
    for k, shape in enumerate(SHAPES):
        for i in range(images):
            save(draw(shape, (size, size), k * 100_000 + i), os.path.join(root, shape, f"{i:05d}.png"), "PNG")
    return root


def trainer_side(args, folder: str, variant: str):
    overrides = {"epochs": args.epochs, "image_size": [args.image_size] * 2, "batch_size": args.batch_size,
                 "hyperparameters": {"backbone": args.backbone, "weights": args.weights,
                                     "freeze_epochs": 0 if args.cost else args.epochs,
                                     "fine_tune": 1.0}}
    if variant == "all":
        overrides["histograms_layers"] = "all"
    if variant == "off":
        overrides.update(MONITORS_OFF)
    if variant == "nocache":
        overrides["feature_cache"] = False
    # A first run: no stored features, no scan record from an earlier repeat (a rerun is faster).
    cache = os.environ["TRAINER_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-transfer-cache-")
    try:
        return _bench.run_trainer(_bench.trainer_config("transfer", folder, **overrides))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def keras_guide_side(args, folder: str):
    """The recipe of Keras's transfer-learning guide, as a user writes it."""
    import keras
    import tensorflow as tf

    _bench.reset_keras()
    start = time.perf_counter()
    size = (args.image_size, args.image_size)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="both", seed=1, image_size=size, batch_size=args.batch_size)
    classes = len(train_ds.class_names)
    samples = sum(int(b[0].shape[0]) for b in train_ds)
    train_ds = train_ds.cache().prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.cache().prefetch(tf.data.AUTOTUNE)
    weights = None if args.weights == "none" else args.weights
    base = keras.applications.MobileNetV3Small(input_shape=(*size, 3), include_top=False, weights=weights)
    base.trainable = False
    inputs = keras.Input((*size, 3))
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = _bench.epoch_timer()
    model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0, callbacks=[timer])
    return _bench.Result(train=timer.train, epoch=timer.epoch, samples=samples, wall_seconds=time.perf_counter() - start,
                         train_cpu=timer.train_cpu, epoch_cpu=timer.epoch_cpu)


def run(variant, args, folder):
    return keras_guide_side(args, folder) if variant == "keras" else trainer_side(args, folder, variant)


def rest(res):  # validation pass + callbacks' epoch-end work, per timed epoch
    return median([e - t for e, t in zip(res.epoch[1:] or res.epoch, res.train[1:] or res.train)])


def main(argv=None) -> None:
    p = _bench.parser(__doc__.splitlines()[0], repeats=5, epochs=4)
    p.add_argument("--images", type=int, default=400, help="images per class (3 classes)")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backbone", default=None, help="default: mobilenet_v3_small (resnet50 with --cost)")
    p.add_argument("--weights", default="none", help="none (no download) or imagenet")
    p.add_argument("--cost", action="store_true", help="the monitors' epoch-end cost while fine-tuning")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs, args.images = min(args.repeats, 1), min(args.epochs, 2), min(args.images, 24)
        args.image_size = min(args.image_size, 32)
    args.backbone = args.backbone or ("resnet50" if args.cost else "mobilenet_v3_small")
    variants = {"on": "trainer, every monitor on", "all": "trainer, every monitor on, --histograms-layers all",
                "off": "trainer, every monitor off"} if args.cost else {
        "trainer": "trainer fit transfer, every monitor on",
        "nocache": "trainer fit transfer --no-feature-cache, every monitor on",
        "keras": "Keras guide recipe, model.fit"}
    _bench.print_header(f"trainer fit transfer ({args.backbone}, {args.image_size}x{args.image_size}) "
                        + ("monitor cost" if args.cost else "vs the Keras guide's transfer recipe"))
    folder = make_folder(args.images, args.image_size)
    try:
        runs = _bench.run_interleaved(
            args.repeats, variants, run, args, folder,
            describe=lambda res: (f"images/s {res.samples_per_second():.1f}  epoch s {[round(s, 2) for s in res.epoch]}"
                                  f"  train s {[round(s, 2) for s in res.train]}"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{3 * args.images} generated images, batch {args.batch_size}, weights={args.weights}, epochs "
          f"2..{args.epochs} timed, median of {args.repeats} interleaved repeats.\n")
    rows = [[label, f"{median([x.samples_per_second() for x in runs[v]]):.1f}",
             f"{median([x.epoch_seconds() for x in runs[v]]):.2f}", f"{median([rest(x) for x in runs[v]]):.2f}",
             f"{median([x.wall_seconds for x in runs[v]]):.1f}"]
            for v, label in variants.items()]
    print(markdown_table(["variant", "training images/s", "epoch s", "validation + callbacks s", "whole run s"],
                         rows))
    if args.cost:
        epoch = median([x.epoch_seconds() for x in runs["on"]])
        for v in ("on", "all"):
            extra = median([rest(x) for x in runs[v]]) - median([rest(x) for x in runs["off"]])
            print(f"\nmonitors' epoch-end cost, {variants[v]}: {extra:.2f} s = {extra / epoch:.1%} of the epoch")
        return
    for v in ("trainer", "nocache"):
        ratio = median([t.samples_per_second() / k.samples_per_second() for t, k in zip(runs[v], runs["keras"])])
        whole = median([k.wall_seconds / t.wall_seconds for t, k in zip(runs[v], runs["keras"])])
        print(f"\n{variants[v]} / Keras guide recipe: training images/s {ratio:.2f}x (target >= {TARGET}: "
              f"{'met' if ratio >= TARGET else 'NOT met'}); whole run {whole:.2f}x as fast")


if __name__ == "__main__":
    main()
