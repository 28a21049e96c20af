"""``trainer config ARCH``: every ``trainer fit`` option and build() hyperparameter with its
default for ARCH, as a commented TOML file that ``trainer fit --config`` takes unchanged."""

from __future__ import annotations

import click

from trainer.cli.common import command, quiet_tensorflow
from trainer.cli.config_option import option_keys
from trainer.cli.fit import fit

ARCH_HELP = "The architecture: a built-in name (trainer list), a .py file or package.module."
EXCLUDE = ("resume_dir", "assignments")  # --resume is no setting; --set is the [hyperparameters] table


def default_rows(arch) -> list[tuple[str, object, str]]:
    """(key, default for ``arch``, comment) for every option of ``trainer fit``: the resolved
    value (framework defaults < the architecture's DEFAULTS) for a ``RunConfig`` field, the
    option's own default otherwise."""
    import dataclasses

    from trainer import config as configuration

    resolved = configuration.resolve(arch, {})
    fields = {f.name for f in dataclasses.fields(resolved)}
    name = arch.name if arch.source == f"architectures.{arch.name}" else arch.source
    rows, seen = [("arch", name, ARCH_HELP)], {"arch"}
    for param in option_keys(fit, EXCLUDE).values():
        if param.name in seen:
            continue
        seen.add(param.name)
        if param.name in fields:
            default = getattr(resolved, param.name)
        else:
            default = param.default
        if isinstance(default, tuple):
            default = list(default)
        if not isinstance(default, (bool, int, float, str, list)):  # None, or click's "unset"
            default = False if getattr(param, "is_flag", False) and not param.secondary_opts else None
        flags = " / ".join(param.opts + param.secondary_opts)
        rows.append((param.name, default, f"{flags}: {param.help or ''}".strip()))
    return rows


@command("config")
@click.argument("arch")
def config(arch: str) -> None:
    """Print a complete, commented TOML config of ARCH's defaults: edit it, then
    `trainer fit --config FILE` (flags on top still win).

    \b
    Example:
      trainer config cnn > cnn.toml && trainer fit --config cnn.toml --epochs 3
    """
    from trainer import architecture, configfile

    quiet_tensorflow()  # the architecture module imports Keras
    module = architecture.load(arch)
    hyper = {**module.hyperparameters(), **configuration_hyper(module)}
    title = (f"trainer fit --config FILE: the defaults of {module.name!r} ({module.description})\n"
             "Every key is optional; a flag on the command line overrides the file.")
    click.echo(configfile.render_toml(title, default_rows(module), hyper), nl=False)


def configuration_hyper(arch) -> dict:
    """The hyperparameter defaults the architecture's DEFAULTS set (beyond build()'s own)."""
    from trainer import config as configuration

    return configuration.resolve(arch, {}).hyperparameters
