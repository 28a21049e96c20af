"""trainer.fused: Keras's Adam/RMSprop with TensorFlow's fused kernels give Keras's weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import fused


def model_and_data(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(seed)
    return model, rng.normal(size=(96, 12)).astype("float32"), rng.integers(0, 3, 96)


def train(optimizer, fuse: bool, steps_per_execution=1, jit_compile=False):
    model, x, y = model_and_data()
    kernel = fused.fuse(optimizer) if fuse else None
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return kernel, [w.numpy() for w in model.weights], [v.numpy() for v in optimizer.variables]


OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adam_cosine": lambda: keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(0.01, 18)),
    "adam_betas": lambda: keras.optimizers.Adam(0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.003),
    "rmsprop_momentum": lambda: keras.optimizers.RMSprop(0.003, rho=0.8, momentum=0.9),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_update_gives_kerass_weights_and_state(name):
    kernel, weights, slots = train(OPTIMIZERS[name](), fuse=True, steps_per_execution=4)
    assert kernel == ("ResourceApplyAdam" if name.startswith("adam") else "ResourceApplyRMSProp")
    _, expected_weights, expected_slots = train(OPTIMIZERS[name](), fuse=False)
    assert len(slots) == len(expected_slots)  # the scratch slot of RMSprop is not state
    for got, expected in zip(weights + slots, expected_weights + expected_slots):
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)
    assert not np.allclose(weights[0], model_and_data()[0].weights[0].numpy())  # it trained


def test_fused_update_compiles_with_xla():  # --jit: the kernels have XLA implementations
    _, weights, _ = train(keras.optimizers.RMSprop(0.003), fuse=True, jit_compile=True)
    _, expected, _ = train(keras.optimizers.RMSprop(0.003), fuse=False)
    for got, want in zip(weights, expected):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def _update_ops(optimizer) -> list[str]:
    """Op types of one traced ``apply`` of the optimizer on two variables."""
    variables = [keras.Variable(np.ones((3, 2), "float32")), keras.Variable(np.ones(2, "float32"))]
    optimizer.build(variables)

    @tf.function
    def step():
        optimizer.apply([tf.ones((3, 2)), tf.ones(2)], variables)

    return [op.type for op in step.get_concrete_function().graph.get_operations()]


@pytest.mark.parametrize("make, op", [(lambda: keras.optimizers.Adam(), "ResourceApplyAdam"),
                                      (lambda: keras.optimizers.RMSprop(), "ResourceApplyRMSProp")])
def test_fused_step_is_one_kernel_per_variable(make, op):
    optimizer = make()
    assert fused.fuse(optimizer) == op
    ops = _update_ops(optimizer)
    assert ops.count(op) == 2 and "Sqrt" not in ops
    assert _update_ops(make()).count(op) == 0  # Keras's own update: elementwise ops


@pytest.mark.parametrize("make", [lambda: keras.optimizers.Adam(amsgrad=True),
                                  lambda: keras.optimizers.RMSprop(centered=True),
                                  lambda: keras.optimizers.SGD(0.1, momentum=0.9),
                                  lambda: keras.optimizers.AdamW()])
def test_what_the_kernels_do_not_cover_keeps_kerass_update(make):
    optimizer = make()
    assert fused.fuse(optimizer) is None
    assert "update_step" not in vars(optimizer)


def test_not_fused_under_a_distribution_strategy_or_once_built():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        assert fused.fuse(keras.optimizers.Adam()) is None
    built = keras.optimizers.Adam()
    built.build([keras.Variable(np.ones(2, "float32"))])
    assert fused.fuse(built) is None


def test_saved_model_loads_in_plain_keras_with_its_optimizer_state(tmp_path):
    optimizer = keras.optimizers.RMSprop(0.003)
    fused.fuse(optimizer)
    model, x, y = model_and_data()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is keras.optimizers.RMSprop
    assert [v.numpy().tolist() for v in loaded.optimizer.variables] == \
        [v.numpy().tolist() for v in optimizer.variables]
