"""``trainer lr-find``: the learning-rate range test, with the options of ``trainer fit``."""

from __future__ import annotations

import shlex

import click
from click.core import ParameterSource

from trainer.cli import fit as _fit
from trainer.cli.common import command, make_console, quiet_tensorflow
from trainer.cli.config_option import config_given, config_option, resolve_run_config
from trainer.cli.sweep import with_fit_params
from trainer.errors import Interrupted, invalid_argument

OWN = ("arch", "start_lr", "end_lr", "batches", "diverge", "learning_rate")


def _as_arguments(param: click.Parameter, value) -> list[str]:
    """``param`` with ``value`` as it is typed on a command line."""
    if isinstance(param, click.Option) and param.is_flag and param.secondary_opts:
        return [param.opts[0] if value else param.secondary_opts[0]]
    if isinstance(param, click.Option) and param.is_flag:
        return [param.opts[0]] if value else []
    values = value if isinstance(value, (tuple, list)) else (value,)
    return [item for v in values for item in (param.opts[0], str(v))]


def base_fit_command(ctx: click.Context, arch: str) -> str:
    """``trainer fit ARCH`` with ``--config`` and the fit options given on this command line (in fit's order)."""
    arguments = ["trainer", "fit", arch]
    if config_given(ctx):  # the file's settings too (its learning rate is overridden below)
        arguments += ["--config", config_given(ctx)]
    for param in ctx.command.params:
        if param.name in ctx.params and param.name not in OWN \
                and ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE:
            arguments += _as_arguments(param, ctx.params[param.name])
    return " ".join(shlex.quote(a) for a in arguments)


@command(name="lr-find")
@config_option(exclude=("learning_rate",))  # a run's config.json: its rate is what we look for
@click.argument("arch", required=False)
@click.option("--start-lr", type=float, default=1e-7, show_default=True, help="The first learning rate.")
@click.option("--end-lr", type=float, default=10.0, show_default=True, help="The last learning rate.")
@click.option("--batches", type=int, default=100, show_default=True,
              help="The most training batches to sweep over (fewer if the loss diverges).")
@click.option("--diverge", type=float, default=4.0, show_default=True,
              help="Stop when the smoothed loss exceeds this multiple of its lowest value.")
@click.option("--learning-rate", "--lr", "learning_rate", type=float, hidden=True)  # a clear error, not "no such option"
@click.pass_context
def lr_find(ctx, arch: str, start_lr: float, end_lr: float, batches: int, diverge: float, assignments: tuple,
            learning_rate: float | None, **options) -> None:
    """Find a learning rate for ARCH: the range test (the rate grows exponentially from
    --start-lr to --end-lr over --batches batches, on a model built for it and thrown away).

    Takes trainer fit's options (data, batch size, optimizer, --set, devices). Prints the
    suggested rate (a tenth of the rate at the lowest smoothed loss) and the trainer fit command
    that uses it; the curve is in TensorBoard under logs/ARCH/lr-find-<time>/. Ctrl-C stops
    after the current batch and keeps the partial curve.
    """
    from trainer import architecture, lr_find as finder

    if learning_rate is not None:
        raise invalid_argument("learning_rate", learning_rate,
                               "none: lr-find sweeps the rate from --start-lr to --end-lr")
    settings = finder.Settings(start=start_lr, end=end_lr, batches=batches, diverge=diverge)
    settings.validate()
    hyper = architecture.parse_assignments(assignments)
    if arch is None:
        raise invalid_argument("arch", None, "an architecture name or file (or a --config file that names one)")
    quiet_tensorflow()
    module = architecture.load(arch)
    config = resolve_run_config(ctx, module, options, hyper)
    console = make_console()
    result = finder.lr_find(config, settings, base_command=base_fit_command(ctx, arch), console=console)
    for line in finder.summary_lines(result):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.signum:
        import signal

        raise Interrupted(f"Stopped by {signal.Signals(result.signum).name}; the partial curve is kept in "
                          f"{result.run_dir}.", 128 + result.signum)


# fit's options that set a RunConfig field, and --set (as trainer sweep takes them): the same data,
# architecture, devices and batch size; training-only ones are accepted and passed on to the
# printed fit command. --learning-rate is ours (an error: the rate is what the test sweeps).
lr_find.params = with_fit_params(lr_find.params, _fit.fit.params)
