"""Training speed of ``trainer fit`` against a plain Keras ``model.fit`` of the same model.

Each side runs in a process of its own, started once (plain Keras with TensorFlow's settings as
the environment gives them, trainer with what its CLI sets before importing TensorFlow); the
runs are interleaved (plain/trainer, then trainer/plain, ...) and timed by the same callback;
samples/s counts the epochs after the first (no compile/trace time), and the table shows
medians over the repeats and the median of the per-repeat ratios.

    python scripts/bench_fit.py --archs fcn,cnn_small --repeats 5 --epochs 3
    python scripts/bench_fit.py --time-to-accuracy   # Keras's mnist_convnet vs trainer fit cnn_deep
"""

from __future__ import annotations

import _bench
from _bench import log, markdown_table, median

BASIC_TARGET = 0.97  # trainer fit (every monitor on) against plain Keras, any architecture
TARGETS = {"fcn": 1.3, "cnn_small": 1.3, "dense512": 1.3, "mlp": 1.3, "cnn": 1.0, "cnn_deep": 1.0}
TTA_ACCURACY, TTA_TIME_RATIO = 0.993, 0.75


def compare(args, sides) -> list[dict]:
    archs = args.archs.split(",") if args.archs else (["fcn"] if args.quick else _bench.mnist_architectures())
    limits = {"epochs": args.epochs, "train_limit": args.train_limit,
              "test_limit": args.test_limit}
    runs = {(a, side): [] for a in archs for side in ("plain", "trainer")}
    for r in range(args.repeats):
        for arch in archs:
            for side in ("plain", "trainer") if r % 2 == 0 else ("trainer", "plain"):
                run = _bench.trainer_arch if side == "trainer" else _bench.plain_arch
                res = sides[side].submit(run, arch, args.data, **limits).result()
                runs[arch, side].append(res)
                log(f"[{r + 1}/{args.repeats}] {arch:9s} {side:7s} {res.samples_per_second():9,.0f} samples/s"
                    f" ({res.samples_per_second(cpu=True):,.0f} per CPU s)"
                    f"  train s/epoch {[round(s, 2) for s in res.train]}"
                    f"  epoch s {[round(s, 2) for s in res.epoch]}")
    rows = []
    for arch in archs:
        plain, trainer = runs[arch, "plain"], runs[arch, "trainer"]
        ratios = [t.samples_per_second() / p.samples_per_second() for p, t in zip(plain, trainer)]
        cpu_ratios = [t.samples_per_second(True) / p.samples_per_second(True) for p, t in zip(plain, trainer)]
        epoch_ratios = [t.epoch_seconds() / p.epoch_seconds() for p, t in zip(plain, trainer)]
        epoch_cpu_ratios = [t.epoch_seconds(True) / p.epoch_seconds(True) for p, t in zip(plain, trainer)]
        rows.append({
            "arch": arch, "samples": plain[0].samples,
            "plain": median([p.samples_per_second() for p in plain]),
            "trainer": median([t.samples_per_second() for t in trainer]),
            "ratio": median(ratios), "ratios": ratios, "cpu_ratio": median(cpu_ratios),
            "plain_epoch": median([p.epoch_seconds() for p in plain]),
            "trainer_epoch": median([t.epoch_seconds() for t in trainer]),
            "epoch_ratio": median(epoch_ratios), "epoch_cpu_ratio": median(epoch_cpu_ratios),
            "spe": trainer[0].extra["steps_per_execution"],
        })
    return rows


def print_compare(rows, args) -> None:
    print(f"Training samples/s, epochs 2..{args.epochs} of each run, median of {args.repeats} "
          f"interleaved repeats; ratio = median of the per-repeat trainer/plain ratios (wall time); "
          f"CPU ratio = the same in samples per CPU-second of the side's process.\n")
    table = []
    for row in rows:
        target = max(BASIC_TARGET, TARGETS.get(row["arch"], BASIC_TARGET))
        table.append([row["arch"], row["plain"], row["trainer"], f"{row['ratio']:.2f}",
                      " ".join(f"{r:.2f}" for r in row["ratios"]), f"{row['cpu_ratio']:.2f}", f">= {target:.2f}",
                      "yes" if row["ratio"] >= target else "**no**"])
    print(markdown_table(["arch", "plain samples/s", "trainer samples/s", "ratio", "per repeat",
                          "CPU ratio", "target", "met"], table))
    print("\nWhole epochs (training + validation pass + every callback's end-of-epoch work), "
          "median seconds:\n")
    print(markdown_table(
        ["arch", "train samples", "trainer steps/execution", "plain epoch s", "trainer epoch s",
         "trainer/plain", "trainer/plain CPU s"],
        [[r["arch"], r["samples"], r["spe"], f"{r['plain_epoch']:.2f}", f"{r['trainer_epoch']:.2f}",
          f"{r['epoch_ratio']:.2f}", f"{r['epoch_cpu_ratio']:.2f}"] for r in rows]))


