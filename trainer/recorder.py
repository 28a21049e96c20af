"""``metrics.json``: the per-epoch history and the run's results, rewritten atomically after
every epoch so a crash at any moment leaves a readable file."""

from __future__ import annotations

from callbacks.files import atomic_write_json


class RunRecorder:
    """Collects the per-epoch history and writes ``metrics.json`` after each epoch."""

    def __init__(self, path: str):
        import keras

        recorder = self

        class _Hook(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                recorder.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
                recorder.write(status="running")

        self.path = path
        self.history: list[dict] = []
        self.summary: dict = {}
        self.callback = _Hook()

    def write(self, status: str, **summary) -> None:
        self.summary.update(summary)
        atomic_write_json(self.path, {"status": status, **self.summary, "history": self.history})
