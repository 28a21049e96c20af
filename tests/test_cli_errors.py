"""Bad input: one line that says what was received and what is expected, the right exit code,
no traceback, and no run directory left behind."""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import REPO, run_cli
from trainer.cli import main


@pytest.fixture()
def cli(tmp_path, mnist_small):
    runner = CliRunner()

    def invoke(*args, data=True):
        extra = ["--data", mnist_small] if data and args and args[0] == "fit" else []
        logdir = ["--logdir", str(tmp_path / "logs")] if args and args[0] == "fit" else []
        result = runner.invoke(main, [*map(str, args), *extra, *logdir])
        return result

    invoke.logdir = tmp_path / "logs"
    return invoke


def one_line_error(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert "Traceback" not in result.output
    error_lines = [line for line in lines if line.startswith("Error:")]
    assert len(error_lines) == 1, result.output
    return error_lines[0]


@pytest.mark.parametrize(
    "args, code, expected",
    [
        (["fit", "cnnn"], 2, "Unknown architecture 'cnnn'. Did you mean 'cnn'?"),
        (["fit", "resnet"], 2, "Known: fcn, cnn_small, dense512, mlp, cnn, cnn_deep"),
        (["fit", "cnn", "--epochs", "0"], 2, "Invalid value for argument `epochs`. Received: epochs=0. Expected a positive integer"),
        (["fit", "cnn", "--batch-size", "-5"], 2, "Received: batch_size=-5"),
        (["fit", "cnn", "--learning-rate", "0"], 2, "Invalid value for argument `learning_rate`. Received: learning_rate=0.0"),
        (["fit", "cnn", "--validation", "1.5"], 2, "Received: validation='1.5'. Expected a fraction in [0, 1) or 'test'"),
        (["fit", "mlp", "--set", "dropuot=0.2"], 2, "Unknown hyperparameter 'dropuot' for architecture 'mlp'. build() accepts: dropout, units"),
        (["fit", "mlp", "--set", "dropout"], 2, "Expected KEY=VALUE"),
        (["fit", "cnn", "--optimizer", "adamm"], 2, "Invalid value for option `--optimizer`. Received: 'adamm'"),
        (["fit", "cnn", "--name", "a/b"], 2, "Invalid value for option `--name`"),
        (["fit", "nope.py"], 2, "Architecture file not found: 'nope.py'"),
        (["fit", "cnn", "--gpu"], 1, "TensorFlow sees no GPU"),
        (["fit", "cnn", "--precision", "float8"], 2, "float8"),
        (["fit", "cnn", "--pr-curves-every", "-1"], 2, "Invalid value for '--pr-curves-every': -1 is not in the range x>=0"),
        (["fit", "cnn", "--strategy", "multi-worker"], 2, "TF_CONFIG"),
    ],
)
def test_usage_errors(cli, args, code, expected):
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert expected in one_line_error(result)
    assert not list(cli.logdir.glob("*/*")), "a failed start must leave no run directory"


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_module_that_fails_to_import(cli, tmp_path):
    path = _write(tmp_path / "broken.py", "import keras\nraise RuntimeError('boom at import')\n")
    result = cli("fit", path)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "boom at import" in line and "broken.py:2" in line


def test_build_that_raises(cli, tmp_path):
    path = _write(tmp_path / "bad_build.py", "def build(input_shape, num_classes):\n    raise ValueError('no layers')\n")
    result = cli("fit", path)
    assert result.exit_code == 1
    assert "bad_build.build() raised ValueError: no layers (" in one_line_error(result)


BAD_LAYER = """import keras


class Broken(keras.layers.Layer):
    def call(self, x):
        raise ValueError("this layer cannot run")


def build(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, Broken()(inputs))
"""


def test_keras_layer_error_in_build_is_one_plain_line(cli, tmp_path):
    # Keras reports it over several lines, the message in bold: the user gets one plain line.
    result = cli("fit", _write(tmp_path / "bad_layer.py", BAD_LAYER))
    assert result.exit_code == 1
    line = one_line_error(result)
    assert line.startswith("Error: bad_layer.build() raised ValueError: Exception encountered when calling "
                           "Broken.call(): Could not automatically infer the output shape")
    assert line.endswith("this layer cannot run (" + str(tmp_path / "bad_layer.py") + ":6)")
    assert "\x1b" not in line


@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"),
    ("first paragraph\nstill first\n\nsecond", "first paragraph still first"),
    ("Exception encountered when calling Dense.call().\n\n\x1b[1mbad shape\x1b[0m\n\n"
     "Arguments received by Dense.call():\n  \u2022 x=1", "Exception encountered when calling Dense.call(): bad shape"),
    ("in user code:\n\n    File \"a.py\", line 3, in f  *\n        g()\n\n"
     "    ValueError: Exception encountered when calling Model.call().\n    \n"
     "    \x1b[1mas_list() is not defined\x1b[0m\n", "Exception encountered when calling Model.call(): as_list() is not defined"),
])
def test_one_line(text, expected):
    from trainer.errors import one_line

    assert one_line(text) == expected


