"""Config files: a run's settings in TOML, YAML or JSON, and a saved run's ``config.json``.

A file is one layer of the resolution ``framework defaults < the architecture's DEFAULTS <
config file < command-line flags`` (or the Python API's arguments). Its keys are the
command's option names (``epochs``, ``batch_size``; ``batch-size`` is read the same way),
``RunConfig`` fields, and ``build()`` hyperparameters, either at the top level or in a
``[hyperparameters]`` table. Which keys are options is the command's business (the CLI asks
click); this module reads files, sorts the remaining keys once the architecture is known, and
writes the commented TOML of ``trainer config``. It imports nothing heavy.

A saved run's ``config.json`` (it has ``run_dir`` and ``versions``) reruns that run: its
architecture source (the copy of the architecture file kept in the run directory, if any),
data, seed and hyperparameters; the keys that record results rather than settings are ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os

from trainer.errors import UsageError, one_line

SUFFIXES = (".toml", ".yaml", ".yml", ".json")
SAVED_MARKERS = ("run_dir", "versions")  # only a saved run's config.json has both
# RunConfig fields a run fills in itself: never settings (ignored in a saved config.json).
OUTPUT_FIELDS = ("run_dir", "versions", "task")
HYPER_TABLE = "hyperparameters"


@dataclasses.dataclass
class ConfigFile:
    """One layer of settings: ``values`` (flat, keys normalised) and the explicit
    ``[hyperparameters]`` table; ``saved`` for a run's own config.json."""

    source: str  # what the messages call it: "config file 'run.toml'", "trainer.fit()"
    values: dict
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    saved: bool = False
    arch: str | None = None  # the architecture a saved run used (its kept copy, or its source)
    known_options: tuple = ()  # the reading command's option keys (for the unknown-key hint)


def normalise(key: str) -> str:
    return str(key).strip().replace("-", "_")


def read(path: str) -> dict:
    """The file's top-level mapping; one-line errors for a missing, unknown or broken file."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"Invalid value for option `--config`. Received: {path!r}. "
                         "Expected a .toml, .yaml, .yml or .json file.")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise UsageError(f"Invalid value for option `--config`. Received: {path!r}, which cannot be "
                         f"read ({exc.strerror or exc}). Expected a config file.") from None
    try:
        payload = _parse(suffix, raw)
    except Exception as exc:  # noqa: BLE001 - each parser has its own error classes
        raise UsageError(f"Cannot read config file {path!r}: {type(exc).__name__}: {one_line(exc)}") from None
    if payload is None and suffix in (".yaml", ".yml"):
        payload = {}  # an empty YAML file
    if not isinstance(payload, dict):
        raise UsageError(f"Invalid config file {path!r}: expected a mapping of settings at the top "
                         f"level, got {type(payload).__name__}.")
    return payload


def parse_toml(text: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
        import tomli as tomllib
    return tomllib.loads(text)


def _parse(suffix: str, raw: bytes):
    if suffix == ".json":
        return json.loads(raw.decode("utf-8"))
    if suffix == ".toml":
        return parse_toml(raw.decode("utf-8"))
    import yaml

    return yaml.safe_load(raw.decode("utf-8"))


def from_mapping(payload: dict, source: str, base_dir: str | None = None) -> ConfigFile:
    """A layer from a parsed mapping: keys normalised, the hyperparameters table apart, and for a
    saved run the architecture to rerun (``base_dir``: the directory of its config.json)."""
    values = {normalise(k): v for k, v in payload.items()}
    hyper = values.pop(HYPER_TABLE, None) or {}
    if not isinstance(hyper, dict):
        raise UsageError(f"Invalid value for `{HYPER_TABLE}` in {source}. Received: {hyper!r}. "
                         "Expected a table of build() arguments.")
    saved = all(key in values for key in SAVED_MARKERS)
    arch = None
    if saved:
        arch = values.get("arch_source") or values.get("arch")
        copy = os.path.join(base_dir or ".", os.path.basename(str(arch)))  # a user file's copy (trainer.run)
        if str(arch).endswith(".py") and os.path.isfile(copy):
            arch = copy
        for key in ("arch", "arch_source", *OUTPUT_FIELDS):
            values.pop(key, None)
    return ConfigFile(source, values, dict(hyper), saved, arch)


def load(path: str) -> ConfigFile:
    return from_mapping(read(path), f"config file {path!r}", os.path.dirname(os.path.abspath(path)))


def unknown_key(key: str, known, source: str) -> UsageError:
    """``Unknown key `epoch` in config file 'run.toml'. Did you mean `epochs`? ...``"""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return UsageError(f"Unknown key `{key}` in {source}.{hint} Expected an option of the command "
                      "(its --help, with '_' for '-'), a run setting or a build() hyperparameter "
                      "(`trainer config ARCH` lists them all).")


def sort_rest(layer: ConfigFile, rest: dict, fields, hyperparameters: dict | None) -> tuple[dict, dict]:
    """Splits the keys that are not the command's options into (RunConfig fields, build()
    hyperparameters). ``hyperparameters``: build()'s own (None when it takes ``**kwargs``:
    anything goes). An unknown key is an error, except in a saved config.json (a recorded
    result such as ``class_names``)."""
    fields = set(fields) - set(OUTPUT_FIELDS)
    settings, hyper = {}, {}
    for key, value in rest.items():
        if key in fields:
            settings[key] = value
        elif hyperparameters is None or key in hyperparameters:
            hyper[key] = value
        elif not layer.saved:
            raise unknown_key(key, set(fields) | set(hyperparameters) | set(layer.known_options), layer.source)
    for key in layer.hyperparameters:
        if hyperparameters is not None and key not in hyperparameters:
            raise unknown_key(f"{HYPER_TABLE}.{key}", {f"{HYPER_TABLE}.{k}" for k in hyperparameters},
                              layer.source)
    hyper.update(layer.hyperparameters)
    return settings, hyper


# ---- writing: `trainer config ARCH` ----------------------------------------------------------

def toml_value(value) -> str:
    """A TOML literal for a default: booleans, numbers, strings, lists (None has no TOML form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a basic string: JSON escapes are TOML escapes


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines() if line.strip()] if text else []


def render_toml(title: str, options: list[tuple[str, object, str]], hyperparameters: dict) -> str:
    """A commented TOML file: ``options`` as (key, default, help) rows at the top level, then the
    ``[hyperparameters]`` table. A default of None is written commented out (TOML has no null)."""
    lines = [*_comment(title), ""]
    for key, default, help_text in options:
        lines += _comment(help_text)
        entry = f"{key} = {toml_value(default)}" if default is not None else f'# {key} = ...  (not set)'
        lines += [entry, ""]
    lines.append(f"[{HYPER_TABLE}]")
    if not hyperparameters:
        lines.append("# build() takes no hyperparameters")
    for key, default in hyperparameters.items():
        lines.append(f"{key} = {toml_value(default)}" if default is not None else f"# {key} = ...  (no default)")
    return "\n".join(lines) + "\n"
