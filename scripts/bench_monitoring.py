"""What monitoring costs: epoch time of ``trainer fit cnn`` (every monitor on) against a plain
``model.fit`` of the same model with the same validation data and no callbacks, and against
the TensorBoard tutorial's approach (``TensorBoard(histogram_freq=1)`` plus a callback that
runs ``model.predict`` on the validation set every epoch and logs a confusion-matrix image).
Trainer with every monitor off isolates the monitors' own cost. The plain and tutorial variants
run in one process (TensorFlow's settings as the environment gives them), the trainer variants
in another (with what the ``trainer`` CLI sets before importing TensorFlow).

    python scripts/bench_monitoring.py --repeats 5 --epochs 3
    python scripts/bench_monitoring.py --repeats 5 --epochs 3 --panels   # + the cost of each new panel
"""

from __future__ import annotations

import os
import shutil
import tempfile

import _bench
from _bench import log, markdown_table, median

TARGET = 1.03  # trainer fit cnn (every monitor on) / plain model.fit, whole epochs
MONITORS_OFF = {"histograms_every": 0, "gradients_every": 0, "confusion_every": 0, "per_class": False,
                "misclassified": 0, "graph": False, "overfitting_patience": 0,
                "pr_curves_every": 0, "calibration_every": 0, "embeddings": 0, "gradcam": False}
# --panels: each panel of issue 14 on its own (the cost of one = trainer minus trainer without it; the
# projector writes after the last epoch by default, so its per-epoch cost is measured with every=1)
PANELS = {
    "no_pr_curves": ("PR curves", {"pr_curves_every": 0}),
    "no_calibration": ("calibration (reliability diagram + ECE)", {"calibration_every": 0}),
    "no_gradcam": ("Grad-CAM grid", {"gradcam": False}),
    "projector_every": ("embedding projector (1,000 samples, written every epoch)", {"embeddings_every": 1}),
}
TARGET_ON_OFF = 1.05  # issue 14: every monitor on / every monitor off, whole epochs
VARIANTS = {
    "plain": "plain model.fit, no callbacks",
    "tutorial": "model.fit + TensorBoard(histogram_freq=1) + confusion-matrix callback (tutorial)",
    "trainer": "trainer fit cnn, every monitor on (defaults)",
    "trainer_off": "trainer fit cnn, every monitor off",
}


def tutorial_callbacks(log_dir, x_val, y_val, class_names):
    """The approach of TensorBoard's tutorials: Keras's TensorBoard callback with weight
    histograms, and a LambdaCallback that predicts the whole validation set each epoch and
    logs a confusion-matrix image (matplotlib as in the tutorial when installed, else Pillow)."""
    import keras
    import numpy as np
    import tensorflow as tf

    try:
        import matplotlib

        matplotlib.use("Agg")
        import io

        import matplotlib.pyplot as plt

        def render(cm):
            figure = plt.figure(figsize=(8, 8))
            plt.imshow(cm, interpolation="nearest", cmap=plt.cm.Blues)
            plt.colorbar()
            plt.xticks(range(len(class_names)), class_names, rotation=45)
            plt.yticks(range(len(class_names)), class_names)
            normalized = np.around(cm.astype("float") / cm.sum(axis=1)[:, np.newaxis], decimals=2)
            for i in range(cm.shape[0]):
                for j in range(cm.shape[1]):
                    plt.text(j, i, normalized[i, j], horizontalalignment="center")
            buf = io.BytesIO()
            plt.savefig(buf, format="png")
            plt.close(figure)
            return tf.image.decode_png(buf.getvalue(), channels=4)

        renderer = "matplotlib"
    except ImportError:
        from callbacks.drawing import render_confusion

        def render(cm):
            return render_confusion(cm, class_names)

        renderer = "Pillow (matplotlib not installed)"

    writer = tf.summary.create_file_writer(os.path.join(log_dir, "cm"))
    model_ref = {}

    def log_confusion_matrix(epoch, logs):
        pred = np.argmax(model_ref["model"].predict(x_val, verbose=0), axis=1)
        cm = tf.math.confusion_matrix(y_val, pred, num_classes=len(class_names)).numpy()
        with writer.as_default():
            tf.summary.image("epoch_confusion_matrix", render(cm)[None], step=epoch)

    class ConfusionCallback(keras.callbacks.LambdaCallback):
        def set_model(self, model):
            super().set_model(model)
            model_ref["model"] = model

    return [keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=1),
            ConfusionCallback(on_epoch_end=log_confusion_matrix)], renderer


def run_variant(variant, args):
    overrides = {"epochs": args.epochs, "train_limit": args.train_limit, "test_limit": args.test_limit}
    if variant == "trainer_off":
        overrides.update(MONITORS_OFF)
    if variant.startswith("trainer_") and variant[len("trainer_"):] in PANELS:
        overrides.update(PANELS[variant[len("trainer_"):]][1])
    config = _bench.trainer_config(args.arch, args.data, **overrides)
    if variant.startswith("trainer"):
        return _bench.run_trainer(config), None
    if variant == "plain":
        return _bench.run_plain(config), None
    data, _, _, xv, yv, _, _ = _bench.plain_data(config)
    log_dir = tempfile.mkdtemp(prefix="bench-tutorial-")
    try:
        cbs, renderer = tutorial_callbacks(log_dir, xv, yv, data.class_names)
        return _bench.run_plain(config, callbacks=cbs), renderer
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def panel_costs(runs, rest) -> list[list[str]]:
    """Per panel: the median over repeats of the epoch-end seconds it adds (validation pass + callbacks)."""
    rows = []
    for key, (label, _) in PANELS.items():
        other = runs[f"trainer_{key}"]
        if key == "projector_every":
            cost = median([rest(a) - rest(b) for a, b in zip(other, runs["trainer"])])
        else:
            cost = median([rest(a) - rest(b) for a, b in zip(runs["trainer"], other)])
        share = cost / median([x.epoch_seconds() for x in runs["trainer"]])
        rows.append([label, f"{cost * 1000:.0f}", f"{share * 100:.1f} %"])
    return rows


