"""The monitors ``trainer fit`` attaches: compiled metrics counted in Keras's own validation
pass, and the callbacks that write them to TensorBoard, each switched by its own option.

Two steps, because the metrics must exist before ``model.compile`` and the callbacks need the
compiled model: ``compiled_metrics`` -> compile -> ``attach``.
"""

from __future__ import annotations

import dataclasses
import os

from trainer import data as datasets

GRADIENT_BATCH = 256  # one fixed validation batch for the gradient norms


@dataclasses.dataclass
class Compiled:
    """Metrics compiled into the model for the monitors (``metrics`` go to ``compile``)."""

    metrics: list
    confusion: object = None  # callbacks.validation_metrics.ConfusionMatrix
    mistakes: object = None  # callbacks.validation_metrics.WorstMistakes
    sample: object = None  # callbacks.regression.PredictionSample
    pr_counts: object = None  # callbacks.pr_curves.PrecisionRecallCounts
    calibration: object = None  # callbacks.calibration.CalibrationBins


@dataclasses.dataclass
class Monitors:
    """The attached callbacks; ``test_loggers`` each have ``log_test(step) -> dict | None``,
    called once after the test-set evaluation; ``best`` is the best-model checkpoint."""

    callbacks: list
    test_loggers: list
    best: object = None


def compiled_metrics(task: str, num_classes: int, misclassified: int, misclassified_class,
                     replicas: int, notify, pr_curves: bool = True, calibration: bool = True) -> Compiled:
    """Keras metrics for ``task`` plus the counting metrics the monitors read."""
    from trainer import tasks

    compiled = Compiled(metrics=tasks.metrics(task))
    if task != "multiclass":
        off = "confusion matrix and misclassified grid" if task == "binary" else \
            "confusion matrix, misclassified grid, PR curves and calibration"
        notify(f"Note: per-class metrics, {off} are off for a {task} task.")
    if task != "regression":
        _classifier_metrics(compiled, 1 if task == "binary" else num_classes, pr_curves, calibration)
    if task == "regression":
        from callbacks.regression import PredictionSample

        compiled.sample = PredictionSample()
        compiled.metrics.append(compiled.sample)
    elif task == "multiclass":
        from callbacks.validation_metrics import ConfusionMatrix, WorstMistakes

        compiled.confusion = ConfusionMatrix(num_classes)
        compiled.metrics.append(compiled.confusion)
        if misclassified and replicas > 1:
            notify(f"Misclassified grid off: its sample indices are per replica with {replicas} replicas.")
        elif misclassified:
            compiled.mistakes = WorstMistakes(misclassified, misclassified_class)
            compiled.metrics.append(compiled.mistakes)
    return compiled


def _classifier_metrics(compiled: Compiled, curves: int, pr_curves: bool, calibration: bool) -> None:
    """PR-curve counts and calibration bins (binary models: ``curves=1``, one sigmoid output)."""
    if pr_curves:
        from callbacks.pr_curves import PrecisionRecallCounts

        compiled.pr_counts = PrecisionRecallCounts(curves)
        compiled.metrics.append(compiled.pr_counts)
    if calibration:
        from callbacks.calibration import CalibrationBins

        compiled.calibration = CalibrationBins()
        compiled.metrics.append(compiled.calibration)


