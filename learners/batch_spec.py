"""``sklearn:`` model specs: a scikit-learn classifier refitted on a window, without ``eval``.

The grammar (parsed with :mod:`ast`, like River specs)::

    sklearn:ESTIMATOR
    sklearn(window=N, refit_every=M, refit_lag=L, wait=True|False):ESTIMATOR

``ESTIMATOR`` is ``module.Class`` or ``module.Class(arguments)`` naming a public class of
one of the scikit-learn modules in :data:`SKLEARN_MODULES` (a leading ``sklearn.`` is
optional), or several joined by ``|`` into a scikit-learn pipeline whose last step is a
classifier (``preprocessing.StandardScaler | linear_model.LogisticRegression``).
Arguments are literals, tuples/lists/dicts of them, or nested estimators. The wrapper's
own arguments, all optional, are those of :class:`learners.batch.WindowedClassifier`
(screening is the daemon's ``--screen-pool``, not part of the spec).

>>> model = parse_sklearn_spec("sklearn(window=500):linear_model.LogisticRegression(C=0.5)")
>>> model.window, model.refit_every, model.refit_lag, model.estimator
(500, 1000, None, LogisticRegression(C=0.5))
>>> too_late = "sklearn(refit_every=100, refit_lag=500):naive_bayes.GaussianNB"
>>> parse_sklearn_spec(too_late)  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
learners.exceptions.ModelSpecError: sklearn(refit_every=100, refit_lag=500): refit_lag must be ...
>>> parse_sklearn_spec("sklearn:linear_model._logistic.LogisticRegression")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
learners.exceptions.ModelSpecError: 'linear_model._logistic.LogisticRegression': the private ...
"""

from __future__ import annotations

import ast
import importlib
import re
from typing import Any

from learners.batch import WindowedClassifier
from learners.exceptions import ModelSpecError
from learners.spec import Compiler

__all__ = ["SKLEARN_MODULES", "is_sklearn_spec", "parse_sklearn_spec"]

#: The scikit-learn modules whose public estimators a spec may name.
SKLEARN_MODULES = frozenset(
    {
        "discriminant_analysis", "dummy", "ensemble", "linear_model", "naive_bayes",
        "neighbors", "neural_network", "preprocessing", "svm", "tree",
    }
)  # fmt: skip

_WRAPPER_ARGS = {"window": int, "refit_every": int, "refit_lag": int, "wait": bool}
_PREFIX = re.compile(r"\s*sklearn\s*(\((?P<args>[^)]*)\))?\s*:(?P<estimator>.*)\Z", re.DOTALL)
_ALLOWED = (
    "An sklearn spec is 'sklearn:module.Class(arguments)' or "
    "'sklearn(window=N, refit_every=M, refit_lag=L, wait=False):module.Class(arguments)', "
    "steps joined by | into a pipeline ending in a classifier; modules: "
    f"{', '.join(sorted(SKLEARN_MODULES))}."
)


def is_sklearn_spec(text: str) -> bool:
    """True when ``text`` asks for a scikit-learn model (``sklearn:`` or ``sklearn(...):``)."""
    return re.match(r"\s*sklearn\s*[(:]", text) is not None


def parse_sklearn_spec(text: str) -> WindowedClassifier:
    """Build the wrapped, unfitted scikit-learn classifier ``text`` names."""
    match = _PREFIX.match(text)
    if match is None:
        raise ModelSpecError(f"the model spec {text.strip()!r} is not an sklearn spec. {_ALLOWED}")
    wrapper_args = _wrapper_args(match["args"] or "")
    try:
        importlib.import_module("sklearn.base")
    except ImportError:
        raise ModelSpecError(
            "sklearn: models need scikit-learn: pip install 'streamlearn[sklearn]'"
        ) from None
    body = match["estimator"].strip()
    if not body:
        raise ModelSpecError(f"the sklearn spec names no estimator. {_ALLOWED}")
    source = f"(\n{body}\n)"
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ModelSpecError(
            f"the sklearn spec {body!r} cannot be parsed ({exc}). {_ALLOWED}"
        ) from None
    try:
        estimator = _SklearnCompiler(source).estimator(tree.body)
    except RecursionError:
        raise ModelSpecError(f"the sklearn spec is nested too deeply. {_ALLOWED}") from None
    try:
        return WindowedClassifier(estimator, **wrapper_args)
    except ValueError as exc:
        raise ModelSpecError(f"sklearn({match['args']}): {exc}") from None


