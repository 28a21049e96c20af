"""``show``, ``compare``, ``runs`` and ``export`` on hand-made run directories and one real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from callbacks.drawing import COLOURS, PLOT_SIZE, nice_ticks, render_confusion
from callbacks.overfitting import overfitting_message
from callbacks.per_class import markdown_table, per_class_scores
from tests.conftest import REPO, error_line, run_cli
from trainer import readback as inspect
from trainer.cli.reports import compare, export, runs, show
from trainer.cli.views import duration, num, sparkline
from trainer.run import RunLock

NAMES = ["cat", "dog", "bird"]
COUNTS = [[50, 3, 2], [4, 40, 6], [1, 9, 35]]
HOUR = 3600


def invoke(command, *args):
    result = CliRunner(env={"FORCE_COLOR": None, "TTY_COMPATIBLE": None}).invoke(command, [str(a) for a in args])
    assert "\x1b" not in result.output
    return result




def history(epochs, val=True):
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + 0.1 * e, "learning_rate": 0.001,
               "seconds": 0.5, "samples_per_second": 1000.0}
        if val:
            row.update(val_loss=0.5 + 0.05 * (e - 2) ** 2, val_accuracy=0.6 + 0.01 * e + 0.001 * (e == 2))
        rows.append(row)
    return rows


def write_run(path, arch="mlp", hyper=None, status="finished", epochs=4, details=True, age=0.0,
              started=None, **config):
    os.makedirs(path)
    cfg = {"arch": arch, "hyperparameters": hyper or {}, "dataset": "mnist", "epochs": epochs,
           "batch_size": 128, "optimizer": "adam", "learning_rate": 0.001, "validation": 0.1,
           "class_names": NAMES, **config}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    metrics = {"status": status, "history": history(epochs)}
    if status == "finished":
        scores = per_class_scores(COUNTS)
        metrics.update(test={"loss": 0.41234, "accuracy": 0.87654}, best_epoch=2, best_val_loss=0.5,
                       epochs_run=epochs, train_seconds=75.25, wall_seconds=80.0, samples_per_second=12345.6,
                       peak_rss_mib=900.0)
        if details:
            metrics["test_details"] = {
                "classes": {n: {"precision": float(scores["precision"][i]), "recall": float(scores["recall"][i]),
                                "f1": float(scores["f1"][i]), "support": int(scores["support"][i])}
                            for i, n in enumerate(NAMES)},
                "macro": {m: float(np.mean(scores[m])) for m in ("precision", "recall", "f1")},
                "confusion_matrix": COUNTS,
                "confused_pairs": [{"true": "bird", "pred": "dog", "count": 9}, {"true": "dog", "pred": "bird", "count": 6}],
            }
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    set_age(path, age, started)
    return path


def set_age(path, age, started=None):
    now = time.time()
    for parent, _, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(parent, name), (now - age, now - age))
    if started is not None:
        os.utime(os.path.join(path, "config.json"), (started, started))


def write_text(directory, tag, text, step):
    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default():
        tf.summary.text(tag, text, step=step)
    writer.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """logs/mlp/<finished run with overfitting note>, a sweep of three trials, a run with no
    metrics yet, and a hidden directory (ignored)."""
    root = tmp_path_factory.mktemp("logs")
    now = time.time()
    paths = {}
    paths["done"] = write_run(str(root / "mlp" / "20250101-000000"), hyper={"dropout": 0.2, "units": 64},
                              started=now - 5 * HOUR)
    write_text(paths["done"], "overfitting", overfitting_message(1, 2), step=3)
    set_age(paths["done"], 0, now - 5 * HOUR)
    sweep = root / "mlp" / "sweep-20250102-000000"
    os.makedirs(sweep)
    (sweep / "sweep.json").write_text("{}")
    paths["trial0"] = write_run(str(sweep / "trial-0"), hyper={"dropout": 0.5, "units": 64}, learning_rate=0.01,
                                details=False, started=now - 4 * HOUR)
    scores = per_class_scores(COUNTS)
    write_text(os.path.join(paths["trial0"], "validation"), "per_class_metrics", markdown_table(NAMES, scores), step=3)
    write_text(os.path.join(paths["trial0"], "validation"), "confused_pairs", "- bird → dog: 9", step=3)
    set_age(paths["trial0"], 0, now - 4 * HOUR)
    paths["stale"] = write_run(str(sweep / "trial-1"), hyper={"dropout": 0.7, "units": 64}, status="running",
                               epochs=2, age=HOUR, started=now - 3 * HOUR)
    paths["live"] = write_run(str(sweep / "trial-2"), hyper={"dropout": 0.9, "units": 64}, status="running",
                              epochs=3, started=now - 2 * HOUR)
    paths["empty"] = str(root / "cnn" / "20250103-000000")
    os.makedirs(paths["empty"])
    with open(os.path.join(paths["empty"], "config.json"), "w") as f:
        json.dump({"arch": "cnn", "epochs": 5}, f)
    os.utime(os.path.join(paths["empty"], "config.json"), (now - HOUR, now - HOUR))
    os.makedirs(root / ".trash" / "old")
    (root / ".trash" / "old" / "config.json").write_text("{}")
    paths["root"], paths["sweep"] = str(root), str(sweep)
    return paths


def test_formatting_helpers():
    assert num(0.876543) == "0.8765" and num(None) == "-" and num(0.8, 3) == "0.800"
    assert [duration(s) for s in (2.24, 75.25, 3725, None)] == ["2.2 s", "1 m 15 s", "1 h 02 m", "-"]
    assert nice_ticks(0.35, 1.35) == [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4]
    assert nice_ticks(0.65, 0.895) == [0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
    assert nice_ticks(3.0, 3.0) == [2.6, 2.8, 3.0, 3.2, 3.4]  # a flat line: padded by 10%
    assert sparkline([0.0, 0.5, 1.0, float("nan")], 0.0, 1.0) == "▁▅█ "
    assert sparkline([1.0, 1.0], 1.0, 1.0, ascii_only=True) == "++"
    assert sparkline(list(range(100)), 0, 99, width=10) == "▁▂▃▃▄▅▆▆▇█"


def test_markdown_table_parses_back_to_the_numbers():
    parsed = inspect.parse_markdown_table(markdown_table(NAMES, per_class_scores(COUNTS)))
    assert list(parsed["classes"]) == NAMES
    assert parsed["classes"]["dog"] == {"precision": round(40 / 52, 3), "recall": 0.8, "f1": round(80 / 102, 3),
                                        "support": 50}
    assert parsed["macro"]["recall"] == round(np.mean([50 / 55, 40 / 50, 35 / 45]), 3)


def test_status_rule(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    now = os.path.getmtime(run / "metrics.json")
    assert inspect.run_status(str(run), "finished", now + HOUR) == "finished"
    assert inspect.run_status(str(run), "running", now + inspect.STALE_SECONDS - 1) == "running"
    assert inspect.run_status(str(run), "running", now + inspect.STALE_SECONDS + 1) == "interrupted"
    (run / "validation").mkdir()
    (run / "validation" / "events").write_text("")  # a newer event file keeps the run alive
    os.utime(run / "validation" / "events", (now + HOUR, now + HOUR))
    assert inspect.run_status(str(run), "running", now + HOUR + 10) == "running"
    with RunLock(str(run)):  # held by a live process: running however old
        assert inspect.run_status(str(run), "running", now + 10 * HOUR) == "running"
    # the lock file stays, released: the writer is gone, interrupted at once however fresh
    assert (run / ".lock").read_text() == str(os.getpid())
    assert inspect.run_status(str(run), "running", now) == "interrupted"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert inspect.pid_alive(os.getpid()) and not inspect.pid_alive(dead.pid)  # the non-POSIX fallback


def test_find_runs_expands_sweeps_and_skips_hidden(logs):
    assert inspect.find_runs(logs["sweep"]) == [os.path.join(logs["sweep"], f"trial-{i}") for i in range(3)]
    assert inspect.find_runs(logs["done"]) == [logs["done"]]
    assert sorted(inspect.find_runs(logs["root"])) == sorted(
        [logs["done"], logs["trial0"], logs["stale"], logs["live"], logs["empty"]])


def test_show_prints_config_metrics_curves_per_class_matrix_and_overfitting(logs):
    result = invoke(show, logs["done"])
    assert result.exit_code == 0, result.output
    out = result.output
    lines = out.splitlines()
    assert lines[0] == f"mlp  {logs['done']}  finished"
    for row in ("hyperparameters │ dropout=0.2, units=64", "dataset         │ mnist", "epochs          │ 4 of 4",
                "batch size      │ 128", "optimizer       │ adam", "learning rate   │ 0.001",
                "validation      │ 0.1 of the training set"):
        assert row in out, row
    for row in ("test loss             │ 0.4123", "test accuracy         │ 0.8765",
                "best epoch (val_loss) │ 2 (val_loss 0.5000)", "training time         │ 1 m 15 s",
                "samples/s             │ 12,346", "peak memory           │ 900 MiB"):
        assert row in out, row
    h = history(4)
    # one scale for loss and val_loss: loss 1.0 .. 0.25, val_loss 0.55, 0.5, 0.55, 0.7
    assert f"│ loss         │ █▃▂▁  │ {num(h[0]['loss'])} │ {num(h[-1]['loss'])} │ 0.2500 │          4 │" in out
    assert "│ val_loss     │ ▄▃▄▅  │ 0.5500 │ 0.7000 │ 0.5000 │          2 │" in out
    assert "│ val_accuracy │" in out and "│ 0.6400 │ 0.6400 │          4 │" in out
    assert "learning_rate" not in out  # constant: not a curve
    scores = per_class_scores(COUNTS)
    assert f"│ dog       │     {scores['precision'][1]:.3f} │  0.800 │ {scores['f1'][1]:.3f} │      50 │" in out
    assert "│ macro avg │" in out and "│     150 │" in out
    assert "Confusion matrix (test set): rows true, columns predicted" in out
    assert "│ bird        │   1 │   9 │   35 │" in out
    assert "Most confused (true → predicted): bird → dog: 9, dog → bird: 6" in out
    assert lines[-1] == overfitting_message(1, 2)


def test_show_falls_back_to_event_text_without_test_details(logs):
    result = invoke(show, logs["trial0"])
    assert result.exit_code == 0, result.output
    assert "Per-class metrics (validation, epoch 4)" in result.output
    assert f"│ dog       │     {40 / 52:.3f} │  0.800 │" in result.output
    assert "Most confused (true → predicted):\n- bird → dog: 9" in result.output
    assert "Confusion matrix" not in result.output and "Overfitting" not in result.output


def test_show_a_running_run_before_its_test(logs):
    result = invoke(show, logs["live"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"mlp  {logs['live']}  running"
    assert "best epoch (val_loss) │ 2 (val_loss 0.5000)" in result.output and "test accuracy" not in result.output
    assert max(map(len, result.output.splitlines())) < 200


def test_show_a_failed_run_says_why(tmp_path):
    path = write_run(str(tmp_path / "failed"), status="failed", epochs=2)
    with open(os.path.join(path, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump({**metrics, "error": "loss became NaN at epoch 3"}, f)
    lines = invoke(show, path).output.splitlines()
    assert lines[:2] == [f"mlp  {path}  failed", "error: loss became NaN at epoch 3"]


def test_show_errors_are_one_line(logs, tmp_path):
    result = invoke(show, logs["sweep"])
    assert result.exit_code == 2
    assert "is not a run directory: no config.json or metrics.json" in error_line(result)
    result = invoke(show, logs["empty"])
    assert result.exit_code == 1
    assert error_line(result) == (f"Error: Run {logs['empty']!r} has no metrics yet (interrupted): "
                                  "metrics.json is written when the first epoch ends.")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    result = invoke(show, tmp_path / "bad")
    assert result.exit_code == 1 and "Cannot read" in error_line(result)
    rows = [line for line in invoke(runs, tmp_path).output.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and "│ unreadable │ ?    │    0/? │        - │ " in rows[0]


def test_compare_expands_a_sweep_and_shows_differing_params(logs, tmp_path):
    result = invoke(compare, logs["sweep"], logs["done"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"4 runs in {os.path.dirname(logs['sweep'])}" in out
    header = next(line for line in out.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "arch", "status", "learning_rate", "dropout", "epochs", "best val acc", "test acc", "time", "run"]
    rows = {line.split("│")[-2].strip(): [c.strip() for c in line.strip("│ ").split("│")][:-1]
            for line in out.splitlines() if line.startswith("│")}
    assert rows["sweep-20250102-000000/trial-0"] == ["mlp", "finished", "0.01", "0.5", "4/4", "0.6400 (ep 4)",
                                                     "0.8765", "1 m 15 s"]
    assert rows["sweep-20250102-000000/trial-1"][1:4] == ["interrupted", "0.001", "0.7"]
    assert rows["sweep-20250102-000000/trial-1"][4:] == ["2/2", "0.6210 (ep 2)", "-", "-"]
    assert rows["sweep-20250102-000000/trial-2"][1] == "running"
    assert rows["20250101-000000"][2:4] == ["0.001", "0.2"]
    result = invoke(compare, tmp_path)
    assert result.exit_code == 2 and "No run directories in" in error_line(result)


def test_runs_lists_newest_first_with_status_and_headline(logs, tmp_path):
    result = invoke(runs, logs["root"])
    assert result.exit_code == 0, result.output
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in result.output.splitlines()
            if line.startswith("│")]
    assert [r[-1] for r in rows] == [logs["empty"], logs["live"], logs["stale"], logs["trial0"], logs["done"]]
    assert [r[1] for r in rows] == ["interrupted", "running", "interrupted", "finished", "finished"]
    assert [r[4] for r in rows] == ["-", "0.6300 (val)", "0.6210 (val)", "0.8765 (test)", "0.8765 (test)"]
    assert [r[3] for r in rows] == ["0/5", "3/3", "2/2", "4/4", "4/4"]
    assert "5 runs under" in result.output
    result = invoke(runs, tmp_path / "missing")
    assert result.exit_code == 2 and "Invalid value for argument `LOGDIR`" in error_line(result)
    result = invoke(runs, tmp_path)
    assert result.exit_code == 1
    assert error_line(result) == f"Error: No runs under {str(tmp_path)!r}. Start one with `trainer fit ARCH --logdir {tmp_path}`."


def test_long_paths_and_brackets_are_printed_whole_on_one_line(tmp_path):
    deep = tmp_path.joinpath(*["a-rather-long-directory-name-for-a-log-tree"] * 5, "run-[x]")
    write_run(str(deep), arch="cnn[1]")
    assert len(str(deep)) > 200
    out = invoke(runs, tmp_path).output
    assert f"│ cnn[1] │    4/4 │ 0.8765 (test) │ {deep} │" in out
    out = invoke(show, deep).output
    assert out.splitlines()[0] == f"cnn[1]  {deep}  finished"


def _has_colour(image, colour) -> bool:
    return bool(np.all(np.asarray(image.convert("RGB")) == colour, axis=-1).any())


def test_export_writes_pngs_and_refuses_to_overwrite(logs, tmp_path):
    out = tmp_path / "png"
    result = invoke(export, logs["done"], "--png", out)
    assert result.exit_code == 0, result.output
    names = ["loss.png", "accuracy.png", "per_class.png", "confusion_matrix.png"]
    assert result.output.splitlines() == [str(out / n) for n in names]
    for name in ("loss.png", "accuracy.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size == PLOT_SIZE
            assert _has_colour(image, COLOURS["train"]) and _has_colour(image, COLOURS["validation"])
    with Image.open(out / "per_class.png") as image:
        assert image.size == PLOT_SIZE and all(_has_colour(image, COLOURS[m]) for m in ("precision", "recall", "f1"))
    with Image.open(out / "confusion_matrix.png") as image:
        assert image.size == render_confusion(COUNTS, NAMES).shape[1::-1]
    before = os.path.getmtime(out / "loss.png")
    os.utime(out / "loss.png", (before - 100, before - 100))
    result = invoke(export, logs["done"], "--png", out)
    assert result.exit_code == 2
    assert error_line(result) == f"Error: {str(out / 'loss.png')!r} (and 3 more) already exists. Use --force to overwrite."
    assert os.path.getmtime(out / "loss.png") == before - 100
    result = invoke(export, logs["done"], "--png", out, "--force")
    assert result.exit_code == 0 and os.path.getmtime(out / "loss.png") > before - 100
    result = invoke(export, logs["trial0"], "--png", tmp_path / "fallback")  # per-class from the event text
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "fallback")) == ["accuracy.png", "loss.png", "per_class.png"]
    result = invoke(export, logs["empty"], "--png", out)
    assert result.exit_code == 1 and "has no metrics yet" in error_line(result)


# ---- one real run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, mnist_path):
    tmp = tmp_path_factory.mktemp("real")
    with np.load(mnist_path) as f:
        np.savez(tmp / "small.npz", x_train=f["x_train"][:1000], y_train=f["y_train"][:1000],
                 x_test=f["x_test"][:200], y_test=f["y_test"][:200])
    proc = run_cli("fit", "fcn", "--data", tmp / "small.npz", "--epochs", "2", "--progress", "plain",
                   "--logdir", tmp / "logs", "--set", "units=16", "--histograms-every", "0")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = inspect.find_runs(str(tmp / "logs"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return run_dir, json.load(f)


def test_real_run_reports_its_numbers(real_run, tmp_path):
    run_dir, metrics = real_run
    last = metrics["history"][-1]
    out = invoke(show, run_dir).output
    assert f"test accuracy         │ {num(metrics['test']['accuracy'])}" in out
    assert f"test loss             │ {num(metrics['test']['loss'])}" in out
    assert f"│ {num(metrics['history'][0]['val_loss'])} │ {num(last['val_loss'])} │" in out
    assert "hyperparameters │ units=16" in out and "epochs          │ 2 of 2" in out
    macro = metrics["test_details"]["macro"]
    assert f"│ macro avg │     {macro['precision']:.3f} │  {macro['recall']:.3f} │ {macro['f1']:.3f} │     200 │" in out
    out = invoke(compare, os.path.dirname(run_dir)).output
    assert f" {num(metrics['test']['accuracy'])} │ {duration(metrics['train_seconds'])} │ {os.path.basename(run_dir)} │" in out
    assert out.splitlines()[0] == f"1 run in {os.path.dirname(run_dir)}"
    out = invoke(runs, os.path.dirname(os.path.dirname(run_dir))).output
    assert f"│ finished │ fcn  │    2/2 │ {num(metrics['test']['accuracy'])} (test) │ {run_dir} │" in out
    result = invoke(export, run_dir, "--png", tmp_path)
    assert result.exit_code == 0 and len(result.output.splitlines()) == 4


def test_show_reads_event_files_without_importing_tensorflow(real_run):
    run_dir, _ = real_run
    code = ("import sys; from trainer import readback as inspect; from trainer.cli.reports import show\n"
            "show([sys.argv[1]], standalone_mode=False)\n"
            "assert inspect.text_summaries(sys.argv[1], {'config'})['config'][1].startswith('```')\n"
            "print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, run_dir], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False"
    assert "\x1b" not in proc.stdout
