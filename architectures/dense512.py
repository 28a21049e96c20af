"""Dense(512, relu) -> Dense(10, softmax) with RMSprop (the Keras "getting started" MLP)."""

import keras

DEFAULTS = {
    "epochs": 5,
    "batch_size": 128,
    "optimizer": "rmsprop",
    "learning_rate": 0.001,
    "validation": 0.0,
}


def build(input_shape, num_classes, units=512):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="dense512")
