"""Learning-rate schedules (``--lr-schedule``), all made of Keras's own objects.

=================  ===================================================================  ==========
schedule           rate at optimizer step ``t`` of ``T`` (``r``: --learning-rate)          Keras object
=================  ===================================================================  ==========
``constant``       ``r``                                                                a float
``cosine``         ``m + (r - m) * (1 + cos(pi * t / T)) / 2``                          CosineDecay
``warmup-cosine``  linear ``0 -> r`` over ``W`` steps, then cosine ``r -> m`` over ``T - W``  CosineDecay
``onecycle``       linear ``r / 25 -> r`` over ``W`` steps, then cosine ``r -> m``           CosineDecay
``plateau``        ``r``, times ``--plateau-factor`` after ``--plateau-patience`` epochs      ReduceLROnPlateau
                   without a ``val_loss`` improvement (``loss`` without validation)
=================  ===================================================================  ==========

``m`` is ``--min-learning-rate`` (default 0; plateau's floor too). ``W`` is ``--warmup-steps``
or ``--warmup-epochs`` x batches per epoch; by default 10 % of the run for ``warmup-cosine`` and
30 % for ``onecycle`` (its ramp-up, as in Smith's 1cycle policy; the momentum is not cycled).

The step-based ones are ``keras.optimizers.schedules.CosineDecay`` objects: they follow the
optimizer's ``iterations``, which a resumed run restores with the weights, so the curve goes on
exactly where it stopped, and a saved model loads in plain Keras. ``plateau`` keeps the rate in
the optimizer's learning-rate variable (saved with the weights) and Keras's
``ReduceLROnPlateau`` callback, whose ``wait``/``best``/``cooldown_counter`` the run's
resumable state saves (``callbacks.compat``). ``learning_rate`` returns a float or a
``LearningRateSchedule``: a caller may wrap it (e.g. multiply it) before making the optimizer.
"""

from __future__ import annotations

from trainer.errors import UsageError, invalid_argument

SCHEDULES = ("constant", "cosine", "onecycle", "warmup-cosine", "plateau")
WARMUP_FRACTION = {"warmup-cosine": 0.1, "onecycle": 0.3}  # default W, as a fraction of the run
ONECYCLE_DIV = 25.0  # onecycle starts at r / 25 (fastai's div)


def validate(config) -> None:
    """Checks the schedule options on their own (what needs the run's length: ``warmup_steps``)."""
    name = config.lr_schedule
    if name not in SCHEDULES:
        raise invalid_argument("lr_schedule", name, f"one of {', '.join(SCHEDULES)}")
    if config.warmup_epochs is not None and config.warmup_steps is not None:
        raise UsageError(f"Got both --warmup-epochs ({config.warmup_epochs}) and --warmup-steps "
                         f"({config.warmup_steps}); give one.")
    if config.warmup_epochs is not None and not _number(config.warmup_epochs) > 0:
        raise invalid_argument("warmup_epochs", config.warmup_epochs, "a positive number of epochs")
    if config.warmup_steps is not None and not (_integer(config.warmup_steps) and config.warmup_steps > 0):
        raise invalid_argument("warmup_steps", config.warmup_steps, "a positive integer")
    warmup = config.warmup_epochs is not None or config.warmup_steps is not None
    if warmup and name not in WARMUP_FRACTION:
        raise UsageError(f"Invalid value for argument `lr_schedule`. Received: lr_schedule={name!r} with a "
                         f"warmup. Expected warmup-cosine or onecycle with --warmup-epochs/--warmup-steps.")
    minimum = config.min_learning_rate
    if not (_number(minimum) and 0 <= minimum < config.learning_rate):
        raise invalid_argument("min_learning_rate", minimum,
                               f"a number >= 0 and below the learning rate ({config.learning_rate})")
    if not (_integer(config.plateau_patience) and config.plateau_patience >= 1):
        raise invalid_argument("plateau_patience", config.plateau_patience, "an integer >= 1 (epochs)")
    if not (_number(config.plateau_factor) and 0 < config.plateau_factor < 1):
        raise invalid_argument("plateau_factor", config.plateau_factor, "a number between 0 and 1")
    if not (_number(config.plateau_min_delta) and config.plateau_min_delta >= 0):
        raise invalid_argument("plateau_min_delta", config.plateau_min_delta, "a number >= 0")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def warmup_steps(config, steps_per_epoch: int) -> int:
    """``W`` in optimizer steps (0 for the schedules without a warm-up); a UsageError if it
    leaves no step to decay in."""
    if config.lr_schedule not in WARMUP_FRACTION:
        return 0
    total = config.epochs * steps_per_epoch
    if config.warmup_steps is not None:
        steps, given = config.warmup_steps, f"warmup_steps={config.warmup_steps}"
    elif config.warmup_epochs is not None:
        steps, given = round(config.warmup_epochs * steps_per_epoch), f"warmup_epochs={config.warmup_epochs}"
    else:
        return max(1, round(WARMUP_FRACTION[config.lr_schedule] * total)) if total > 1 else 0
    if steps >= total:
        name = given.split("=")[0]
        raise UsageError(f"Invalid value for argument `{name}`. Received: {given} ({steps} steps). Expected "
                         f"fewer than the run's {total} training steps ({config.epochs} epochs x "
                         f"{steps_per_epoch} batches).")
    return max(1, steps)


def learning_rate(config, steps_per_epoch: int):
    """The optimizer's ``learning_rate``: a float, or a Keras ``LearningRateSchedule``."""
    import keras

    rate, name = config.learning_rate, config.lr_schedule
    if name in ("constant", "plateau"):
        return rate
    total = max(1, config.epochs * steps_per_epoch)
    alpha = config.min_learning_rate / rate
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, decay_steps=total, alpha=alpha)
    warmup = warmup_steps(config, steps_per_epoch)
    start = 0.0 if name == "warmup-cosine" else rate / ONECYCLE_DIV
    return keras.optimizers.schedules.CosineDecay(start, decay_steps=max(1, total - warmup), alpha=alpha,
                                                  warmup_target=rate, warmup_steps=warmup)


def callbacks(config, monitor: str) -> list:
    """The callbacks a schedule needs (plateau: Keras's ``ReduceLROnPlateau`` on ``monitor``).
    Place them before the scalars, so that an epoch's logged rate is the one after any change."""
    if config.lr_schedule != "plateau":
        return []
    import keras

    return [keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=config.plateau_factor,
                                              patience=config.plateau_patience,
                                              min_delta=config.plateau_min_delta,
                                              min_lr=config.min_learning_rate, verbose=0)]
