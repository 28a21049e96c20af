"""Where a transfer run's end-of-epoch time goes: the validation pass and each callback's
``on_epoch_end``, timed one by one, on ``trainer fit transfer`` (mobilenet_v3_small, every
monitor on) with a generated image folder, beside plain Keras ``model.fit`` with the same
validation set (no callbacks). The epochs after the first (which traces) are timed; medians over
the repeats. Each callback's epoch and test hooks are timed in trainer's own process.

    python scripts/bench_epoch_end.py --repeats 3 --epochs 4
"""

from __future__ import annotations

import collections
import shutil
import tempfile
import time

import _bench
from _bench import markdown_table, median
from bench_transfer import make_folder

HOOKS = ("on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end")


def timed_callback_list(seconds: dict):
    """Patches ``keras.callbacks.CallbackList``'s epoch and test hooks so that each callback's
    own hook is timed into ``seconds["<class>.<hook>"]`` (a list per call); returns a function
    that puts the originals back."""
    import keras

    originals = {hook: getattr(keras.callbacks.CallbackList, hook) for hook in HOOKS}

    def timing(callback, hook):
        inner, name = getattr(callback, hook), f"{type(callback).__name__}.{hook}"

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[name].append(time.perf_counter() - start)

        timed.is_timed = True
        return timed

    def patched(hook):
        def method(self, *args, **kwargs):
            for callback in self.callbacks:
                if not getattr(getattr(callback, hook), "is_timed", False):
                    setattr(callback, hook, timing(callback, hook))
            return originals[hook](self, *args, **kwargs)
        return method

    for hook in HOOKS:
        setattr(keras.callbacks.CallbackList, hook, patched(hook))
    return lambda: [setattr(keras.callbacks.CallbackList, h, f) for h, f in originals.items()]


def validation_timer(seconds: list):
    """A callback recording each validation pass's seconds (test begin to test end)."""
    import keras

    class ValidationTimer(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            self._start = time.perf_counter()

        def on_test_end(self, logs=None):
            seconds.append(time.perf_counter() - self._start)

    return ValidationTimer()


def trainer_side(args, folder: str):
    from trainer import run

    seconds: dict = collections.defaultdict(list)
    validation: list = []
    config = _bench.trainer_config("transfer", folder, epochs=args.epochs, image_size=[args.image_size] * 2,
                                   batch_size=args.batch_size,
                                   hyperparameters={"backbone": "mobilenet_v3_small", "weights": "none",
                                                    "freeze_epochs": args.epochs})
    _bench.reset_keras()
    restore = timed_callback_list(seconds)
    config.logdir = tempfile.mkdtemp(prefix="bench-epoch-end-")
    timer = _bench.epoch_timer()
    try:
        run.fit(config, callbacks=[validation_timer(validation), timer])
    finally:
        restore()
        shutil.rmtree(config.logdir, ignore_errors=True)
    rest = [e - t for e, t in zip(timer.epoch, timer.train)]
    return {"callbacks": dict(seconds), "validation": validation, "rest": rest}


def keras_side(args, folder: str):
    """Plain ``model.fit`` of the same model on the same arrays, with the same validation set."""
    config = _bench.trainer_config("transfer", folder, epochs=args.epochs, image_size=[args.image_size] * 2,
                                   batch_size=args.batch_size,
                                   hyperparameters={"backbone": "mobilenet_v3_small", "weights": "none",
                                                    "freeze_epochs": args.epochs})
    validation: list = []
    timer = _bench.epoch_timer()
    _bench.run_plain(config, callbacks=[validation_timer(validation), timer])
    return {"callbacks": {}, "validation": validation, "rest": [e - t for e, t in zip(timer.epoch, timer.train)]}


def run(side, args, folder):
    return keras_side(args, folder) if side == "keras" else trainer_side(args, folder)


def mean(values):
    return sum(values) / len(values) if values else 0.0


def after_first(values):
    return values[1:] if len(values) > 1 else values


def main(argv=None) -> None:
    p = _bench.parser(__doc__.splitlines()[0], repeats=3, epochs=4)
    p.add_argument("--images", type=int, default=400, help="images per class (3 classes)")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs, args.images, args.image_size = 1, 2, 24, 32
    _bench.print_header(f"trainer fit transfer (mobilenet_v3_small, {args.image_size}x{args.image_size}): "
                        "the end-of-epoch work")
    folder = make_folder(args.images, args.image_size)
    try:
        runs = _bench.run_interleaved(args.repeats, ["trainer", "keras"], run, args, folder,
                                      describe=lambda res: f"validation + callbacks s {[round(s, 3) for s in res['rest']]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{3 * args.images} generated images, batch {args.batch_size}, weights=none, epochs 2..{args.epochs} "
          f"timed, median of {args.repeats} interleaved repeats.\n")
    rows = [[f"{side}: validation + callbacks (epoch end)", f"{median([median(after_first(x['rest'])) for x in rs]):.3f}"]
            for side, rs in runs.items()]
    rows += [[f"{side}: validation pass", f"{median([median(after_first(x['validation'])) for x in rs]):.3f}"]
             for side, rs in runs.items()]
    names = list(runs["trainer"][0]["callbacks"])
    costs = {n: median([mean(after_first(x["callbacks"][n])) for x in runs["trainer"]]) for n in names}
    rows += [[f"trainer: {n}", f"{costs[n]:.3f}"]
             for n in sorted(names, key=costs.get, reverse=True) if costs[n] >= 0.0005 or n.endswith("_epoch_end")]
    print(markdown_table(["part", "seconds per epoch"], rows))
    print("\nThe epoch end and the validation pass: medians over the epochs; each callback's hook: its "
          "mean over the epochs (a panel drawn every few epochs, a checkpoint saved on improvement only); "
          "the other hooks when they take 0.5 ms or more.")


if __name__ == "__main__":
    main()
