"""Fused optimizer updates: Keras's Adam and RMSprop, each weight updated by one TensorFlow kernel.

Keras 3 writes an Adam or RMSprop update as about ten elementwise operations, each a pass over
the weight and its optimizer slots. TensorFlow has a training kernel that does the whole update
in one pass (``ResourceApplyAdam``, ``ResourceApplyRMSProp``: what ``tf.compat.v1.train``'s
optimizers ran). For models with many weights per unit of computation (dense layers) those
passes are a visible share of a training step.

``fuse(optimizer)`` makes a Keras ``Adam`` or ``RMSprop`` instance use the kernel. The instance
keeps its class, configuration and variables, so a model saved with it loads in plain Keras,
and the formulas are the same (tests/test_fused.py checks the weights against Keras's own
update). What the kernels do not cover keeps Keras's update: amsgrad, centered RMSprop,
sparse gradients (``IndexedSlices``), other optimizers, and any distribution strategy.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

from callbacks import compat

if TYPE_CHECKING:
    import keras

KERNELS = {"Adam": "ResourceApplyAdam", "RMSprop": "ResourceApplyRMSProp"}


def _handle(variable):
    import keras

    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def _adam_step(self, gradient, variable, learning_rate):
    import tensorflow as tf

    if isinstance(gradient, tf.IndexedSlices):
        return type(self).update_step(self, gradient, variable, learning_rate)
    dtype = variable.dtype
    step = tf.cast(self.iterations + 1, dtype)
    beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
    # var -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon), as Keras's Adam
    tf.raw_ops.ResourceApplyAdam(
        var=_handle(variable), m=_handle(compat.optimizer_slot(self, "_momentums", variable)),
        v=_handle(compat.optimizer_slot(self, "_velocities", variable)),
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


def _rmsprop_step(self, gradient, variable, learning_rate):
    import tensorflow as tf

    if isinstance(gradient, tf.IndexedSlices):
        return type(self).update_step(self, gradient, variable, learning_rate)
    dtype = variable.dtype
    # With momentum 0 the kernel's momentum slot only carries this step's increment
    # (mom = 0 * mom + increment; var -= mom): a scratch variable, not part of the state.
    mom = compat.optimizer_slot(self, "_momentums" if self.momentum > 0 else "_fused_scratch",
                                variable)
    tf.raw_ops.ResourceApplyRMSProp(
        var=_handle(variable), ms=_handle(compat.optimizer_slot(self, "_velocities", variable)),
        mom=_handle(mom),
        lr=tf.cast(learning_rate, dtype), rho=tf.cast(self.rho, dtype),
        momentum=tf.cast(self.momentum, dtype), epsilon=tf.cast(self.epsilon, dtype),
        grad=tf.cast(gradient, dtype))


def _rmsprop_build(self, var_list):
    import tensorflow as tf

    type(self).build(self, var_list)
    if self.momentum > 0 or getattr(self, "_fused_scratch", None) is not None:
        return
    with tf.init_scope():  # outside any tf.function being traced
        # Indexed like the optimizer's slots; plain tf.Variables, so not in `optimizer.variables`
        # and never saved.
        self._fused_scratch = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False)
                               for v in var_list]


def fuse(optimizer: keras.optimizers.Optimizer) -> str | None:
    """Makes a Keras ``Adam`` / ``RMSprop`` update with TensorFlow's fused kernel; returns the
    kernel's name, or None when the optimizer keeps Keras's update (see the module doc). Call
    before the optimizer is built (before ``fit``), inside the strategy scope if any."""
    import keras
    import tensorflow as tf

    if tf.distribute.has_strategy() or getattr(optimizer, "built", False):
        return None
    kind = type(optimizer)
    if kind in (keras.optimizers.Adam, keras.optimizers.RMSprop):
        compat.check_slot_index(optimizer)
    if kind is keras.optimizers.Adam and not optimizer.amsgrad:
        optimizer.update_step = types.MethodType(_adam_step, optimizer)
    elif kind is keras.optimizers.RMSprop and not optimizer.centered:
        optimizer.build = types.MethodType(_rmsprop_build, optimizer)
        optimizer.update_step = types.MethodType(_rmsprop_step, optimizer)
    else:
        return None
    return KERNELS[kind.__name__]
