"""Where the model looked on its mistakes: Grad-CAM heatmaps on the misclassified grid.

``GradCam(model)`` computes, for a few inputs and one class each, a heatmap in [0, 1]: Grad-CAM
on the last convolutional layer, found automatically (for a ``keras.applications`` backbone
nested as a layer: its output, the last convolutional feature map), or, for a model without
convolutions, the
input-gradient saliency (the largest absolute gradient over the channels of each pixel).
Grad-CAM is taken in its element-wise form, ReLU(sum over channels of gradient x activation)
(HiResCAM, Draelos & Carin 2020): with a global-average-pooling head it is the original
Grad-CAM (Selvaraju et al. 2017), and with the flatten-then-dense heads of trainer's built-in
CNNs it is exactly each position's share of the class score, where the original's
position-averaged channel weights light up the uniform background or nothing at all
(``channel_weights=True`` gives the original). The class score differentiated is the
class's logit, which does not saturate on the confident mistakes the grid shows as the
probability would: the model's output with ``from_logits``; the input of a final softmax
(an ``Activation``/``Softmax`` layer, or a ``Dense`` with softmax, whose affine map is applied
without it); else the centred log-probability ``log p_c - mean_j log p_j`` (the logit up to
the constant that softmax drops). Heatmaps are computed in float32 from a float16 model too
(mixed precision).

``GradCamGrid`` draws the tiles of ``MisclassifiedGrid`` (the same mistakes, order and captions)
with the heatmap of the predicted class over each image, as the image ``misclassified_gradcam``:
only the k tiles shown are computed, one forward and backward pass of k samples per grid.
"""

from __future__ import annotations

import math

import numpy as np

from . import compat
from .drawing import to_rgb
from .misclassified import MisclassifiedGrid
from .samples import gather, single, to_model_input

IMAGE_TAG = "misclassified_gradcam"
# A backbone's feature map smaller than this (e.g. 1x1 for 32x32 images) says nothing about
# where the model looked: the last convolution before the backbone is used, else saliency.
MIN_FEATURE_MAP = 3
_JET = np.array([(0, 0, 128), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0)], np.float64)


