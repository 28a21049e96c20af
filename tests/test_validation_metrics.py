import keras
import numpy as np
import pytest

from callbacks.per_class import per_class_scores
from callbacks.validation_metrics import ConfusionMatrix, WorstMistakes


def one_hot_probs(pred, conf, num_classes=3):
    """Probabilities whose argmax is ``pred`` with max probability ``conf``."""
    probs = np.full((len(pred), num_classes), 0.0, dtype="float32")
    for row, (p, c) in enumerate(zip(pred, conf)):
        probs[row] = (1 - c) / (num_classes - 1)
        probs[row, p] = c
    return probs


def rounded(metric):
    return [(i, t, p, round(c, 4)) for i, t, p, c in metric.mistakes()]


def test_confusion_matrix_counts_and_macro_f1():
    cm = ConfusionMatrix(3)
    cm.update_state(np.array([[0], [1], [2]]), np.eye(3, dtype="float32")[[0, 2, 2]])
    cm.update_state(np.array([2, 0, 1]), np.eye(3, dtype="float32")[[1, 0, 1]])
    expected = np.array([[2, 0, 0], [0, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(cm.counts(), expected)
    assert cm.counts().dtype == np.int64
    # F1: class 0 -> 1, class 1 -> 2/4, class 2 -> 2/4.
    assert float(cm.result()) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert cm.samples_seen() == 6
    cm.reset_state()
    assert cm.counts().sum() == 0 and float(cm.result()) == 0.0


def test_confusion_matrix_from_logits_and_bad_arguments():
    cm = ConfusionMatrix(2, from_logits=True)
    cm.update_state(np.array([0, 1]), np.array([[3.0, -1.0], [5.0, 1.0]]))
    np.testing.assert_array_equal(cm.counts(), [[1, 0], [1, 0]])
    for bad in (1, 2.5, "3", True):
        with pytest.raises(ValueError, match="num_classes"):
            ConfusionMatrix(bad)


def test_worst_mistakes_order_bound_and_indices_across_batches():
    metric = WorstMistakes(k=3)
    # batch 1 (indices 0-3): mistakes at 1 (0.6) and 3 (0.9)
    metric.update_state(np.array([0, 1, 2, 0]), one_hot_probs([0, 2, 2, 1], [0.8, 0.6, 0.9, 0.9]))
    assert rounded(metric) == [(3, 0, 1, 0.9), (1, 1, 2, 0.6)]
    # batch 2 (indices 4-6): mistakes at 4 (0.7) and 6 (0.95); 0.6 falls out (k = 3)
    metric.update_state(np.array([[2], [1], [0]]), one_hot_probs([0, 1, 2], [0.7, 0.99, 0.95]))
    assert rounded(metric) == [(6, 0, 2, 0.95), (3, 0, 1, 0.9), (4, 2, 0, 0.7)]
    assert float(metric.result()) == 4.0  # all mistakes seen, not only the kept ones
    assert metric.samples_seen() == 7
    metric.reset_state()
    assert metric.mistakes() == [] and metric.samples_seen() == 0 and float(metric.result()) == 0


def test_worst_mistakes_class_filter():
    metric = WorstMistakes(k=10, class_filter=1)
    y_true = np.array([0, 1, 2, 2, 0])
    pred = [1, 0, 0, 2, 2]  # mistakes: 0->1, 1->0, 2->0, 0->2; only the first two involve 1
    metric.update_state(y_true, one_hot_probs(pred, [0.5, 0.8, 0.9, 0.9, 0.7]))
    assert rounded(metric) == [(1, 1, 0, 0.8), (0, 0, 1, 0.5)]
    assert float(metric.result()) == 2.0
    with pytest.raises(ValueError, match="class_filter"):
        WorstMistakes(class_filter=-1)
    with pytest.raises(ValueError, match="`k`"):
        WorstMistakes(k=0)


def tiny_model(metrics, steps_per_execution=2):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=metrics,
                  steps_per_execution=steps_per_execution)
    return model


def test_fit_leaves_the_validation_pass_in_the_metrics():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 3, 64)
    cm, errors = ConfusionMatrix(3), WorstMistakes(k=5)
    model = tiny_model(["accuracy", cm, errors])
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((cm.counts(), errors.samples_seen(), errors.mistakes(), dict(logs)))

    model.fit(x[:40], y[:40], batch_size=8, epochs=2, validation_data=(x[40:], y[40:]),
              callbacks=[Probe()], verbose=0)
    assert len(seen) == 2
    for counts, samples, mistakes, logs in seen:
        assert counts.sum() == 24 and samples == 24  # the validation set, not the 40 train samples
        wrong = counts.sum() - np.trace(counts)
        assert logs["val_errors"] == wrong
        assert logs["val_accuracy"] == pytest.approx(np.trace(counts) / 24)
        assert logs["val_macro_f1"] == pytest.approx(per_class_scores(counts)["f1"].mean())
        assert logs["errors"] == pytest.approx(40 * (1 - logs["accuracy"]))  # train value
        assert len(mistakes) == min(5, wrong) and all(0 <= m[0] < 24 for m in mistakes)
    # The indices address the validation arrays: check them against a prediction.
    probs = model.predict(x[40:], verbose=0)
    for index, true, pred, conf in seen[-1][2]:
        assert (y[40 + index], probs[index].argmax()) == (true, pred)
        assert probs[index].max() == pytest.approx(conf, abs=1e-5)
    model.evaluate(x[:16], y[:16], batch_size=8, verbose=0)
    assert cm.counts().sum() == 16


def test_compiled_model_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 8)).astype("float32"), rng.integers(0, 3, 32)
    model = tiny_model([ConfusionMatrix(3), WorstMistakes(k=4, class_filter=1)], 1)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert after == pytest.approx(before)
    cm, errors = loaded.metrics[1].metrics
    assert isinstance(cm, ConfusionMatrix) and cm.num_classes == 3 and cm.name == "macro_f1"
    assert isinstance(errors, WorstMistakes) and (errors.k, errors.class_filter) == (4, 1)
    assert cm.counts().sum() == 32
