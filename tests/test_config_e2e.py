"""Config files, reruns and the Python API in real runs (tiny: 512 MNIST samples, one epoch).

One YAML-configured run of a user's architecture file is shared: flags override it, its saved
config.json reruns it exactly (with the file edited since: the run's copy is used), and a sweep
starts from it. ``trainer config`` output runs unchanged; the API runs in a subprocess.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import zipfile

import pytest
from click.testing import CliRunner

from tests.conftest import REPO, run_cli
from trainer import configfile
from trainer.cli import main
from trainer.cli.config_cmd import EXCLUDE
from trainer.cli.config_option import option_keys
from trainer.cli.fit import fit

ARCH_FILE = '''"""A tiny dense net: a user's own architecture file."""
import keras

DEFAULTS = {"epochs": 5, "batch_size": 128, "optimizer": "sgd", "learning_rate": 0.01, "validation": 0.2}


def build(input_shape, num_classes, units=64, activation="relu"):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation=activation, name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''
QUIET = {"histograms_every": 0, "gradients_every": 0, "confusion_every": 0, "misclassified": 0,
         "graph": False, "progress": "plain"}


def read_json(*parts):
    with open(os.path.join(*parts)) as f:
        return json.load(f)


def hidden_layer(run_dir: str) -> dict:
    """The ``hidden`` Dense layer's config, read from model.keras (a zip) without Keras."""
    with zipfile.ZipFile(os.path.join(run_dir, "model.keras")) as archive:
        model = json.loads(archive.read("config.json"))
    (layer,) = [layer for layer in model["config"]["layers"] if layer["name"] == "hidden"]
    return layer["config"]


def only_dir(pattern: str) -> str:
    (path,) = glob.glob(pattern)
    return path


@pytest.fixture(scope="module")
def yaml_run(tmp_path_factory, mnist_small):
    """``trainer fit --config run.yaml --epochs 1 --set units=24 --misclassified 4`` of my_net.py."""
    import yaml

    base = tmp_path_factory.mktemp("yaml_run")
    (base / "my_net.py").write_text(ARCH_FILE)
    settings = {"arch": str(base / "my_net.py"), "data": mnist_small, "epochs": 3, "batch-size": 64,
                "optimizer": "adam", "learning_rate": 0.005, "train_limit": 512, "test_limit": 256,
                "seed": 7, "logdir": str(base / "logs"), "name": "yaml", **QUIET,
                "hyperparameters": {"units": 32, "activation": "tanh"}}
    (base / "run.yaml").write_text(yaml.safe_dump(settings))
    proc = run_cli("fit", "--config", base / "run.yaml", "--epochs", 1, "--set", "units=24", "--misclassified", 4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base, only_dir(str(base / "logs" / "my_net" / "*-yaml"))


def test_a_yaml_file_sets_options_and_hyperparameters_and_flags_override_it(yaml_run):
    base, run_dir = yaml_run
    config = read_json(run_dir, "config.json")
    assert config["epochs"] == 1 and config["misclassified"] == 4  # flags
    assert config["batch_size"] == 64 and config["optimizer"] == "adam" and config["learning_rate"] == 0.005
    assert config["seed"] == 7 and config["train_limit"] == 512 and config["histograms_every"] == 0
    assert config["graph"] is False and config["validation"] == 0.2  # the file; the architecture's DEFAULTS
    assert config["hyperparameters"] == {"units": 24, "activation": "tanh"}  # --set over the file
    assert hidden_layer(run_dir)["units"] == 24 and hidden_layer(run_dir)["activation"] == "tanh"
    assert read_json(run_dir, "metrics.json")["epochs_run"] == 1
    assert open(os.path.join(run_dir, "my_net.py")).read() == ARCH_FILE  # the run keeps its code


def test_a_saved_config_json_reruns_the_same_run_in_a_new_directory(yaml_run):
    """Even after the architecture file changed: the rerun trains the run's own copy."""
    base, run_dir = yaml_run
    (base / "my_net.py").write_text("raise RuntimeError('edited since the run')\n")
    proc = run_cli("fit", "--config", os.path.join(run_dir, "config.json"), "--name", "rerun")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rerun = only_dir(str(base / "logs" / "my_net" / "*-rerun"))
    first, second = read_json(run_dir, "config.json"), read_json(rerun, "config.json")
    assert second["arch_source"] == os.path.join(run_dir, "my_net.py")
    for key in ("seed", "hyperparameters", "epochs", "batch_size", "learning_rate", "data", "train_limit",
                "test_limit", "misclassified", "graph"):
        assert second[key] == first[key], key
    before, after = read_json(run_dir, "metrics.json")["test"], read_json(rerun, "metrics.json")["test"]
    assert after["accuracy"] == before["accuracy"] > 0.5
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-5)


