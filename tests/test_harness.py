"""The test harness itself: a monitor's "failed and was skipped" warning fails a test, in a
``trainer`` subprocess (``run_cli``) as in process (``filterwarnings`` in pyproject.toml)."""

from __future__ import annotations

import warnings

import pytest

from callbacks.base import never_raise
from tests.conftest import SKIPPED_FEATURE, check_no_skipped_feature


class Broken:
    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        raise ValueError("no writer")


def test_a_skipped_feature_in_a_subprocess_output_fails_the_test():
    line = f"base.py:80: RuntimeWarning: Scalars.on_epoch_end {SKIPPED_FEATURE}: OSError: disk full"
    with pytest.raises(pytest.fail.Exception, match="Scalars.on_epoch_end failed and was skipped"):
        check_no_skipped_feature("Epoch 1/2 - 1.0s", line)
    check_no_skipped_feature("Epoch 1/2 - 1.0s", "")  # a clean run passes
    check_no_skipped_feature(line, allow=True)  # a test that provokes it asserts it itself


def test_a_skipped_feature_in_process_is_an_error():
    with pytest.raises(RuntimeWarning, match="Broken.on_epoch_end failed and was skipped"):
        Broken().on_epoch_end(0)


def test_a_test_can_still_expect_the_warning():
    with pytest.warns(RuntimeWarning, match="Broken.on_epoch_end failed and was skipped"):
        Broken().on_epoch_end(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Broken().on_epoch_end(0)
    assert len(caught) == 1
