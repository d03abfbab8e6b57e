"""Unpickle a checkpoint's payload through an allow-list, with aliases for moved classes.

A pickle names the classes and functions it is built from (``module`` + ``name``), and
unpickling imports and calls them. :func:`restricted_loads` resolves a name only when

- it is an old path listed in :data:`ALIASES` (a class that moved keeps loading: the
  project's own classes are part of every checkpoint), mapped to where it lives now;
- or it is a class or function *defined* in one of :data:`ALLOWED_PACKAGES` (River and
  this package: what a model and its learner are made of);
- or it is a *class* defined in one of :data:`SKLEARN_PACKAGES` (the scikit-learn modules a
  ``sklearn:`` model is made of: its estimators, pipelines, losses, trees); scikit-learn's
  functions are refused, save the object constructors listed in :data:`ALLOWED_NAMES`;
- or it is one of the few members of the standard library and NumPy listed in
  :data:`ALLOWED_NAMES` (containers, ``functools.partial``, ``random.Random``, array and
  random-generator reconstructors). ``builtins.getattr``, which pickle uses to rebuild
  bound methods, only hands out methods of allowed classes.

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a module, a
dunder attribute) is refused with a :class:`~learners.exceptions.CheckpointError` of
reason ``forbidden_class`` before it is even imported. This keeps checkpoints to what
models are made of and stops the obvious payloads; it is not a sandbox (River's own
classes can do what their methods do). The HMAC key is what keeps a forged checkpoint
out (:mod:`learners.checkpoint`).

>>> import pickle
>>> from learners.sequence import SequenceTracker
>>> type(restricted_loads(pickle.dumps(SequenceTracker()))).__name__
'SequenceTracker'
>>> restricted_loads(b"cos\\nsystem\\n(S'true'\\ntR.")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
learners.exceptions.CheckpointError: checkpoint names os.system, which is not allowed ...
"""

from __future__ import annotations

import inspect
import io
import pickle
from collections.abc import Callable
from typing import Any

from learners.exceptions import CheckpointError

__all__ = ["ALIASES", "ALLOWED_NAMES", "ALLOWED_PACKAGES", "SKLEARN_PACKAGES", "restricted_loads"]

#: Old class paths -> where the class lives now. Add a line whenever a pickled class moves.
ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    # Format 1 (releases up to 0.1.0) pickled the state under the application package.
    ("stream.checkpointing", "PartitionState"): ("learners.state", "PartitionState"),
}

#: Packages whose classes and functions may appear in a checkpoint.
ALLOWED_PACKAGES: tuple[str, ...] = ("river", "learners")

#: scikit-learn packages whose *classes* (never functions) may appear in a checkpoint: the
#: modules ``learners.batch_spec`` may name, and what their fitted estimators hold.
SKLEARN_PACKAGES: tuple[str, ...] = tuple(
    "sklearn." + name
    for name in (
        "discriminant_analysis", "dummy", "ensemble", "linear_model", "naive_bayes",
        "neighbors", "neural_network", "preprocessing", "svm", "tree", "pipeline", "_loss",
        "metrics._dist_metrics",
    )
)  # fmt: skip

_NUMPY_CORE = {"_reconstruct", "scalar", "_frombuffer"}
#: Single names from modules that also hold things a checkpoint must never call.
ALLOWED_NAMES: dict[str, frozenset[str]] = {
    module: frozenset(names)
    for module, names in {
        "builtins": {
            "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int",
            "list", "object", "range", "set", "slice", "str", "tuple", "getattr",
        },
        "collections": {"Counter", "OrderedDict", "defaultdict", "deque"},
        "copy": {"deepcopy"},  # River's defaultdict factories: partial(deepcopy, template)
        "functools": {"partial"},
        "random": {"Random"},
        "numpy": {"dtype", "ndarray"},
        "numpy._core.multiarray": _NUMPY_CORE,
        "numpy.core.multiarray": _NUMPY_CORE,
        "numpy._core.numeric": _NUMPY_CORE,
        "numpy.core.numeric": _NUMPY_CORE,
        "numpy.random._pickle": {
            "__bit_generator_ctor", "__generator_ctor", "__randomstate_ctor",
        },
        "numpy.random._mt19937": {"MT19937"},
        "numpy.random._pcg64": {"PCG64", "PCG64DXSM"},
        "numpy.random._philox": {"Philox"},
        "numpy.random._sfc64": {"SFC64"},
        "numpy.random._generator": {"Generator"},
        "numpy.random.mtrand": {"RandomState"},
        # A generator's seed sequence (scikit-learn's gradient boosting keeps one).
        "numpy.random.bit_generator": {"SeedSequence", "__pyx_unpickle_SeedSequence"},
        # Cython objects' constructors (``cls.__new__(cls)``) in fitted nearest neighbours.
        "sklearn.neighbors._kd_tree": {"newObj"},
        "sklearn.neighbors._ball_tree": {"newObj"},
        "sklearn.metrics._dist_metrics": {"newObj"},
    }.items()
}  # fmt: skip


def restricted_loads(payload: bytes) -> object:
    """Unpickle ``payload``; ``CheckpointError("forbidden_class")`` for a name not allowed."""
    return _RestrictedUnpickler(io.BytesIO(payload)).load()


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module, name = ALIASES.get((module, name), (module, name))
        if name in ALLOWED_NAMES.get(module, ()):
            found = super().find_class(module, name)
            return _bound_method if found is getattr else found
        if any(part.startswith("__") for part in name.split(".")):
            raise _forbidden(module, name)
        if _in_packages(module, SKLEARN_PACKAGES):
            return _sklearn_class(super().find_class(module, name), module, name)
        if not _in_packages(module):
            raise _forbidden(module, name)
        found = super().find_class(module, name)
        # A dotted name can walk out of the package (river.x.os.system): judge the result.
        is_code = inspect.isclass(found) or inspect.isfunction(found) or inspect.isbuiltin(found)
        if not is_code or not _in_packages(getattr(found, "__module__", None) or ""):
            raise _forbidden(module, name)
        return found


def _bound_method(obj: object, name: str) -> Callable[..., Any]:
    """``getattr`` as pickle uses it for bound methods, limited to allowed classes' methods."""
    method = getattr(obj, name) if not name.startswith("__") else None
    if not inspect.ismethod(method) or not _in_packages(type(obj).__module__):
        raise _forbidden(type(obj).__module__, f"{type(obj).__qualname__}.{name}")
    if not _in_packages(getattr(method.__func__, "__module__", None) or ""):
        raise _forbidden(type(obj).__module__, f"{type(obj).__qualname__}.{name}")
    return method


def _sklearn_class(found: object, module: str, name: str) -> object:
    """A class defined in the allowed scikit-learn packages (a dotted name may walk out)."""
    if not inspect.isclass(found) or not _in_packages(found.__module__, SKLEARN_PACKAGES):
        raise _forbidden(module, name)
    return found


def _in_packages(module: str, packages: tuple[str, ...] | None = None) -> bool:
    packages = ALLOWED_PACKAGES if packages is None else packages  # read now: tests patch it
    return any(module == p or module.startswith(p + ".") for p in packages)


def _forbidden(module: str, name: str) -> CheckpointError:
    return CheckpointError(
        "forbidden_class",
        f"checkpoint names {module}.{name}, which is not allowed in a checkpoint "
        f"(only River, learners and scikit-learn estimator classes, and a few containers, are)",
    )
