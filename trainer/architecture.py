"""Finding and loading architecture modules: a built-in name, a ``.py`` file, or ``package.module``.

An architecture is a plain Python module with ``build(input_shape, num_classes, **hp)``, a
``DEFAULTS`` mapping and a docstring whose first line describes it. Only the standard library
is imported here; the module itself imports Keras when it is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from types import ModuleType

from architectures import BUILTINS
from trainer.errors import TrainerError, UsageError, one_line

RUN_KEYS = ("epochs", "batch_size", "optimizer", "learning_rate")


@dataclasses.dataclass
class Phase:
    """A training phase an architecture module declares with ``phases(epochs, **hyperparameters)``
    -> a list of dicts with these keys. trainer applies it between two epochs of the same run:
    ``apply(model)`` changes the model (e.g. which layers are trainable) and returns a one-line
    description; then a new optimizer of the same kind at ``learning_rate_factor`` times the
    run's learning rate (or schedule) is compiled in, and training goes on at ``epoch``."""

    epoch: int  # 0-based first epoch of the phase
    name: str
    apply: Callable
    learning_rate_factor: float = 1.0


@dataclasses.dataclass
class Architecture:
    name: str
    source: str  # what the user typed, resolved: "architectures.cnn" or a file path
    module: ModuleType

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.module) or ""
        return doc.splitlines()[0] if doc else ""

    @property
    def task(self) -> str:
        from trainer import tasks

        return tasks.check(getattr(self.module, "TASK", "multiclass"))

    @property
    def example_input_shape(self) -> tuple:
        """The input ``trainer list``/``summary`` build it with: MNIST unless the module says."""
        return tuple(getattr(self.module, "INPUT_SHAPE", (28, 28, 1)))

    @property
    def defaults(self) -> dict:
        return dict(getattr(self.module, "DEFAULTS", {}))

    @property
    def example_hyperparameters(self) -> dict:
        """Hyperparameters ``trainer list``/``summary`` add under the user's (``weights: none``:
        no download just to count parameters); the module's ``EXAMPLE_HYPERPARAMETERS``."""
        return dict(getattr(self.module, "EXAMPLE_HYPERPARAMETERS", {}))

    @property
    def feature_layer(self) -> str | None:
        """The module's ``FEATURE_LAYER``: the layer its frozen part ends in. While nothing up
        to it trains (and without augmentation) trainer computes its output once per image and
        trains the rest of the model on it (trainer/features.py). Declare it only when those
        layers behave the same in training and inference (a backbone called with
        ``training=False``)."""
        return getattr(self.module, "FEATURE_LAYER", None)

    def default_image_size(self, hyperparameters: dict):
        """The image size for an image folder when ``--image-size`` is not given: the module's
        ``image_size(**hyperparameters)`` (e.g. a backbone's native size), else None."""
        function = getattr(self.module, "image_size", None)
        if not callable(function):
            return None
        return tuple(self._call(function, **hyperparameters))

    def phases(self, epochs: int, hyperparameters: dict) -> list[Phase]:
        """The training phases after the first, from the module's optional ``phases`` function
        (see :class:`Phase`), sorted by epoch; only those that start within ``epochs``."""
        function = getattr(self.module, "phases", None)
        if not callable(function):
            return []
        found = [Phase(**dict(p)) for p in self._call(function, epochs, **hyperparameters) or []]
        for phase in found:  # the module's code: its errors in one line, as build()'s
            phase.apply = self._guarded(phase.apply, f"phases()[{phase.name!r}].apply")
        return sorted((p for p in found if 0 <= p.epoch < epochs), key=lambda p: p.epoch)

    def hyperparameters(self) -> dict:
        """``build``'s own parameters (beyond input_shape and num_classes) and their defaults."""
        params = inspect.signature(self.module.build).parameters
        return {
            name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in list(params.items())[2:]
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }

    def check_hyperparameters(self, values: dict) -> None:
        params = inspect.signature(self.module.build).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        known = self.hyperparameters()
        for key, value in values.items():
            if key not in known:
                listed = ", ".join(known) or "none"
                raise UsageError(
                    f"Unknown hyperparameter {key!r} for architecture {self.name!r}. "
                    f"build() accepts: {listed}."
                )
            expected = type_mismatch(value, known[key])
            if expected:
                raise UsageError(
                    f"Invalid value for hyperparameter `{key}` of {self.name!r}. Received: {key}={value!r}. "
                    f"Expected {expected} (its default is {known[key]!r})."
                )

    def _call(self, function, *args, **kwargs):
        """One of the module's functions; its exceptions reported in one line (a ``TrainerError``
        it raises, such as ``UsageError`` for a bad argument, as it is, with its exit code)."""
        try:
            return function(*args, **kwargs)
        except TrainerError:
            raise
        except Exception as exc:  # the user's code: report it in one line
            raise TrainerError(
                f"{self.name}.{function.__name__}() raised {type(exc).__name__}: {one_line(exc)} ({_where(exc)})"
            ) from None

    def _guarded(self, function, name: str):
        def call(*args, **kwargs):
            return self._call(function, *args, **kwargs)

        call.__name__ = name  # how an error names it: "<arch>.phases()['fine-tune'].apply()"
        return call

    def build(self, input_shape, num_classes, **hyperparameters):
        self.check_hyperparameters(hyperparameters)
        model = self._call(self.module.build, tuple(input_shape), num_classes, **hyperparameters)
        import keras

        if not isinstance(model, keras.Model):
            raise TrainerError(
                f"{self.name}.build() returned {type(model).__name__}; expected a keras.Model."
            )
        return model


