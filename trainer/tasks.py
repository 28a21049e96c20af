"""What kind of problem an architecture solves, and what follows from it.

An architecture module may set ``TASK = "binary"`` or ``TASK = "regression"`` (default
``"multiclass"``). The task chooses the loss, the compiled metrics, what ``build`` receives as
``num_classes`` and which monitors apply.
"""

from __future__ import annotations

import numpy as np

TASKS = ("multiclass", "binary", "regression")

# The metrics named first in the summary table and `trainer show`.
HEADLINE = {"multiclass": ("accuracy",), "binary": ("accuracy", "auc"), "regression": ("mae", "r2")}


def check(task: str) -> str:
    from trainer.errors import UsageError

    if task not in TASKS:
        raise UsageError(f"Invalid value for `TASK`. Received: TASK={task!r}. Expected one of {', '.join(TASKS)}.")
    return task


def outputs(task: str, num_classes: int) -> int:
    """The ``num_classes`` given to ``build``: one unit for binary (sigmoid) and regression."""
    return num_classes if task == "multiclass" else 1


def check_outputs(model, task: str, num_classes: int) -> None:
    """The model's output must be one value per class (multiclass) or one value (binary,
    regression); otherwise the first batch would fail with a long TensorFlow error."""
    from trainer.errors import UsageError

    shape = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else None
    expected = outputs(task, num_classes)
    if shape is None or len(model.outputs) != 1:
        return  # a subclassed model without symbolic outputs: Keras checks at the first batch
    if len(shape) != 2 or shape[-1] != expected:
        what = f"{num_classes} classes" if task == "multiclass" else f"a {task} task (one output)"
        got = f"{shape[-1]} values" if len(shape) == 2 else f"shape {shape}"
        raise UsageError(f"The model outputs {got} per sample, but the data has {what}: "
                         f"build() must end in a layer of {expected} unit{'s' if expected > 1 else ''}.")


def loss(task: str) -> str:
    return {"multiclass": "sparse_categorical_crossentropy", "binary": "binary_crossentropy",
            "regression": "mean_squared_error"}[task]


def metrics(task: str) -> list:
    """Keras's own metrics for the task (the multiclass monitors are added by the run)."""
    import keras

    if task == "multiclass":
        return ["accuracy"]
    if task == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.Precision(name="precision"),
                keras.metrics.Recall(name="recall"), keras.metrics.AUC(name="auc")]
    return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.R2Score(name="r2")]


def label_problem(y: np.ndarray, task: str, num_classes: int | None) -> str | None:
    """Why ``y`` cannot be this task's labels, or None."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        return f"has shape {y.shape}; expected one label per sample, shape (N,)"
    if task == "regression":
        if y.dtype.kind not in "uif":
            return f"has dtype {y.dtype}; expected numbers"
        if not np.all(np.isfinite(y.astype(np.float64))):
            return "has non-finite values"
        return None
    if y.dtype.kind not in "ui" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        return f"has dtype {y.dtype}; expected integer labels"
    low, high = int(y.min()), int(y.max())
    top = 1 if task == "binary" else (num_classes - 1 if num_classes else high)
    if low < 0 or high > top:
        return f"has labels {low}..{high}; expected 0..{top}"
    return None