def attach(config, run_dir: str, data, split, compiled: Compiled, notify) -> Monitors:
    """The TensorBoard callbacks for this run's options (``split``: train/validation arrays)."""
    from callbacks.devices import DeviceScalars
    from callbacks.scalars import Scalars

    x_train, _, x_val, y_val = split
    has_val = x_val is not None
    monitors = Monitors(callbacks=[], test_loggers=[])
    add = monitors.callbacks.append
    from trainer import schedules

    monitors.callbacks.extend(schedules.callbacks(config, "val_loss" if has_val else "loss"))  # before Scalars
    add(Scalars(run_dir, samples_per_epoch=len(x_train), batch_size=config.batch_size,
                log_every=config.log_every))
    if has_val:
        from callbacks.checkpoint import BestCheckpoint

        monitors.best = BestCheckpoint(os.path.join(run_dir, "best.keras"))
        add(monitors.best)
    if config.early_stopping:
        import keras

        add(keras.callbacks.EarlyStopping(monitor="val_loss" if has_val else "loss",
                                          patience=config.early_stopping))
    _model_monitors(config, run_dir, x_val, y_val, add, notify)
    _validation_panels(config, run_dir, data, x_val, compiled, monitors)
    if has_val and config.embeddings:
        from callbacks.projector import EmbeddingProjector

        add(EmbeddingProjector(run_dir, x_val, split[3], class_names=data.class_names, samples=config.embeddings,
                               every=config.embeddings_every, notify=notify))
    add(DeviceScalars(run_dir))
    return monitors


def nested_layers(config) -> int | None:
    """``--histograms-layers``: layers of a nested model (a backbone) logged; None for all."""
    return None if config.histograms_layers == "all" else config.histograms_layers


def _model_monitors(config, run_dir, x_val, y_val, add, notify) -> None:
    """Panels about the model itself: graph, weights, gradients, trainable count, overfitting."""
    from callbacks.phases import TrainableParameters

    add(TrainableParameters(run_dir))
    if config.graph:
        from callbacks.graph import ModelGraph

        add(ModelGraph(run_dir))
    if config.histograms_every:
        from callbacks.histograms import WeightHistograms

        add(WeightHistograms(run_dir, every=config.histograms_every, nested_layers=nested_layers(config)))
    if x_val is None:
        return
    if config.gradients_every:
        from callbacks.gradients import GradientNorms

        n = min(len(x_val), GRADIENT_BATCH)
        add(GradientNorms(run_dir, (datasets.to_float(x_val[:n]), y_val[:n]), every=config.gradients_every,
                          nested_layers=nested_layers(config)))
    if config.overfitting_patience:
        from callbacks.overfitting import OverfittingMonitor

        add(OverfittingMonitor(run_dir, patience=config.overfitting_patience, notify=notify))


def _validation_panels(config, run_dir, data, x_val, compiled: Compiled, monitors: Monitors) -> None:
    """Panels drawn from the metrics counted in the validation pass (and again for the test set)."""
    names = data.class_names

    def add(callback, test=True):
        monitors.callbacks.append(callback)
        if test:
            monitors.test_loggers.append(callback)

    if compiled.confusion is not None and config.per_class:
        from callbacks.per_class import PerClassMetrics

        add(PerClassMetrics(run_dir, compiled.confusion, class_names=names))
    if compiled.confusion is not None and config.confusion_every:
        from callbacks.confusion import ConfusionMatrixImage

        add(ConfusionMatrixImage(run_dir, compiled.confusion, class_names=names, every=config.confusion_every))
    if compiled.pr_counts is not None and config.pr_curves_every:
        from callbacks.pr_curves import PRCurves

        add(PRCurves(run_dir, compiled.pr_counts, class_names=names, every=config.pr_curves_every))
    if compiled.calibration is not None and config.calibration_every:
        from callbacks.calibration import ReliabilityDiagram

        add(ReliabilityDiagram(run_dir, compiled.calibration, every=config.calibration_every))
    if x_val is None:
        return
    if compiled.sample is not None:
        from callbacks.regression import PredictionScatter

        add(PredictionScatter(run_dir, compiled.sample))
    if compiled.mistakes is not None:
        from callbacks.misclassified import MisclassifiedGrid

        add(MisclassifiedGrid(run_dir, compiled.mistakes, x_val, class_names=names, test_images=data.x_test))
        if config.gradcam:
            from callbacks.gradcam import GradCamGrid

            add(GradCamGrid(run_dir, compiled.mistakes, x_val, class_names=names, test_images=data.x_test))
