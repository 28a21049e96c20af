"""Every use of a private Keras, TensorFlow or TensorBoard internal, in one place.

trainer and its callbacks use public APIs everywhere else. Each function here names the
internal it touches, why no public API does the job, and the versions it was checked on;
where the assumption no longer holds it raises ``CompatError`` (a clear message naming the
installed version), never a silent skip. This module sits at the bottom of the layers: it
imports only Keras, TensorFlow and TensorBoard, so ``callbacks`` works without ``trainer``.

Tested range (see pyproject.toml): the lower bounds there are run in CI as well.
"""

from __future__ import annotations


class CompatError(RuntimeError):
    """A private internal trainer relies on is missing or changed in the installed version."""


def version_tuple(text: str) -> tuple[int, ...]:
    """``"3.11.2"`` -> ``(3, 11, 2)``; pre-release and local suffixes are ignored."""
    import re

    parts = []
    for piece in text.split("+")[0].split("."):
        digits = re.match(r"\d*", piece).group()
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def keras_version() -> tuple[int, ...]:
    import keras

    return version_tuple(keras.__version__)


def _missing(what: str, library: str = "keras") -> CompatError:
    import importlib

    version = getattr(importlib.import_module(library), "__version__", "?")
    return CompatError(f"{what} is not available in the installed {library} {version}; trainer was "
                       "tested with the versions pyproject.toml allows.")


# --- training loop and callbacks (trainer/run.py, callbacks/backup.py, callbacks/checkpoint.py,
#     callbacks/gradients.py, callbacks/gradcam.py) ---

# Keras >= 3.11 passes the index of the *last* batch of an execution to on_train_batch_end when
# several batches run per execution (keras-team/keras#21422); trainer's per-batch logic (batch
# scalars, NaN position, Ctrl-C position, mid-epoch saves) relies on it.
MIN_KERAS_BATCH_INDEX = (3, 11)

# Attributes that make up the resumable state of Keras's own callbacks. They are public
# attributes but not a documented API: checked on every save (``keras_callback_state``).
_KERAS_CALLBACK_STATE = {
    "EarlyStopping": ("wait", "best", "best_epoch", "stopped_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
}


def check_keras_batch_index() -> None:
    """Raises ``CompatError`` on a Keras older than the per-batch index semantics we rely on."""
    if keras_version()[:2] < MIN_KERAS_BATCH_INDEX:
        import keras

        raise CompatError(f"keras {keras.__version__} reports batch indices differently with several steps "
                          "per execution (keras-team/keras#21422); trainer needs keras>=3.11.")


def keras_callback_state(callback, saving: bool = False) -> tuple:
    """The attributes of a Keras callback (EarlyStopping, ReduceLROnPlateau) that a resumed run
    must put back; () for other callbacks. ``saving`` (after ``on_train_begin``, when Keras has
    set them all): a missing attribute is a CompatError."""
    import keras

    for cls_name, attrs in _KERAS_CALLBACK_STATE.items():
        cls = getattr(keras.callbacks, cls_name, None)
        if cls is not None and isinstance(callback, cls):
            missing = [a for a in attrs if not hasattr(callback, a)]
            if saving and missing:
                raise _missing(f"keras.callbacks.{cls_name}.{missing[0]} (saved for resume)")
            return attrs
    return ()


def offset_callback_list(callbacks, offset: int, model, epochs: int, steps: int):
    """A ``keras.callbacks.CallbackList`` (public, accepted by ``fit``) whose train-batch hooks
    see indices shifted by ``offset``: a resumed run's first epoch starts ``offset`` batches in,
    but Keras counts from 0. Subclassing it is the only way to shift the index Keras passes."""
    import keras

    check_keras_batch_index()

    class Shifted(keras.callbacks.CallbackList):
        def on_train_batch_begin(self, batch, logs=None):
            super().on_train_batch_begin(batch + offset, logs)

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch + offset, logs)

    return Shifted(callbacks, add_history=True, model=model, epochs=epochs, steps=steps, verbose=0)


def set_steps_per_execution(model, steps: int) -> None:
    """Recompiles the train and test functions for ``steps`` batches per execution, keeping
    weights, optimizer state and metrics (``compile`` again would reset them). Uses the
    TensorFlow trainer's ``make_train_function(force=True)``, not a documented API."""
    for name in ("make_train_function", "make_test_function"):
        if not callable(getattr(model, name, None)):
            raise _missing(f"Model.{name}")
    model.steps_per_execution = steps
    model.make_train_function(force=True)
    model.make_test_function(force=True)


