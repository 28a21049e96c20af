"""The Python API: ``trainer.fit`` and ``trainer.resume`` run exactly what ``trainer fit`` runs.

::

    import trainer
    result = trainer.fit("cnn", data="mnist.npz", epochs=3, dropout=0.2)
    result.run_dir, result.history, result.test["accuracy"], result.model

Keyword arguments are the options of ``trainer fit`` (``batch_size=64``, ``validation="test"``,
``per_class=False`` for ``--no-per-class``) and the architecture's build() hyperparameters; they
are a config layer above ``config=`` (a file, as ``--config``): framework defaults < the
architecture's DEFAULTS < the config file < the arguments. Each value is checked as its flag
would be, and errors are ``trainer.errors`` exceptions with the command line's one-line
messages (``UsageError`` for bad input). The progress display and the summary print to a rich
console, which renders in a Jupyter notebook.

Importing this module (and ``trainer``) imports neither TensorFlow nor Keras nor click: the
command line is loaded when ``fit`` is called.
"""

from __future__ import annotations

import os


def fit(arch: str | None = None, *, config: str | os.PathLike | None = None, **settings):
    """Trains ``arch`` (a built-in name, a ``.py`` file or ``package.module``; or the ``arch`` of
    ``config``) in a new run directory and returns its ``trainer.run.RunResult``: ``run_dir``,
    ``config`` (the resolved ``RunConfig``), ``history`` (one dict per epoch), ``test`` (test-set
    metrics), ``best_epoch``, ``wall_seconds`` and ``model`` (the trained Keras model)."""
    from trainer.cli.config_option import call
    from trainer.cli.fit import fit as command

    args = ([str(arch)] if arch is not None else []) + (["--config", os.fspath(config)] if config else [])
    return call(command, args, settings)


def resume(run_dir: str | os.PathLike):
    """Continues an interrupted run in its own directory (as ``trainer fit --resume``); returns
    its ``RunResult``, or None when the run had already finished."""
    from trainer.cli.config_option import call
    from trainer.cli.fit import fit as command

    return call(command, ["--resume", os.fspath(run_dir)], {})
