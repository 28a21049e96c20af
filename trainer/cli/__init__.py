"""The ``trainer`` command line: the click group and its commands, one module per area
(``fit``, ``sweep``, ``reports``), sharing ``trainer.cli.common``.

Only click is imported when the commands are registered; TensorFlow is imported inside the
commands that need it, so ``trainer --help`` answers at once. Library code raises plain
``trainer.errors`` exceptions; ``common`` turns them into one line and an exit code.
"""

from __future__ import annotations

import click

from trainer.cli import (
    config_cmd as _config_cmd,
    fit as _fit,
    lr_find as _lr_find,
    reports as _reports,
    sweep as _sweep,
)
from trainer.cli.common import CONTEXT, Group, import_tensorflow_quietly, make_console, quiet_tensorflow

__all__ = ["CONTEXT", "import_tensorflow_quietly", "main", "make_console", "quiet_tensorflow"]


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(package_name="trainer")
def main() -> None:
    """Train Keras models and watch everything in TensorBoard.

    \b
    Examples:
      trainer fit cnn                      train the default CNN on MNIST
      trainer fit mlp --set dropout=0.2    a hyperparameter of the architecture
      trainer fit my_model.py --epochs 3   your own architecture module
      trainer config cnn > run.toml        every setting in a file: trainer fit --config run.toml
      tensorboard --logdir logs            watch the runs
    """


for _command in (_fit.fit, _sweep.sweep, _lr_find.lr_find, _config_cmd.config, *_reports.COMMANDS):
    main.add_command(_command)
