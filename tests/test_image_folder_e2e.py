"""A folder of images as the data of real ``trainer fit`` runs: it learns, every panel is there
with the class names of the folders, broken files are skipped and listed, bad folders and
options are one-line errors, and a resumed run trains on exactly the same batches."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from callbacks.backup import load_state
from tests.conftest import REPO, read_events, run_cli
from tests.image_folders import SHAPES, make_classes, write_class, write_junk
from tests.slow_arch import write_slow_arch

FAST = ("--histograms-every", 0, "--gradients-every", 0, "--progress", "plain")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> str:
    """Three classes of drawn shapes, 66 images each (6 of them another shape), mixed sizes,
    modes and formats, plus non-image files and three broken images in the first class."""
    root = str(tmp_path_factory.mktemp("shapes"))
    make_classes(root, counts={s: 60 for s in SHAPES})
    for k, shape in enumerate(SHAPES):  # 10 % wrong labels: no split is ever classified perfectly
        write_class(os.path.join(root, shape), SHAPES[(k + 1) % 3], 6, seed=50 + k, nested=False)
    write_junk(os.path.join(root, SHAPES[0]))
    return root


@pytest.fixture(scope="module")
def folder_run(shapes, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("logs")
    proc = run_cli("fit", "cnn_small", "--data", shapes, "--logdir", logdir, "--image-size", 24,
                   "--epochs", 4, "--batch-size", 16, "--validation", 0.2, "--seed", 1,
                   "--augment", "flip", "--misclassified", 9, "--misclassified-class", "square",
                   "--progress", "plain")
    (run_dir,) = glob.glob(os.path.join(logdir, "cnn_small", "*"))
    return proc, run_dir


def _tags(path):
    return set(read_events(path).Tags()["tensors"])


def test_a_folder_run_learns_and_reports_what_it_skipped(folder_run):
    proc, run_dir = folder_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed and was skipped" not in proc.stdout + proc.stderr
    assert "Image folder" in proc.stdout and "3 classes" in proc.stdout
    assert "test: 20 % of each class held out (seeded), 39 of 198 images" in proc.stdout
    assert "Skipped 3 unreadable image file(s)" in proc.stdout
    skipped = open(os.path.join(run_dir, "skipped_images.txt")).read().splitlines()
    assert sorted(os.path.basename(line.split("\t")[0]) for line in skipped) == \
        ["empty.png", "fake.gif", "truncated.jpg"]
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "finished"
    assert metrics["test"]["accuracy"] > 0.6  # three classes: chance is 0.33
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["class_names"] == list(SHAPES)
    assert (config["image_size"], config["color_mode"], config["augment"]) == ([24, 24], "rgb", "flip")


def test_every_panel_with_the_folder_class_names(folder_run):
    _, run_dir = folder_run
    per_class = {f"{m}/{c}" for m in ("precision", "recall", "f1") for c in SHAPES}
    panels = {"per_class_metrics", "confusion_matrix", "confused_pairs", "misclassified", "misclassified_files"}
    panels |= {"reliability_diagram", "epoch_ece", *(f"pr_curves/{c}" for c in SHAPES)}
    panels |= {"misclassified_gradcam"}
    for split in ("validation", "test"):
        tags = _tags(os.path.join(run_dir, split))
        assert per_class | panels <= tags, sorted(tags)
    assert "inputs" in _tags(os.path.join(run_dir, "train"))
    tiles = json.load(open(os.path.join(run_dir, "metrics.json")))["test_details"]["misclassified"]
    assert tiles and all(os.path.isfile(t["path"]) and t["true"] in SHAPES for t in tiles)
    # --misclassified-class square: by the folder's class name, only mistakes involving it
    assert all("square" in (t["true"], t["pred"]) for t in tiles), tiles
    assert json.load(open(os.path.join(run_dir, "config.json")))["misclassified_class"] == 1
    text = read_events(os.path.join(run_dir, "test")).Tensors("misclassified_files")[0]
    assert os.path.basename(tiles[0]["path"]) in text.tensor_proto.string_val[0].decode()


def test_projector_shows_the_folder_images_and_files(folder_run):
    import io

    import numpy as np
    from PIL import Image

    from tests.test_projector import projector_client, served_embedding

    _, run_dir = folder_run
    info, tensor, metadata, sprite = served_embedding(projector_client(run_dir), "validation")
    rows = [line.split("\t") for line in metadata.splitlines()]
    assert rows[0] == ["index", "true", "predicted", "correct", "file"]
    assert len(rows) - 1 == len(tensor) > 20 and all(r[1] in SHAPES and r[2] in SHAPES for r in rows[1:])
    assert all(r[4].split("_")[0] in SHAPES for r in rows[1:])  # the files, named <drawn shape>_<n>.<ext>
    assert info["sprite"]["singleImageDim"] == [24, 24]  # --image-size 24
    side = int(np.ceil(np.sqrt(len(tensor))))
    assert Image.open(io.BytesIO(sprite)).size == (side * 24, side * 24)


@pytest.mark.parametrize("layout, expected", [
    ("empty", "no class subfolders"),
    ("one_class", "only one class"),
    ("empty_class", "no images"),
])
def test_bad_folders_are_one_line_errors(tmp_path, layout, expected):
    root = tmp_path / "data"
    root.mkdir()
    if layout == "one_class":
        make_classes(str(root), counts={"circle": 4})
    if layout == "empty_class":
        make_classes(str(root), counts={"circle": 4, "square": 4})
        (root / "triangle").mkdir()
        (root / "triangle" / "notes.txt").write_text("no images here")
    proc = run_cli("fit", "cnn_small", "--data", root, "--logdir", tmp_path / "logs", "--image-size", 16)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0].lower() and "Traceback" not in proc.stderr
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("config.json"))


def test_unknown_data_kind_and_unknown_augmentation(tmp_path, shapes):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    proc = run_cli("fit", "cnn_small", "--data", notes, "--logdir", tmp_path / "logs")
    assert proc.returncode == 2
    assert "a file of an unknown kind. Expected a folder of images" in proc.stderr
    proc = run_cli("fit", "cnn_small", "--data", shapes, "--augment", "spin", "--logdir", tmp_path / "logs")
    assert proc.returncode == 2 and "flip" in proc.stderr and "rotate" in proc.stderr and "spin" in proc.stderr
    proc = run_cli("fit", "cnn_small", "--data", shapes, "--misclassified-class", "hexagon", "--image-size", 8,
                   "--logdir", tmp_path / "logs")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("Invalid value for argument `misclassified_class`. Received: misclassified_class='hexagon'. "
            "Expected a class index 0..2 or a class name: circle, square, triangle.") in proc.stderr
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("config.json"))


def test_killed_folder_run_resumes_on_the_same_batches(tmp_path, shapes):
    """kill -9 in the middle of epoch 2 (once a state saved there exists), then --resume: the
    run ends with the very weights of an uninterrupted run (same validation and test loss), so
    it trained on the same batches in the same order, augmentation included (CPU, one seed)."""
    write_slow_arch(tmp_path, 0.2, epochs=2, batch_size=16, optimizer="sgd", learning_rate=0.05, validation=0.2)
    common = ("--data", shapes, "--image-size", 12, "--seed", 5, "--augment", "flip,zoom=0.1",
              "--steps-per-execution", 1, "--save-every", 2, "--cache", "none", "--misclassified", 0, *FAST)
    whole = run_cli("fit", tmp_path / "slow.py", "--logdir", tmp_path / "a", *common)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "out.txt"
    with open(out, "w") as sink:
        env = {k: v for k, v in os.environ.items() if k != "TRAINER_DATA"}
        proc = subprocess.Popen([sys.executable, "-m", "trainer.cli", "fit", str(tmp_path / "slow.py"),
                                 "--logdir", str(tmp_path / "b"), *map(str, common)],
                                cwd=REPO, env={**env, "NO_COLOR": "1"}, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not _saved_at(tmp_path / "b", epoch=1):  # a state saved inside the second epoch
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        proc.kill()
        assert proc.wait(timeout=60) == -signal.SIGKILL
    (run_b,) = glob.glob(str(tmp_path / "b" / "slow" / "*"))
    saved = load_state(os.path.join(run_b, "state"))
    assert saved["epoch"] == 1 and 0 < saved["batch"] < 8  # 127 training images: 8 batches of 16
    resumed = run_cli("fit", "--resume", run_b)
    assert resumed.returncode == 0, resumed.stderr
    (run_a,) = glob.glob(str(tmp_path / "a" / "slow" / "*"))
    a = json.load(open(os.path.join(run_a, "metrics.json")))
    b = json.load(open(os.path.join(run_b, "metrics.json")))
    assert (b["resumed"][0]["epoch"], b["resumed"][0]["batch"]) == (2, saved["batch"])
    assert [h["val_loss"] for h in b["history"]] == pytest.approx([h["val_loss"] for h in a["history"]], rel=1e-5)
    assert b["test"]["loss"] == pytest.approx(a["test"]["loss"], rel=1e-5)


def _saved_at(logdir, epoch: int):
    """The resumable state of the one run under ``logdir`` if it was saved inside ``epoch``."""
    dirs = glob.glob(os.path.join(str(logdir), "slow", "*", "state"))
    state = load_state(dirs[0]) if dirs else None
    return state if state and state["epoch"] == epoch and state["batch"] > 0 else None


def test_predict_and_evaluate_decode_images_as_training_did(folder_run, tmp_path):
    """``predict`` on a new JPEG of another size and mode gives the probabilities of the saved
    model on the image decoded and resized as in training; ``evaluate`` reads the held-out set."""
    import keras
    import numpy as np

    from tests.image_folders import draw, save
    from trainer.image_folder import ImageFiles

    _, run_dir = folder_run
    photo = save(draw("square", (57, 41), seed=99, mode="L"), str(tmp_path / "new.jpg"), "JPEG")
    proc = run_cli("predict", run_dir, photo, "--index", 0)
    assert proc.returncode == 0, proc.stderr
    assert all(name in proc.stdout for name in SHAPES) and "test sample 0 (true:" in proc.stdout
    image = ImageFiles([photo], [0], (24, 24), 3).load([0])
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    probs = model.predict(image.astype("float32") / 255.0, verbose=0)[0]
    best = SHAPES[int(np.argmax(probs))]
    table = proc.stdout[proc.stdout.rindex("probability"):]  # the last table: the new image's
    row = next(line for line in table.splitlines() if line.strip("│ ").startswith(best))
    shown = float(row.split("│")[2].strip().rstrip("%")) / 100
    assert shown == pytest.approx(float(probs.max()), abs=0.005)
    assert all(shown >= float(p) - 0.005 for p in probs)  # the predicted class is the top row
    proc = run_cli("evaluate", run_dir)
    assert proc.returncode == 0, proc.stderr
    assert "39 samples" in proc.stdout and "accuracy" in proc.stdout


def test_sweep_show_compare_export_on_folder_runs(folder_run, shapes, tmp_path):
    """The report commands read a folder run (its class names), and a sweep of two tiny trials
    trains on the folder: each trial is a finished folder run that ``compare`` lists."""
    from click.testing import CliRunner

    from trainer.cli.reports import compare, export, show
    from trainer.cli.sweep import sweep

    def invoke(command, *args):
        result = CliRunner(env={"FORCE_COLOR": None, "TTY_COMPATIBLE": None}).invoke(command, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    _, run_dir = folder_run
    out = invoke(show, run_dir)
    assert all(name in out for name in SHAPES) and "test accuracy" in out
    assert len(invoke(export, run_dir, "--png", tmp_path / "png").splitlines()) == 4
    assert sorted(os.listdir(tmp_path / "png")) and all(f.endswith(".png") for f in os.listdir(tmp_path / "png"))
    logdir = tmp_path / "logs"
    invoke(sweep, "cnn_small", "--data", shapes, "--image-size", 8, "--epochs", 1, "--set", "learning_rate=1e-3,3e-3",
           "--logdir", logdir, *FAST, "--misclassified", 0, "--no-graph")
    (sweep_dir,) = glob.glob(str(logdir / "cnn_small" / "sweep-*"))
    trials = json.load(open(os.path.join(sweep_dir, "sweep.json")))["trials"]
    assert [t["status"] for t in trials] == ["finished", "finished"]
    for trial in trials:
        config = json.load(open(os.path.join(trial["run_dir"], "config.json")))
        assert config["class_names"] == list(SHAPES) and config["image_size"] == [8, 8]
    out = invoke(compare, sweep_dir)
    assert all(os.path.basename(t["run_dir"]) in out for t in trials)
