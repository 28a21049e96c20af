"""MLP 512-512 with dropout p, RMSprop, early stopping on val_loss (the dropout-sweep tutorial)."""

import keras

DEFAULTS = {
    "epochs": 20,
    "batch_size": 128,
    "optimizer": "rmsprop",
    "learning_rate": 0.001,
    "validation": 0.1,
    "early_stopping": 2,
}


def build(input_shape, num_classes, dropout=0.0, units=512):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    for _ in range(2):
        x = keras.layers.Dense(units, activation="relu")(x)
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")
