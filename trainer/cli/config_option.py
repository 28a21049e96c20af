"""``--config FILE`` for any command, and running a command from Python with the same resolution.

``@config_option()`` adds ``--config``: an eager option whose callback reads the file
(``trainer.configfile``) and turns the keys that name one of the command's own parameters into
click's ``default_map``, so each value goes through the same type, choice and callback as the
flag would, and a flag given on the command line still wins (click's parameter source tells
them apart: ``COMMANDLINE`` vs ``DEFAULT_MAP``). Nothing here lists options: a new option of the
command is a config key at once. The other keys (``RunConfig`` fields without a flag, build()
hyperparameters, mistakes) are kept in ``ctx.meta`` until the command knows its architecture and
calls ``layer_settings``. A ``default_map`` the caller passes in (``call``, the Python API) is a
layer above the file.
"""

from __future__ import annotations

import functools
import inspect

import click
from click.core import ParameterSource

from trainer import configfile
from trainer.errors import UsageError

LAYERS = "trainer.config_layers"  # ctx.meta: [(ConfigFile, {key: value not an option})]
GIVEN = "trainer.config_given"  # ctx.meta: the --config path, when one was given
API_SOURCE = "the arguments of trainer.{name}()"
NOT_IN_FILES = ("config_file", "help", "version")


def option_keys(command: click.Command, exclude=()) -> dict[str, click.Parameter]:
    """{key a config file may use: parameter}: each parameter's name and its long flags with
    '_' for '-' (``batch_size``, ``learning_rate`` and its alias ``lr``)."""
    keys: dict[str, click.Parameter] = {}
    for param in command.params:
        if not param.expose_value or param.name in NOT_IN_FILES or param.name in exclude:
            continue
        keys.setdefault(param.name, param)
        for opt in param.opts:
            if opt.startswith("--"):
                keys.setdefault(configfile.normalise(opt[2:]), param)
    return keys


def _for_param(param: click.Parameter, value):
    """A list for a one-value text option (``image_size = [64, 64]``, ``gpu = [0, 2]``) is the
    comma-separated text its flag takes; everything else goes to click as it is."""
    if isinstance(value, (list, tuple)) and param.nargs == 1 and not getattr(param, "multiple", False):
        return ",".join(str(v) for v in value)
    return value


def _checked(ctx: click.Context, param: click.Parameter, key: str, value, source: str):
    """``value`` if the option's type takes it (the same check as for the flag), else a
    one-line UsageError naming the file and the key."""
    try:
        param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        flag = param.opts[0] if param.opts[0].startswith("-") else param.name.upper()
        raise UsageError(f"Invalid value for `{key}` in {source}. Received: {key}={value!r}. "
                         f"Expected what {flag} takes: {exc.message}") from None
    return value


def _apply(exclude: tuple, ctx: click.Context, param: click.Parameter, value) -> None:
    layers = [configfile.load(value)] if value else []
    if ctx.default_map:  # from the caller (the Python API): above the file
        name = ctx.info_name or ctx.command.name
        layers.append(configfile.from_mapping(dict(ctx.default_map), API_SOURCE.format(name=name)))
    keys = option_keys(ctx.command, exclude)
    defaults, kept = {}, []
    for layer in layers:
        layer.known_options = tuple(keys)
        rest = {}
        for key, item in layer.values.items():
            target = keys.get(key)
            if target is None:
                rest[key] = item
            elif item is not None:  # None: not set (TOML has no null; a saved run records them)
                defaults[target.name] = _checked(ctx, target, key, _for_param(target, item), layer.source)
        if layer.arch and "arch" in keys:
            defaults["arch"] = layer.arch
        kept.append((layer, rest))
    ctx.default_map = defaults or None
    ctx.meta[LAYERS] = kept
    ctx.meta[GIVEN] = value


def config_option(exclude: tuple = ()):
    """Adds ``--config FILE`` to a command (``exclude``: parameters a file may not set, such as
    ``resume_dir``). The command then calls ``layer_settings(ctx, arch)`` once its architecture is
    loaded, and treats ``given_values`` as the flags that override the architecture's DEFAULTS
    (``resolve_run_config`` does both for a command that trains)."""
    return click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
        metavar="FILE", callback=functools.partial(_apply, tuple(exclude)),
        help="Settings from a .toml, .yaml or .json file (`trainer config ARCH` writes one), or a run's "
             "config.json to rerun it; flags given here override the file.")


def layer_settings(ctx: click.Context, arch) -> tuple[dict, dict]:
    """The config layers' keys that are not options, sorted now that ``arch`` is known:
    (RunConfig settings, build() hyperparameters); an unknown key is a UsageError."""
    import dataclasses

    from trainer.config import RunConfig

    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"arch", "arch_source", "hyperparameters"}
    params = inspect.signature(arch.module.build).parameters.values()
    known = None if any(p.kind is p.VAR_KEYWORD for p in params) else arch.hyperparameters()
    settings, hyper = {}, {}
    for layer, rest in ctx.meta.get(LAYERS, ()):
        more, extra = configfile.sort_rest(layer, rest, fields, known)
        settings.update(more)
        hyper.update(extra)
    return settings, hyper


def given_values(ctx: click.Context, values: dict) -> dict:
    """``values`` that were given (on the command line, in a config file or by the API), without
    those left at the option's own default: those come from the architecture's DEFAULTS."""
    return {name: value for name, value in values.items()
            if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}


def resolve_run_config(ctx: click.Context, arch, options: dict, hyperparameters: dict, extra: dict | None = None):
    """The ``RunConfig`` a command trains: framework defaults < ``arch``'s DEFAULTS < the config
    layers < the options given (``options``: the command's RunConfig-field parameters; ``extra``:
    fields the command computed from its own flags; ``hyperparameters``: from ``--set``)."""
    from trainer import config as configuration

    settings, file_hyper = layer_settings(ctx, arch)
    overrides = {**settings, **given_values(ctx, options), **(extra or {})}
    return configuration.resolve(arch, {**overrides, "hyperparameters": {**file_hyper, **hyperparameters}})


def config_given(ctx: click.Context) -> str | None:
    return ctx.meta.get(GIVEN)


def call(command: click.Command, args: list, settings: dict):
    """Runs ``command`` as the command line would with ``args``, ``settings`` being a config layer
    above ``--config``; returns what the command returns. Errors stay ``trainer.errors``
    exceptions (a click usage error becomes a ``UsageError`` with its message)."""
    try:
        ctx = command.make_context(command.name, [str(a) for a in args], default_map=dict(settings) or None)
    except click.ClickException as exc:
        raise UsageError(exc.format_message()) from None
    with ctx:
        return ctx.invoke(command.callback, **ctx.params)
