"""PR curves: the compiled counting metric against NumPy and TensorBoard's own ``pr_curve.summary.pb``,
the callback's summaries read back, and TensorBoard's PR Curves plugin serving them."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest
from tensorboard.plugins.pr_curve import summary as pr_summary
from tensorboard.util import tensor_util

from callbacks.calibration import CalibrationBins
from callbacks.pr_curves import (
    PRCurves,
    PrecisionRecallCounts,
    average_precision,
    curve_names,
    curves_from_buckets,
    pr_curve_tag,
)
from callbacks.validation_metrics import ConfusionMatrix
from tests.test_per_class import read_run

SERIES = ("tp", "fp", "tn", "fn", "precision", "recall")


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype("float32")


def numpy_buckets(labels, scores, num_thresholds):
    """(positives, negatives) per class and bucket floor(p * (T - 1)), counted directly."""
    classes = scores.shape[1]
    buckets = np.floor(scores * (num_thresholds - 1)).astype(int)
    pos, neg = np.zeros((classes, num_thresholds), int), np.zeros((classes, num_thresholds), int)
    for c in range(classes):
        is_pos = labels == c
        np.add.at(pos[c], buckets[is_pos, c], 1)
        np.add.at(neg[c], buckets[~is_pos, c], 1)
    return pos, neg


def tensorboard_curve(labels, scores, num_thresholds):
    """The (6, T) tensor TensorBoard's own pb() writes for one binary classifier."""
    proto = pr_summary.pb("x", labels, scores, num_thresholds=num_thresholds)
    return tensor_util.make_ndarray(proto.value[0].tensor)


def stacked(curves, i):
    return np.stack([curves[s][i] for s in SERIES]).astype(np.float32)


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    scores = softmax(2 * rng.normal(size=(300, 4)))
    scores[:3] = [[1.0, 0, 0, 0], [0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25]]  # bucket edges
    return rng.integers(0, 4, 300), scores


def test_counts_match_numpy_and_tensorboards_own_pb(sample):
    labels, scores = sample
    metric = PrecisionRecallCounts(4, num_thresholds=21)
    for start in range(0, 300, 128):  # three batches, the last one short
        metric.update_state(labels[start:start + 128, None], scores[start:start + 128])
    positives, negatives = metric.bucket_counts()
    expected_pos, expected_neg = numpy_buckets(labels, scores, 21)
    np.testing.assert_array_equal(positives, expected_pos)
    np.testing.assert_array_equal(negatives, expected_neg)
    assert metric.samples_seen() == 300
    curves = metric.curves()
    for c in range(4):
        np.testing.assert_allclose(stacked(curves, c), tensorboard_curve(labels == c, scores[:, c], 21), rtol=1e-6)
    metric.reset_state()
    assert metric.samples_seen() == 0 and float(metric.result()) == 0.0


def test_binary_single_curve_from_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, 1)).astype("float32")
    labels = rng.integers(0, 2, 50)
    metric = PrecisionRecallCounts(1, num_thresholds=11, from_logits=True)
    metric.update_state(labels.astype("float32"), logits)
    probs = 1 / (1 + np.exp(-logits[:, 0]))
    curve = stacked(metric.curves(), 0)
    np.testing.assert_allclose(curve, tensorboard_curve(labels == 1, probs.astype("float32"), 11), rtol=1e-5)
    assert curve_names(1, ["no", "yes"]) == ["yes"] and curve_names(1, None) == ["1"]


