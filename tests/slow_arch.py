"""A stand-in for a large model in real ``trainer fit`` runs: an architecture file whose every
batch sleeps, so an epoch lasts long enough to be interrupted, or an execution to be slow."""

from __future__ import annotations

import os

TEMPLATE = '''"""A dense classifier that sleeps {seconds} s in every batch (a stand-in for a large model)."""
import time

import keras
import numpy as np
import tensorflow as tf

DEFAULTS = {defaults!r}


class Sleep(keras.layers.Layer):
    def call(self, x):
        pause = tf.py_function(lambda: np.float32(time.sleep({seconds}) or 0.0), [], tf.float32)
        return x + 0.0 * tf.stop_gradient(tf.ensure_shape(pause, ()))

    def compute_output_shape(self, input_shape):
        return input_shape


def build(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = Sleep()(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''


def write_slow_arch(folder, seconds: float, name: str = "slow", **defaults) -> str:
    """``folder/<name>.py``: the architecture ``<name>`` (its ``DEFAULTS`` are ``defaults``)."""
    path = os.path.join(str(folder), f"{name}.py")
    with open(path, "w") as f:
        f.write(TEMPLATE.format(seconds=seconds, defaults=defaults))
    return path