def main(argv=None) -> None:
    p = _bench.parser(__doc__.splitlines()[0])
    p.add_argument("--arch", default="cnn", help="built-in architecture (its defaults)")
    p.add_argument("--panels", action="store_true",
                   help="also run trainer with each panel of issue 14 off in turn: the cost of each")
    args = p.parse_args(argv)
    _bench.apply_quick(args)
    _bench.print_header(f"What monitoring costs: trainer fit {args.arch} vs plain Keras")
    variants = dict(VARIANTS)
    if args.panels:
        variants.update({f"trainer_{k}": f"trainer fit {args.arch}, {v[0]}{'' if k == 'projector_every' else ' off'}"
                         for k, v in PANELS.items()})
    runs = {v: [] for v in variants}
    renderer = None
    with _bench.side_processes() as sides:
        for r, variant in _bench.interleaved(args.repeats, list(variants)):
            side = "trainer" if variant.startswith("trainer") else "plain"
            res, used = sides[side].submit(run_variant, variant, args).result()
            renderer = used or renderer
            runs[variant].append(res)
            log(f"[{r + 1}/{args.repeats}] {variant:11s} epoch s {[round(s, 2) for s in res.epoch]}"
                f"  epoch CPU s {[round(s, 2) for s in res.epoch_cpu]}"
                f"  train s {[round(s, 2) for s in res.train]}")

    def ratio(a, b, cpu=False):
        return median([x.epoch_seconds(cpu) / y.epoch_seconds(cpu) for x, y in zip(runs[a], runs[b])])

    def train_seconds(res):
        return res.samples / res.samples_per_second()

    print(f"Epoch seconds (training + validation pass + every callback's end-of-epoch work), epochs "
          f"2..{args.epochs} of each run, median of {args.repeats} interleaved repeats; ratios are "
          f"medians of the per-repeat ratios; CPU = CPU seconds of the variant's process. Training set {runs['plain'][0].samples} samples, "
          f"validation = the architecture's default. Confusion image drawn with {renderer}.\n")
    def rest(res):  # validation pass + callbacks' epoch-end work, per timed epoch
        return median([e - t for e, t in zip(res.epoch[1:] or res.epoch, res.train[1:] or res.train)])

    rows = []
    for variant, label in variants.items():
        rows.append([label, f"{median([x.epoch_seconds() for x in runs[variant]]):.2f}",
                     f"{median([train_seconds(x) for x in runs[variant]]):.2f}",
                     f"{median([rest(x) for x in runs[variant]]):.2f}",
                     f"{ratio(variant, 'plain'):.3f}",
                     f"{median([x.epoch_seconds(True) for x in runs[variant]]):.2f}",
                     f"{ratio(variant, 'plain', cpu=True):.3f}",
                     f"<= {TARGET}" if variant == "trainer" else ""])
    print(markdown_table(["variant", "epoch s", "training part s", "validation + callbacks s",
                          "epoch / plain", "epoch CPU s",
                          "CPU / plain", "target"], rows))
    on_plain, on_off = ratio("trainer", "plain"), ratio("trainer", "trainer_off")
    print(f"\ntrainer monitors on / monitors off: {on_off:.3f} (target <= {TARGET_ON_OFF}: "
          f"{'met' if on_off <= TARGET_ON_OFF else 'NOT met'})")
    print(f"\ntrainer monitors on / plain: {on_plain:.3f} (target <= {TARGET}: "
          f"{'met' if on_plain <= TARGET else 'NOT met'}; CPU time: {ratio('trainer', 'plain', True):.3f})")
    print(f"trainer monitors on / monitors off CPU time: {ratio('trainer', 'trainer_off', True):.3f}")
    print(f"tutorial approach / plain: {ratio('tutorial', 'plain'):.3f} (CPU time: {ratio('tutorial', 'plain', True):.3f})")
    print(f"trainer monitors off / plain: {ratio('trainer_off', 'plain'):.3f} "
          f"(CPU time: {ratio('trainer_off', 'plain', True):.3f})")
    # The training part dominates the noise; the epoch-end part is small and steadier.
    extra = {v: median([rest(x) for x in runs[v]]) for v in VARIANTS}
    base = median([train_seconds(x) for x in runs["plain"]])
    print(f"validation + callbacks per epoch: trainer on {extra['trainer']:.2f} s, off "
          f"{extra['trainer_off']:.2f} s, plain {extra['plain']:.2f} s, tutorial {extra['tutorial']:.2f} s; "
          f"with plain's training part ({base:.2f} s) for all, the epoch ratio to plain would be: "
          f"trainer on {(base + extra['trainer']) / (base + extra['plain']):.3f}, tutorial "
          f"{(base + extra['tutorial']) / (base + extra['plain']):.3f}")
    if args.panels:
        print("\nPer-panel cost (epoch-end seconds with the panel minus without it, median of the per-repeat "
              "differences; noisy at the scale of a few ms):\n")
        print(markdown_table(["panel", "ms per epoch", "share of an epoch"], panel_costs(runs, rest)))


if __name__ == "__main__":
    main()

