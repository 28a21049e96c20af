"""Small CNN: Conv2D(16, 3x3) -> MaxPool -> Dense(10), Adam, validated on the test set."""

import keras

DEFAULTS = {
    "epochs": 10,
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "validation": "test",
}


def build(input_shape, num_classes, filters=16):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(filters, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn_small")
