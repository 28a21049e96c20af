"""Shared fixtures: the real MNIST file (tests fail, not skip, without it) and event readers."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.environ.get("TRAINER_TEST_DATA", os.path.join(REPO, "..", "shared", "data", "mnist.npz"))


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """Decoded-image caches and folder scan records go to a temporary folder, not ~/.cache
    (also for the trainer subprocesses, which inherit the environment)."""
    previous = os.environ.get("TRAINER_CACHE_DIR")
    os.environ["TRAINER_CACHE_DIR"] = str(tmp_path_factory.mktemp("trainer-cache"))
    yield os.environ["TRAINER_CACHE_DIR"]
    if previous is None:
        os.environ.pop("TRAINER_CACHE_DIR", None)
    else:
        os.environ["TRAINER_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def mnist_path() -> str:
    if not os.path.isfile(MNIST):
        raise FileNotFoundError(
            f"MNIST test data not found at {MNIST!r}: put shared/ beside the repository "
            "or set TRAINER_TEST_DATA to an .npz in the Keras layout."
        )
    return os.path.abspath(MNIST)


@pytest.fixture(scope="session")
def mnist_small(tmp_path_factory, mnist_path) -> str:
    """A 3,000 / 1,000 sample subset of the real MNIST file, as a local .npz."""
    with np.load(mnist_path) as f:
        arrays = {"x_train": f["x_train"][:3000], "y_train": f["y_train"][:3000],
                  "x_test": f["x_test"][:1000], "y_test": f["y_test"][:1000]}
    path = tmp_path_factory.mktemp("data") / "mnist_small.npz"
    np.savez(path, **arrays)
    return str(path)


# What ``callbacks.base.never_raise`` warns when a side feature (a summary, an image, the
# progress display) breaks and training goes on. A real run must never print it unnoticed.
SKIPPED_FEATURE = "failed and was skipped"


def check_no_skipped_feature(*outputs, allow: bool = False) -> None:
    """Fails the test if a monitor warned that it failed and was skipped, unless ``allow``
    (a test that provokes such a warning on purpose, and asserts it itself)."""
    lines = [line for text in outputs for line in (text or "").splitlines() if SKIPPED_FEATURE in line]
    if lines and not allow:
        pytest.fail("a monitor failed and was skipped during the run:\n" + "\n".join(lines), pytrace=False)


def run_cli(*args, env=None, timeout=600, allow_skipped=False, **kwargs) -> subprocess.CompletedProcess:
    """Runs ``trainer ARGS`` as a real subprocess, output captured as text (not a terminal).

    Fails the test if the output holds a monitor's "failed and was skipped" warning (see
    ``check_no_skipped_feature``); ``allow_skipped=True`` lets a test assert it itself."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("TRAINER_DATA", "TF_ENABLE_ONEDNN_OPTS")}
    full_env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "NO_COLOR": "1", **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "trainer.cli", *map(str, args)], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout, **kwargs)
    check_no_skipped_feature(proc.stdout, proc.stderr, allow=allow_skipped)
    return proc


def error_line(result) -> str:
    """The one ``Error:`` line of a CLI result (a click ``Result``), with no traceback."""
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def read_events(path: str):
    """All data in one run directory, read with TensorBoard's own (plugin-aware) reader."""
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea

    acc = pea.EventAccumulator(path, size_guidance={pea.TENSORS: 0, pea.GRAPH: 1})
    acc.Reload()
    return acc
