"""Smoke tests of the benchmark and reproduction scripts: each runs as a real script in its
``--quick`` mode (tiny data, seconds) and its tables are read back, so the scripts never rot.
The numbers themselves are meaningless at this size; only their bookkeeping is checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, check_no_skipped_feature


def run_script(name, *args, timeout=300, env=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    env.pop("TRAINER_DATA", None)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_no_skipped_feature(proc.stdout, proc.stderr)
    return proc.stdout


def tables(text) -> list[list[dict]]:
    """Every markdown table in ``text`` as a list of {header: cell} rows."""
    found, current, headers = [], None, None
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if headers is None:
                headers, current = cells, []
            elif not set(line) <= set("|-"):
                current.append(dict(zip(headers, cells)))
        elif headers is not None:
            found.append(current)
            headers = None
    return found


def number(cell: str) -> float:
    return float(cell.replace(",", "").split()[-1])


def check_header(out, script):
    assert re.search(rf"- command: `.*scripts/{script}", out)
    assert re.search(r"- machine: .+, \d+ cores", out)
    assert re.search(r"TensorFlow 2\.\d+.*, Keras 3\.\d+", out)


def test_bench_fit_quick(mnist_small):
    out = run_script("bench_fit.py", "--quick", "--data", mnist_small, "--archs", "fcn,cnn_small",
                     "--repeats", 1)
    check_header(out, "bench_fit.py")
    # trainer's TensorFlow settings reach its own side only
    assert re.search(r"plain: oneDNN (on|off) \(TF_ENABLE_ONEDNN_OPTS unset\); "
                     r"trainer: oneDNN on \(TF_ENABLE_ONEDNN_OPTS=1\)", out)
    speed, epochs = tables(out)
    assert [r["arch"] for r in speed] == ["fcn", "cnn_small"]
    for row in speed:  # one repeat: the ratio is exactly trainer / plain
        plain, trainer = number(row["plain samples/s"]), number(row["trainer samples/s"])
        assert plain > 0 and trainer > 0
        assert number(row["ratio"]) == pytest.approx(trainer / plain, rel=0.01, abs=0.006)
        assert row["per repeat"] == row["ratio"]
    assert [(r["arch"], r["train samples"], r["trainer steps/execution"]) for r in epochs] == [
        ("fcn", "410", "4"),  # 512 - 20 % validation; ceil(410 / 128) = 4 steps
        ("cnn_small", "512", "16"),  # validated on the test set; 16 of 16 steps of 32
    ]


def test_bench_fit_time_to_accuracy_quick(mnist_small):
    out = run_script("bench_fit.py", "--time-to-accuracy", "--quick", "--data", mnist_small)
    (table,) = tables(out)
    assert [r["model"].split(" (")[0] for r in table] == ["Keras mnist_convnet", "trainer fit cnn_deep"]
    assert [r["epochs"] for r in table] == ["1", "1"]
    assert all(0.0 <= number(r["test accuracy"]) <= 1.0 for r in table)
    ratio = float(re.search(r"ratio cnn_deep / mnist_convnet: ([\d.]+)", out).group(1))
    fit = [number(r["training wall s"]) for r in table]
    assert ratio == pytest.approx(fit[1] / fit[0], rel=0.05, abs=0.05)


def test_bench_monitoring_quick(mnist_small):
    out = run_script("bench_monitoring.py", "--quick", "--data", mnist_small, "--repeats", 1,
                     "--train-limit", 256, "--test-limit", 128, "--panels")
    check_header(out, "bench_monitoring.py")
    table, panels = tables(out)
    assert len(table) == 8 and number(table[0]["epoch / plain"]) == 1.0
    assert [r["panel"] for r in panels] == ["PR curves", "calibration (reliability diagram + ECE)", "Grad-CAM grid",
                                            "embedding projector (1,000 samples, written every epoch)"]
    assert all(re.fullmatch(r"-?\d+", r["ms per epoch"]) for r in panels)
    assert re.search(r"monitors on / monitors off: [\d.]+ \(target <= 1.05: (met|NOT met)\)", out)
    assert table[2]["target"] == "<= 1.03"
    on_off = float(re.search(r"monitors on / monitors off: ([\d.]+)", out).group(1))
    seconds = [number(r["epoch s"]) for r in table]
    assert on_off == pytest.approx(seconds[2] / seconds[3], rel=0.1, abs=0.02)


def test_reproduce_quick(mnist_small, tmp_path):
    out_file = tmp_path / "reproduce.md"
    out = run_script("reproduce.py", "--quick", "--data", mnist_small, "--archs", "fcn,dense512",
                     "--out", out_file)
    (table,) = tables(out_file.read_text())
    assert [(r["architecture"], r["epochs run"], r["validation"]) for r in table] == [
        ("fcn", "1", "0.2"), ("dense512", "1", "none")]
    for row in table:
        assert 0.0 <= number(row["test accuracy"]) <= 1.0
        assert number(row["wall time s"]) >= number(row["of which model.fit s"]) > 0
    assert tables(out) == [table]


def test_bench_precision_quick(mnist_small):
    out = run_script("bench_precision.py", "--quick", "--data", mnist_small, "--repeats", 1,
                     "--epochs", 1, "--train-limit", 256, "--test-limit", 128)
    assert re.search(r"^device: (CPU|GPU)", out, re.M)
    (table,) = tables(out)
    assert [r["precision"] for r in table][:2] == ["float32", "mixed_bfloat16"]
    assert table[0]["vs float32"] == "1.00" and number(table[1]["samples/s"]) > 0


def test_bench_data_quick(mnist_small, tmp_path):
    out = run_script("bench_data.py", "--quick", "--data", mnist_small, "--images", 160, "--caches", "none", "--augment", "flip",
                     env={"TRAINER_BENCH_DIR": str(tmp_path)})
    check_header(out, "bench_data.py")
    assert sorted(os.listdir(tmp_path)) == ["mnist-jpeg-160-40-v2", "mnist-jpeg-640-160-v2"]  # generated once
    jpegs = [f for _, _, files in os.walk(tmp_path / "mnist-jpeg-160-40-v2" / "train") for f in files]
    assert len(jpegs) == 160 and all(f.endswith(".jpg") for f in jpegs)
    speed, memory = tables(out)
    (row,) = speed
    assert (row["arch"], row["train images"], row["target"]) == ("cnn_small", "160", ">= 1.50")
    plain, trainer = number(row["plain images/s"]), number(row["trainer images/s"])
    assert plain > 0 and trainer > 0  # one repeat: the ratio is exactly trainer / plain
    assert number(row["ratio"]) == pytest.approx(trainer / plain, rel=0.01, abs=0.006)
    assert "augmentation: flip." in out
    (rss,) = memory
    assert rss["cache"] == "--cache none" and rss["target"] == "<= 1.15"
    one, many = number(rss["200 images MiB"]), number(rss["800 images MiB"])
    assert 100 < one and 100 < many  # a TensorFlow process: hundreds of MiB
    assert number(rss["ratio"]) == pytest.approx(many / one, abs=0.002)


def test_bench_epoch_end_quick():
    out = run_script("bench_epoch_end.py", "--quick")
    check_header(out, "bench_epoch_end.py")
    rows = {row["part"]: number(row["seconds per epoch"]) for row in tables(out)[0]}
    for part in ("trainer: validation + callbacks (epoch end)", "keras: validation + callbacks (epoch end)",
                 "trainer: validation pass", "keras: validation pass", "trainer: Backup.on_epoch_end"):
        assert rows[part] > 0, part
    for name in ("GradCamGrid", "MisclassifiedGrid", "GradientNorms", "BestCheckpoint", "Scalars"):
        assert rows[f"trainer: {name}.on_epoch_end"] >= 0  # every epoch-end hook is listed
