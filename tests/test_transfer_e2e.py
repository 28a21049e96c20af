"""`trainer fit transfer` for real: one run with mobilenet_v3_small (weights=none, 32x32,
grayscale images given three channels) killed with kill -9 in the fine-tuning phase and
resumed; the phase switch read back from the event files; the saved model in plain Keras
against `trainer predict`; and the offline-weights error with the download made to fail."""

from __future__ import annotations

import glob
import json
import os
import signal

import pytest

from callbacks.backup import load_state
from tests.conftest import read_events, run_cli
from tests.image_folders import SHAPES, make_classes
from tests.test_fault_tolerance import Run

STEPS = 5  # 36 training images (48 after the test split, less 25 % validation) / batch 8


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transfer")
    folder = str(tmp / "photos")
    make_classes(folder, counts={s: 20 for s in SHAPES}, modes=("L",), formats=(("png", "PNG"),))
    logdir = tmp / "logs"
    run = Run(tmp, "fit", "transfer", "--data", folder, "--logdir", logdir, "--set", "weights=none",
              "--set", "freeze_epochs=1", "--image-size", 32, "--epochs", 3, "--batch-size", 8,
              "--validation", 0.25, "--steps-per-execution", 1, "--save-every", 1, "--seed", 1,
              "--progress", "plain", "--misclassified", 4)

    def in_phase_two():  # a state saved after at least one fine-tuning batch
        dirs = glob.glob(os.path.join(logdir, "transfer", "*", "state"))
        state = load_state(dirs[0]) if dirs else None
        return state if state and (state["epoch"], state["batch"]) >= (1, 1) else None

    state = run.wait_until(in_phase_two, "a saved state in the fine-tuning phase", timeout=300)
    run.proc.send_signal(signal.SIGKILL)
    run.finish()
    first = run.output()
    (run_dir,) = glob.glob(os.path.join(logdir, "transfer", "*"))
    resumed = run_cli("fit", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return folder, run_dir, state, first, resumed.stdout


def test_the_switch_happens_at_the_right_epoch(killed_and_resumed):
    _, run_dir, state, first, _ = killed_and_resumed
    assert state["epoch"] in (1, 2)
    line = next(line for line in first.splitlines() if "phase 'fine-tune'" in line)
    assert line.startswith("Epoch 2: phase 'fine-tune': the top 32 of MobileNetV3Small's 157 layers unfrozen")
    assert "learning rate x 0.1." in line
    train = read_events(os.path.join(run_dir, "train"))

    def scalars(tag):
        from tensorboard.util import tensor_util

        return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in train.Tensors(tag)}

    counts = scalars("trainable_parameters")
    assert sorted(counts) == [0, 1, 2]
    assert counts[0] == 3 * (576 + 1) and counts[1] == counts[2] > 100_000  # the head, then the top
    rates = scalars("epoch_learning_rate")
    assert rates == pytest.approx({0: 1e-3, 1: 1e-4, 2: 1e-4})
    for sub in ("train", "validation"):  # one continuous curve
        assert [e.step for e in read_events(os.path.join(run_dir, sub)).Tensors("epoch_loss")] == [0, 1, 2]
    # gradient norms follow the unfrozen layers: the backbone and its top layers from the switch
    assert [e.step for e in train.Tensors("gradient_norm/MobileNetV3Small")] == [1, 2]
    assert [e.step for e in train.Tensors("gradient_norm/classifier")] == [0, 1, 2]
    backbone_tags = [t for t in train.Tags()["tensors"] if t.startswith("weight_norm/")
                     and t != "weight_norm/classifier"]
    assert len(backbone_tags) == 8  # the default bounded selection
    root = read_events(run_dir)
    assert [e.step for e in root.Tensors("phase")] == [1]
    # the misclassified grid draws the decoded image files (the preprocessing is in the model)
    validation = read_events(os.path.join(run_dir, "validation"))
    assert [e.step for e in validation.Tensors("misclassified")] == [0, 1, 2]
    files = validation.Tensors("misclassified_files")[-1].tensor_proto.string_val[0].decode()
    assert ".png" in files and "photos" in files


def test_kill_9_in_phase_two_resumes_in_phase_two(killed_and_resumed):
    _, run_dir, state, _, resumed = killed_and_resumed
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "finished"
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    (entry,) = metrics["resumed"]
    assert (entry["epoch"], entry["batch"]) == (state["epoch"] + 1, state["batch"])
    # resumed in the fine-tuning phase: the optimizer kept counting from the killed process
    assert metrics["train_steps"] == 3 * STEPS
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["devices"]["variables"]["frozen_parameters"] > 900_000
    assert config["image_size"] == [32, 32] and config["color_mode"] == "grayscale"


