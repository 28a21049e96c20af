"""``evaluate`` and ``predict`` use the saved run's task, CSV target and data: a regression run
from a CSV and a binary run are evaluated with every compiled metric, and a regression
prediction is the predicted value (no class probabilities)."""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from trainer.cli import main

QUICK = ("--progress", "none", "--histograms-every", "0", "--gradients-every", "0", "--no-graph", "--epochs", "2")


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def fit(tmp_path, arch, *args) -> tuple[str, dict]:
    invoke("fit", arch, "--logdir", tmp_path / "logs", *QUICK, *args)
    (run_dir,) = glob.glob(os.path.join(tmp_path, "logs", arch, "*"))
    return run_dir, json.load(open(os.path.join(run_dir, "metrics.json")))


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regression")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + 10.0  # far from any class index
    path = tmp / "table.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "price", "c", "d"])  # the target is not the last column
        writer.writerows(np.column_stack([x[:, :2], y, x[:, 2:]]).tolist())
    return fit(tmp, "regressor", "--data", path, "--target", "price")


def table_values(output: str) -> dict[str, float]:
    """{name: value} of the rows of a two-column rich table."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 2:
            try:
                rows[cells[0]] = float(cells[1])
            except ValueError:
                pass
    return rows


def test_evaluate_a_regression_csv_run_prints_every_compiled_metric(regression_run):
    run_dir, metrics = regression_run
    values = table_values(invoke("evaluate", run_dir))
    assert set(values) == {"loss", "mae", "r2"}
    for name in ("loss", "mae", "r2"):
        assert values[name] == pytest.approx(metrics["test"][name], abs=2e-4)


def test_predict_a_regression_run_shows_the_predicted_value(regression_run):
    run_dir, _ = regression_run
    output = invoke("predict", run_dir, "--index", 0, "--index", 3)
    assert "Predicted values" in output and "probability" not in output
    rows = [line for line in output.splitlines() if "test sample" in line]
    assert len(rows) == 2 and "(true: " in rows[0]
    float(rows[0].split("│")[-2])  # a number, not a bar


def test_evaluate_and_predict_a_binary_run(tmp_path):
    rng = np.random.default_rng(0)

    def blobs(n):
        y = rng.integers(0, 2, n)
        return (rng.normal(size=(n, 6)) + 3.0 * y[:, None]).astype(np.float32), y

    (xt, yt), (xs, ys) = blobs(300), blobs(100)
    path = tmp_path / "blobs.npz"
    np.savez(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys, class_names=np.array(["no", "yes"]))
    run_dir, metrics = fit(tmp_path, "binary_mlp", "--data", path)
    values = table_values(invoke("evaluate", run_dir))
    assert {"loss", "accuracy", "precision", "recall", "auc"} <= set(values)
    assert values["auc"] == pytest.approx(metrics["test"]["auc"], abs=2e-4)
    output = invoke("predict", run_dir, "--index", 1)
    probabilities = {cells[0]: float(cells[1].rstrip("%")) for line in output.splitlines()
                     if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) >= 2
                     and cells[0] in ("no", "yes")}
    assert set(probabilities) == {"no", "yes"}
    assert sum(probabilities.values()) == pytest.approx(100.0, abs=0.02)
