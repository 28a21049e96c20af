"""``ruff check .`` passes, with the rules in pyproject.toml (``[tool.ruff]``)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO


def test_ruff_check_passes():
    # The ruff installed beside this Python (the test extras), else one on PATH.
    ruff = shutil.which("ruff", path=sys.exec_prefix + "/bin") or shutil.which("ruff")
    assert ruff, 'ruff is not installed: pip install -e ".[test]"'
    proc = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ruff check . found problems:\n{proc.stdout}{proc.stderr}"
