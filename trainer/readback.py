"""Reading run directories back: configuration, metrics, status and event-file text.

A *run directory* holds ``config.json`` or ``metrics.json`` (and no ``sweep.json``, which
marks a sweep directory holding runs). Only the standard library is imported at module
level; the event files are read with TensorBoard's reader, which does not need TensorFlow
(see ``callbacks.compat.tensorboard_without_tensorflow``).

Status rule (``run_status``): a run whose ``metrics.json`` says ``"running"`` (or that has no
``metrics.json`` yet) is *running* if a live process holds its ``.lock`` (``trainer.run.RunLock``),
or, with no lock file, if some file in the run directory changed in the last ``STALE_SECONDS``;
otherwise it is *interrupted* (the process died without writing a final status). Any other
stored status (``finished``, ``interrupted``, ``failed``, …) is reported as it is; ``runs``
lists a run whose JSON cannot be read as *unreadable*.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

from trainer.errors import TrainerError, UsageError

STALE_SECONDS = 300
LOCK_FILE = ".lock"
SWEEP_FILE = "sweep.json"
# Configuration fields that change the result (what ``compare`` looks at, besides
# hyperparameters); output, monitor and device-report fields are left out.
KEY_FIELDS = ("dataset", "data", "train_limit", "test_limit", "validation", "batch_size", "optimizer",
              "learning_rate", "lr_schedule", "warmup_epochs", "warmup_steps", "min_learning_rate",
              "plateau_patience", "plateau_factor", "plateau_min_delta", "early_stopping", "seed", "precision",
              "mixed_precision", "strategy")


@dataclasses.dataclass
class Run:
    path: str
    config: dict  # config.json as written (RunConfig fields + versions, class_names, devices)
    metrics: dict | None  # metrics.json, or None before the first epoch ends
    status: str
    started: float  # seconds since the epoch (config.json's modification time)

    @property
    def arch(self) -> str:
        return self.config.get("arch") or "?"

    @property
    def history(self) -> list[dict]:
        return (self.metrics or {}).get("history") or []

    @property
    def test(self) -> dict:
        return (self.metrics or {}).get("test") or {}

    @property
    def epochs_run(self) -> int:
        return (self.metrics or {}).get("epochs_run") or len(self.history)

    def series(self, key: str) -> list[float]:
        """``key`` over the epochs that logged it (NaN where a value is not a number)."""
        return [as_float(h[key]) for h in self.history if key in h]

    def best(self, key: str) -> tuple[float, int] | None:
        """(best value, 1-based epoch) of ``key``: the minimum of losses, else the maximum."""
        points = [(as_float(h[key]), h.get("epoch", i + 1)) for i, h in enumerate(self.history)
                  if key in h and not math.isnan(as_float(h[key]))]
        if not points:
            return None
        pick = min if "loss" in key else max
        return pick(points, key=lambda p: p[0])

    def best_epoch(self) -> int | None:
        """The (1-based) epoch of the best ``val_loss``, as saved in ``best.keras`` and as
        ``best_epoch`` means everywhere (metrics.json, a sweep's trials)."""
        if (self.metrics or {}).get("best_epoch"):
            return self.metrics["best_epoch"]
        best = self.best("val_loss")
        return best[1] if best else None

    def headline(self) -> tuple[str, float] | None:
        """("test", test accuracy), else ("val", best validation accuracy), else None."""
        if "accuracy" in self.test:
            return "test", as_float(self.test["accuracy"])
        best = self.best("val_accuracy")
        return ("val", best[0]) if best else None


def as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_run_dir(path: str) -> bool:
    return (os.path.isdir(path) and not os.path.isfile(os.path.join(path, SWEEP_FILE))
            and any(os.path.isfile(os.path.join(path, f)) for f in ("config.json", "metrics.json")))


def _read_json(path: str) -> dict | None:
    """``callbacks.files.read_json``, an unreadable file as a ``TrainerError``."""
    from callbacks.files import read_json

    try:
        return read_json(path)
    except ValueError as exc:
        raise TrainerError(str(exc)) from None


def load_run(path: str, now: float | None = None, strict: bool = True) -> Run:
    """The run in ``path``; a ``UsageError`` if ``path`` is not a run directory. An unreadable
    JSON file is a ``TrainerError``, or with ``strict=False`` a run with status "unreadable"."""
    if not is_run_dir(path):
        raise UsageError(f"{path!r} is not a run directory: no config.json or metrics.json. "
                         "Expected logs/<arch>/<run>.")
    try:
        config = _read_json(os.path.join(path, "config.json")) or {}
        metrics = _read_json(os.path.join(path, "metrics.json"))
    except TrainerError:
        if strict:
            raise
        return Run(path=path, config={}, metrics=None, status="unreadable", started=os.path.getmtime(path))
    stored = (metrics or {}).get("status", "running")
    first = next(p for p in (os.path.join(path, "config.json"), os.path.join(path, "metrics.json"))
                 if os.path.isfile(p))
    return Run(path=path, config=config, metrics=metrics, status=run_status(path, stored, now),
               started=os.path.getmtime(first))


def find_runs(root: str) -> list[str]:
    """``root`` itself if it is a run directory, else every run directory below it (sorted by
    path). Hidden directories and the inside of run directories are not searched."""
    if is_run_dir(root):
        return [root]
    found = []
    for parent, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in list(dirs):
            if is_run_dir(os.path.join(parent, d)):
                found.append(os.path.join(parent, d))
                dirs.remove(d)
    return sorted(found)


def newest_mtime(path: str) -> float:
    """The latest modification time of the files in and below ``path`` (of ``path`` itself
    if it holds none)."""
    newest = None
    for parent, _, files in os.walk(path):
        for name in files:
            try:
                mtime = os.path.getmtime(os.path.join(parent, name))
            except OSError:  # removed meanwhile (an atomic write's temporary file)
                continue
            newest = mtime if newest is None else max(newest, mtime)
    return os.path.getmtime(path) if newest is None else newest


def lock_pid(path: str) -> int | None:
    """The pid written in ``<run>/.lock``, or None if there is no readable lock."""
    try:
        with open(os.path.join(path, LOCK_FILE)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def lock_held(path: str) -> bool | None:
    """Whether a live process holds ``<run>/.lock`` (``trainer.run.RunLock``: an exclusive
    ``flock`` the kernel releases when the process dies); None if there is no lock file.
    Without ``fcntl``, whether the pid written in the lock is alive."""
    lock = os.path.join(path, LOCK_FILE)
    if not os.path.isfile(lock):
        return None
    try:
        import fcntl
    except ImportError:  # not POSIX
        pid = lock_pid(path)
        return None if pid is None else pid_alive(pid)
    try:
        with open(lock) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return None


def run_status(path: str, stored: str, now: float | None = None) -> str:
    """``stored`` unless it is "running" and the writer is gone (see the module docstring)."""
    if stored != "running":
        return stored
    held = lock_held(path)
    if held is not None:
        return "running" if held else "interrupted"
    now = time.time() if now is None else now
    return "running" if now - newest_mtime(path) < STALE_SECONDS else "interrupted"


def differing_params(runs: list[Run]) -> list[str]:
    """Keys (``KEY_FIELDS`` and hyperparameter names) whose values differ between ``runs``."""
    keys = [k for k in KEY_FIELDS if len({json.dumps(r.config.get(k)) for r in runs}) > 1]
    names = []
    for run in runs:
        names += [n for n in run.config.get("hyperparameters") or {} if n not in names]
    keys += [n for n in names
             if len({json.dumps((r.config.get("hyperparameters") or {}).get(n)) for r in runs}) > 1]
    return keys


def param_value(run: Run, key: str) -> object:
    if key in KEY_FIELDS:
        return run.config.get(key)
    return (run.config.get("hyperparameters") or {}).get(key)


# ---- event files ------------------------------------------------------------------------


def has_events(path: str) -> bool:
    return os.path.isdir(path) and any(n.startswith("events.out.tfevents") for n in os.listdir(path))


def text_summaries(path: str, tags=None) -> dict[str, tuple[int, str]]:
    """The last value of each text summary in the event files directly in ``path``, as
    ``{tag: (step, text)}`` (only ``tags`` if given); {} if there are no event files."""
    if not has_events(path):
        return {}
    from callbacks.compat import tensorboard_without_tensorflow

    tensorboard_without_tensorflow()
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.util import tensor_util

    acc = pea.EventAccumulator(path, size_guidance={pea.TENSORS: 0})
    acc.Reload()
    found = {}
    for tag in acc.Tags().get(pea.TENSORS, []):
        if tags is not None and tag not in tags:
            continue
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "text":
            continue
        event = acc.Tensors(tag)[-1]
        value = tensor_util.make_ndarray(event.tensor_proto)
        text = value.item() if value.ndim == 0 else value.ravel()[0]
        found[tag] = (event.step, text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text))
    return found


def overfitting_note(run_dir: str) -> tuple[int, str] | None:
    """(step, message) of the ``overfitting`` text at the run's root, or None."""
    return text_summaries(run_dir, {"overfitting"}).get("overfitting")


def parse_markdown_table(text: str) -> dict:
    """``{"classes": {name: {precision, recall, f1, support}}, "macro": {...}}`` from the
    ``per_class_metrics`` markdown table (the layout of ``callbacks.per_class.markdown_table``)."""
    classes, macro = {}, {}
    for line in text.splitlines():
        cells = [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] == "class" or set(cells[1]) <= set("-:"):
            continue
        try:
            p, r, f1, support = float(cells[1]), float(cells[2]), float(cells[3]), int(cells[4])
        except ValueError:
            continue
        if cells[0] == "macro avg":
            macro = {"precision": p, "recall": r, "f1": f1}
        else:
            classes[cells[0]] = {"precision": p, "recall": r, "f1": f1, "support": support}
    return {"classes": classes, "macro": macro} if classes else {}


def per_class_details(run: Run) -> tuple[str, dict]:
    """(source, details) of the last per-class results: ``metrics.json``'s ``test_details``,
    else the last ``per_class_metrics``/``confused_pairs`` text of the test, then validation,
    event files. ``details`` may hold classes, macro, confusion_matrix, confused_pairs
    (a list of dicts) or confused_pairs_text; ("", {}) if there is none."""
    details = (run.metrics or {}).get("test_details") or {}
    if details.get("classes"):
        return "test set", details
    for subdir, label in (("test", "test set"), ("validation", "validation")):
        texts = text_summaries(os.path.join(run.path, subdir), {"per_class_metrics", "confused_pairs"})
        if "per_class_metrics" in texts:
            step, table = texts["per_class_metrics"]
            found = parse_markdown_table(table)
            if "confused_pairs" in texts:
                found["confused_pairs_text"] = texts["confused_pairs"][1]
            return (label if subdir == "test" else f"{label}, epoch {step + 1}"), found
    return "", {}