def test_module_without_build(cli, tmp_path):
    path = _write(tmp_path / "empty.py", "x = 1\n")
    result = cli("fit", path)
    assert result.exit_code == 2
    assert "has no build() function" in one_line_error(result)


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"x_train": np.zeros((4, 8, 8))}, "missing keys y_train, x_test, y_test"),
        ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(3, int),
          "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int)}, "x_train has 4 samples but y_train has 3"),
        ({"x_train": np.zeros((4, 2, 2, 2, 2), np.uint8), "y_train": np.zeros(4, int),
          "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int)}, "x_train has shape (4, 2, 2, 2, 2)"),
        ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0.5, 1, 2, 3]),
          "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int)}, "y_train has dtype float64; expected integer labels"),
        ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 2, -1]),
          "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int),
          "class_names": np.array(["a", "b", "c"])}, "y_train has labels -1..2; expected 0..2"),
        ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(4, int),
          "x_test": np.zeros((2, 9, 9), np.uint8), "y_test": np.zeros(2, int)}, "x_train samples are (8, 8, 1) but x_test samples are (9, 9, 1)"),
    ],
)
def test_bad_dataset_files(cli, tmp_path, arrays, expected):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    result = CliRunner().invoke(main, ["fit", "fcn", "--data", str(path), "--logdir", str(tmp_path / "logs")])
    assert result.exit_code == 2, result.output
    line = one_line_error(result)
    assert f"Invalid dataset file '{path}'" in line and expected in line
    assert not (tmp_path / "logs").exists()


def test_corrupt_dataset_file(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    result = CliRunner().invoke(main, ["fit", "fcn", "--data", str(path), "--logdir", str(tmp_path / "logs")])
    assert result.exit_code == 2
    assert "cannot be read as .npz" in one_line_error(result)


def test_unwritable_logdir(tmp_path, mnist_small):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(main, ["fit", "fcn", "--data", mnist_small, "--logdir", str(blocker / "logs")])
    assert result.exit_code == 2
    assert "Invalid value for option `--logdir`" in one_line_error(result)


def test_offline_without_data_says_how_to_pass_a_file(tmp_path):
    # An empty KERAS_HOME and no network: Keras's downloader fails; the message names --data.
    proc = run_cli("fit", "fcn", "--dataset", "fashion_mnist", "--logdir", tmp_path / "logs",
                   env={"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
                        "HTTP_PROXY": "http://127.0.0.1:9"}, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("Error:")]
    assert "Could not load fashion_mnist" in line and "--data PATH.npz" in line


def test_help_is_fast_and_does_not_import_tensorflow():
    code = ("import sys, time; t=time.perf_counter(); from trainer.cli import main\n"
            "try:\n    main(['fit', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('TF' if 'tensorflow' in sys.modules else 'noTF', time.perf_counter()-t)")
    proc = run_cli("--help")
    assert proc.returncode == 0 and "fit" in proc.stdout
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True).stdout
    flag, seconds = out.strip().splitlines()[-1].split()
    assert flag == "noTF"
    assert float(seconds) < 0.5


def test_run_directories_are_never_reused(tmp_path):
    from trainer.run import claim_dir, create_run_dir

    first = create_run_dir(str(tmp_path), "cnn", "same")
    second = create_run_dir(str(tmp_path), "cnn", "same")
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
    from trainer.errors import UsageError

    with pytest.raises(UsageError, match="already exists; runs are never overwritten"):
        claim_dir(first)
