"""Frozen features (trainer/features.py): a frozen backbone's output computed once per image
and the head trained on it. First the pieces on a tiny model (the features follow the run's
batch order and skip, the memory bound, Ctrl-C while they are computed, a stop asked of the
whole model stops the head); then real `trainer fit transfer` runs: with the cache and with
``--no-feature-cache`` the same losses, weights and TensorBoard tags, and a run killed with
kill -9 in the frozen phase resumes to the same result."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import read_events, run_cli
from tests.image_folders import SHAPES, make_classes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = "Features of the frozen layers (up to 'pool')"


def tiny_model(frozen=True):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv", trainable=not frozen)(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.5, name="head_dropout")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="classifier")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def frozen_features(model, n=10, batch_size=4, val=0, notify=print, store=None):
    from trainer.data import EpochOrderedData
    from trainer.features import FrozenFeatures

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8), (np.arange(n) % 3).astype(np.int32)
    order = EpochOrderedData(x, y, batch_size, seed=5)

    def compile_head(head):
        head.compile(optimizer=model.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    return FrozenFeatures(model, "pool", order, val, 4, compile_head, notify, data=(x, y), store=store), order, x, y


def test_the_feature_batches_follow_the_run_order_and_skip():
    model = tiny_model()
    features, order, x, y = frozen_features(model)
    assert features.usable()
    said = []
    features.notify = said.append
    features.compute(None)
    assert len(said) == 1 and said[0].startswith(LINE + " computed once for 10 training images in ")
    features.compute(None)  # once
    assert len(said) == 1
    order.epoch.assign(2)
    order.skip.assign(1)
    head, train, val = features.fit_inputs(order.steps - 1)
    assert val is None and head.inputs[0].shape[1:] == (4,)
    expected = list(order.dataset(order.steps - 1))  # the images the whole model would train on
    got = list(train)
    assert len(got) == len(expected) == order.steps - 1
    for (fx, fy), (ix, iy) in zip(got, expected):
        np.testing.assert_array_equal(fy.numpy(), iy.numpy())
        np.testing.assert_allclose(fx.numpy(), features.extractor.predict_on_batch(ix), rtol=1e-6)


def test_stored_features_are_read_by_the_next_run_with_the_same_weights_and_data(tmp_path, monkeypatch):
    from trainer.features import FrozenFeatures

    extracted = []
    extract = FrozenFeatures._extract
    monkeypatch.setattr(FrozenFeatures, "_extract", lambda self, ds, check: extracted.append(1) or extract(self, ds, check))
    said = []
    first, *_ = frozen_features(tiny_model(), store=str(tmp_path), notify=said.append)
    first.compute(None)
    assert len(extracted) == 1 and "computed once" in said[-1]
    again, *_ = frozen_features(tiny_model(), store=str(tmp_path), notify=said.append)
    assert again.key() == first.key()
    again.compute(None)
    assert len(extracted) == 1 and "read from the feature cache (computed by an earlier run)" in said[-1]
    np.testing.assert_array_equal(again._features[0][0], first._features[0][0])
    changed = tiny_model()
    changed.get_layer("conv").kernel.assign(changed.get_layer("conv").kernel * 2)  # other weights
    other, *_ = frozen_features(changed, store=str(tmp_path))
    assert other.key() != first.key()
    fewer, *_ = frozen_features(tiny_model(), n=9, store=str(tmp_path))  # other data
    assert fewer.key() != first.key()
    assert sorted(os.listdir(tmp_path)) == [first.key()]  # nothing half-written left


def test_not_used_while_the_frozen_part_trains():
    features, *_ = frozen_features(tiny_model(frozen=False))
    assert not features.usable()


def test_the_memory_bound(monkeypatch):
    said = []
    features, *_ = frozen_features(tiny_model(), n=300, val=100, notify=said.append)
    monkeypatch.setenv("TRAINER_FEATURE_CACHE_MAX_MB", "0.005")  # 5,242 bytes; 400 x 4 floats = 6,400
    assert not features.usable() and not features.usable()
    assert said == ["Note: the frozen 'pool' features would take 0.0061 MiB, over TRAINER_FEATURE_CACHE_MAX_MB=0.005: "
                    "training through the whole model."]
    monkeypatch.setenv("TRAINER_FEATURE_CACHE_MAX_MB", "0.01")
    assert features.usable()
    monkeypatch.setenv("TRAINER_FEATURE_CACHE_MAX_MB", "lots")
    with pytest.warns(RuntimeWarning, match=r"Received: 'lots'. Expected a number of MiB >= 0; using 2048."):
        assert features.usable()


def test_a_stop_while_computing_leaves_nothing_half_done(monkeypatch):
    from trainer import features as F

    monkeypatch.setattr(F, "EXTRACT_BATCH", 4)  # 10 images: three batches
    features, *_ = frozen_features(tiny_model())
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        features.compute(None, check)
    assert features._features is None
    features.compute(None)
    assert len(features._features[0][0]) == 10


def test_a_stop_asked_of_the_whole_model_stops_the_head():
    import keras

    from trainer.features import stop_forwarder

    model = tiny_model()
    features, order, *_ = frozen_features(model, n=40)
    features.compute(None)
    head, train, _ = features.fit_inputs(order.steps)

    class StopAfterTwo(keras.callbacks.Callback):  # as early stopping does: on the model it is given
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    seen = []
    batches = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))
    model.stop_training = True  # left over from an earlier fit: reset at the start
    callbacks = keras.callbacks.CallbackList([batches, StopAfterTwo(), stop_forwarder(head)], model=model)
    head.fit(train, epochs=3, verbose=0, shuffle=False, callbacks=callbacks)
    assert seen == [0, 1]


# ------------------------------------------------------------------ real runs of `trainer fit transfer`

# Two frozen epochs, then one fine-tuning the top layers: the switch after the head's fit.
ARGS = ("--set", "weights=none", "--set", "freeze_epochs=2", "--set", "fine_tune=10", "--image-size", 32,
        "--epochs", 3, "--batch-size", 8, "--validation", 0.2, "--seed", 4, "--progress", "plain",
        "--misclassified", 4, "--embeddings", 20)
KILL = """
import os, signal, sys
import keras
from trainer import architecture, config, run

