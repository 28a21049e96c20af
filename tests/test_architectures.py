"""Architecture modules: the built-in recipes, user files, and the commands that show them."""

from __future__ import annotations

import inspect

import pytest
from click.testing import CliRunner

from trainer import architecture, config as configuration, tasks
from trainer.cli import main
from trainer.errors import UsageError


@pytest.mark.parametrize("name, params", [("fcn", 101_770), ("cnn_small", 27_210), ("dense512", 407_050),
                                          ("mlp", 669_706), ("cnn", 693_962)])
def test_seed_recipes_have_the_published_parameter_counts(name, params):
    arch = architecture.load(name)
    assert arch.build((28, 28, 1), 10).count_params() == params


@pytest.mark.parametrize("name, expected", [
    ("fcn", {"optimizer": "sgd", "batch_size": 128, "epochs": 10, "validation": 0.2, "learning_rate": 0.01}),
    ("cnn_small", {"optimizer": "adam", "batch_size": 32, "epochs": 10, "validation": "test"}),
    ("dense512", {"optimizer": "rmsprop", "batch_size": 128, "epochs": 5}),
    ("mlp", {"optimizer": "rmsprop", "batch_size": 128, "epochs": 20, "validation": 0.1, "early_stopping": 2}),
    ("cnn", {"optimizer": "sgd", "learning_rate": 0.01, "batch_size": 128, "epochs": 20, "validation": "test"}),
])
def test_seed_recipes_resolve_to_their_defaults_and_flags_override(name, expected):
    arch = architecture.load(name)
    config = configuration.resolve(arch, {})
    assert {k: getattr(config, k) for k in expected} == expected
    assert configuration.resolve(arch, {"epochs": 1, "batch_size": 7}).epochs == 1
    assert inspect.getdoc(arch.module).splitlines()[0] == arch.description


def test_mlp_dropout_is_a_hyperparameter():
    arch = architecture.load("mlp")
    model = arch.build((28, 28, 1), 10, dropout=0.3)
    rates = [layer.rate for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    assert rates == [0.3, 0.3]
    assert arch.hyperparameters() == {"dropout": 0.0, "units": 512}


def test_tabular_architectures_declare_their_task():
    assert architecture.load("binary_mlp").task == "binary"
    assert architecture.load("regressor").task == "regression"
    assert architecture.load("cnn").task == "multiclass"
    assert tasks.outputs("binary", 10) == 1 and tasks.outputs("multiclass", 10) == 10


def test_user_file_and_package_module_work_like_builtins(tmp_path, monkeypatch):
    source = '"""Tiny: one dense layer."""\nimport keras\nDEFAULTS = {"epochs": 2}\n' \
             'def build(input_shape, num_classes, width=4):\n' \
             '    i = keras.Input(shape=input_shape)\n' \
             '    return keras.Model(i, keras.layers.Dense(num_classes, activation="softmax")(keras.layers.Flatten()(i)))\n'
    (tmp_path / "tiny.py").write_text(source)
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tiny2.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec, name in ((str(tmp_path / "tiny.py"), "tiny"), ("mypkg.tiny2", "tiny2")):
        arch = architecture.load(spec)
        assert arch.name == name and arch.description == "Tiny: one dense layer."
        assert arch.build((28, 28, 1), 10).count_params() == 7850
        assert configuration.resolve(arch, {}).epochs == 2
        with pytest.raises(UsageError, match="build\\(\\) accepts: width"):
            arch.check_hyperparameters({"depth": 3})


@pytest.mark.parametrize("text, value", [("0.2", 0.2), ("3", 3), ("true", True), ("off", False),
                                         ("none", None), ("relu", "relu"), ("1e-3", 0.001)])
def test_set_values_are_parsed(text, value):
    assert architecture.parse_assignments([f"k={text}"]) == {"k": value}


def test_list_and_summary_commands():
    runner = CliRunner()
    result = runner.invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    for name, params in (("fcn", "101,770"), ("cnn_small", "27,210"), ("regressor", "4,929")):
        line = next(l for l in result.output.splitlines() if f" {name} " in l)
        assert params in line
    result = runner.invoke(main, ["summary", "cnn_small"])
    assert result.exit_code == 0, result.output
    assert "Conv2D" in result.output and "(None, 26, 26, 16)" in result.output
    assert "27,210 parameters" in result.output
    result = runner.invoke(main, ["summary", "mlp", "--set", "units=8"])
    assert "6,442 parameters" in result.output
