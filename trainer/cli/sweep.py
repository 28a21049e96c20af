"""``trainer sweep``: a grid or random search over hyperparameters and fit options.

It takes ``trainer fit``'s options (copied from ``trainer.cli.fit.fit.params``, so the two never
drift).
"""

from __future__ import annotations

import copy
import os

import click
from click.core import ParameterSource

from trainer.cli.common import Command, command, make_console, quiet_tensorflow
from trainer.cli.config_option import config_given, config_option, given_values, layer_settings
from trainer.cli.fit import fit
from trainer.errors import TrainerError, UsageError

SWEEP_HELP = {
    "assignments": "What to sweep: KEY=start:stop:step (inclusive), KEY=a,b,c or KEY=VALUE (fixed). "
                   "Keys are build() hyperparameters or run options such as learning_rate, "
                   "batch_size, optimizer, epochs (repeatable).",
    "name": "Suffix for the sweep directory name.",
    "seed": "Random seed of every trial and of --random's sample (default: one picked for the sweep).",
}
RESUME_OPTIONS = ("progress", "gpu", "cpu")  # may change when a sweep is resumed


def with_fit_params(own: list, fit_params: list, help_texts: dict | None = None) -> list[click.Parameter]:
    """``own`` plus copies of fit's options that a sweep can pass on: ``--set`` and those that set
    a ``RunConfig`` field (so ``fit --resume``/``--save-every``, handled by fit itself, stay out)."""
    import dataclasses

    from trainer.config import RunConfig

    fields = {f.name for f in dataclasses.fields(RunConfig)} | {"assignments"}
    taken = {p.name for p in own} | {opt for p in own for opt in p.opts + p.secondary_opts}
    result = list(own)
    for param in fit_params:
        opts = set(param.opts + param.secondary_opts)
        if isinstance(param, click.Option) and param.name in fields and not (
                {param.name} | opts) & taken:
            param = copy.copy(param)
            if help_texts and param.name in help_texts:
                param.help = help_texts[param.name]
            result.append(param)
    return result


class SweepCommand(Command):
    """A command whose parameters are its own plus ``trainer fit``'s, joined on first use."""

    @property
    def params(self) -> list:
        if not self._joined:
            self._params = with_fit_params(self._params, fit.params, SWEEP_HELP)
            self._joined = True
        return self._params

    @params.setter
    def params(self, value) -> None:
        self._params, self._joined = list(value), False


@command("sweep", cls=SweepCommand)
@click.argument("arch", required=False)
@config_option(exclude=("resume",))
@click.option("--random", "sample", type=click.IntRange(min=1), metavar="N",
              help="Run N combinations sampled from the grid (seeded by --seed) instead of all.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False), metavar="SWEEP_DIR",
              help="Finish an earlier sweep: finished trials are skipped, the others run again.")
def sweep(arch: str | None, sample: int | None, resume: str | None, assignments: tuple, **options) -> None:
    """Train ARCH once per combination of --set values; compare them in TensorBoard's HParams tab.

    \b
    Examples:
      trainer sweep mlp --set dropout=0:0.8:0.1
      trainer sweep mlp --set dropout=0,0.5 --set learning_rate=1e-3,1e-4 --epochs 5
      trainer sweep cnn --set batch_size=32,64,128 --random 2 --seed 1
      trainer sweep --resume logs/mlp/sweep-20250101-120000
      tensorboard --logdir logs/mlp/sweep-20250101-120000
    """
    from trainer import sweep as sweeping

    ctx = click.get_current_context()
    given = {name for name in options if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
    if resume:
        run = _resumed(ctx, arch, resume, assignments, sample, options, given)
    else:
        run = _created(ctx, arch, assignments, sample, options, given)
    console = make_console()
    console.print(f"Sweep {run.dir}: {len(run.trials)} trials, seed {run.state.get('seed')}",
                  markup=False, soft_wrap=True)
    try:
        run.run(console=console, echo=lambda line: console.print(line, markup=False, soft_wrap=True))
    finally:
        sweeping.print_ranking(console, run)
    failed = [t for t in run.trials if t["status"] != "finished"]
    if failed:
        raise TrainerError(f"{len(failed)} of {len(run.trials)} trials did not finish "
                           f"(see {run.dir}/{sweeping.SWEEP_FILE}); rerun them with --resume {run.dir}")


def _resumed(ctx, arch, resume: str, assignments, sample, options: dict, given: set):
    """The recorded sweep in ``resume``, its unfinished trials taking --progress/--gpu/--cpu."""
    from trainer import sweep as sweeping

    extra = [p.opts[0] for p in ctx.command.params
             if p.name in given - set(RESUME_OPTIONS) or (p.name, True) in
             (("assignments", bool(assignments)), ("sample", bool(sample)))]
    if config_given(ctx):
        extra.insert(0, "--config")
    if extra:
        raise UsageError(f"--resume runs the sweep as recorded in its {sweeping.SWEEP_FILE}; "
                         f"it takes no {', '.join(extra)} (only --progress, --gpu, --cpu).")
    run = sweeping.Sweep.load(resume)
    if arch and arch not in (run.state.get("arch"), run.state.get("arch_source")):
        raise UsageError(f"Sweep {resume!r} trains {run.state.get('arch')!r}, not {arch!r}.")
    for trial in run.trials:
        trial["config"].update({k: options[k] for k in given})
    quiet_tensorflow()
    return run


def _created(ctx, arch, assignments, sample, options: dict, given: set):
    """A new sweep directory with every trial planned (and checked) before any training. A
    config file's hyperparameters are fixed for every trial unless --set sweeps them."""
    from trainer import architecture, sweep as sweeping

    if not arch:
        raise UsageError("Missing argument 'ARCH' (or give --resume SWEEP_DIR).")
    specs = sweeping.parse_specs(assignments)
    if options.get("seed") is None:  # one seed for every trial: they differ only as swept
        options["seed"] = int.from_bytes(os.urandom(3), "little")
    both = sorted(given & set(specs))
    if both:
        raise UsageError(f"`{both[0]}` is given both as an option and in --set; keep one.")
    quiet_tensorflow()
    module = architecture.load(arch)
    settings, file_hyper = layer_settings(ctx, module)
    # as in `trainer fit`: options left at their defaults take the architecture's DEFAULTS
    run_options = {**settings, **given_values(ctx, options), "seed": options["seed"], "logdir": options["logdir"]}
    specs = {**{key: [value] for key, value in file_hyper.items() if key not in specs}, **specs}
    trials = sweeping.plan(module, specs, run_options, sample=sample, seed=options.get("seed"))
    return sweeping.Sweep.create(module, specs, trials, options["logdir"], options.get("name"),
                                 sample=sample, seed=options.get("seed"))
