import glob
import warnings

import keras
import numpy as np
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from callbacks.gradients import GradientNorms
from callbacks.graph import ModelGraph, forward_graph
from callbacks.histograms import WeightHistograms
from callbacks.overfitting import OverfittingMonitor
from tests.test_histograms import drive, plugin_tags, read_run, tiny_model


def graph_events(run_dir):
    """Number of ``graph_def`` events in a run directory."""
    return sum(
        event.HasField("graph_def")
        for path in glob.glob(str(run_dir / "events.out.tfevents.*"))
        for event in EventFileLoader(path).Load()
    )


def test_forward_graph_is_traced_from_the_input_signature():
    graph = forward_graph(tiny_model())
    ops = {op.type for op in graph.get_operations()}
    assert {"Placeholder", "MatMul", "Tanh", "Softmax"} <= ops
    placeholder = graph.get_operation_by_name("x")  # the traced function's argument
    assert placeholder.type == "Placeholder"
    assert placeholder.outputs[0].shape.as_list() == [None, 4]


def test_graph_written_once_and_readable(tmp_path):
    model, callback = tiny_model(), ModelGraph(tmp_path)
    drive(callback, model, [{}])
    drive(callback, model, [{}])  # second fit of the same model: not written again
    graph = read_run(tmp_path / "train").Graph()
    assert {"MatMul", "Softmax"} <= {node.op for node in graph.node}
    assert graph_events(tmp_path / "train") == 1


def test_subclassed_model_without_inputs_is_skipped(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    drive(ModelGraph(tmp_path), Net(), [{}])
    assert not (tmp_path / "train").exists()


def test_fit_with_all_four_callbacks(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)
    model = tiny_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    callbacks = [
        WeightHistograms(tmp_path),
        GradientNorms(tmp_path, (x[:16], y[:16])),
        OverfittingMonitor(tmp_path, patience=1, notify=lambda message: None),
        ModelGraph(tmp_path),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, validation_split=0.25, epochs=2, batch_size=16,
                            callbacks=callbacks, verbose=0)
    assert len(history.history["loss"]) == 2
    assert not [w for w in caught if "was skipped" in str(w.message)]
    acc = read_run(tmp_path / "train")
    assert len(plugin_tags(acc, "histograms")) == 4
    assert {"weight_norm/dense_1", "gradient_norm/global"} <= plugin_tags(acc, "scalars")
    assert graph_events(tmp_path / "train") == 1
