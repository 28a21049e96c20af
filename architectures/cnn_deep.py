"""Our best MNIST model: `cnn` with a second conv/pool/dropout block, Adam with cosine decay."""

import keras

DEFAULTS = {
    "epochs": 8,
    "batch_size": 128,
    "optimizer": "adam",
    "learning_rate": 0.002,
    "lr_schedule": "cosine",
    "validation": 0.1,
}


def build(input_shape, num_classes, filters=32, units=256, dropout=0.1, dense_dropout=0.4):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block in range(2):
        x = keras.layers.Conv2D(filters * 2**block, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dropout(dense_dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn_deep")
