"""Binary and regression tasks on generated data: they must learn, and the monitors that do not
apply are off (with a note) while the ones that do are written."""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np
import pytest

from tests.conftest import read_events, run_cli

QUICK = ("--progress", "plain", "--histograms-every", "0", "--gradients-every", "0", "--no-graph")


def blobs(n, rng):
    """Two Gaussian blobs in 10-D whose centres are 4 standard deviations apart (Bayes: 97.7 %)."""
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 10)) + 4.0 * y[:, None] * np.ones(10) / np.sqrt(10)
    return x.astype(np.float32), y


def linear(n, rng, w):
    x = rng.normal(size=(n, 10)).astype(np.float32)
    return x, (x @ w + 0.1 * rng.normal(size=n)).astype(np.float32)


@pytest.fixture(scope="module")
def binary_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    (xt, yt), (xs, ys) = blobs(2000, rng), blobs(500, rng)
    path = tmp_path_factory.mktemp("binary") / "blobs.npz"
    np.savez(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys, class_names=np.array(["no", "yes"]))
    return str(path)


@pytest.fixture(scope="module")
def regression_csv(tmp_path_factory):
    rng = np.random.default_rng(1)
    w = rng.normal(size=10)
    x, y = linear(2500, rng, w)
    path = tmp_path_factory.mktemp("regression") / "table.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"f{i}" for i in range(10)] + ["price"])
        writer.writerows(np.column_stack([x, y]).tolist())
    return str(path)


def only_run(logdir, arch):
    (run_dir,) = glob.glob(os.path.join(logdir, arch, "*"))
    return run_dir, json.load(open(os.path.join(run_dir, "metrics.json")))


def test_binary_classifier_learns(tmp_path, binary_npz):
    proc = run_cli("fit", "binary_mlp", "--data", binary_npz, "--logdir", tmp_path, "--epochs", 8, *QUICK)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "per-class metrics, confusion matrix and misclassified grid are off for a binary task" in proc.stdout
    run_dir, metrics = only_run(tmp_path, "binary_mlp")
    assert metrics["test"]["accuracy"] > 0.9 and metrics["test"]["auc"] > 0.95
    assert {"precision", "recall", "auc"} <= set(metrics["test"])
    val_tags = set(read_events(os.path.join(run_dir, "validation")).Tags()["tensors"])
    assert {"epoch_loss", "epoch_accuracy", "epoch_auc", "epoch_precision", "epoch_recall"} <= val_tags
    assert not {"confusion_matrix", "misclassified"} & val_tags
    # the single PR curve, of the positive class, and calibration, for validation and test
    panels = {"pr_curves/yes", "reliability_diagram", "epoch_ece", "epoch_pr_auc"}
    assert panels <= val_tags and not {t for t in val_tags if t.startswith("pr_curves/")} - panels
    assert panels <= set(read_events(os.path.join(run_dir, "test")).Tags()["tensors"])
    assert metrics["test"]["pr_auc"] > 0.95 and 0 <= metrics["test"]["ece"] < 0.1


def test_regressor_learns_from_csv(tmp_path, regression_csv):
    proc = run_cli("fit", "regressor", "--data", regression_csv, "--target", "price", "--logdir", tmp_path,
                   "--epochs", 15, *QUICK)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir, metrics = only_run(tmp_path, "regressor")
    assert metrics["test"]["r2"] > 0.9
    assert "test r2" in proc.stdout
    val = read_events(os.path.join(run_dir, "validation"))
    assert {"epoch_loss", "epoch_mae", "epoch_r2", "predicted_vs_true"} <= set(val.Tags()["tensors"])
    assert not {t for t in val.Tags()["tensors"] if t.startswith("pr_curves/") or "ece" in t or "reliability" in t}
    assert "misclassified grid, PR curves and calibration are off for a regression task" in proc.stdout
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["task"] == "regression" and config["target"] == "price" and config["class_names"] is None


def test_csv_errors(tmp_path, regression_csv):
    proc = run_cli("fit", "regressor", "--data", regression_csv, "--logdir", tmp_path)
    assert proc.returncode == 2 and "A CSV dataset needs --target COLUMN" in proc.stderr
    proc = run_cli("fit", "regressor", "--data", regression_csv, "--target", "cost", "--logdir", tmp_path)
    assert proc.returncode == 2 and "Received: 'cost'. Expected one of the columns" in proc.stderr
    assert not os.path.exists(os.path.join(tmp_path, "regressor"))


def test_non_multiclass_needs_its_own_data(tmp_path):
    proc = run_cli("fit", "binary_mlp", "--logdir", tmp_path)
    assert proc.returncode == 2
    assert "A binary architecture needs its own data: pass --data FILE.npz or FILE.csv" in proc.stderr


def test_binary_labels_are_checked(tmp_path):
    path = tmp_path / "bad.npz"
    x = np.zeros((10, 3), np.float32)
    np.savez(path, x_train=x, y_train=np.arange(10) % 3, x_test=x, y_test=np.zeros(10, int))
    proc = run_cli("fit", "binary_mlp", "--data", path, "--logdir", tmp_path)
    assert proc.returncode == 2 and "y_train has labels 0..2; expected 0..1" in proc.stderr
