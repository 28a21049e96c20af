"""Built-in architectures: one module each, exposing ``build``, ``DEFAULTS`` and a docstring.

An architecture module (built-in or the user's own file) looks like::

    \"\"\"One line that `trainer list` shows.\"\"\"
    import keras

    DEFAULTS = {"epochs": 10, "batch_size": 128, "optimizer": "adam", "learning_rate": 1e-3}

    def build(input_shape, num_classes, dropout=0.0):
        inputs = keras.Input(shape=input_shape)
        ...
        return keras.Model(inputs, outputs)
"""

BUILTINS = ("fcn", "cnn_small", "dense512", "mlp", "cnn", "cnn_deep", "binary_mlp", "regressor",
            "transfer")