def _wrapper_args(text: str) -> dict[str, Any]:
    """``window=N, refit_every=M, refit_lag=L, wait=B``: keyword literals of the right type only
    (``ast.literal_eval``: a negative number is read, and refused by the wrapper)."""
    if not text.strip():
        return {}
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        raise ModelSpecError(f"sklearn({text}): not valid arguments. {_ALLOWED}") from None
    assert isinstance(call, ast.Call)
    if call.args:
        raise ModelSpecError(f"sklearn({text}): name the arguments (window=..., ...)")
    args: dict[str, Any] = {}
    for kw in call.keywords:
        kind = _WRAPPER_ARGS.get(kw.arg or "")
        try:
            value = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = None
        if kind is None or type(value) is not kind:
            expected = ", ".join(f"{k}: {t.__name__}" for k, t in _WRAPPER_ARGS.items())
            raise ModelSpecError(f"sklearn({text}): {kw.arg!r} is not one of {expected}")
        args[str(kw.arg)] = value
    return args


class _SklearnCompiler(Compiler):
    """River's spec compiler, resolving names in scikit-learn's allowed modules instead."""

    def estimator(self, node: ast.expr) -> Any:
        from sklearn.base import is_classifier
        from sklearn.pipeline import make_pipeline

        steps = [self.instance(part) for part in self._pipeline_parts(node)]
        for part, step in zip(self._pipeline_parts(node)[:-1], steps, strict=False):
            if not hasattr(step, "transform"):
                raise self._error(part, "only a transformer may come before the classifier")
        model = steps[0] if len(steps) == 1 else make_pipeline(*steps)
        if not is_classifier(model):
            raise ModelSpecError(
                f"{self._quote(node)!r}: the model must end in a scikit-learn classifier "
                "(the daemon scores accuracy)"
            )
        return model

    def _resolve(self, node: ast.expr) -> Any:
        from sklearn.base import BaseEstimator

        parts = self._dotted(node)
        if parts[0] == "sklearn":
            parts = parts[1:]
        for part in parts:
            if part.startswith("_"):
                raise self._error(node, f"the private name {part!r} is not allowed")
        if len(parts) != 2 or parts[0] not in SKLEARN_MODULES:
            raise self._error(node, "not a class of an allowed scikit-learn module")
        module = importlib.import_module(f"sklearn.{parts[0]}")
        cls = getattr(module, parts[1], None)
        if parts[1] not in getattr(module, "__all__", ()) or cls is None:
            raise self._error(node, f"sklearn.{parts[0]} has no public name {parts[1]!r}")
        if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
            raise self._error(node, "not a scikit-learn estimator class")
        return cls

    def _construct(self, node: ast.expr, cls: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Constructed, and its parameters checked now: scikit-learn checks them at the
        first fit, which would be minutes into the run."""
        obj = super()._construct(node, cls, args, kwargs)
        check = getattr(obj, "_validate_params", None)
        try:
            if check is not None:
                check()
        except (ValueError, TypeError) as exc:
            raise ModelSpecError(f"{self._quote(node)!r} refused its arguments: {exc}") from None
        return obj

    def _error(self, node: ast.expr, reason: str) -> ModelSpecError:
        return ModelSpecError(f"{self._quote(node)!r}: {reason}. {_ALLOWED}")
