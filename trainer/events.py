"""Rewriting a run's event files on resume, so TensorBoard shows one continuous curve.

A process killed after its last saved state may have written summaries past that state.
When the run resumes, those steps are written again; instead of leaving two points per
step (or relying on a reader's purge heuristics), the old files are rewritten without the
superseded events, each through a temporary file and an atomic rename.
"""

from __future__ import annotations

import glob
import os

from callbacks.files import atomic_path


def keep_event(event, next_epoch: int, next_batch: int) -> bool:
    """Whether a summary event belongs to the saved state.

    Batch-level tags (``batch_*``) are stepped by global batch; everything else by epoch.
    """
    if event.HasField("graph_def") or event.HasField("meta_graph_def"):
        return False  # the resumed process writes the model graph again
    if not event.HasField("summary"):
        return True  # file version, session logs
    tags = [v.tag for v in event.summary.value]
    if tags and all(tag.startswith("batch_") for tag in tags):
        return event.step < next_batch
    return event.step < next_epoch


def truncate_events(run_dir: str, next_epoch: int, next_batch: int, drop_dirs=("test",)) -> int:
    """Drops events past (``next_epoch``, ``next_batch``) from every event file of the run.

    Files in ``drop_dirs`` (written only once training has finished) lose all summaries.
    A torn record at the end of a file (a kill mid-write) ends that file's reading.
    Returns the number of events dropped.
    """
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    dropped = 0
    for path in glob.glob(os.path.join(run_dir, "**", "events.out.tfevents.*"), recursive=True):
        subdir = os.path.relpath(os.path.dirname(path), run_dir)
        kept, total = [], 0
        try:
            for record in tf.data.TFRecordDataset(path):
                total += 1
                event = event_pb2.Event.FromString(record.numpy())
                if subdir in drop_dirs and event.HasField("summary"):
                    continue
                if keep_event(event, next_epoch, next_batch):
                    kept.append(record.numpy())
        except tf.errors.DataLossError:
            pass  # a torn last record: what came before it is kept
        if len(kept) == total:
            continue
        dropped += total - len(kept)
        with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
            for record in kept:
                writer.write(record)
    return dropped
