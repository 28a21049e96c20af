"""``callbacks`` stands alone: a copy of the package, with nothing else of this repository on
the path, imports every module and logs a real ``model.fit`` to TensorBoard.

The child Python runs with ``-S`` (no site processing), so the editable install's finder, which
would map ``trainer`` to this repository, is not loaded; the installed libraries are put on its
path by hand, the copied package through ``PYTHONPATH`` alone, and ``import trainer`` must fail.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys

from tests.conftest import REPO, check_no_skipped_feature, read_events

CHILD = r'''
import sys
sys.path.extend(sys.argv[2:])  # the installed libraries; no .pth file is read
import importlib, json, os, pkgutil

here = os.path.dirname(os.path.abspath(__file__))
import callbacks
assert os.path.dirname(os.path.abspath(callbacks.__file__)) == os.path.join(here, "callbacks"), callbacks.__file__
modules = sorted(f"callbacks.{m.name}" for m in pkgutil.iter_modules(callbacks.__path__))
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as exc:  # reported, and the fit below still runs
        failed[name] = f"{type(exc).__name__}: {exc}"
try:
    import trainer  # noqa: F401
    trainer_importable = True
except ImportError:
    trainer_importable = False

import numpy as np
import keras
from callbacks import (BestCheckpoint, CalibrationBins, ConfusionMatrix, ConfusionMatrixImage, MisclassifiedGrid,
                       PerClassMetrics, PrecisionRecallCounts, PRCurves, ReliabilityDiagram, Scalars,
                       WeightHistograms)
from callbacks.validation_metrics import WorstMistakes

log_dir = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.random((24, 6, 6, 1)).astype("float32")
y = rng.integers(0, 3, 24)
xv, yv = x[:12], y[:12]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(3, activation="softmax", name="out")])
cm, worst = ConfusionMatrix(num_classes=3), WorstMistakes(k=4)
pr, bins = PrecisionRecallCounts(num_classes=3), CalibrationBins()
model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy", cm, worst, pr, bins])
names = ["zero", "one", "two"]
history = model.fit(x, y, batch_size=8, epochs=2, validation_data=(xv, yv), verbose=0, callbacks=[
    Scalars(log_dir, samples_per_epoch=len(x)),
    WeightHistograms(log_dir),
    PerClassMetrics(log_dir, cm, class_names=names),
    ConfusionMatrixImage(log_dir, cm, class_names=names),
    MisclassifiedGrid(log_dir, worst, xv, class_names=names),
    PRCurves(log_dir, pr, class_names=names),
    ReliabilityDiagram(log_dir, bins),
    BestCheckpoint(os.path.join(log_dir, "best.keras")),
])
print(json.dumps({"modules": modules, "failed": failed, "trainer_importable": trainer_importable,
                  "epochs": len(history.history["loss"])}))
'''


def test_callbacks_import_and_fit_without_the_rest_of_the_repository(tmp_path):
    root = tmp_path / "alone"
    shutil.copytree(os.path.join(REPO, "callbacks"), root / "callbacks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "child.py").write_text(CHILD)
    log_dir = tmp_path / "logs"
    libraries = [p for p in site.getsitepackages() if os.path.isdir(p)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "default"})
    proc = subprocess.run([sys.executable, "-S", str(root / "child.py"), str(log_dir), *libraries],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_no_skipped_feature(proc.stdout, proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["trainer_importable"], "trainer was importable: the child is not isolated"
    expected = sorted(f"callbacks.{f[:-3]}" for f in os.listdir(root / "callbacks")
                      if f.endswith(".py") and f != "__init__.py")
    assert result["modules"] == expected and result["epochs"] == 2

    train, validation = (read_events(str(log_dir / sub)) for sub in ("train", "validation"))
    train_tags, validation_tags = set(train.Tags()["tensors"]), set(validation.Tags()["tensors"])
    # Scalars and WeightHistograms
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_seconds",
            "epoch_samples_per_second", "weight_norm/out", "nonfinite_weights"} <= train_tags
    assert any(t.endswith("out/kernel") for t in train_tags) and any(t.endswith("out/bias") for t in train_tags)
    assert [e.step for e in train.Tensors("epoch_loss")] == [0, 1]
    # PerClassMetrics, ConfusionMatrixImage and MisclassifiedGrid, from the validation pass
    assert {"epoch_loss", "epoch_macro_f1", "macro/f1", "per_class_metrics", "confusion_matrix",
            "confused_pairs", "misclassified"} <= validation_tags
    assert {f"{m}/{c}" for m in ("precision", "recall", "f1") for c in ("zero", "one", "two")} <= validation_tags
    assert [e.step for e in validation.Tensors("confusion_matrix")] == [0, 1]
    # PRCurves and ReliabilityDiagram; the metrics' results are Keras logs, so Scalars writes them
    assert {"pr_curves/zero", "pr_curves/one", "pr_curves/two", "reliability_diagram",
            "epoch_pr_auc", "epoch_ece"} <= validation_tags
    assert "custom_scalars__config__" in read_events(str(log_dir)).Tags()["tensors"]
    # BestCheckpoint
    assert os.path.isfile(log_dir / "best.keras")
    # Last, so that the fit above is checked even while a module still reaches outside.
    assert result["failed"] == {}, "callbacks modules that need more than the package:\n" + "\n".join(
        f"{name}: {error}" for name, error in result["failed"].items())