def type_mismatch(value, default) -> str | None:
    """What kind of value ``build``'s parameter expects when ``value`` is not one, judged by the
    parameter's default (None or no default: anything goes); None when ``value`` fits."""
    if default is None or value is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "text"
    return None


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "no traceback"
    last = frames[-1]
    return f"{last.filename}:{last.lineno}"


def _load_file(path: str) -> ModuleType:
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"trainer_user_arch_{name}", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"Cannot load {path!r} as a Python module; expected a .py file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load(arch: str) -> Architecture:
    """Resolves ``arch`` to an :class:`Architecture`, with one-line errors for the user."""
    is_path = arch.endswith(".py") or os.sep in arch
    if is_path and not os.path.isfile(arch):
        raise UsageError(f"Architecture file not found: {arch!r}.")
    if not is_path and arch not in BUILTINS and "." not in arch:
        hint = difflib.get_close_matches(arch, BUILTINS, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        raise UsageError(
            f"Unknown architecture {arch!r}.{suggestion} Known: {', '.join(BUILTINS)}; "
            "or give a path to a .py file, or package.module."
        )
    source = os.path.abspath(arch) if is_path else (f"architectures.{arch}" if arch in BUILTINS else arch)
    try:
        module = _load_file(arch) if is_path else importlib.import_module(source)
    except ModuleNotFoundError as exc:
        if not is_path and exc.name and source.startswith(exc.name):
            raise UsageError(f"Cannot import architecture module {arch!r}: {exc}.") from None
        raise TrainerError(f"Architecture {arch!r} failed to import: {one_line(exc)} ({_where(exc)})") from None
    except Exception as exc:
        raise TrainerError(
            f"Architecture {arch!r} failed to import: {type(exc).__name__}: {one_line(exc)} ({_where(exc)})"
        ) from None
    if not callable(getattr(module, "build", None)):
        raise UsageError(
            f"Architecture {arch!r} has no build() function; expected "
            "build(input_shape, num_classes, **hyperparameters) -> keras.Model."
        )
    name = os.path.splitext(os.path.basename(arch))[0] if is_path else arch.rsplit(".", 1)[-1]
    return Architecture(name=name, source=source, module=module)


def parse_value(text: str):
    """``--set`` values: ints, floats, booleans and ``none`` become Python values."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignments(items) -> dict:
    """``["dropout=0.2", "units=64"]`` -> ``{"dropout": 0.2, "units": 64}``."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"Invalid value for option `--set`. Received: {item!r}. Expected KEY=VALUE."
            )
        values[key.strip()] = parse_value(value)
    return values
