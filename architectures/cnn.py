"""CNN: Conv2D(32) -> MaxPool -> Dropout -> Dense(128) -> Dropout -> Dense(10), SGD 0.01."""

import keras

DEFAULTS = {
    "epochs": 20,
    "batch_size": 128,
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "validation": "test",
}


def build(input_shape, num_classes, filters=32, units=128, dropout1=0.2, dropout2=0.3):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(filters, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(dropout1)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dropout(dropout2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn")
