"""Config files and the --config option on their own: reading, sorting keys, the unknown-key
error, the TOML writer, the click layer on a toy command (no TensorFlow), ``import trainer``
staying light, and the console in Jupyter. The real runs are in ``test_config_e2e.py``."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys

import click
import pytest

from tests.conftest import REPO
from trainer import configfile
from trainer.cli.config_option import LAYERS, call, config_option, given_values
from trainer.errors import UsageError

SETTINGS = {"epochs": 3, "batch-size": 16, "image_size": [64, 32], "per_class": False,
            "hyperparameters": {"units": 8}, "dropout": 0.5}


def write(path, payload: dict) -> str:
    """``payload`` in the format of ``path``'s suffix (TOML written by hand: flat keys and one table)."""
    path = str(path)
    if path.endswith(".json"):
        text = json.dumps(payload)
    elif path.endswith((".yaml", ".yml")):
        import yaml

        text = yaml.safe_dump(payload)
    else:
        flat = {k: v for k, v in payload.items() if not isinstance(v, dict)}
        text = configfile.render_toml("test", [(k, v, "") for k, v in flat.items()],
                                      payload.get("hyperparameters", {}))
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".yml", ".json"])
def test_every_format_reads_the_same_settings(tmp_path, suffix):
    layer = configfile.load(write(tmp_path / f"run{suffix}", SETTINGS))
    assert layer.values == {"epochs": 3, "batch_size": 16, "image_size": [64, 32], "per_class": False,
                            "dropout": 0.5}  # '-' read as '_'
    assert layer.hyperparameters == {"units": 8} and not layer.saved and layer.arch is None


@pytest.mark.parametrize("name, text, message", [
    ("run.ini", "epochs=1", "Invalid value for option `--config`. Received: '{path}'. Expected a .toml, "
                            ".yaml, .yml or .json file."),
    ("run.toml", "epochs = \n", "Cannot read config file '{path}': TOMLDecodeError: Invalid value"),
    ("run.yaml", "- 1\n- 2\n", "Invalid config file '{path}': expected a mapping of settings at the top "
                               "level, got list."),
    ("run.json", '{"hyperparameters": 3}', "Invalid value for `hyperparameters` in config file '{path}'. "
                                           "Received: 3. Expected a table of build() arguments."),
])
def test_bad_files_are_one_line_usage_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        configfile.load(str(path))
    assert info.value.message.startswith(message.format(path=path)), info.value.message
    assert "\n" not in info.value.message and info.value.exit_code == 2


def test_unknown_keys_name_the_closest_known_one_and_a_saved_run_ignores_its_results(tmp_path):
    layer = configfile.from_mapping({"epoch": 2, "units": 4}, "config file 'run.toml'")
    layer.known_options = ("epochs", "batch_size")
    with pytest.raises(UsageError) as info:
        configfile.sort_rest(layer, {"epoch": 2, "units": 4}, {"seed"}, {"units": 128})
    assert info.value.message.startswith(
        "Unknown key `epoch` in config file 'run.toml'. Did you mean `epochs`? Expected an option")
    layer = configfile.from_mapping({"hyperparameters": {"unit": 3}}, "config file 'run.toml'")
    with pytest.raises(UsageError, match=r"Unknown key `hyperparameters.unit` in config file 'run.toml'. "
                                         r"Did you mean `hyperparameters.units`\?"):
        configfile.sort_rest(layer, {}, set(), {"units": 128})
    # build(**kwargs) takes anything; a field without a flag is a setting
    assert configfile.sort_rest(layer, {"save_every_batches": 5, "x": 1}, {"save_every_batches"}, None) == (
        {"save_every_batches": 5}, {"x": 1, "unit": 3})
    (tmp_path / "my_net.py").write_text("")
    saved = configfile.from_mapping(
        {"arch": "my_net", "arch_source": "/elsewhere/my_net.py", "run_dir": "x", "versions": {}, "task": "m",
         "class_names": ["a"], "seed": 4, "hyperparameters": {"units": 2}}, "config file 'x'", str(tmp_path))
    assert saved.saved and saved.arch == str(tmp_path / "my_net.py")  # the run's own copy of the file
    assert configfile.sort_rest(saved, saved.values, {"seed", "task"}, {"units": 1}) == ({"seed": 4}, {"units": 2})


def test_the_toml_writer_round_trips_through_tomllib():
    options = [("name", 'a "quoted" \\ name', "--name: × unicode\nsecond line"), ("epochs", 3, ""),
               ("rate", 1e-4, ""), ("flag", False, ""), ("size", [64, 32], ""), ("unset", None, "not set")]
    text = configfile.render_toml("title", options, {"units": 128, "act": "relu", "free": None})
    assert "# --name: × unicode\n# second line\nname = " in text and "# unset = ...  (not set)" in text
    assert configfile.parse_toml(text) == {"name": 'a "quoted" \\ name', "epochs": 3, "rate": 1e-4, "flag": False,
                                   "size": [64, 32], "hyperparameters": {"units": 128, "act": "relu"}}


