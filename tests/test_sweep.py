"""``trainer sweep``: spec parsing, the plan, and real sweeps read back with TensorBoard's own
readers (the event accumulator and the HParams plugin's backend)."""

from __future__ import annotations

import json
import os

import click
import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import read_events
from trainer import sweep as sw
from trainer.cli.sweep import SWEEP_HELP, sweep, with_fit_params
from trainer.errors import UsageError

QUICK = ["--histograms-every", "0", "--gradients-every", "0", "--no-graph", "--misclassified", "0",
         "--confusion-every", "0", "--progress", "none", "--seed", "1"]


# ---- specs --------------------------------------------------------------------------------------

def test_float_range_is_exact_and_inclusive():
    assert sw.parse_spec("dropout=0:0.8:0.1") == ("dropout", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert sw.parse_spec("x=0:1:0.3")[1] == [0.0, 0.3, 0.6, 0.9]  # stop not on the grid: left out
    assert sw.parse_spec("x=1:0:-0.25")[1] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert sw.parse_spec("lr=1e-4:3e-4:1e-4")[1] == [0.0001, 0.0002, 0.0003]
    assert sw.parse_spec("x=0.5:0.5:0.1")[1] == [0.5]


def test_int_range_list_and_single_value():
    units = sw.parse_spec("units=16:64:16")[1]
    assert units == [16, 32, 48, 64] and all(type(u) is int for u in units)
    assert sw.parse_spec(" optimizer = adam,sgd ") == ("optimizer", ["adam", "sgd"])
    mixed = sw.parse_spec("dropout=0,0.5")[1]
    assert mixed == [0.0, 0.5] and all(type(v) is float for v in mixed)  # one type per key
    assert sw.parse_spec("learning_rate=1e-3,1e-4")[1] == [0.001, 0.0001]
    assert sw.parse_spec("units=8") == ("units", [8])
    assert sw.parse_spec("flag=true,false")[1] == [True, False]


@pytest.mark.parametrize("item, expected", [
    ("dropout", "Expected KEY=VALUE"),
    ("dropout=", "Expected KEY=VALUE"),
    ("=0.1", "Expected KEY=VALUE"),
    ("x=0:1:0", "non-zero step"),
    ("x=0:1:-0.1", "towards stop"),
    ("x=a:b:c", "finite numbers"),
    ("x=0:1", "finite numbers"),
    ("x=0:inf:1", "finite numbers"),
    ("x=1,,2", "without empty items"),
    ("x=1,1", "without repeated values"),
    ("x=0:1:1e-6", "at most 1000 values"),
])
def test_bad_specs_are_one_line_usage_errors(item, expected):
    with pytest.raises(UsageError) as info:
        sw.parse_spec(item)
    message = str(info.value)
    assert expected in message and repr(item) in message and "\n" not in message


def test_keys_are_given_once_and_sweep_wide_options_are_not_swept():
    with pytest.raises(UsageError, match="given twice"):
        sw.parse_specs(["units=8", "units=16"])
    with pytest.raises(UsageError, match="belongs to the whole sweep"):
        sw.parse_specs(["logdir=a,b"])


def test_grid_order_and_count():
    specs = sw.parse_specs(["dropout=0,0.5,0.25", "learning_rate=1e-3,1e-4", "units=8"])
    assert sw.grid_size(specs) == 6
    combos = sw.combinations(specs)
    assert len(combos) == 6
    assert combos[0] == {"dropout": 0.0, "learning_rate": 0.001, "units": 8}
    assert combos[1] == {"dropout": 0.0, "learning_rate": 0.0001, "units": 8}  # last key fastest
    assert combos[5] == {"dropout": 0.25, "learning_rate": 0.0001, "units": 8}
    assert len({json.dumps(c, sort_keys=True) for c in combos}) == 6


def test_random_sample_is_seeded_distinct_and_from_the_grid():
    specs = sw.parse_specs(["a=0:9:1", "b=x,y,z"])
    grid = sw.combinations(specs)
    first = sw.combinations(specs, sample=7, seed=3)
    assert first == sw.combinations(specs, sample=7, seed=3)
    assert len(first) == 7 and all(c in grid for c in first)
    assert len({json.dumps(c) for c in first}) == 7
    assert [grid.index(c) for c in first] == sorted(grid.index(c) for c in first)
    assert first != sw.combinations(specs, sample=7, seed=4)
    with pytest.raises(UsageError, match="at most 30"):
        sw.combinations(specs, sample=31)


def test_trial_names_are_safe_and_sortable():
    params = {"activation": "leaky relu/2", "dropout": 0.1, "units": 8}
    assert sw.trial_name(3, 12, params, ["activation", "dropout"]) == \
        "trial-003-activation=leaky_relu_2-dropout=0.1"
    assert sw.trial_name(7, 1500, {"lr": 1e-05}, ["lr"]) == "trial-0007-lr=1e-05"
    assert sw.trial_name(1, 1, {"units": 8}, []) == "trial-001"


def test_best_metrics_take_the_best_epoch_not_the_last():
    history = [
        {"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.2},
        {"epoch": 2, "val_accuracy": 0.8, "val_loss": 0.7},
        {"epoch": 3, "val_accuracy": 0.8, "val_loss": 0.6},
        {"epoch": 4, "val_accuracy": float("nan"), "val_loss": float("nan")},
        {"epoch": 5, "val_accuracy": 0.7, "val_loss": 0.9},
    ]
    # best_epoch is the epoch of the lowest val_loss (as in metrics.json), not of the best accuracy
    assert sw.best_metrics(history, {"accuracy": 0.75, "loss": 0.8}) == {
        "best_val_accuracy": 0.8, "best_val_loss": 0.6, "best_epoch": 3,
        "test_accuracy": 0.75, "test_loss": 0.8}
    no_val = sw.best_metrics([{"epoch": 1, "accuracy": 0.9}], {"accuracy": 0.6})
    assert no_val["best_val_accuracy"] is None and no_val["best_epoch"] is None
    assert sw.score({"metrics": no_val}) == 0.6


def test_sweep_takes_fits_configuration_options_and_fit_is_untouched():
    import dataclasses

    from trainer.cli.fit import fit
    from trainer.config import RunConfig

    fields = {f.name for f in dataclasses.fields(RunConfig)} | {"assignments"}
    names = [p.name for p in sweep.params]
    fit_options = [p.name for p in fit.params if isinstance(p, click.Option) and p.name in fields]
    assert {"learning_rate", "epochs", "data", "logdir", "histograms_every", "assignments"} <= set(fit_options)
    assert names[:4] == ["arch", "config_file", "sample", "resume"] and names[4:] == fit_options
    opts = [o for p in sweep.params for o in p.opts]
    assert len(opts) == len(set(opts))  # fit's own --resume (a run directory) is not taken
    by_name = {p.name: p for p in sweep.params}
    assert by_name["assignments"].help == SWEEP_HELP["assignments"]
    assert next(p for p in fit.params if p.name == "assignments").help != SWEEP_HELP["assignments"]
    own = [by_name["arch"], by_name["resume"]]
    assert [p.name for p in with_fit_params(own, fit.params)] == ["arch", "resume", *fit_options]


def test_plan_sends_run_options_to_the_config_and_the_rest_to_build():
    from trainer import architecture

    mlp = architecture.load("mlp")
    specs = sw.parse_specs(["dropout=0,0.5", "learning_rate=1e-3,1e-4", "units=16"])
    trials = sw.plan(mlp, specs, {"epochs": 1, "batch_size": None})
    assert [t["name"] for t in trials] == [
        "trial-001-dropout=0.0-learning_rate=0.001", "trial-002-dropout=0.0-learning_rate=0.0001",
        "trial-003-dropout=0.5-learning_rate=0.001", "trial-004-dropout=0.5-learning_rate=0.0001"]
    config = trials[3]["config"]
    assert config["learning_rate"] == 0.0001 and config["epochs"] == 1 and config["batch_size"] == 128
    assert config["hyperparameters"] == {"dropout": 0.5, "units": 16}
    assert config["optimizer"] == "rmsprop"  # the architecture's default stays
    with pytest.raises(UsageError, match="Unknown hyperparameter 'kernel'"):
        sw.plan(mlp, sw.parse_specs(["kernel=3,5"]), {})
    with pytest.raises(UsageError, match="learning_rate=-0.1"):  # checked before anything runs
        sw.plan(mlp, sw.parse_specs(["learning_rate=0.1,-0.1"]), {})


# ---- real sweeps --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_path(tmp_path_factory) -> str:
    """300 / 60 random 8x8 images in 3 classes, each class brighter in its own rows."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 3, n)
        x = (rng.random((n, 8, 8)) * 60).astype(np.uint8)
        for c in range(3):
            x[y == c, 2 * c:2 * c + 3, :] += 150
        return x, y.astype(np.int32)

    (x_train, y_train), (x_test, y_test) = make(300), make(60)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


def invoke(*args):
    return CliRunner().invoke(sweep, [str(a) for a in args])


def sweep_dir_of(logdir, arch="mlp") -> str:
    (name,) = os.listdir(os.path.join(logdir, arch))
    return os.path.join(logdir, arch, name)


def scalar(acc, tag) -> float:
    from tensorboard.util import tensor_util

    (event,) = acc.Tensors(tag)
    return float(tensor_util.make_ndarray(event.tensor_proto))


@pytest.fixture(scope="module")
def three_trials(tmp_path_factory, data_path):
    logdir = tmp_path_factory.mktemp("logs")
    result = invoke("mlp", "--data", data_path, "--set", "units=16", "--set", "dropout=0,0.3,0.6",
                    "--epochs", 3, "--logdir", logdir, *QUICK)
    assert result.exit_code == 0, result.output
    return result, str(logdir), sweep_dir_of(logdir)


def test_each_trial_is_an_ordinary_run_under_the_sweep(three_trials):
    _, _, sweep_dir = three_trials
    assert os.path.basename(sweep_dir).startswith("sweep-")
    state = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    assert [t["name"] for t in state["trials"]] == [
        "trial-001-dropout=0.0", "trial-002-dropout=0.3", "trial-003-dropout=0.6"]
    assert sorted(os.listdir(sweep_dir)) == sorted(
        [*(t["name"] for t in state["trials"]), "sweep.json", *_events(sweep_dir)])
    for trial, dropout in zip(state["trials"], (0.0, 0.3, 0.6)):
        assert trial["status"] == "finished" and trial["error"] is None
        assert trial["params"] == {"units": 16, "dropout": dropout}
        assert trial["run_dir"] == os.path.join(sweep_dir, trial["name"])
        config = json.load(open(os.path.join(trial["run_dir"], "config.json")))
        assert config["hyperparameters"] == {"dropout": dropout, "units": 16} and config["epochs"] == 3
        metrics = json.load(open(os.path.join(trial["run_dir"], "metrics.json")))
        assert metrics["status"] == "finished"
        assert trial["metrics"] == sw.best_metrics(metrics["history"], metrics["test"])
        assert trial["metrics"]["best_val_accuracy"] == max(h["val_accuracy"] for h in metrics["history"])


def _events(path):
    return [f for f in os.listdir(path) if f.startswith("events.out.tfevents")]


def test_hparams_experiment_and_sessions_read_back(three_trials):
    from tensorboard.plugins.hparams import api_pb2, metadata

    _, _, sweep_dir = three_trials
    root = read_events(sweep_dir)
    experiment = metadata.parse_experiment_plugin_data(
        root.SummaryMetadata(metadata.EXPERIMENT_TAG).plugin_data.content)
    assert [h.name for h in experiment.hparam_infos] == ["units", "dropout"]
    dropout_domain = [v.number_value for v in experiment.hparam_infos[1].domain_discrete.values]
    assert dropout_domain == [0.0, 0.3, 0.6]
    assert [(m.name.group, m.name.tag) for m in experiment.metric_infos] == [("", t) for t in sw.METRIC_TAGS]
    assert len(_events(sweep_dir)) == 1

    state = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    for trial in state["trials"]:
        run_dir = trial["run_dir"]
        assert len(_events(run_dir)) == 1  # hparams, metrics and the run's own text share one file
        acc = read_events(run_dir)
        start = metadata.parse_session_start_info_plugin_data(
            acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content)
        assert start.group_name == trial["name"]
        assert {k: v.number_value for k, v in start.hparams.items()} == trial["params"]
        end = metadata.parse_session_end_info_plugin_data(
            acc.SummaryMetadata(metadata.SESSION_END_INFO_TAG).plugin_data.content)
        assert end.status == api_pb2.STATUS_SUCCESS
        history = json.load(open(os.path.join(run_dir, "metrics.json")))["history"]
        best = max(history, key=lambda h: h["val_accuracy"])
        assert scalar(acc, "best_val_accuracy") == pytest.approx(best["val_accuracy"], abs=1e-7)
        lowest = min(history, key=lambda h: h["val_loss"])
        metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
        assert scalar(acc, "best_epoch") == lowest["epoch"] == metrics["best_epoch"]
        assert scalar(acc, "best_val_loss") == pytest.approx(min(h["val_loss"] for h in history), abs=1e-7)
        test = json.load(open(os.path.join(run_dir, "metrics.json")))["test"]
        assert scalar(acc, "test_accuracy") == pytest.approx(test["accuracy"], abs=1e-7)


def test_tensorboards_hparams_backend_lists_three_sessions_with_their_best_metrics(three_trials):
    """What the dashboard itself computes, with TensorBoard pointed at the whole logdir."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    _, logdir, sweep_dir = three_trials
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    tb = base_plugin.TBContext(logdir=logdir, multiplexer=mux,
                               data_provider=data_provider.MultiplexerDataProvider(mux, logdir))
    request = api_pb2.ListSessionGroupsRequest(
        allowed_statuses=list(api_pb2.Status.values()), start_index=0, slice_size=10)
    response = list_session_groups.Handler(context.RequestContext(), backend_context.Context(tb),
                                           "", request).run()
    state = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    expected = {t["name"]: t for t in state["trials"]}
    assert sorted(g.name for g in response.session_groups) == sorted(expected)
    for group in response.session_groups:
        trial = expected[group.name]
        assert group.hparams["dropout"].number_value == trial["params"]["dropout"]
        (session,) = group.sessions
        assert session.status == api_pb2.STATUS_SUCCESS
        assert session.name == os.path.relpath(trial["run_dir"], logdir)
        values = {m.name.tag: m.value for m in session.metric_values}
        assert set(values) == set(sw.METRIC_TAGS)
        for tag in sw.METRIC_TAGS:
            assert values[tag] == pytest.approx(trial["metrics"][tag], abs=1e-7)


def test_ranking_table_is_plain_ascii_and_best_first(three_trials):
    result, _, sweep_dir = three_trials
    state = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    best_first = sorted(state["trials"], key=lambda t: -t["metrics"]["best_val_accuracy"])
    rows = [line for line in result.output.splitlines() if line.startswith("| ") and "finished" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "3"]
    assert [row.split("|")[-2].strip() for row in rows] == [t["run_dir"] for t in best_first]
    assert "ranked by best val_accuracy" in result.output
    m = state["trials"][1]["metrics"]
    assert (f"[2/3] trial-002-dropout=0.3: finished, best val_accuracy {m['best_val_accuracy']:.4f}, "
            f"best val_loss {m['best_val_loss']:.4f} (epoch {m['best_epoch']}), "
            f"test accuracy {m['test_accuracy']:.4f}") in result.output.splitlines()
    assert "best epoch (val loss)" in result.output
    assert result.output.isascii() and "\x1b" not in result.output


def test_failing_trial_is_recorded_and_resume_reruns_only_unfinished_trials(tmp_path, data_path):
    logdir = tmp_path / "logs"
    result = invoke("mlp", "--data", data_path, "--set", "units=8", "--set", "dropout=0,1.5,0.1,0.2",
                    "--epochs", 1, "--logdir", logdir, *QUICK)
    assert result.exit_code == 1
    sweep_dir = sweep_dir_of(logdir)
    assert "1 of 4 trials did not finish" in result.output and f"--resume {sweep_dir}" in result.output
    path = os.path.join(sweep_dir, "sweep.json")
    state = json.load(open(path))
    assert [t["status"] for t in state["trials"]] == ["finished", "failed", "finished", "finished"]
    failed = state["trials"][1]
    assert failed["error"].startswith("mlp.build() raised ValueError") and "\n" not in failed["error"]
    assert failed["metrics"] == {} and os.path.isdir(failed["run_dir"])
    lines = [l for l in result.output.splitlines() if "failed:" in l and l.startswith("[2/4]")]
    assert lines == [f"[2/4] trial-002-dropout=1.5: failed: {failed['error']}"]
    from tensorboard.plugins.hparams import api_pb2, metadata

    end = metadata.parse_session_end_info_plugin_data(read_events(failed["run_dir"]).SummaryMetadata(
        metadata.SESSION_END_INFO_TAG).plugin_data.content)
    assert end.status == api_pb2.STATUS_FAILURE

    # Trial 3: the sweep died after its run finished. Trial 4: it died during the run.
    first, third, fourth = (state["trials"][i] for i in (0, 2, 3))
    third["status"] = fourth["status"] = "running"
    run_metrics = os.path.join(fourth["run_dir"], "metrics.json")
    json.dump({**json.load(open(run_metrics)), "status": "running"}, open(run_metrics, "w"))
    json.dump(state, open(path, "w"))
    untouched = {p: os.path.getmtime(os.path.join(first["run_dir"], p)) for p in os.listdir(first["run_dir"])}

    result = invoke("--resume", sweep_dir, "--progress", "none")
    assert result.exit_code == 1  # trial 2 fails again
    resumed = json.load(open(path))["trials"]
    assert [t["status"] for t in resumed] == ["finished", "failed", "finished", "finished"]
    assert resumed[0] == first  # skipped
    assert {p: os.path.getmtime(os.path.join(first["run_dir"], p))
            for p in os.listdir(first["run_dir"])} == untouched
    assert resumed[2]["run_dir"] == third["run_dir"]  # adopted from its finished metrics.json
    assert resumed[2]["metrics"] == third["metrics"]
    for old, new in ((failed, resumed[1]), (fourth, resumed[3])):
        assert new["run_dir"] == old["run_dir"] + ".retry1"  # a half-written dir is never reused
        assert new["previous_run_dirs"] == [old["run_dir"]]
    assert json.load(open(os.path.join(resumed[3]["run_dir"], "metrics.json")))["status"] == "finished"
    assert "[1/4] trial-001-dropout=0.0: finished before, skipped" in result.output
    assert sorted(os.listdir(sweep_dir)) == sorted(
        [t["name"] for t in resumed] + [resumed[i]["run_dir"].rsplit("/", 1)[1] for i in (1, 3)]
        + ["sweep.json", *_events(sweep_dir)])


INTERRUPTING_ARCH = """\"\"\"Dense, or Ctrl-C while building.\"\"\"
import keras


def build(input_shape, num_classes, stop=0):
    if stop == 1:
        raise KeyboardInterrupt
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
"""


def test_ctrl_c_stops_the_sweep_and_records_where(tmp_path, data_path):
    arch = tmp_path / "stopper.py"
    arch.write_text(INTERRUPTING_ARCH)
    result = invoke(arch, "--data", data_path, "--set", "stop=0,1,2", "--epochs", 1,
                    "--logdir", tmp_path / "logs", *QUICK)
    sweep_dir = sweep_dir_of(tmp_path / "logs", "stopper")
    assert result.exit_code == 130
    assert f"Sweep interrupted in trial-002-stop=1. Resume with: trainer sweep --resume {sweep_dir}" \
        in result.output
    state = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    assert [t["status"] for t in state["trials"]] == ["finished", "interrupted", "pending"]
    assert state["trials"][2]["run_dir"] is None
    from tensorboard.plugins.hparams import metadata

    tags = read_events(state["trials"][1]["run_dir"]).Tags()["tensors"]
    assert metadata.SESSION_START_INFO_TAG in tags and metadata.SESSION_END_INFO_TAG not in tags
    assert state["seed"] == 1 and all(t["config"]["seed"] == 1 for t in state["trials"])


@pytest.mark.parametrize("args, message", [
    (["mlp", "--set", "dropout=0:1:0"], "non-zero step"),
    (["mlp", "--set", "epochs=1,2", "--epochs", "2"], "`epochs` is given both as an option and in --set"),
    (["mlp", "--set", "dropout=0,0.5", "--random", "3"], "Expected at most 2"),
    (["mlp", "--set", "depth=1,2"], "Unknown hyperparameter 'depth'"),
    ([], "Missing argument 'ARCH'"),
])
def test_command_line_errors_exit_2_before_anything_is_written(tmp_path, args, message):
    result = invoke(*args, "--logdir", tmp_path / "logs")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "logs").exists()


def test_resume_takes_no_new_sweep_options(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"arch": "mlp", "trials": []}))
    result = invoke("--resume", tmp_path, "--set", "dropout=0.1", "--epochs", "3")
    assert result.exit_code == 2 and "it takes no --epochs, --set" in result.output
    result = invoke("--resume", tmp_path / "nowhere")
    assert result.exit_code == 2
    (tmp_path / "sweep.json").write_text("{")
    result = invoke("--resume", tmp_path)
    assert result.exit_code == 2 and "readable sweep.json" in result.output