class KillAt(keras.callbacks.Callback):  # kill -9 at a known point: epoch 2 (frozen), batch 3
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == (1, 3):
            os.kill(os.getpid(), signal.SIGKILL)

settings = dict(data=sys.argv[1], logdir=sys.argv[2],
                hyperparameters={"weights": "none", "freeze_epochs": 2, "fine_tune": 10},
                image_size=[32, 32], epochs=3, batch_size=8, validation=0.2, steps_per_execution=1, seed=4,
                progress="plain", misclassified=4, embeddings=20, save_every_batches=1)
run.fit(config.resolve(architecture.load("transfer"), settings), callbacks=[KillAt()])
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    folder = str(tmp / "photos")
    make_classes(folder, counts={s: 18 for s in SHAPES}, formats=(("png", "PNG"),))
    out = {}
    for name, extra in (("cached", ()), ("whole", ("--no-feature-cache",))):
        result = run_cli("fit", "transfer", "--data", folder, "--logdir", tmp / name, *ARGS, *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        (run_dir,) = glob.glob(str(tmp / name / "transfer" / "*"))
        out[name] = run_dir, result.stdout
    env = {k: v for k, v in os.environ.items() if k != "TRAINER_DATA"}
    killed = subprocess.run([sys.executable, "-c", KILL, folder, str(tmp / "killed")], cwd=REPO, text=True,
                            env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    (run_dir,) = glob.glob(str(tmp / "killed" / "transfer" / "*"))
    resumed = run_cli("fit", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out["resumed"] = run_dir, resumed.stdout
    return out


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f)


def test_the_cache_trains_the_same_as_the_whole_model(runs):
    cached, whole = metrics(runs["cached"][0]), metrics(runs["whole"][0])
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert [h[key] for h in cached["history"]] == pytest.approx([h[key] for h in whole["history"]], rel=1e-5)
    assert cached["test"] == pytest.approx(whole["test"], rel=1e-5)
    assert runs["cached"][1].count(LINE) == 1 and LINE not in runs["whole"][1]
    said = next(line for line in runs["cached"][1].splitlines() if line.startswith(LINE))
    assert said.startswith(f"{LINE} computed once for 34 training and 8 validation images in "), said


def test_the_monitors_write_the_same_tags(runs):
    for sub in ("", "train", "validation", "test"):
        tags = [read_events(os.path.join(runs[name][0], sub)).Tags() for name in ("cached", "whole")]
        assert tags[0]["tensors"] == tags[1]["tensors"], sub
        assert tags[0]["tensors"]


def test_kill_9_in_the_frozen_phase_resumes_to_the_same_run(runs):
    resumed, cached = metrics(runs["resumed"][0]), metrics(runs["cached"][0])
    assert resumed["resumed"][0]["epoch"] == 2 and resumed["resumed"][0]["batch"] == 3
    # (the resumed epoch's training loss is the mean over its remaining batches only)
    assert [h["val_loss"] for h in resumed["history"]] == pytest.approx(
        [h["val_loss"] for h in cached["history"]], rel=1e-5)
    assert resumed["test"] == pytest.approx(cached["test"], rel=1e-5)
    said = [line for line in runs["resumed"][1].splitlines() if line.startswith(LINE)]
    assert len(said) == 1 and "read from the feature cache" in said[0]  # stored by an earlier run


def test_ctrl_c_while_computing_keeps_the_saved_state(tmp_path, monkeypatch):
    """SIGINT while the features are computed: no state is saved over the last one (before any
    fit the callbacks have not restored theirs), and the resumed run ends with a best epoch."""
    import trainer
    from callbacks.backup import load_state
    from trainer.features import FrozenFeatures
    from trainer.training import RunInterrupted

    folder = str(tmp_path / "photos")
    make_classes(folder, counts={s: 6 for s in SHAPES}, formats=(("png", "PNG"),))
    extract = FrozenFeatures._extract

    def ctrl_c(self, ds, check):  # what Ctrl-C does, at a known point
        os.kill(os.getpid(), signal.SIGINT)
        return extract(self, ds, check)

    monkeypatch.setattr(FrozenFeatures, "_extract", ctrl_c)
    settings = dict(data=folder, logdir=str(tmp_path / "logs"), image_size="32", epochs=2, batch_size=4,
                    progress="none", misclassified=0, embeddings=0, set=("weights=none", "freeze_epochs=2"))
    with pytest.raises(RunInterrupted, match="while the frozen features were computed; the last saved state "
                                             "is kept. Resume with: trainer fit --resume ") as stopped:
        trainer.fit("transfer", **settings)
    assert stopped.value.exit_code == 130
    (run_dir,) = glob.glob(str(tmp_path / "logs" / "transfer" / "*"))
    assert load_state(os.path.join(run_dir, "state")) is None
    monkeypatch.setattr(FrozenFeatures, "_extract", extract)
    result = trainer.resume(run_dir)
    assert result.best_epoch is not None and len(result.history) == 2


def test_a_feature_layer_the_head_cannot_stand_in_for(capsys):
    import keras

    from trainer.features import FrozenFeatures, unusable

    assert unusable(tiny_model(), "pool") is None
    assert unusable(tiny_model(), "nope") == "not a layer of the model"

    class OwnStep(keras.Model):
        def train_step(self, data):
            return super().train_step(data)

    inputs = keras.Input((4,))
    pool = keras.layers.Dense(4, name="pool", trainable=False)(inputs)
    own = OwnStep(inputs, keras.layers.Dense(2)(pool))
    assert unusable(own, "pool") == "the model has its own train_step"
    skip = keras.Model(inputs, keras.layers.Add()([keras.layers.Dense(4)(pool), inputs]))  # needs the input too
    with pytest.raises(ValueError):
        FrozenFeatures(skip, "pool", None, 0, 4, None)