# The kinds of object Keras's saving walks (``KerasSaveable._obj_type()``) in a model, its
# optimizer, losses and metrics.
_SAVEABLE_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")
SKIPSET_KEY_MISMATCH = ((3, 11), (3, 15))  # Keras versions read and found to store/read different keys


def cache_saving_skipsets() -> None:
    """Makes ``model.save`` and ``model.save_weights`` remember the attribute names they skip.

    Why private: for every object it saves, Keras's ``saving_lib.get_attr_skipset(obj_type)``
    builds a reference object (a ``Layer()``, an ``Optimizer``, ...) and lists its attributes,
    meant to be done once per type: the result is cached in Keras's global state, but stored
    under ``saving_attr_skipset_<type>`` and looked up under ``saving_attr_skiplist_<type>``
    (Keras 3.11-3.15), so it never hits. On a backbone of hundreds of layers that is about half
    of each save (0.26 -> 0.12 s for mobilenet_v3_small's weights). This puts Keras's own
    result under the key it reads; the files written are the same. Run before each save
    (``keras.backend.clear_session`` empties the global state). When the function or the
    global state is not there (another Keras), nothing is done: only the speed-up is lost; and
    only on the Keras versions read and found to have the mismatch (``SKIPSET_KEY_MISMATCH``).
    """
    low, high = SKIPSET_KEY_MISMATCH
    if not low <= keras_version()[:2] <= high:
        return
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib
    except ImportError:
        return
    skipset = getattr(saving_lib, "get_attr_skipset", None)
    if skipset is None or not hasattr(global_state, "get_global_attribute"):
        return
    for obj_type in _SAVEABLE_TYPES:
        key = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(key, None) is None:
            try:
                global_state.set_global_attribute(key, skipset(obj_type))
            except ValueError:  # a type this Keras does not know
                continue


def quiet_retracing(function) -> None:
    """Stops TensorFlow warning "triggered tf.function retracing" for ``function`` (a
    ``tf.function``): a process that trains many models (a sweep) traces each model's gradient
    function once, which TensorFlow counts as retracing from the fifth model on. Uses the
    private ``_omit_frequent_tracing_warning`` flag that ``tf.function`` itself reads."""
    if not hasattr(function, "_omit_frequent_tracing_warning"):
        raise _missing("tf.function._omit_frequent_tracing_warning", "tensorflow")
    function._omit_frequent_tracing_warning = True


# --- devices, precision, strategies, fused optimizer updates (trainer/devices/, trainer/fused.py) ---

def onednn_enabled() -> bool | None:
    """Whether this TensorFlow process runs oneDNN's CPU kernels; None when TensorFlow cannot tell.

    Why private: TensorFlow has no public query (``tf.sysconfig.get_build_info`` has no such
    key); its own tests use ``tensorflow.python.util._pywrap_util_port.IsMklEnabled``. Checked
    with TensorFlow 2.16-2.21. Without it the device report leaves the oneDNN row out: only a
    report row is lost, so "cannot tell" (None) is the documented fallback, not an error.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    is_enabled = getattr(_pywrap_util_port, "IsMklEnabled", None)
    return None if is_enabled is None else bool(is_enabled())


def tensorflow_initialized() -> bool:
    """Whether TensorFlow's eager context (and so its devices) has been initialised.

    Why private: no public API says so without initialising it; the context's C handle
    (``context.context()._context_handle``) is None until then. Checked with TensorFlow
    2.16-2.21. Raises ``CompatError`` if it is missing: guessing "not yet" would turn the
    placement log on too late, silently.
    """
    try:
        from tensorflow.python.eager import context
    except ImportError:
        raise _missing("tensorflow.python.eager.context", "tensorflow") from None
    ctx = context.context()
    if not hasattr(ctx, "_context_handle"):
        raise _missing("The eager context's _context_handle", "tensorflow")
    return ctx._context_handle is not None


def producing_layer(tensor):
    """The layer whose call produced the symbolic Keras tensor ``tensor``.

    Why private: Keras 3 has no public accessor; ``tensor._keras_history`` is
    (operation, node index, tensor index) in Keras 3.0-3.15.
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise _missing("KerasTensor._keras_history (the layer that produced an output)")
    return history[0]


def call_count(layer) -> int:
    """How many times ``layer`` was called on symbolic inputs (its inbound nodes).

    Why private: Keras 3 keeps the nodes only in ``layer._inbound_nodes`` (3.0-3.15).
    """
    nodes = getattr(layer, "_inbound_nodes", None)
    if nodes is None:
        raise _missing(f"Layer._inbound_nodes (on {type(layer).__name__})")
    return len(nodes)


