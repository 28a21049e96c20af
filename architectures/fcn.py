"""Fully connected: Dense(128, relu) -> Dense(10, softmax), plain SGD (the Keras FCN tutorial)."""

import keras

DEFAULTS = {
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "sgd",
    "learning_rate": 0.01,  # Keras's default SGD rate
    "validation": 0.2,
}


def build(input_shape, num_classes, units=128):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="fcn")