# --------------------------------------------------------------------------- time to accuracy
def mnist_convnet(input_shape, num_classes):
    """The model of Keras's example ``mnist_convnet`` (~99.2 % test accuracy in 15 epochs)."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ])


def run_mnist_convnet(args, epochs: int) -> _bench.Result:
    """The example as written: float32 /255, one-hot labels, Adam, batch 128, 10 % validation split."""
    import time

    import keras

    from trainer import data as datasets

    _bench.reset_keras()
    start = time.perf_counter()
    data = datasets.load("mnist", args.data, args.train_limit, args.test_limit)
    x, xt = datasets.to_float(data.x_train), datasets.to_float(data.x_test)
    y = keras.utils.to_categorical(data.y_train, data.num_classes)
    yt = keras.utils.to_categorical(data.y_test, data.num_classes)
    model = mnist_convnet(data.input_shape, data.num_classes)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    timer = _bench.epoch_timer()
    model.fit(x, y, batch_size=128, epochs=epochs, validation_split=0.1, verbose=0, callbacks=[timer])
    accuracy = float(model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"])
    return _bench.Result(train=timer.train, epoch=timer.epoch, samples=int(len(x) * 0.9),
                         train_cpu=timer.train_cpu, epoch_cpu=timer.epoch_cpu,
                         test_accuracy=accuracy, fit_seconds=timer.fit_seconds,
                         wall_seconds=time.perf_counter() - start)


def time_to_accuracy(args, sides) -> None:
    plain_epochs = 1 if args.quick else 15
    overrides = {"epochs": 1} if args.quick else {}
    results = {"plain": [], "trainer": []}
    for r in range(args.repeats):
        for side in ("plain", "trainer") if r % 2 == 0 else ("trainer", "plain"):
            if side == "plain":
                res = sides[side].submit(run_mnist_convnet, args, plain_epochs).result()
            else:
                res = sides[side].submit(_bench.trainer_arch, "cnn_deep", args.data,
                                         train_limit=args.train_limit, test_limit=args.test_limit,
                                         **overrides).result()
            results[side].append(res)
            log(f"[{r + 1}/{args.repeats}] {side}: test accuracy {res.test_accuracy:.4f}, "
                f"fit {res.fit_seconds:.1f} s, wall {res.wall_seconds:.1f} s, epochs {len(res.epoch)}")
    plain, trainer = results["plain"], results["trainer"]
    ratio = median([t.fit_seconds / p.fit_seconds for p, t in zip(plain, trainer)])
    acc = median([t.test_accuracy for t in trainer])
    print(f"Time to accuracy on MNIST, {args.repeats} interleaved run(s) each, medians. Training wall "
          "time = the model.fit call (validation and, for trainer, every monitor included); total = "
          "load + build + fit + test evaluation (+ trainer's saving).\n")
    print(markdown_table(
        ["model", "epochs", "test accuracy", "training wall s", "total wall s"],
        [["Keras mnist_convnet (Adam, batch 128, 10 % validation)", len(plain[0].epoch),
          f"{median([p.test_accuracy for p in plain]):.4f}", f"{median([p.fit_seconds for p in plain]):.1f}",
          f"{median([p.wall_seconds for p in plain]):.1f}"],
         ["trainer fit cnn_deep (defaults, every monitor on)", len(trainer[0].epoch), f"{acc:.4f}",
          f"{median([t.fit_seconds for t in trainer]):.1f}", f"{median([t.wall_seconds for t in trainer]):.1f}"]]))
    met = acc >= TTA_ACCURACY and ratio <= TTA_TIME_RATIO
    print(f"\ntraining wall time ratio cnn_deep / mnist_convnet: {ratio:.2f} "
          f"(goal: >= {TTA_ACCURACY:.1%} test accuracy in <= {TTA_TIME_RATIO}x the time: "
          f"{'met' if met else 'NOT met'})")


def main(argv=None) -> None:
    p = _bench.parser(__doc__.splitlines()[0], repeats=None)
    p.add_argument("--archs", help="comma-separated built-in architectures (default: every MNIST one)")
    p.add_argument("--time-to-accuracy", action="store_true",
                   help="Keras's mnist_convnet (15 epochs) vs trainer fit cnn_deep (its defaults)")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.time_to_accuracy else 5
    if args.time_to_accuracy:
        _bench.apply_quick(args, repeats=1, epochs=1, train_limit=1024, test_limit=256)
        _bench.print_header("trainer fit cnn_deep vs Keras mnist_convnet: time to accuracy")
        with _bench.side_processes() as sides:
            time_to_accuracy(args, sides)
    else:
        _bench.apply_quick(args)
        _bench.print_header("trainer fit vs plain Keras model.fit: training throughput")
        with _bench.side_processes() as sides:
            rows = compare(args, sides)
        print_compare(rows, args)


if __name__ == "__main__":
    main()