def test_average_precision_by_hand():
    metric = PrecisionRecallCounts(1, num_thresholds=11)
    metric.update_state(np.array([1, 0, 1, 0]), np.array([[0.9], [0.8], [0.4], [0.1]]))
    # Ranked 0.9 (+), 0.8 (-), 0.4 (+), 0.1 (-): AP = (1/1 + 2/3) / 2.
    assert float(metric.result()) == pytest.approx(5 / 6, rel=1e-6)
    curves = metric.curves()
    assert average_precision(curves["precision"], curves["recall"])[0] == pytest.approx(5 / 6)
    # Multiclass: the macro average over the classes present (class 2 has no positive).
    multi = PrecisionRecallCounts(3, num_thresholds=11)
    multi.update_state(np.array([0, 1, 0, 1]), np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.4, 0.6, 0], [0.7, 0.3, 0]]))
    ap = average_precision(multi.curves()["precision"], multi.curves()["recall"])
    # class 0: 0.9 (+), 0.7 (-), 0.4 (+), 0.2 (-) -> 5/6; class 1: 0.8 (+), 0.6 (-), 0.3 (+), 0.1 (-) -> 5/6
    np.testing.assert_allclose(ap[:2], [5 / 6, 5 / 6])
    assert float(multi.result()) == pytest.approx(5 / 6, rel=1e-6)


def test_bad_arguments(tmp_path):
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="num_classes"):
            PrecisionRecallCounts(bad)
    with pytest.raises(ValueError, match="num_thresholds"):
        PrecisionRecallCounts(3, num_thresholds=1)
    with pytest.raises(ValueError, match="`metric`"):
        PRCurves(tmp_path, ConfusionMatrix(3))
    with pytest.raises(ValueError, match="one name per class"):
        PRCurves(tmp_path, PrecisionRecallCounts(3), class_names=["a", "b"])
    with pytest.raises(ValueError, match="distinct as tags"):
        PRCurves(tmp_path, PrecisionRecallCounts(2), class_names=["a b", "a/b"])
    assert pr_curve_tag("T-shirt/top") == "pr_curves/T-shirt_top"


def filled_metric(sample, num_thresholds=21):
    labels, scores = sample
    metric = PrecisionRecallCounts(4, num_thresholds=num_thresholds)
    metric.update_state(labels, scores)
    return metric


def test_callback_writes_one_curve_per_class_on_due_epochs(tmp_path, sample):
    metric = filled_metric(sample)
    names = ["cat", "dog", "T-shirt/top", "x"]
    callback = PRCurves(tmp_path, metric, class_names=names, every=2)
    callback.set_params({"epochs": 3, "steps": 1})
    callback.on_train_begin()
    for epoch in range(3):
        callback.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.0})
    callback.on_train_end()
    assert callback.log_test(7) is None
    validation, test = read_run(tmp_path / "validation"), read_run(tmp_path / "test")
    tags = {"pr_curves/cat", "pr_curves/dog", "pr_curves/T-shirt_top", "pr_curves/x"}
    assert set(validation) == tags and set(test) == tags
    assert [step for step, _ in validation["pr_curves/dog"]] == [1, 2]  # every 2nd + the last
    assert [step for step, _ in test["pr_curves/dog"]] == [7]
    labels, scores = sample
    np.testing.assert_allclose(validation["pr_curves/dog"][-1][1], tensorboard_curve(labels == 1, scores[:, 1], 21),
                               rtol=1e-6)


