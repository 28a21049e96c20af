"""The run's own checks and interfaces: model outputs against the data, non-finite images,
hyperparameter types, a batch larger than the data, --log-every against steps per execution,
callback state saved by stable names, and the private-internal checks of the compat module."""

from __future__ import annotations

import json
import types

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from callbacks import compat
from callbacks.backup import Backup, restore_callbacks, snapshot_callbacks
from tests.conftest import error_line
from trainer.cli import main
from trainer.config import RunConfig
from trainer.training import steps_per_execution

WRONG_OUTPUTS = '''"""Three outputs for ten classes."""
import keras

def build(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
'''


@pytest.fixture()
def fit(tmp_path, mnist_small):
    runner = CliRunner()

    def invoke(*args, data=None):
        logdir = tmp_path / "logs"
        result = runner.invoke(main, ["fit", *map(str, args), "--data", str(data or mnist_small),
                                      "--logdir", str(logdir), "--progress", "none"])
        result.logdir = logdir
        return result

    return invoke




def test_model_outputs_must_match_the_classes(fit, tmp_path):
    arch = tmp_path / "three.py"
    arch.write_text(WRONG_OUTPUTS)
    result = fit(arch, "--epochs", "1")
    assert result.exit_code == 2, result.output
    assert "The model outputs 3 values per sample, but the data has 10 classes" in error_line(result)
    assert not list(result.logdir.glob("*/*")), "no run directory for a model that cannot train"


def test_non_finite_images_are_a_data_error(fit, tmp_path):
    x = np.random.default_rng(0).random((20, 8, 8)).astype(np.float32)
    x[3, 2, 2] = np.nan
    x[5, 1, 1] = np.inf
    path = tmp_path / "nan.npz"
    np.savez(path, x_train=x, y_train=np.arange(20) % 2, x_test=x[:4] * 0, y_test=np.arange(4) % 2)
    result = fit("fcn", "--epochs", "1", data=path)
    assert result.exit_code == 2, result.output
    assert "x_train has 2 NaN or infinite values; expected finite numbers" in error_line(result)


def test_hyperparameter_of_the_wrong_type_names_the_parameter(fit):
    result = fit("mlp", "--set", "dropout=abc")
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "Invalid value for hyperparameter `dropout` of 'mlp'. Received: dropout='abc'" in line
    assert "Expected a number (its default is 0.0)" in line
    result = fit("mlp", "--set", "units=64.5")
    assert result.exit_code == 2 and "Expected an integer" in error_line(result)