# ---- the --config layer on a toy command: no TensorFlow ---------------------------------------

@click.command()
@click.argument("arch", required=False)
@config_option(exclude=("secret",))
@click.option("--epochs", type=int, default=5)
@click.option("--batch-size", type=int)
@click.option("--per-class/--no-per-class", default=True)
@click.option("--image-size")
@click.option("--secret")
def toy(arch, **options):
    ctx = click.get_current_context()
    return arch, given_values(ctx, options), {k: v for _, rest in ctx.meta[LAYERS] for k, v in rest.items()}


def test_file_values_go_through_the_options_and_flags_win(tmp_path):
    path = write(tmp_path / "run.yaml", {**SETTINGS, "arch": "cnn", "secret": "x"})
    arch, given, rest = call(toy, ["--config", path, "--epochs", "7"], {})
    assert arch == "cnn"
    assert given == {"epochs": 7, "batch_size": 16, "image_size": "64,32", "per_class": False}
    assert rest == {"dropout": 0.5, "secret": "x"}  # not options: sorted once the architecture is known
    # the caller's layer (the Python API) is above the file, the command line above both
    arch, given, _ = call(toy, ["mlp", "--config", path], {"batch_size": 8, "per_class": True})
    assert arch == "mlp" and given["batch_size"] == 8 and given["per_class"] is True and given["epochs"] == 3
    # options left at their defaults are not "given": the architecture's DEFAULTS apply to them
    assert call(toy, [], {})[1] == {}


def test_a_value_the_flag_would_refuse_names_the_file_and_the_key(tmp_path):
    path = write(tmp_path / "run.json", {"epochs": "three"})
    with pytest.raises(UsageError) as info:
        call(toy, ["--config", path], {})
    assert info.value.message == (f"Invalid value for `epochs` in config file '{path}'. Received: epochs='three'. "
                                  "Expected what --epochs takes: 'three' is not a valid integer.")
    with pytest.raises(UsageError, match="Invalid value for '--epochs': 'x' is not a valid integer"):
        call(toy, ["--epochs", "x"], {})


def test_fits_option_defaults_are_the_run_defaults():
    """An option left out is resolved from RunConfig (and the architecture's DEFAULTS), not from
    its click default: the two must agree, or --help would show a default that runs do not get."""
    import dataclasses

    from trainer.cli.fit import fit
    from trainer.config import RunConfig

    fields = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    explicit = {p.name: p.default for p in fit.params
                if p.name in fields and isinstance(p.default, (bool, int, float, str))}
    assert {"logdir", "progress", "histograms_every", "per_class", "strategy"} <= set(explicit)
    assert explicit == {name: fields[name] for name in explicit}


# ---- import trainer, Jupyter ----------------------------------------------------------------------

def test_import_trainer_imports_neither_tensorflow_nor_keras():
    code = ("import sys, trainer\n"
            "assert callable(trainer.fit) and callable(trainer.resume)\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'click', 'rich') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_in_jupyter_the_console_keeps_its_width_and_the_progress_is_rich(monkeypatch):
    """rich detects a notebook by IPython's shell class; our console factory and the automatic
    progress mode must not turn it into a 200-column log with plain lines (unless ipywidgets,
    which rich's live display needs in a notebook, is missing)."""
    from callbacks import progress
    from callbacks.progress import PlainProgress, RichProgress, make_progress
    from trainer.cli.common import LOG_WIDTH, make_console

    class ZMQInteractiveShell:  # the class name is what rich checks
        pass

    assert not make_console().is_jupyter
    assert isinstance(make_progress("auto", 32, make_console()), PlainProgress)  # captured by pytest
    monkeypatch.setattr(builtins, "get_ipython", lambda: ZMQInteractiveShell(), raising=False)
    console = make_console()
    assert console.is_jupyter and console.width < LOG_WIDTH
    monkeypatch.setattr(progress, "jupyter_widgets", lambda: True)
    assert isinstance(make_progress("auto", 32, console), RichProgress)
    monkeypatch.setattr(progress, "jupyter_widgets", lambda: False)
    assert isinstance(make_progress("auto", 32, console), PlainProgress)


def test_a_resumed_run_or_sweep_takes_no_config_file(tmp_path):
    from click.testing import CliRunner

    from trainer.cli import main

    path = write(tmp_path / "run.toml", {"arch": "fcn", "epochs": 2})
    for command, text in (("fit", "Got both --config and --resume; a resumed run keeps its own architecture"),
                          ("sweep", "it takes no --config (only --progress, --gpu, --cpu)")):
        result = CliRunner().invoke(main, [command, "--resume", str(tmp_path), "--config", path])
        assert result.exit_code == 2 and text in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
