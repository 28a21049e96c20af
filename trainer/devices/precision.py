"""Numeric precision: which Keras dtype policy to use, setting it, and float32 model outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbacks import compat
from trainer.errors import TrainerError, UsageError, invalid_argument

if TYPE_CHECKING:
    import keras

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def resolve_precision(precision: str | None, mixed: bool, on_gpu: bool | None = None) -> str:
    """Returns the Keras dtype policy name: 'float32', 'mixed_float16' or 'mixed_bfloat16'.

    ``mixed=True`` picks float16 on a GPU and bfloat16 on CPU (``on_gpu`` defaults to
    whether TensorFlow sees a GPU).
    """
    if precision is not None:
        name = precision.strip().lower()
        if name not in PRECISIONS:
            raise invalid_argument(
                "precision", precision, "one of " + ", ".join(repr(p) for p in PRECISIONS)
            )
        if mixed and name == "float32":
            raise UsageError(
                "Arguments `mixed` and `precision` conflict. "
                f"Received: mixed=True, precision={precision!r}. Give only one of them."
            )
        return name
    if not mixed:
        return "float32"
    if on_gpu is None:  # visible physical GPUs: listing them does not initialise TensorFlow
        import tensorflow as tf

        on_gpu = bool(tf.config.get_visible_devices("GPU"))
    return "mixed_float16" if on_gpu else "mixed_bfloat16"


def apply_precision(policy: str) -> None:
    """Sets Keras's global dtype policy (affects layers created afterwards)."""
    import keras

    keras.mixed_precision.set_global_policy(policy)


def _is_softmax(activation) -> bool:
    return getattr(activation, "__name__", None) == "softmax"


def _float32_output(tensor, single_output: bool):
    """``tensor`` (a model output) computed in float32: a final softmax is rebuilt to run in
    float32 (see ``force_float32_outputs``), anything else gets a float32 cast."""
    import keras

    if keras.backend.standardize_dtype(tensor.dtype) == "float32":
        return tensor
    layer = compat.producing_layer(tensor)
    single_use = single_output and compat.call_count(layer) == 1
    if single_use and isinstance(layer, keras.layers.Softmax):
        return keras.layers.Softmax(axis=layer.axis, dtype="float32", name=layer.name)(
            layer.input
        )
    if single_use and isinstance(layer, keras.layers.Activation) and _is_softmax(
        layer.activation
    ):
        return keras.layers.Activation("softmax", dtype="float32", name=layer.name)(layer.input)
    if single_use and type(layer) is keras.layers.Dense and _is_softmax(layer.activation):
        config = {**layer.get_config(), "activation": None, "name": layer.name + "_logits"}
        dense = keras.layers.Dense.from_config(config)
        logits = dense(layer.input)
        dense.set_weights(layer.get_weights())
        return keras.layers.Activation("softmax", dtype="float32", name=layer.name)(logits)
    return keras.layers.Activation("linear", dtype="float32")(tensor)


def force_float32_outputs(model: keras.Model) -> keras.Model:
    """Returns ``model`` if its outputs are float32, else a functional model whose outputs are.

    A final softmax (``Activation``/``Softmax`` layer, or a ``Dense`` with softmax) is
    rebuilt so the softmax itself runs in float32 (a softmax ``Dense`` becomes a copy named
    ``<name>_logits`` with the same weights, followed by a float32 softmax named ``<name>``);
    any other output gets a float32 cast. All other layers (and weights) are shared with
    ``model``. Use the returned model from then on; call this before ``compile``.
    """
    import keras

    outputs = list(model.outputs) if getattr(model, "outputs", None) else None
    if outputs is None:
        raise TrainerError(
            f"Cannot force float32 outputs on model {model.name!r}: it has no symbolic "
            "inputs/outputs. Build it with keras.Input (functional or Sequential)."
        )
    if all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs):
        return model
    new_outputs = [_float32_output(o, len(outputs) == 1) for o in outputs]
    return keras.Model(model.inputs, new_outputs if len(new_outputs) > 1 else new_outputs[0],
                       name=model.name)
