"""Binary classifier for tabular data: Dense(64) -> Dense(32) -> one sigmoid unit."""

import keras

TASK = "binary"
INPUT_SHAPE = (10,)  # what `trainer list` and `trainer summary` show it with; any width works
DEFAULTS = {"epochs": 20, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.001,
            "validation": 0.2, "early_stopping": 4}


def build(input_shape, num_classes, units=64, dropout=0.1):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(units // 2, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="binary_mlp")