def serve_pr_curves(logdir):
    """TensorBoard's PR Curves plugin over ``logdir``, queried through its own HTTP routes
    (a WSGI test client, no network): ``(tags, curves(run, tag))``."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.pr_curve import pr_curves_plugin
    from werkzeug import test as werkzeug_test, wrappers

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = pr_curves_plugin.PrCurvesPlugin(base_plugin.TBContext(
        logdir=str(logdir), multiplexer=multiplexer, data_provider=provider))
    routes = plugin.get_plugin_apps()

    def get(route, **query):
        client = werkzeug_test.Client(routes[route], wrappers.Response)
        response = client.get(route, query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return json.loads(response.get_data(as_text=True))

    return get("/tags"), lambda run, tag: get("/pr_curves", run=run, tag=tag)[run]


def test_tensorboards_pr_curves_plugin_serves_them(tmp_path, sample):
    metric = filled_metric(sample)
    callback = PRCurves(tmp_path, metric, class_names=["a", "b", "c", "d"])
    callback.set_params({"epochs": 1, "steps": 1})
    callback.on_epoch_end(0, {"val_loss": 1.0})
    callback.on_train_end()
    tags, curves = serve_pr_curves(tmp_path)
    assert set(tags["validation"]) == {f"pr_curves/{c}" for c in "abcd"}
    assert tags["validation"]["pr_curves/c"]["displayName"] == "c"
    (entry,) = curves("validation", "pr_curves/c")
    expected = metric.curves()
    # The plugin trims the thresholds past the last one with any prediction (TP + FP = 0).
    n = int(np.nonzero(expected["tp"][2] + expected["fp"][2])[0].max()) + 1
    assert entry["step"] == 0 and 10 < n < 21
    np.testing.assert_allclose(entry["precision"], expected["precision"][2][:n], rtol=1e-6)
    np.testing.assert_allclose(entry["recall"], expected["recall"][2][:n], rtol=1e-6)
    assert entry["true_positives"] == expected["tp"][2][:n].astype(int).tolist()
    assert entry["thresholds"] == pytest.approx([i / 20 for i in range(n)])


def tiny_model(metrics, steps_per_execution):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=metrics, steps_per_execution=steps_per_execution)
    return model


def test_fit_counts_the_validation_pass_with_several_steps_per_execution(tmp_path):
    """Compiled with steps_per_execution=3, the metrics hold exactly Keras's validation pass
    at each epoch end (no extra pass): the same counts as NumPy on model.predict."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(100, 8)).astype("float32"), rng.integers(0, 3, 100)
    pr, bins = PrecisionRecallCounts(3, num_thresholds=11), CalibrationBins(bins=5)
    model = tiny_model(["accuracy", pr, bins], steps_per_execution=3)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((pr.bucket_counts(), bins.reliability(), dict(logs)))

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model.fit(x[:60], y[:60], batch_size=8, epochs=2, validation_data=(x[60:], y[60:]), verbose=0,
                  callbacks=[Probe(), PRCurves(tmp_path, pr)])
    (positives, negatives), reliability, logs = seen[-1]
    probs = model.predict(x[60:], verbose=0)
    expected_pos, expected_neg = numpy_buckets(y[60:], probs, 11)
    np.testing.assert_array_equal(positives, expected_pos)  # 40 validation samples, 5 batches
    np.testing.assert_array_equal(negatives, expected_neg)
    curves = curves_from_buckets(positives, negatives)
    assert (positives.sum(axis=1) > 0).all()  # every class present: pr_auc is the plain mean
    assert logs["val_pr_auc"] == pytest.approx(np.mean(average_precision(curves["precision"], curves["recall"])),
                                               rel=1e-5)
    assert reliability["count"].sum() == 40
    assert logs["val_ece"] == pytest.approx(reliability["ece"], abs=1e-6)
    assert set(read_run(tmp_path / "validation")) == {f"pr_curves/{c}" for c in range(3)}
    model.save(tmp_path / "model.keras")  # the metrics are registered: the model reloads compiled
    loaded = keras.models.load_model(tmp_path / "model.keras")
    results = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert {"pr_auc", "ece"} <= set(results)


@pytest.mark.parametrize("name", ["pr_curves_every", "calibration_every"])
def test_config_checks_the_panel_frequencies(name):
    """An architecture's DEFAULTS or a stored config.json reach the same check as the flags."""
    from trainer import config
    from trainer.errors import UsageError

    assert getattr(config.RunConfig(arch="cnn"), name) == 1  # on by default
    with pytest.raises(UsageError, match=rf"Invalid value for argument `{name}`. Received: {name}=-2. "
                                         r"Expected an integer >= 0 \(0 turns it off\)"):
        config.validate(config.RunConfig(arch="cnn", **{name: -2}))
