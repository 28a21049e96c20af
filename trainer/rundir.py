"""Run directories: a new one per run, never reused, and a lock held while a process writes it."""

from __future__ import annotations

import datetime
import os
import re
import tempfile

from trainer.errors import TrainerError, UsageError


def create_run_dir(logdir: str, arch: str, name: str | None = None, prefix: str = "") -> str:
    """A new directory ``logdir/arch/<prefix><timestamp>[-name]``; an existing one is never reused."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UsageError(
            f"Invalid value for option `--name`. Received: {name!r}. "
            "Expected letters, digits, '.', '_' or '-'."
        )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(logdir, arch, prefix + stamp + (f"-{name}" if name else ""))
    try:
        os.makedirs(os.path.dirname(base), exist_ok=True)
        for attempt in range(1000):
            path = base if attempt == 0 else f"{base}.{attempt}"
            try:
                os.mkdir(path)
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise UsageError(
            f"Invalid value for option `--logdir`. Received: {logdir!r}, which cannot be written "
            f"({exc.strerror or exc}). Expected a writable directory."
        ) from None
    raise TrainerError(f"Could not find a free run directory name under {os.path.dirname(base)!r}.")


def claim_dir(path: str) -> str:
    """Creates ``path`` (and its parents); an existing run directory is an error, never reused."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        os.mkdir(path)
    except FileExistsError:
        raise UsageError(f"Run directory {path!r} already exists; runs are never overwritten.") from None
    except OSError as exc:
        raise UsageError(f"Cannot create run directory {path!r}: {exc.strerror or exc}.") from None
    return path


class RunLock:
    """An exclusive lock on a run directory for as long as a process writes it.

    ``flock`` is released by the kernel when the process dies, even by ``kill -9``, so a
    crashed run can be resumed at once while a live one can never be opened twice.
    """

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, ".lock")
        self._file = None

    def __enter__(self):
        import fcntl

        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise TrainerError(
                f"Run {os.path.dirname(self.path)!r} is being written by a live process (pid {holder}); "
                "wait for it to finish or stop it first."
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return self

    def __exit__(self, *exc):
        self._file.close()  # releases the lock
        return False


def scratch_dir() -> str:
    """Where a multi-worker run's non-chief worker trains (removed at the end)."""
    return tempfile.mkdtemp(prefix="trainer-worker-")
