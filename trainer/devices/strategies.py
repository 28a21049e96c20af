"""Distribution strategies: creating them, TF_CONFIG and the chief, naming them for people,
and the multi-worker workaround for Keras."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from callbacks import compat
from callbacks.placement import short_device
from trainer.errors import TrainerError, UsageError, invalid_argument

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


def _tf_config() -> dict | None:
    """Parsed and validated TF_CONFIG, or None when it is unset."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        index = int(task.get("index", 0))
        if not isinstance(members, list) or not 0 <= index < len(members):
            raise ValueError(f"task index {index} outside cluster[{task['type']!r}]")
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"Invalid TF_CONFIG ({type(exc).__name__}: {exc}). Expected JSON such as "
            f"TF_CONFIG='{TF_CONFIG_EXAMPLE}'."
        ) from None
    return config


def is_chief() -> bool:
    """True for the task that should write logs: 'chief', else worker 0; True without TF_CONFIG."""
    config = _tf_config()
    if config is None:
        return True
    kind, index = config["task"]["type"], int(config["task"].get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in config["cluster"]


def _multi_worker(name: str) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy from TF_CONFIG; collectives must be set up before
    TensorFlow initialises its devices, so this comes before any device listing."""
    import tensorflow as tf

    if _tf_config() is None:
        raise UsageError(
            "Strategy 'multi-worker' needs the TF_CONFIG environment variable describing "
            f"the cluster and this task, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'."
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as exc:
        raise TrainerError(f"Cannot create strategy {name!r}: {exc}") from None


def make_strategy(name: str = "auto", num_gpus: int | None = None) -> tf.distribute.Strategy:
    """Creates the ``tf.distribute.Strategy`` called ``name``.

    ``num_gpus``: GPUs to use (None: all visible ones). "auto" mirrors over the GPUs when
    more than one is used, else "default". "mirrored" uses the GPUs or, without GPUs,
    every logical CPU device. "multi-worker" needs TF_CONFIG.
    """
    import tensorflow as tf

    key = name.strip().lower().replace("_", "-")
    if key not in STRATEGIES:
        raise invalid_argument("strategy", name, "one of " + ", ".join(map(repr, STRATEGIES)))
    if key == "multi-worker":
        return _multi_worker(name)
    gpus = tf.config.list_logical_devices("GPU")
    wanted = len(gpus) if num_gpus is None else num_gpus
    if wanted < 0 or wanted > len(gpus):
        seen = ", ".join(short_device(d.name) for d in gpus) or "none"
        raise UsageError(
            f"Strategy {name!r} needs {wanted} GPU(s) but TensorFlow sees {len(gpus)} "
            f"(GPUs: {seen}). Use fewer GPUs or another strategy."
        )
    try:
        if key == "auto":
            key = "mirrored" if wanted > 1 else "default"
        if key == "default":
            return tf.distribute.get_strategy()
        devices = gpus[:wanted] if wanted else tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    except (RuntimeError, ValueError) as exc:
        raise TrainerError(f"Cannot create strategy {name!r}: {exc}") from None


# --------------------------------------------------------------------------- names
def strategy_label(class_name: str, replicas: int) -> str:
    """What a strategy is called for people, from its class name (as stored in a device
    report) and its replica count: TensorFlow's class names, such as
    ``_DefaultDistributionStrategy``, are internal."""
    count = f"{replicas} replica{'' if replicas == 1 else 's'}"
    if class_name == "_DefaultDistributionStrategy":
        return "default (one device)"
    if class_name == "OneDeviceStrategy":
        return "one device"
    if class_name.startswith("MirroredStrategy"):
        return f"mirrored ({count})"
    if class_name.startswith(("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")):
        return f"multi-worker ({count})"
    return f"{class_name} ({count})"


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """``strategy`` as people call it: 'default (one device)', 'mirrored (2 replicas)',
    'multi-worker (4 replicas)'."""
    return strategy_label(type(strategy).__name__, strategy.num_replicas_in_sync)


# --------------------------------------------------------------------------- multi-worker
def patch_multi_worker(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Works around two Keras 3 bugs that stop ``model.fit`` under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585); a no-op under any other strategy. Call it after ``compile``.

    1. ``fit`` builds the model by ``strategy.reduce``-ing a whole (x, y) batch, which the
       collective strategy cannot do ("Attempt to convert a value (PerReplica…)"); the batch
       only gives shapes, so the local replica's part is used instead.
    2. With several workers, step results are reduced with ``axis=0``, which fails on scalar
       metrics ("Invalid reduction dimension 0 for input with 0 dimensions"); each result is
       given a leading axis of 1, so the reduction is the mean over replicas.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return

    def build_from_local_batch(symbolic_build, iterator, data_batch):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches))
                break
        with strategy.scope():
            symbolic_build(data_batch)

    compat.replace_symbolic_build(model, build_from_local_batch)
    if strategy.num_replicas_in_sync > len(strategy.extended.worker_devices):  # other workers
        def batched(step):
            return lambda data: tf.nest.map_structure(lambda t: tf.expand_dims(t, 0), step(data))

        model.train_step = batched(model.train_step)
        model.test_step = batched(model.test_step)