def test_batch_larger_than_the_data_is_clamped_and_speed_counts_real_samples(fit):
    result = fit("fcn", "--epochs", "2", "--batch-size", "100000", "--train-limit", "300",
                 "--validation", "0.2", "--histograms-every", "0", "--gradients-every", "0")
    assert result.exit_code == 0, result.output
    assert "--batch-size 100000 is larger than the 240 training samples; using 240" in result.output
    run_dir = next(result.logdir.glob("fcn/*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["batch_size"] == 240
    for epoch in metrics["history"]:
        assert epoch["samples_per_second"] * epoch["seconds"] == pytest.approx(240, rel=1e-6)


@pytest.mark.parametrize("log_every, requested, steps, expected", [
    (0, "auto", 100, 16), (0, "auto", 5, 5), (10, "auto", 100, 10), (24, "auto", 100, 12),
    (7, "auto", 100, 7), (32, "auto", 100, 16), (5, 16, 100, 16), (32, 16, 100, 16),
])
def test_steps_per_execution_honours_log_every(log_every, requested, steps, expected):
    notes = []
    config = RunConfig(arch="fcn", log_every=log_every, steps_per_execution=requested)
    assert steps_per_execution(config, steps, 1, notes.append) == expected
    if requested != "auto" and log_every % requested:
        assert notes == [f"Note: --log-every {log_every} with 16 batches per execution logs batch_loss "
                         f"every 16 batches (at the end of an execution); use a --steps-per-execution that "
                         f"divides {log_every} to log every {log_every}."]
    else:
        assert notes == []


def test_several_replicas_run_one_batch_per_execution():
    notes = []
    assert steps_per_execution(RunConfig(arch="fcn", steps_per_execution=8), 100, 2, notes.append) == 1
    assert notes == ["steps_per_execution=8 not used: Keras runs one batch per execution with 2 replicas."]


class _Counter(keras.callbacks.Callback):
    state_attributes = ("count",)

    def __init__(self, count=0, state_name=None):
        super().__init__()
        self.count = count
        if state_name:
            self.state_name = state_name


def test_callback_state_is_keyed_by_name_not_position():
    early = keras.callbacks.EarlyStopping(patience=3)
    early.wait, early.best, early.best_epoch, early.stopped_epoch = 2, 0.5, 4, 0
    saved = snapshot_callbacks([_Counter(7), keras.callbacks.History(), early])
    assert set(saved) == {"_Counter", "EarlyStopping"}
    fresh_early, fresh_counter = keras.callbacks.EarlyStopping(patience=3), _Counter()
    fresh_early.on_train_begin()
    restore_callbacks([fresh_early, fresh_counter], json.loads(json.dumps(saved)))  # other order
    assert fresh_counter.count == 7 and (fresh_early.wait, fresh_early.best, fresh_early.best_epoch) == (2, 0.5, 4)


def test_state_saved_by_position_still_restores():
    counter = _Counter()
    restore_callbacks([counter], {"3:_Counter": {"count": 5}})
    assert counter.count == 5


def test_two_callbacks_with_one_state_name_are_refused_at_construction(tmp_path):
    with pytest.raises(ValueError, match="two callbacks with saved state named '_Counter'"):
        Backup(str(tmp_path), 10, callbacks=[_Counter(), _Counter()])
    Backup(str(tmp_path), 10, callbacks=[_Counter(), _Counter(state_name="second")])


def test_compat_refuses_a_keras_without_the_batch_index_semantics(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.10.0")
    with pytest.raises(compat.CompatError, match=r"keras 3.10.0 .* trainer needs keras>=3.11"):
        compat.offset_callback_list([], 0, None, 1, 1)


def test_compat_names_a_missing_internal():
    with pytest.raises(compat.CompatError, match="tf.function._omit_frequent_tracing_warning is not available"):
        compat.quiet_retracing(lambda: None)
    with pytest.raises(compat.CompatError, match="Model.make_train_function"):
        compat.set_steps_per_execution(types.SimpleNamespace(), 4)
    early = keras.callbacks.EarlyStopping()
    early.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    del early.wait
    with pytest.raises(compat.CompatError, match=r"EarlyStopping.wait \(saved for resume\)"):
        compat.keras_callback_state(early, saving=True)


def test_version_tuple():
    assert compat.version_tuple("3.11.2") == (3, 11, 2)
    assert compat.version_tuple("2.21.0rc1") == (2, 21, 0)
    assert compat.version_tuple("3.15.1.dev2025+abc") == (3, 15, 1)


def test_misclassified_grid_result_reaches_metrics_json(tmp_path, mnist_small):
    result = CliRunner().invoke(main, ["fit", "fcn", "--data", mnist_small, "--logdir", str(tmp_path),
                                       "--epochs", "1", "--train-limit", "600", "--progress", "none",
                                       "--histograms-every", "0", "--gradients-every", "0"])
    assert result.exit_code == 0, result.output
    run_dir = next(tmp_path.glob("fcn/*"))
    details = json.loads((run_dir / "metrics.json").read_text())["test_details"]
    tiles = details["misclassified"]
    assert 0 < len(tiles) <= 36 and {"index", "true", "pred", "confidence"} <= set(tiles[0])
    assert set(details) == {"classes", "macro", "confusion_matrix", "confused_pairs", "misclassified"}
