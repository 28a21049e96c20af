"""Keras callbacks that log to TensorBoard, one concern each, usable in any ``model.fit``.

    from callbacks import ConfusionMatrix, PerClassMetrics
    cm = ConfusionMatrix(num_classes=10)
    model.compile(..., metrics=["accuracy", cm])   # counted in Keras's own validation pass
    model.fit(..., validation_data=val, callbacks=[PerClassMetrics("logs/run", cm)])

Names are imported lazily, so ``import callbacks`` costs nothing until one is used.
"""

import importlib

_EXPORTS = {
    "TensorBoardCallback": "base",
    "Scalars": "scalars",
    "WeightHistograms": "histograms",
    "GradientNorms": "gradients",
    "ModelGraph": "graph",
    "OverfittingMonitor": "overfitting",
    "ConfusionMatrix": "validation_metrics",
    "WorstMistakes": "validation_metrics",
    "PerClassMetrics": "per_class",
    "ConfusionMatrixImage": "confusion",
    "MisclassifiedGrid": "misclassified",
    "PrecisionRecallCounts": "pr_curves",
    "PRCurves": "pr_curves",
    "CalibrationBins": "calibration",
    "ReliabilityDiagram": "calibration",
    "GradCam": "gradcam",
    "GradCamGrid": "gradcam",
    "EmbeddingProjector": "projector",
    "DeviceScalars": "devices",
    "BestCheckpoint": "checkpoint",
    "Backup": "backup",
    "RichProgress": "progress",
    "PlainProgress": "progress",
    "make_progress": "progress",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'callbacks' has no attribute {name!r}")
    return getattr(importlib.import_module(f"callbacks.{_EXPORTS[name]}"), name)