def call_tensors(layer) -> tuple[list, list]:
    """(input tensors, output tensors) of ``layer``'s single symbolic call in the graph it is
    part of; for a model nested as a layer these are the outer graph's tensors, which its own
    ``inputs``/``outputs`` are not.

    Why private: Keras 3 keeps the call only in ``layer._inbound_nodes[0]``'s ``input_tensors``
    and ``outputs`` (3.0-3.15). Raises ``CompatError`` when they are missing.
    """
    nodes = getattr(layer, "_inbound_nodes", None)
    node = nodes[0] if nodes else None
    if node is None or not hasattr(node, "input_tensors") or not hasattr(node, "outputs"):
        raise _missing(f"Layer._inbound_nodes[0].input_tensors/outputs (on {type(layer).__name__})")
    return list(node.input_tensors), list(node.outputs)


def replace_symbolic_build(model, build) -> None:
    """Makes ``fit`` / ``evaluate`` build ``model`` with ``build(symbolic_build, iterator,
    data_batch)``, where ``symbolic_build(data_batch)`` is Keras's own build.

    Why private: the TensorFlow trainer builds the model in ``model._maybe_symbolic_build(
    iterator=None, data_batch=None)`` from a whole distributed batch, which fails under
    ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585); ``_symbolic_build(data_batch=)``
    is the build itself. Checked with Keras 3.15. Raises ``CompatError`` if either is missing:
    without the workaround ``fit`` fails later with a far less clear message.
    """
    for name in ("_maybe_symbolic_build", "_symbolic_build"):
        if not callable(getattr(model, name, None)):
            raise _missing(f"Model.{name} (needed for multi-worker training, keras#20585)")

    def maybe_symbolic_build(iterator=None, data_batch=None):
        return build(lambda batch: model._symbolic_build(data_batch=batch), iterator, data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


def check_slot_index(optimizer) -> None:
    """Raises ``CompatError`` unless ``optimizer`` maps a variable to its slots' index.

    Why private: Keras 3 optimizers index their slot lists with ``_get_variable_index``;
    checked with Keras 3.0-3.15. Checked up front so that ``fuse`` fails before training.
    """
    if not callable(getattr(optimizer, "_get_variable_index", None)):
        raise _missing(f"{type(optimizer).__name__}._get_variable_index (fused optimizer updates)")


def optimizer_slot(optimizer, slots: str, variable):
    """The ``slots`` list's entry for ``variable``: ``optimizer_slot(adam, "_momentums", w)``.

    Why private: Keras 3's Adam and RMSprop keep their state in ``_momentums`` and
    ``_velocities`` (3.0-3.15), which the fused kernels update in place. trainer's own
    ``_fused_scratch`` is indexed the same way. Raises ``CompatError`` if the list is missing
    (a fused update cannot run without its state).
    """
    values = getattr(optimizer, slots, None)
    if values is None:
        raise _missing(f"{type(optimizer).__name__}.{slots} (fused optimizer updates)")
    return values[optimizer._get_variable_index(variable)]


# --- TensorBoard internals (trainer/readback.py, trainer/sweep.py) ---


def tensorboard_without_tensorflow() -> None:
    """Makes TensorBoard read event files with its own TensorFlow stub unless TensorFlow is
    already loaded, so ``trainer show`` never imports TensorFlow. Internal: TensorBoard picks
    the stub when a module ``tensorboard.compat.notf`` exists (the switch of its own
    ``no_tensorflow`` build); no public API selects it. Checked with TensorBoard 2.16-2.21."""
    import importlib.util
    import sys
    import types

    if "tensorflow" in sys.modules or "tensorboard.compat.notf" in sys.modules:
        return
    if importlib.util.find_spec("tensorboard.compat.tensorflow_stub") is None:
        raise _missing("tensorboard.compat.tensorflow_stub (read event files without TensorFlow)",
                       "tensorboard")
    sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")


def hparams_session_end(status: int) -> bytes:
    """A serialized HParams ``SessionEndInfo`` summary for ``status`` (an ``api_pb2.Status``).
    Internal: the public ``hparams.api`` writes a session's start but not its end; the v1
    ``summary.session_end_pb`` does. Checked with TensorBoard 2.16-2.21."""
    from tensorboard.plugins.hparams import summary as hparams_v1

    make = getattr(hparams_v1, "session_end_pb", None)
    if make is None:
        raise _missing("tensorboard.plugins.hparams.summary.session_end_pb (a sweep trial's end status)",
                       "tensorboard")
    return make(status).SerializeToString()


# --- profiler (callbacks/profiler.py) ---
