"""Transfer learning: a pretrained keras.applications backbone, a new head, then fine-tuning.

    trainer fit transfer --data photos/ --set backbone=efficientnet_b0
    trainer fit transfer --data photos/ --set backbone=mobilenet_v3_small --set fine_tune=30 --epochs 10

The model is ``preprocess -> backbone(training=False) -> global average pooling -> dropout ->
dense``. ``preprocess`` is one fixed (non-trainable) 1x1 convolution that turns trainer's
[0, 1] images into what the backbone expects: scaled to 0-255, grayscale repeated to three
channels, and for ResNet50 the RGB->BGR swap and ImageNet mean of its ``preprocess_input``
(the other backbones rescale inside themselves). The preprocessing is therefore part of the
saved model: ``model.keras`` loads in plain Keras and takes raw [0, 1] images.

Training has two phases (see ``phases`` below and "Training phases" in the README): the
backbone frozen for ``freeze_epochs`` epochs (default: half, rounded up), then its top
``fine_tune`` layers unfrozen at ``fine_tune_lr_factor`` times the learning rate.
BatchNormalization layers stay frozen and in inference mode in both phases, as Keras's
transfer-learning guide recommends (the backbone is called with ``training=False``).
"""

import math
import os
import re

import keras

from trainer.errors import TrainerError, UsageError  # printed in one line; exit codes 1 and 2

DEFAULTS = {
    "epochs": 10,
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "validation": 0.1,
}

# What `trainer list` and `trainer summary` build it with: the native size, and no download
# just to count parameters.
INPUT_SHAPE = (224, 224, 3)
EXAMPLE_HYPERPARAMETERS = {"weights": "none"}

# While the backbone is frozen (and without --augment) trainer computes this layer's output
# once per image and trains only the layers after it on it (trainer/features.py): the backbone
# is called with training=False, so its output for an image is the same in every epoch.
FEATURE_LAYER = "pool"

# short name -> (keras.applications constructor, native image size, preprocessing)
# "rescale": the backbone rescales 0-255 inputs itself; "caffe": RGB->BGR and ImageNet mean.
BACKBONES = {
    "mobilenet_v3_small": ("MobileNetV3Small", 224, "rescale"),
    "mobilenet_v3_large": ("MobileNetV3Large", 224, "rescale"),
    "efficientnet_b0": ("EfficientNetB0", 224, "rescale"),
    "efficientnet_v2_b0": ("EfficientNetV2B0", 224, "rescale"),
    "resnet50": ("ResNet50", 224, "caffe"),
    "convnext_tiny": ("ConvNeXtTiny", 224, "rescale"),
}
MIN_IMAGE_SIZE = 32  # the smallest input every listed backbone accepts
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def check_backbone(backbone: str) -> tuple:
    if backbone not in BACKBONES:
        raise UsageError(f"Invalid value for argument `backbone`. Received: backbone={backbone!r}. "
                              f"Expected one of {', '.join(BACKBONES)}.")
    return BACKBONES[backbone]


def image_size(backbone="mobilenet_v3_small", **_):
    """The default image size for an image folder: the backbone's native size (``--image-size``
    overrides it)."""
    return (check_backbone(backbone)[1],) * 2


