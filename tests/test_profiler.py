"""The profiler's traces are where TensorBoard's Profile tab looks for them:
``<logdir>/<run>/plugins/profile/<session>/<host>.xplane.pb``, and, when the plugin (``xprof``,
``pip install "trainer[profile]"``) is installed, its own code lists the session."""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import pytest

from callbacks.profiler import PLUGIN_HINT, Profiler, plugin_installed, trace_dir


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A tiny fit with batches 2-3 traced: (log_dir, the notify lines)."""
    import keras

    log_dir = str(tmp_path_factory.mktemp("profiled"))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    notes = []
    profiler = Profiler(log_dir, 2, 3, notify=notes.append)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[profiler], verbose=0)
    assert profiler.saved
    return log_dir, notes


def test_the_trace_is_in_the_profile_tabs_layout(traced):
    log_dir, notes = traced
    assert trace_dir(log_dir) == os.path.join(log_dir, "train")
    traces = glob.glob(os.path.join(log_dir, "train", "plugins", "profile", "*", "*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
    # The hint names the package to install exactly when the tab would be missing.
    assert (notes == []) == plugin_installed()
    if notes:
        assert notes == [f"Profile trace saved under {trace_dir(log_dir)}; {PLUGIN_HINT}"]


def test_the_profile_plugin_lists_the_trace(traced):
    """Asks the installed plugin's own code (what TensorBoard runs) for the profile runs."""
    profile_plugin = pytest.importorskip("xprof.profile_plugin", reason="xprof (trainer[profile]) not installed")
    from tensorboard.plugins import base_plugin

    log_dir, _ = traced
    context = base_plugin.TBContext(logdir=log_dir, flags=argparse.Namespace(master_tpu_unsecure_channel=""))
    plugin = profile_plugin.ProfilePlugin(context)
    (session,) = glob.glob(os.path.join(log_dir, "train", "plugins", "profile", "*"))
    runs = list(plugin.generate_runs())
    assert runs == [f"train/{os.path.basename(session)}"]
    # The frontend's run name resolves to the directory the trace was written to.
    assert os.path.samefile(plugin._run_dir(runs[0]), session)
