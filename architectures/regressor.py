"""Regression for tabular data: Dense(64) -> Dense(64) -> one linear output, MSE loss."""

import keras

TASK = "regression"
INPUT_SHAPE = (10,)  # what `trainer list` and `trainer summary` show it with; any width works
DEFAULTS = {"epochs": 30, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.003,
            "validation": 0.2, "early_stopping": 5}


def build(input_shape, num_classes, units=64):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(inputs, outputs, name="regressor")
