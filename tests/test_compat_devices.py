"""callbacks.compat, devices section: each private internal either works on the installed
versions or fails with a CompatError that names what is missing (no silent skip)."""

import keras
import pytest
import tensorflow as tf

from callbacks import compat
from trainer import devices, fused


def test_onednn_and_initialisation_queries_work_here():
    assert compat.onednn_enabled() in (True, False)
    tf.config.list_logical_devices()  # initialises TensorFlow
    assert compat.tensorflow_initialized() is True


def test_missing_context_handle_is_a_compat_error(monkeypatch):
    from tensorflow.python.eager import context

    monkeypatch.setattr(context, "context", lambda: object())
    with pytest.raises(compat.CompatError, match=r"_context_handle is not available in the "
                                                 r"installed tensorflow \d"):
        compat.tensorflow_initialized()


def test_onednn_query_missing_means_unknown(monkeypatch):
    from tensorflow.python.util import _pywrap_util_port

    monkeypatch.delattr(_pywrap_util_port, "IsMklEnabled")
    assert compat.onednn_enabled() is None  # the report leaves the oneDNN row out


def test_keras_history_and_inbound_nodes():
    x = keras.Input((3,))
    dense = keras.layers.Dense(2)
    y = dense(x)
    assert compat.producing_layer(y) is dense and compat.call_count(dense) == 1
    with pytest.raises(compat.CompatError, match=r"KerasTensor._keras_history .* keras 3"):
        compat.producing_layer(object())
    with pytest.raises(compat.CompatError, match=r"Layer._inbound_nodes \(on object\)"):
        compat.call_count(object())


def test_symbolic_build_hooks():
    calls = []

    class Model:
        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            raise AssertionError("replaced")

        def _symbolic_build(self, data_batch=None):
            calls.append(data_batch)

    model = Model()
    compat.replace_symbolic_build(model, lambda build, iterator, batch: build(batch * 2))
    model._maybe_symbolic_build(data_batch=21)
    assert calls == [42]
    with pytest.raises(compat.CompatError, match=r"Model._maybe_symbolic_build .*keras#20585"):
        compat.replace_symbolic_build(object(), lambda *_: None)


def test_multi_worker_patch_leaves_other_strategies_alone():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    devices.patch_multi_worker(model, tf.distribute.get_strategy())
    assert "_maybe_symbolic_build" not in vars(model)


def test_optimizer_slots():
    optimizer = keras.optimizers.Adam()
    variable = keras.Variable([1.0, 2.0])
    optimizer.build([variable])
    assert compat.optimizer_slot(optimizer, "_velocities", variable).shape == (2,)
    with pytest.raises(compat.CompatError, match=r"Adam._fused_scratch \(fused optimizer"):
        compat.optimizer_slot(optimizer, "_fused_scratch", variable)


def test_fuse_checks_the_slot_index_up_front(monkeypatch):
    owner = next(c for c in keras.optimizers.Adam.__mro__ if "_get_variable_index" in vars(c))
    monkeypatch.delattr(owner, "_get_variable_index")
    with pytest.raises(compat.CompatError, match=r"Adam._get_variable_index"):
        fused.fuse(keras.optimizers.Adam())