def test_saved_model_loads_in_plain_keras_and_predicts_like_trainer(killed_and_resumed, tmp_path):
    import keras

    from tests.image_folders import draw, save
    from trainer.image_folder import ImageFiles

    _, run_dir, _, _, _ = killed_and_resumed
    photo = save(draw("circle", (45, 37), seed=5, mode="L"), str(tmp_path / "new.png"), "PNG")
    proc = run_cli("predict", run_dir, photo)
    assert proc.returncode == 0, proc.stderr
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))  # plain Keras
    image = ImageFiles([photo], [0], (32, 32), 1).load([0]).astype("float32") / 255.0
    probs = model.predict(image, verbose=0)[0]
    table = proc.stdout[proc.stdout.rindex("probability"):]
    for name, p in zip(SHAPES, probs):
        row = next(line for line in table.splitlines() if line.strip("│ ").startswith(name))
        assert float(row.split("│")[2].strip().rstrip("%")) / 100 == pytest.approx(float(p), abs=6e-5)


def test_offline_without_cached_weights_is_one_line_and_exit_1(tmp_path):
    """The download is made to fail (a proxy on a closed port), with an empty Keras cache."""
    folder = str(tmp_path / "photos")
    make_classes(folder, counts={s: 3 for s in SHAPES}, modes=("RGB",), formats=(("png", "PNG"),))
    home = tmp_path / "keras_home"
    proxy = "http://127.0.0.1:9"
    proc = run_cli("fit", "transfer", "--data", folder, "--logdir", tmp_path / "logs", "--image-size", 32,
                   env={"KERAS_HOME": str(home), "https_proxy": proxy, "HTTPS_PROXY": proxy,
                        "http_proxy": proxy, "HTTP_PROXY": proxy})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    cache = os.path.join(str(home), "models")
    url = ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
           "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5")
    assert line == (
        f"Error: Cannot download the ImageNet weights of mobilenet_v3_small ({url}) and no copy is cached: "
        f"Keras looked for weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 in {cache}. Either train "
        f"from scratch with --set weights=none, or copy that file into {cache} (or pass its path: "
        "--set weights=PATH).")
    assert "Traceback" not in proc.stdout + proc.stderr


PHASED = '''"""Dense(16) frozen for one epoch, then unfrozen at half the rate (killed once at the switch)."""
import os
import signal

import keras

DEFAULTS = {"epochs": 3, "batch_size": 100, "optimizer": "adam", "learning_rate": 0.01, "validation": 0.1}


def build(input_shape, num_classes, marker=""):
    inputs = keras.Input(input_shape)
    x = keras.layers.Dense(16, activation="relu", name="body", trainable=False)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax", name="head")(x))


def unfreeze(model, marker):
    if not os.path.exists(marker):  # the first time: kill -9 right at the switch
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    model.get_layer("body").trainable = True
    return "body unfrozen"


def phases(epochs, marker="", **_):
    return [{"epoch": 1, "name": "unfreeze", "learning_rate_factor": 0.5,
             "apply": lambda model: unfreeze(model, marker)}]
'''


def test_a_kill_at_the_switch_resumes_into_the_next_phase(tmp_path, mnist_small):
    """A module's own phases(): killed inside the switch (the state is the end of the frozen
    epoch, with the first phase's optimizer); the resumed run switches and goes on."""
    from tensorboard.util import tensor_util

    arch = tmp_path / "phased.py"
    arch.write_text(PHASED)
    logdir = tmp_path / "logs"
    first = run_cli("fit", arch, "--data", mnist_small, "--logdir", logdir, "--set", f"marker={tmp_path / 'killed'}",
                    "--seed", 1, "--progress", "plain")
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    (run_dir,) = glob.glob(os.path.join(logdir, "phased", "*"))
    assert (load_state(os.path.join(run_dir, "state"))["epoch"], load_state(os.path.join(run_dir, "state"))["batch"]) == (1, 0)
    resumed = run_cli("fit", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Epoch 2: phase 'unfreeze': body unfrozen; trainable parameters 170 -> 12,730; learning rate x 0.5." \
        in resumed.stdout
    train = read_events(os.path.join(run_dir, "train"))

    def scalars(tag):
        return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in train.Tensors(tag)}

    assert scalars("trainable_parameters") == {0: 170, 1: 12_730, 2: 12_730}
    assert scalars("epoch_learning_rate") == pytest.approx({0: 0.01, 1: 0.005, 2: 0.005})
    assert [e.step for e in read_events(run_dir).Tensors("phase")] == [1]
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3] and metrics["test"]["accuracy"] > 0.8
