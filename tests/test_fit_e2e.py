"""One real ``trainer fit`` on a subset of MNIST, read back as a user (and TensorBoard) would."""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import pytest

from tests.conftest import read_events, run_cli

EPOCHS = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_small):
    logdir = tmp_path_factory.mktemp("logs")
    proc = run_cli("fit", "cnn_small", "--data", mnist_small, "--epochs", EPOCHS, "--validation", "0.2",
                   "--batch-size", 64, "--logdir", logdir, "--name", "e2e", "--seed", 1,
                   "--misclassified", 16, "--log-every", 10)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = glob.glob(os.path.join(logdir, "cnn_small", "*-e2e"))
    return proc, run_dir


def test_run_directory_holds_everything(run):
    _, run_dir = run
    for name in ("config.json", "metrics.json", "best.keras", "model.keras"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["arch"] == "cnn_small" and config["epochs"] == EPOCHS and config["batch_size"] == 64
    assert config["optimizer"] == "adam" and config["validation"] == 0.2
    assert config["versions"]["keras"].startswith("3.")
    assert config["class_names"] == [str(i) for i in range(10)]
    assert config["devices"]["precision"]["policy"] == "float32"
    assert config["devices"]["xla"]["jit_compile"] == "auto (off)"  # Keras's auto: off without a GPU
    assert config["devices"]["onednn"] is True  # the CLI turns oneDNN on before importing TensorFlow
    assert config["devices"]["optimizer"] == "Adam, fused kernel ResourceApplyAdam"


def test_saved_models_load_in_plain_keras(run, tmp_path):
    """model.keras and best.keras load, compiled with their optimizer state, in a Python that
    imports only Keras (trainer's own metrics are not in the files' compile config)."""
    import subprocess
    import sys

    _, run_dir = run
    code = ("import sys, keras\n"
            "for path in sys.argv[1:]:\n"
            "    m = keras.models.load_model(path)\n"
            "    assert m.compiled and type(m.optimizer).__name__ == 'Adam', m.optimizer\n"
            "    assert int(m.optimizer.iterations.numpy()) > 0\n"
            "    print('ok', path)\n")
    paths = [os.path.join(run_dir, name) for name in ("model.keras", "best.keras")]
    proc = subprocess.run([sys.executable, "-c", code, *paths], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("ok ") == 2


def test_trained_accuracy_and_metrics_json(run):
    _, run_dir = run
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "finished"
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["test"]["accuracy"] > 0.8  # 2,400 samples, 2 epochs: chance is 0.1
    assert metrics["history"][-1]["val_accuracy"] > 0.8
    assert metrics["samples_per_second"] > 0 and metrics["wall_seconds"] > metrics["train_seconds"] > 0
    assert 0 < metrics["peak_rss_mib"] < 1536
    details = metrics["test_details"]
    assert set(details) == {"classes", "macro", "confusion_matrix", "confused_pairs", "misclassified"}
    assert sum(map(sum, details["confusion_matrix"])) == 1000
    assert abs(details["classes"]["7"]["recall"] - details["confusion_matrix"][7][7]
               / sum(details["confusion_matrix"][7])) < 1e-6


def test_plain_output_has_no_escape_codes_and_one_line_per_epoch(run):
    proc, run_dir = run
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    epoch_lines = [line for line in proc.stdout.splitlines() if re.match(r"Epoch \d+/2 ", line)]
    assert len(epoch_lines) == EPOCHS
    assert "val_accuracy" in epoch_lines[0]
    assert run_dir in proc.stdout.replace("\n", "")
    assert "tensorboard --logdir" in proc.stdout
    assert "Traceback" not in proc.stderr


def _tags(acc) -> set:
    return set(acc.Tags()["tensors"])


def test_event_files_hold_exactly_the_expected_tags(run):
    _, run_dir = run
    train, val, test, root = (read_events(os.path.join(run_dir, d)) for d in ("train", "validation", "test", ""))
    metrics = {"epoch_loss", "epoch_accuracy", "epoch_macro_f1", "epoch_errors", "epoch_pr_auc", "epoch_ece"}
    layers = ("conv2d", "dense")
    assert _tags(train) == metrics | {"__run_graph__",
        "epoch_learning_rate", "epoch_seconds", "epoch_samples_per_second", "batch_loss", "batch_learning_rate",
        "memory/host_rss_mib", "memory/host_peak_mib", "nonfinite_weights", "trainable_parameters",
        *(f"{layer}/{w}" for layer in layers for w in ("kernel", "bias")),
        *(f"weight_norm/{layer}" for layer in layers),
        *(f"gradient_norm/{layer}" for layer in (*layers, "global")),
    }
    per_class = {f"{m}/{c}" for m in ("precision", "recall", "f1") for c in range(10)}
    per_class |= {f"macro/{m}" for m in ("precision", "recall", "f1")}
    panels = {"per_class_metrics", "confusion_matrix", "confused_pairs", "misclassified"}
    panels |= {"reliability_diagram", *(f"pr_curves/{c}" for c in range(10))}
    panels |= {"misclassified_gradcam"}  # Grad-CAM (issue 14)
    assert _tags(val) == metrics | per_class | panels
    assert _tags(test) == metrics | per_class | panels
    assert _tags(root) == {"config", "devices", "custom_scalars__config__"}
    assert train.Graph() is not None


def test_steps_are_epochs_and_global_batches(run):
    _, run_dir = run
    train = read_events(os.path.join(run_dir, "train"))
    assert [e.step for e in train.Tensors("epoch_loss")] == list(range(EPOCHS))
    assert [e.step for e in read_events(os.path.join(run_dir, "validation")).Tensors("epoch_loss")] == [0, 1]
    # 2,400 samples / 64 = 38 batches per epoch; --log-every 10 lowers the automatic 16 batches
    # per execution to 10, so executions end at batches 9, 19, 29 and 37 of each epoch and the
    # loss is written every 10 batches, at the global batch index.
    batch_steps = [e.step for e in train.Tensors("batch_loss")]
    assert batch_steps == [9, 19, 29, 38 + 9, 38 + 19, 38 + 29]
    assert json.load(open(os.path.join(run_dir, "metrics.json")))["steps_per_execution"] == 10


def test_misclassified_grid_is_a_readable_image(run):
    import tensorflow as tf

    _, run_dir = run
    event = read_events(os.path.join(run_dir, "validation")).Tensors("misclassified")[-1]
    encoded = tf.make_ndarray(event.tensor_proto)
    width, height = int(encoded[0]), int(encoded[1])
    image = tf.io.decode_png(encoded[2]).numpy()
    assert image.shape[:2] == (height, width)
    assert width >= 4 * 84 and height >= 4 * 84  # 16 tiles, each upscaled to at least 84 px


def test_pr_curves_and_calibration_from_the_validation_and_test_passes(run, mnist_small):
    """One curve per class for each validation epoch and for the test set, counted over exactly
    the 600 validation / 1,000 test samples; the reliability diagram and epoch_ece beside them;
    and TensorBoard's own PR Curves plugin serves the curves."""
    import tensorflow as tf

    from tests.test_pr_curves import serve_pr_curves

    _, run_dir = run
    val, test = (read_events(os.path.join(run_dir, d)) for d in ("validation", "test"))
    for acc, samples, steps in ((val, 600, [0, 1]), (test, 1000, [1])):
        events = {c: acc.Tensors(f"pr_curves/{c}") for c in range(10)}
        assert all([e.step for e in events[c]] == steps for c in range(10))
        last = [tf.make_ndarray(events[c][-1].tensor_proto) for c in range(10)]
        assert all(curve.shape == (6, 201) for curve in last)
        assert all(curve[0, 0] + curve[1, 0] == samples for curve in last)  # tp + fp at threshold 0
        assert sum(curve[0, 0] for curve in last) == samples  # each sample is one class's positive
        assert [e.step for e in acc.Tensors("reliability_diagram")] == steps
        assert [e.step for e in acc.Tensors("epoch_ece")] == steps
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    ece = float(tf.make_ndarray(val.Tensors("epoch_ece")[-1].tensor_proto))
    assert ece == pytest.approx(metrics["history"][-1]["val_ece"], abs=1e-6) and 0 <= ece < 0.2
    assert 0.8 < metrics["test"]["pr_auc"] <= 1.0 and 0 <= metrics["test"]["ece"] < 0.2

    tags, curves = serve_pr_curves(run_dir)
    expected = {f"pr_curves/{c}" for c in range(10)}
    assert set(tags["validation"]) == expected and set(tags["test"]) == expected
    (entry,) = curves("test", "pr_curves/7")
    with np.load(mnist_small) as f:
        sevens = int(np.sum(f["y_test"][:1000] == 7))
    assert entry["step"] == 1 and entry["recall"][0] == 1.0
    assert entry["precision"][0] == pytest.approx(sevens / 1000) and entry["true_positives"][0] == sevens


def test_evaluate_and_predict_reload_the_model(run, mnist_small):
    _, run_dir = run
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    proc = run_cli("evaluate", run_dir, "--data", mnist_small)
    assert proc.returncode == 0, proc.stderr
    assert f"{metrics['test']['accuracy']:.4f}" in proc.stdout
    proc = run_cli("predict", run_dir, "--index", 0, "--data", mnist_small)
    assert proc.returncode == 0, proc.stderr
    assert "true: 7" in proc.stdout  # the first MNIST test digit is a 7
    first_row = next(line for line in proc.stdout.splitlines() if "%" in line)
    assert first_row.split()[1] == "7"  # top class first, and the model gets it right


def test_predict_reads_image_files(run, mnist_small, tmp_path):
    from PIL import Image

    _, run_dir = run
    with np.load(mnist_small) as f:
        digit = f["x_test"][0]  # a 7, white on black
    Image.fromarray(255 - digit).resize((56, 56)).save(tmp_path / "seven.png")  # black on white, larger
    proc = run_cli("predict", run_dir, tmp_path / "seven.png")
    assert proc.returncode == 0, proc.stderr
    first_row = next(line for line in proc.stdout.splitlines() if "%" in line)
    assert first_row.split()[1] == "7"
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    proc = run_cli("predict", run_dir, bad)
    assert proc.returncode == 2 and "Cannot read image" in proc.stderr and "Traceback" not in proc.stderr


def test_a_seed_makes_a_cpu_run_repeatable(tmp_path, mnist_small):
    args = ("fit", "fcn", "--data", mnist_small, "--epochs", 2, "--seed", 11, "--progress", "none",
            "--logdir", tmp_path, "--train-limit", 1500, "--set", "units=32")
    histories = []
    for _ in range(2):
        assert run_cli(*args).returncode == 0
    for path in sorted(glob.glob(os.path.join(tmp_path, "fcn", "*", "metrics.json"))):
        metrics = json.load(open(path))
        histories.append([(h["loss"], h["val_loss"]) for h in metrics["history"]] + [metrics["test"]["loss"]])
    assert len(histories) == 2 and histories[0] == histories[1]


def test_gradcam_grid_matches_the_misclassified_grid(run):
    import tensorflow as tf

    _, run_dir = run
    for split in ("validation", "test"):
        events = read_events(os.path.join(run_dir, split))
        plain, cam = (events.Tensors(tag)[-1] for tag in ("misclassified", "misclassified_gradcam"))
        assert plain.step == cam.step
        plain, cam = (tf.io.decode_png(tf.make_ndarray(e.tensor_proto)[2]).numpy() for e in (plain, cam))
        assert cam.shape == plain.shape  # the same tiles and captions, as readable
        assert (cam != plain).any(axis=-1).mean() > 0.2  # heat drawn over the tiles


def test_projector_is_served_by_tensorboard(run, mnist_small):
    from tests.test_projector import projector_client, served, served_embedding

    _, run_dir = run
    logdir = os.path.dirname(os.path.dirname(run_dir))  # as `tensorboard --logdir logs`
    client = projector_client(logdir)
    name = f"cnn_small/{os.path.basename(run_dir)}/validation"
    assert json.loads(served(client, "runs")) == [name]
    info, tensor, metadata, sprite = served_embedding(client, name)
    # 600 validation samples (fewer than --embeddings' 1,000), cnn_small's flattened 13x13x16 features
    assert tensor.shape == (600, 2704) and np.isfinite(tensor).all() and tensor.std() > 0
    rows = [line.split("\t") for line in metadata.splitlines()]
    assert rows[0] == ["index", "true", "predicted", "correct"] and len(rows) == 601
    with np.load(mnist_small) as f:
        labels = f["y_train"][2400:3000]
    assert [r[1] for r in rows[1:]] == [str(v) for v in labels]
    accuracy = np.mean([r[3] == "correct" for r in rows[1:]])
    history = json.load(open(os.path.join(run_dir, "metrics.json")))["history"]
    # the final model's predictions (another batch size: a borderline sample may flip)
    assert accuracy == pytest.approx(history[-1]["val_accuracy"], abs=2 / 600)
    assert info["sprite"]["singleImageDim"] == [28, 28] and sprite[:4] == b"\x89PNG"