def conv_layer_types() -> tuple:
    import keras

    return tuple(getattr(keras.layers, name) for name in
                 ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose") if hasattr(keras.layers, name))


def find_conv_layer(model):
    """The last 2-D convolution among ``model.layers`` (called once, with an (N, H, W, C)
    output), or None; see :func:`find_conv` for one inside a nested model."""
    return next((layer for layer in reversed(model.layers) if _is_conv(layer)), None)


def _is_conv(layer) -> bool:
    """A 2-D convolution called once, with an (N, H, W, C) output."""
    if not isinstance(layer, conv_layer_types()):
        return False
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # never called, or called more than once
        return False


def find_conv(model) -> tuple:
    """``(layer, activation)``: what Grad-CAM looks at, ``(None, None)`` for nothing. The last
    2-D convolution of ``model``, or, when a model nested as a layer (a ``keras.applications``
    backbone) comes after every convolution of the outer model, the nested model itself: its
    output, the last convolutional feature map (as the Grad-CAM literature takes for ResNet,
    EfficientNet, ...), when it is called once, contains a convolution and gives (N, H, W, C)
    of at least ``MIN_FEATURE_MAP`` positions a side."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            activation = _feature_map(layer)
            if activation is not None:
                return layer, activation
        elif _is_conv(layer):
            return layer, layer.output
    return None, None


def _feature_map(nested):
    """The output of a nested model's single call in the outer graph if it is an image-shaped
    feature map of a model with convolutions, else None."""
    try:
        if compat.call_count(nested) != 1 or find_conv_layer(nested) is None:
            return None
        _, outputs = compat.call_tensors(nested)
    except (AttributeError, ValueError, compat.CompatError):
        return None
    if len(outputs) != 1 or len(outputs[0].shape) != 4:
        return None
    height, width = outputs[0].shape[1:3]
    small = any(side is not None and side < MIN_FEATURE_MAP for side in (height, width))
    return None if small else outputs[0]


def class_scores(outputs, classes, from_logits: bool = False):
    """Sum over the batch of each sample's logit for ``classes`` (one class per sample)."""
    import tensorflow as tf

    outputs = tf.cast(outputs, tf.float32)
    if outputs.shape[-1] == 1:  # one sigmoid: the logit of class 1, negated for class 0
        p = tf.clip_by_value(outputs[:, 0], 1e-7, 1 - 1e-7)
        logit = outputs[:, 0] if from_logits else tf.math.log(p) - tf.math.log1p(-p)
        return tf.reduce_sum(tf.where(tf.equal(classes, 1), logit, -logit))
    if not from_logits:
        log_p = tf.math.log(tf.maximum(outputs, 1e-30))
        outputs = log_p - tf.reduce_mean(log_p, axis=-1, keepdims=True)
    return tf.reduce_sum(tf.gather(outputs, classes, batch_dims=1))


def normalise(maps, percentile: float = 97.0) -> np.ndarray:
    """Each (h, w) map divided by its ``percentile``-th value (its maximum when that is 0) and
    clipped to [0, 1]: the strongest few per cent of the evidence show at full strength, so a
    map with a few sharp peaks still reads as a region. All zeros stays all zeros."""
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    flat = maps.reshape(len(maps), -1)
    scale = np.percentile(flat, percentile, axis=1) if flat.shape[1] else np.zeros(len(maps))
    scale = np.where(scale > 0, scale, flat.max(axis=1, initial=0.0))[:, None, None]
    return np.clip(np.divide(maps, scale, out=np.zeros_like(maps), where=scale > 0), 0.0, 1.0)


def _is_softmax(function) -> bool:
    return getattr(function, "__name__", "") == "softmax"


def logits_source(model):
    """How to get the logits of a model that ends in a softmax: ``(tensor, dense)`` where
    ``tensor`` is the final softmax's input (``dense`` None: the tensor is the logits) or the
    input of a final ``Dense(activation="softmax")`` (the logits are then ``dense``'s affine
    map of it); ``(None, None)`` for any other model."""
    import keras

    last = model.layers[-1] if model.layers else None
    try:
        if isinstance(last, keras.layers.Softmax) or (
                isinstance(last, keras.layers.Activation) and _is_softmax(last.activation)):
            return last.input, None
        if isinstance(last, keras.layers.Dense) and _is_softmax(last.activation):
            return last.input, last
    except (AttributeError, ValueError):  # a layer called more than once: no single input
        pass
    return None, None


class GradCam:
    """Heatmaps of where ``model`` looked. ``layer``: a layer name to use instead of the last
    convolution; ``method`` is "grad-cam" or "saliency" (no convolution found).
    ``channel_weights``: the original Grad-CAM (each channel weighted by its gradient averaged
    over the positions) instead of the element-wise product (HiResCAM), see the module."""

    def __init__(self, model, layer: str | None = None, from_logits: bool = False, channel_weights: bool = False):
        import keras

        if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
            raise ValueError(f"Invalid value for argument `model`. Received: model {model.name!r} without "
                             "symbolic inputs/outputs. Expected a functional or Sequential model built with "
                             "keras.Input.")
        if layer is not None:
            self.layer = model.get_layer(layer)
            activation = _feature_map(self.layer) if isinstance(self.layer, keras.Model) else self.layer.output
            if activation is None:
                raise ValueError(f"Invalid value for argument `layer`. Received: layer={layer!r}, a nested model "
                                 f"without a usable feature map. Expected a layer with an (N, H, W, C) output, "
                                 f"at least {MIN_FEATURE_MAP}x{MIN_FEATURE_MAP}.")
        else:
            self.layer, activation = find_conv(model)
        self.from_logits, self.channel_weights = bool(from_logits), bool(channel_weights)
        logits, self._dense = (None, None) if from_logits else logits_source(model)
        self._has_logits = logits is not None
        output = model.outputs[0] if logits is None else logits
        self._model = keras.Model(single(model.inputs), output if self.layer is None else [activation, output])
        self._maps = None  # the traced heatmap function (_maps_function)
        self.traces = 0

    @property
    def method(self) -> str:
        return "grad-cam" if self.layer is not None else "saliency"

    def _score(self, outputs, classes):
        import tensorflow as tf

        if not self._has_logits:
            return class_scores(outputs, classes, self.from_logits)
        if self._dense is not None:  # the final Dense's affine map, without its softmax
            outputs = tf.matmul(tf.cast(outputs, tf.float32), tf.cast(self._dense.kernel, tf.float32))
            if self._dense.bias is not None:
                outputs = outputs + tf.cast(self._dense.bias, tf.float32)
        return class_scores(outputs, classes, from_logits=True)

    def _maps_function(self):
        """The heatmaps before normalisation, as a ``tf.function`` traced once for this model:
        any number of samples (the batch axis is left open), so a grid of another size, or the
        test set's grid, reuses the trace. Eager, a forward and backward pass through a
        backbone of hundreds of layers costs several times the traced one. ``traces`` counts
        the traces (a Python side effect runs only while tracing)."""
        import tensorflow as tf

        if self._maps is not None:
            return self._maps
        spec = tf.TensorSpec([None, *self._model.inputs[0].shape[1:]], tf.float32)

        @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
        def maps(x, classes):
            self.traces += 1
            with tf.GradientTape() as tape:
                tape.watch(x)
                if self.layer is not None:
                    source, outputs = self._model(x, training=False)
                else:
                    source, outputs = x, self._model(x, training=False)
                score = self._score(outputs, classes)
            grads = tf.cast(tape.gradient(score, source), tf.float32)
            if self.layer is None:
                return tf.reduce_max(tf.abs(grads), axis=-1) if len(grads.shape) == 4 else tf.abs(grads)
            if self.channel_weights:  # Grad-CAM's weights: the gradient averaged over the positions
                grads = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
            return tf.nn.relu(tf.reduce_sum(grads * tf.cast(source, tf.float32), axis=-1))

        # One function per model: a process that trains many models (a sweep) would otherwise
        # see TensorFlow warn about retracing from the fifth model on.
        compat.quiet_retracing(maps)
        self._maps = maps
        return maps

    def heatmaps(self, inputs, classes) -> np.ndarray:
        """(N, h, w) float32 in [0, 1] for ``inputs`` (as the model takes them) and one class
        each; (h, w) is the convolution's output size for Grad-CAM, the input's for saliency."""
        x = np.asarray(inputs, dtype=np.float32)
        classes = np.asarray(classes, dtype=np.int32).reshape(-1)
        return normalise(self._maps_function()(x, classes).numpy())


def colour_map(heat: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) float RGB, the "jet" ramp (blue, cyan, yellow, red)."""
    position = np.clip(heat, 0.0, 1.0) * (len(_JET) - 1)
    low = np.minimum(np.floor(position).astype(int), len(_JET) - 2)
    frac = (position - low)[..., None]
    return _JET[low] * (1 - frac) + _JET[low + 1] * frac


def overlay(image, heat, min_size: int = 84) -> np.ndarray:
    """``image`` (as ``drawing.to_rgb`` takes it) upscaled (nearest) to at least ``min_size``
    px, in grey, with ``heat`` (any size, [0, 1]) resized smoothly over it in colour: the more
    heat, the more colour. RGB uint8, a tile for ``render_grid``."""
    from PIL import Image

    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    scale = max(1, math.ceil(min_size / max(h, w)))
    size = (w * scale, h * scale)
    grey = np.asarray(Image.fromarray(rgb).convert("L").resize(size, Image.NEAREST), np.float64)
    heat8 = Image.fromarray(np.rint(np.clip(heat, 0, 1) * 255).astype(np.uint8))
    heat = np.asarray(heat8.resize(size, Image.BILINEAR), np.float64) / 255.0
    alpha = (0.15 + 0.6 * heat)[..., None]
    out = (1 - alpha) * grey[..., None] + alpha * colour_map(heat)
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


class GradCamGrid(MisclassifiedGrid):
    """The misclassified grid with a heatmap of the predicted class over each tile (tag
    ``misclassified_gradcam``, validation each ``every`` epochs and test from ``log_test``).

    Reads the same compiled ``WorstMistakes`` metric as ``MisclassifiedGrid``; ``images`` and
    ``test_images`` are the raw images (uint8 or [0, 1] floats, or an image folder's files)
    and ``preprocess`` turns them into model inputs (default: uint8 / 255, a channel axis
    for (H, W) images). ``layer`` names the layer for Grad-CAM (default: the last convolution;
    without one, input-gradient saliency).
    """

    image_tag = IMAGE_TAG
    files_tag = None

    def __init__(self, log_dir: str, metric, images, class_names: list[str] | None = None, every: int = 1,
                 test_images=None, layer: str | None = None, preprocess=None):
        super().__init__(log_dir, metric, images, class_names=class_names, every=every, test_images=test_images)
        self.layer = layer
        self.preprocess = preprocess or to_model_input
        self._cam = None
        self._cam_model = None

    def cam(self) -> GradCam:
        """The heatmap maker for the current model (built once per model)."""
        if self._cam is None or self._cam_model is not self.model:
            self._cam = GradCam(self.model, self.layer, from_logits=self.metric.from_logits)
            self._cam_model = self.model
        return self._cam

    def _tiles(self, images, mistakes) -> list:
        raw = gather(images, [i for i, _, _, _ in mistakes])
        heat = self.cam().heatmaps(self.preprocess(raw), [p for _, _, p, _ in mistakes])
        return [overlay(image, h) for image, h in zip(raw, heat)]

    def log_test(self, step, images=None):
        """After ``model.evaluate(test)``: the test mistakes with their heatmaps; returns None
        (the tiles are listed by ``MisclassifiedGrid.log_test``)."""
        super().log_test(step, images)
        return None
