"""trainer: train Keras models and watch everything in TensorBoard.

The command line is ``trainer`` (``trainer.cli``); from Python::

    import trainer
    result = trainer.fit("cnn", data="mnist.npz", epochs=3, dropout=0.2)
    trainer.resume(result.run_dir)  # an interrupted run

``import trainer`` is light: TensorFlow and Keras are imported when ``fit`` is called.
"""

from trainer.api import fit, resume
from trainer.errors import TrainerError, UsageError

__all__ = ["TrainerError", "UsageError", "fit", "resume"]
