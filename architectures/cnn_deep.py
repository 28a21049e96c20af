"""Our best MNIST model: two conv blocks with batch norm, Adam with a cosine-decayed rate."""

import keras

DEFAULTS = {
    "epochs": 6,
    "batch_size": 128,
    "optimizer": "adam",
    "learning_rate": 0.003,
    "lr_schedule": "cosine",
    "validation": 0.1,
}


def build(input_shape, num_classes, filters=32, units=128, dropout=0.25):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block in range(2):
        x = keras.layers.Conv2D(filters * 2**block, 3, use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn_deep")
