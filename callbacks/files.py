"""Files that are never left half-written, and JSON that is read one way everywhere.

Every file trainer writes goes to a temporary name beside its target and is renamed into
place (``os.replace`` is atomic on POSIX and Windows), so a crash, ``kill -9`` or a full disk
leaves the previous version intact, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside ``path``; on success it is renamed to ``path``, on an
    exception it is removed and ``path`` is left as it was. For writers that take a path
    (``model.save``, ``tf.io.TFRecordWriter``)."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write(path: str, data: str | bytes) -> None:
    """Writes ``data`` (text or bytes) to ``path`` atomically, synced to disk first."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str, payload) -> None:
    atomic_write(path, json.dumps(payload, indent=2, default=float) + "\n")


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``; None if the file does not exist. A file that cannot be
    read or parsed, or that holds something other than an object, raises ``ValueError`` with
    a one-line message naming the file."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read {path!r}: {exc}.") from None
    if not isinstance(value, dict):
        raise ValueError(f"Cannot read {path!r}: expected a JSON object, found {type(value).__name__}.")
    return value