def keras_cache_dir() -> str:
    """Where ``keras.utils.get_file`` keeps downloaded weights (``KERAS_HOME``/models)."""
    return os.path.join(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"), "models")


def make_backbone(backbone: str, input_shape, weights):
    """The headless ``keras.applications`` model, ImageNet weights downloaded (and cached) by
    Keras; offline without a cached copy, a ``TrainerError`` says what to do."""
    constructor, _, _ = check_backbone(backbone)
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if weights not in (None, "imagenet") and not os.path.isfile(str(weights)):
        raise UsageError(f"Invalid value for argument `weights`. Received: weights={weights!r}. "
                              "Expected imagenet, none, or the path of a weights file.")
    try:
        return getattr(keras.applications, constructor)(
            include_top=False, weights=weights, input_shape=(*input_shape[:2], 3))
    except Exception as exc:
        found = re.search(r"URL fetch failure on (\S+?):? ", str(exc) + " ")
        if weights != "imagenet" or not found:
            raise
        url = found.group(1)
        raise TrainerError(
            f"Cannot download the ImageNet weights of {backbone} ({url}) and no copy is cached: "
            f"Keras looked for {os.path.basename(url)} in {keras_cache_dir()}. Either train from "
            f"scratch with --set weights=none, or copy that file into {keras_cache_dir()} "
            "(or pass its path: --set weights=PATH).") from None


def preprocess_layer(channels: int, mode: str) -> keras.layers.Layer:
    """A fixed 1x1 convolution: [0, 1] images with 1 or 3 channels -> the backbone's input."""
    import numpy as np

    if channels not in (1, 3):
        raise UsageError(f"Invalid value for argument `input_shape`. Received: {channels} channels. "
                              "Expected 1 (grayscale) or 3 (RGB).")
    kernel = np.zeros((1, 1, channels, 3), "float32")
    bias = np.zeros(3, "float32")
    for out in range(3):
        source = (2 - out if mode == "caffe" else out) if channels == 3 else 0
        kernel[0, 0, source, out] = 255.0
    if mode == "caffe":
        bias[:] = -np.asarray(IMAGENET_BGR_MEAN, "float32")
    layer = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
    layer.build((None, None, None, channels))
    layer.set_weights([kernel, bias])
    return layer


def build(input_shape, num_classes, backbone="mobilenet_v3_small", weights="imagenet", dropout=0.2,
          freeze_epochs=None, fine_tune=0.2, fine_tune_lr_factor=0.1):
    """``freeze_epochs``, ``fine_tune`` and ``fine_tune_lr_factor`` are used by ``phases``;
    they are checked here so that a bad value stops the run before training starts."""
    _, _, mode = check_backbone(backbone)
    if min(input_shape[:2]) < MIN_IMAGE_SIZE:
        raise UsageError(f"Invalid value for argument `input_shape`. Received: {tuple(input_shape)}. "
                              f"Expected images of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} "
                              "(an image folder's --image-size).")
    fine_tune_layers(fine_tune, 100)
    if freeze_epochs is not None and (not isinstance(freeze_epochs, int) or freeze_epochs < 0):
        raise UsageError(f"Invalid value for argument `freeze_epochs`. Received: freeze_epochs="
                              f"{freeze_epochs!r}. Expected an integer >= 0 (default: half the epochs).")
    if not fine_tune_lr_factor > 0:
        raise UsageError(f"Invalid value for argument `fine_tune_lr_factor`. Received: "
                              f"fine_tune_lr_factor={fine_tune_lr_factor}. Expected a positive number.")
    base = make_backbone(backbone, input_shape, weights)
    base.trainable = False  # phase 1: only the head trains
    inputs = keras.Input(shape=input_shape)
    x = preprocess_layer(input_shape[-1], mode)(inputs)
    x = base(x, training=False)  # BatchNormalization stays in inference mode, also when unfrozen
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"transfer_{backbone}")


def fine_tune_layers(fine_tune, total: int) -> int:
    """How many of the backbone's ``total`` layers (counted from the top) ``fine_tune`` means:
    an integer is a number of layers, a fraction in (0, 1] a share of them, 0 none."""
    if isinstance(fine_tune, bool) or not isinstance(fine_tune, (int, float)) or fine_tune < 0 or (
            isinstance(fine_tune, float) and fine_tune > 1):
        raise UsageError(f"Invalid value for argument `fine_tune`. Received: fine_tune={fine_tune!r}. "
                              "Expected a number of layers (an integer >= 0) or a fraction in (0, 1].")
    return min(total, fine_tune if isinstance(fine_tune, int) else math.ceil(fine_tune * total))


def backbone_of(model) -> keras.Model:
    """The nested ``keras.applications`` model inside a model that ``build`` made."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def unfreeze_top(model, fine_tune) -> str:
    """Makes the top ``fine_tune`` layers of the backbone trainable (BatchNormalization kept
    frozen); returns a one-line description."""
    base = backbone_of(model)
    count = fine_tune_layers(fine_tune, len(base.layers))
    base.trainable = True
    for i, layer in enumerate(base.layers):
        top = i >= len(base.layers) - count
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
    return f"the top {count} of {base.name}'s {len(base.layers)} layers unfrozen (BatchNormalization kept frozen)"


def phases(epochs, freeze_epochs=None, fine_tune=0.2, fine_tune_lr_factor=0.1, **_):
    """The training phases after the first (the first is the model as ``build`` returns it).

    trainer calls this with the run's epochs and ``build``'s hyperparameters. Each phase is a
    dict: ``epoch`` (0-based first epoch), ``name``, ``learning_rate_factor`` (times the run's
    learning rate or schedule) and ``apply(model) -> description`` (changes what is trainable).
    """
    freeze = math.ceil(epochs / 2) if freeze_epochs is None else int(freeze_epochs)  # 0: from the start
    if fine_tune == 0 or freeze >= epochs:
        return []
    return [{"epoch": freeze, "name": "fine-tune", "learning_rate_factor": fine_tune_lr_factor,
             "apply": lambda model: unfreeze_top(model, fine_tune)}]
