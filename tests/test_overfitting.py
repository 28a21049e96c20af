import pytest

from callbacks.overfitting import OverfittingMonitor, overfitting_message, overfitting_onset
from tests.test_histograms import drive, plugin_tags, read_run, tensor_values, tiny_model

FALLING = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
# Lowest at index 4, then rising at indices 5, 6, 7, 8.
VAL_UP = [1.0, 0.9, 0.8, 0.75, 0.7, 0.8, 0.9, 1.0, 1.1]


def logs(train, val):
    return [{"loss": t, "val_loss": v} for t, v in zip(train, val)]


def test_onset_on_scripted_histories():
    assert overfitting_onset(FALLING, VAL_UP, 3) == 5
    assert overfitting_onset(FALLING, VAL_UP, 4) == 5
    assert overfitting_onset(FALLING, VAL_UP, 5) is None
    assert overfitting_onset(FALLING[:7], VAL_UP[:7], 3) is None  # only two rises so far
    assert overfitting_onset(FALLING, [1.0, 1.1, 1.2, 1.1, 1.2, 1.3, 1.4, 1.3, 1.2], 3) == 4
    # Training loss rising over the same stretch is not overfitting.
    assert overfitting_onset([1.0, 0.9, 0.8, 0.7, 0.6, 0.7, 0.8, 0.9, 1.0], VAL_UP, 3) is None
    # Net fall over the stretch is enough; a NaN breaks a rise.
    assert overfitting_onset([1.0, 0.9, 0.95, 0.8], [1.0, 1.1, 1.2, 1.3], 3) == 1
    assert overfitting_onset(FALLING, VAL_UP[:6] + [float("nan")] + VAL_UP[7:], 3) is None
    assert overfitting_onset([], [], 1) is None


def test_message():
    assert overfitting_message(4, 3) == (
        "Overfitting: val_loss has risen for 3 epochs since epoch 5 while loss kept falling."
    )


@pytest.mark.parametrize("kwargs", [{"patience": 0}, {"patience": "3"}, {"notify": "print"}])
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError, match="Invalid value for argument"):
        OverfittingMonitor(tmp_path, **kwargs)


def test_fires_once_at_the_right_epoch(tmp_path):
    messages = []
    monitor = OverfittingMonitor(tmp_path, patience=3, notify=messages.append)
    drive(monitor, tiny_model(), logs(FALLING, VAL_UP))
    assert monitor.began_at == 5
    assert messages == [overfitting_message(5, 3)]
    assert "since epoch 6" in messages[0]
    acc = read_run(tmp_path)
    assert plugin_tags(acc, "text") == {"overfitting"}
    texts = tensor_values(acc, "overfitting")
    assert list(texts) == [7]  # detected at the end of epoch index 7
    assert texts[7].item().decode() == messages[0]


def test_silent_without_overfitting_and_reset_between_runs(tmp_path):
    messages = []
    monitor = OverfittingMonitor(tmp_path, patience=3, notify=messages.append)
    model = tiny_model()
    drive(monitor, model, logs(FALLING, VAL_UP))
    drive(monitor, model, logs(FALLING, FALLING))
    assert monitor.began_at is None and len(messages) == 1
    rising = [1.0, 0.9, 0.8, 0.7, 0.6, 0.7, 0.8, 0.9, 1.0]
    drive(monitor, model, logs(rising, VAL_UP))
    assert monitor.began_at is None and len(messages) == 1


def test_without_validation_or_with_sparse_validation(tmp_path):
    messages = []
    monitor = OverfittingMonitor(tmp_path / "a", notify=messages.append)
    drive(monitor, tiny_model(), [{"loss": t} for t in FALLING])
    assert monitor.began_at is None and messages == []
    assert not (tmp_path / "a").exists()
    # Validation every second epoch (validation_freq=2): epochs map back to real indices.
    sparse = [{"loss": 1.0 - 0.05 * i} for i in range(12)]
    for i, v in zip(range(1, 12, 2), [1.0, 0.9, 0.8, 0.9, 1.0, 1.1]):
        sparse[i]["val_loss"] = v
    monitor = OverfittingMonitor(tmp_path / "b", notify=messages.append)
    drive(monitor, tiny_model(), sparse)
    assert monitor.began_at == 7 and messages == [overfitting_message(7, 3)]