def test_a_sweep_starts_from_a_saved_run(yaml_run, tmp_path):
    """Its trials keep the run's settings and seed; the trial at the run's own rate reproduces it."""
    _, run_dir = yaml_run
    proc = run_cli("sweep", "--config", os.path.join(run_dir, "config.json"), "--set", "learning_rate=0.005,0.05",
                   "--logdir", tmp_path, "--progress", "none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = read_json(only_dir(str(tmp_path / "my_net" / "sweep-*")), "sweep.json")
    assert [t["status"] for t in state["trials"]] == ["finished", "finished"]
    configs = [t["config"] for t in state["trials"]]
    assert [c["learning_rate"] for c in configs] == [0.005, 0.05]
    assert all(c["seed"] == 7 and c["hyperparameters"] == {"units": 24, "activation": "tanh"}
               and c["epochs"] == 1 and c["train_limit"] == 512 for c in configs)
    same = state["trials"][0]["metrics"]["test_accuracy"]
    assert same == read_json(run_dir, "metrics.json")["test"]["accuracy"]


def test_trainer_config_prints_every_default_and_fit_takes_it_unchanged(tmp_path, mnist_small):
    result = CliRunner().invoke(main, ["config", "fcn"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    settings = configfile.parse_toml(text)
    assert settings["arch"] == "fcn" and settings["epochs"] == 10 and settings["optimizer"] == "sgd"
    assert settings["learning_rate"] == 0.01 and settings["validation"] == 0.2 and settings["batch_size"] == 128
    assert settings["hyperparameters"] == {"units": 128} and settings["histograms_every"] == 1
    for key, param in option_keys(fit, EXCLUDE).items():  # every option, set or commented out
        if key == param.name:
            assert key in settings or f"# {key} = ...  (not set)" in text, key
    assert "# --epochs: Epochs to train" in text
    (tmp_path / "fcn.toml").write_text(text)
    proc = run_cli("fit", "--config", tmp_path / "fcn.toml", "--data", mnist_small, "--epochs", 1,
                   "--train-limit", 256, "--test-limit", 128, "--set", "units=16", "--logdir", tmp_path / "logs",
                   "--progress", "none", "--seed", 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = read_json(only_dir(str(tmp_path / "logs" / "fcn" / "*")), "config.json")
    expected = {**{k: v for k, v in settings.items() if k != "arch"}, "epochs": 1, "train_limit": 256,
                "test_limit": 128, "progress": "none", "seed": 3, "logdir": str(tmp_path / "logs"),
                "data": mnist_small, "hyperparameters": {"units": 16}}
    assert {k: saved[k] for k in expected if k in saved} == {k: v for k, v in expected.items() if k in saved}
    assert saved["arch"] == "fcn" and saved["gpu"] is None and saved["early_stopping"] is None


def test_an_unknown_key_is_a_one_line_error_with_the_closest_key(tmp_path):
    (tmp_path / "run.toml").write_text("epoch = 2\n")
    result = CliRunner().invoke(main, ["fit", "fcn", "--config", str(tmp_path / "run.toml"), "--logdir",
                                       str(tmp_path / "logs")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: Unknown key `epoch` in config file '{tmp_path / 'run.toml'}'. Did you mean `epochs`? Expected an "
        "option of the command (its --help, with '_' for '-'), a run setting or a build() hyperparameter "
        "(`trainer config ARCH` lists them all)."]
    assert not os.path.exists(tmp_path / "logs")


API_SCRIPT = r'''
import json, sys
import trainer
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
result = trainer.fit(config=sys.argv[1], epochs=1, units=20, progress="none")
try:
    trainer.fit("fcn", epoch=1)
except trainer.UsageError as exc:
    error = str(exc)
print(json.dumps({"heavy_after_import": heavy, "run_dir": result.run_dir, "history": result.history,
                  "test": result.test, "params": result.model.count_params(),
                  "batch_size": result.config.batch_size, "error": error,
                  "resumed": trainer.resume(result.run_dir)}))
'''


def test_the_python_api_runs_what_the_cli_runs(tmp_path, mnist_small):
    """``trainer.fit(config=run.toml, epochs=1, units=20)``: the arguments above the file."""
    (tmp_path / "run.toml").write_text(
        f'arch = "fcn"\ndata = "{mnist_small}"\nepochs = 4\nbatch_size = 64\noptimizer = "adam"\n'
        f'train_limit = 512\ntest_limit = 256\nseed = 5\nlogdir = "{tmp_path / "logs"}"\n'
        "histograms_every = 0\ngraph = false\n[hyperparameters]\nunits = 32\n")
    env = {k: v for k, v in os.environ.items() if k != "TRAINER_DATA"}
    env.update(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-c", API_SCRIPT, str(tmp_path / "run.toml")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy_after_import"] == []
    assert os.path.dirname(out["run_dir"]) == str(tmp_path / "logs" / "fcn")
    assert read_json(out["run_dir"], "metrics.json")["status"] == "finished"
    assert len(out["history"]) == 1 and out["history"][0]["epoch"] == 1 and "val_loss" in out["history"][0]
    assert out["test"]["accuracy"] > 0.5 and out["batch_size"] == 64
    assert out["params"] == 784 * 20 + 20 + 20 * 10 + 10  # units=20 over the file's 32
    assert out["error"].startswith("Unknown key `epoch` in the arguments of trainer.fit(). Did you mean `epochs`?")
    assert out["resumed"] is None  # a finished run: nothing to resume
