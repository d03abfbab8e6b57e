"""Turn a model specification text into a fresh River estimator, without ``eval``.

The daemon's ``--model`` option takes a River model written the way River users
write it in Python, e.g. ``preprocessing.StandardScaler | linear_model.LogisticRegression``.
The text is parsed with :mod:`ast` and only a small language is accepted:

- ``module.Class`` or ``module.Class(arguments)``: a public class of ``river.<module>``
  (``linear_model.LogisticRegression``, ``drift.binary.DDM``; a leading ``river.`` is
  optional) deriving from River's ``base.Base``. A bare ``module.Class`` means
  ``module.Class()``, also when used as an argument.
- ``a | b | c``: a pipeline of those steps, built with ``compose.Pipeline``.
- arguments, positional or keyword: numbers (negative too), strings, ``True``, ``False``,
  ``None``, tuples, lists and dicts of those, and nested ``module.Class(...)`` calls
  (optimizers, losses, drift detectors, sub-models).

Nothing is ever evaluated: a class is found only by importing ``river.<module>`` and
looking up a public name on it, so ``os.system``, ``__import__('os')`` or
``river.__builtins__`` are refused with a :class:`ModelSpecError` before anything runs.
The final step must be a classifier (the daemon scores accuracy) or a regressor (it
scores the mean absolute error); :func:`task_of` tells which.

A spec starting ``sklearn:`` or ``sklearn(...):`` is a scikit-learn classifier refitted on
a window of recent events instead (``learners.batch_spec``, ``docs/models.md``).

>>> model = parse_model_spec(
...     "preprocessing.StandardScaler | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))"
... )
>>> describe_model(model)
'StandardScaler | LogisticRegression(optimizer=SGD(lr=Constant(learning_rate=0.05)))'
>>> parse_model_spec("os.system('rm -rf /')")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
learners.exceptions.ModelSpecError: 'os.system': there is no River module 'river.os'...

"""

from __future__ import annotations

import ast
import importlib
import inspect
from typing import Any

from river import base, compose

from learners.exceptions import ModelSpecError

__all__ = ["CLASSIFICATION", "REGRESSION", "describe_model", "parse_model_spec", "task_of"]

#: The two kinds of task a model can serve, told by its final step (:func:`task_of`).
CLASSIFICATION = "classification"
REGRESSION = "regression"

_ALLOWED = (
    "A model spec is River classes written module.Class or module.Class(arguments), "
    "joined by | into a pipeline; arguments are literals (numbers, strings, True, False, "
    "None, and tuples/lists/dicts of them) or other module.Class(...) calls, e.g. "
    "'preprocessing.StandardScaler | linear_model.LogisticRegression(l2=0.01)'."
)


def parse_model_spec(text: str) -> base.Estimator:
    """Build a fresh River classifier or regressor (or pipeline ending in one) from ``text``.

    Raises :class:`ModelSpecError`, quoting the offending part, for anything that is not
    in the small language described in the module docstring.

    >>> parse_model_spec("tree.HoeffdingTreeClassifier(grace_periode=50)")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    learners.exceptions.ModelSpecError: 'tree.HoeffdingTreeClassifier': got an unexpected ...

    """
    if not text.strip():
        raise ModelSpecError(f"the model spec is empty. {_ALLOWED}")
    if text.lstrip().startswith("sklearn"):
        from learners import batch_spec  # scikit-learn is an optional extra

        if batch_spec.is_sklearn_spec(text):
            return batch_spec.parse_sklearn_spec(text)
    # The brackets let a spec span lines (e.g. a TOML multi-line string) and carry comments;
    # the source keeps their offsets right for quoting offending parts.
    source = f"(\n{text.strip()}\n)"
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ModelSpecError(
            f"the model spec {text.strip()!r} is not valid syntax ({_syntax_error(exc, text)}). "
            f"{_ALLOWED}"
        ) from None
    except (ValueError, RecursionError) as exc:  # null bytes; absurd nesting
        raise ModelSpecError(f"the model spec cannot be parsed ({exc}). {_ALLOWED}") from None
    try:
        model = Compiler(source).model(tree.body)
    except RecursionError:
        raise ModelSpecError(f"the model spec is nested too deeply. {_ALLOWED}") from None
    final = final_step(model)
    if not isinstance(final, base.Classifier | base.Regressor):
        what = "an empty pipeline" if final is None else type(final).__name__
        raise ModelSpecError(
            f"the model must end in a classifier (the daemon scores accuracy) or a regressor "
            f"(it scores the mean absolute error), but {text.strip()!r} ends in {what}, "
            f"which is neither a River classifier nor a River regressor"
        )
    return model


def task_of(model: base.Estimator) -> str:
    """``REGRESSION`` when the final step is a River regressor, else ``CLASSIFICATION``.

    >>> from river import linear_model, preprocessing
    >>> task_of(preprocessing.StandardScaler() | linear_model.LinearRegression())
    'regression'
    >>> task_of(linear_model.LogisticRegression())
    'classification'
    """
    return REGRESSION if isinstance(final_step(model), base.Regressor) else CLASSIFICATION


def describe_model(model: Any) -> str:
    """One line for logs: class names with only the arguments that differ from defaults.

    >>> from river import tree
    >>> describe_model(tree.HoeffdingAdaptiveTreeClassifier(grace_period=100, seed=42))
    'HoeffdingAdaptiveTreeClassifier(grace_period=100, seed=42)'

    """
    if isinstance(model, compose.Pipeline):
        return " | ".join(map(_describe_step, model.steps.values()))
    if isinstance(model, base.Base):
        return _describe_step(model)
    return " ".join(repr(model).split())


class Compiler:
    """Walks the parsed spec and builds objects; ``text`` is kept to quote offending parts.

    ``learners.batch_spec`` resolves scikit-learn names with a subclass of it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def model(self, node: ast.expr) -> base.Estimator:
        """A whole spec: pipeline steps joined by ``|`` (parentheses only group)."""
        steps = [self.step(part) for part in self._pipeline_parts(node)]
        if len(steps) == 1:
            return steps[0]
        try:
            return compose.Pipeline(*steps)
        except Exception as exc:  # e.g. River trips over a pipeline holding an empty one
            raise self._error(node, f"these steps do not make a pipeline ({exc!r})") from exc

    def _pipeline_parts(self, node: ast.expr) -> list[ast.expr]:
        if not isinstance(node, ast.BinOp):
            return [node]
        if not isinstance(node.op, ast.BitOr):
            raise self._error(node, "only | may join pipeline steps")
        return self._pipeline_parts(node.left) + self._pipeline_parts(node.right)

    def step(self, node: ast.expr) -> base.Estimator:
        obj = self.instance(node)
        if not isinstance(obj, base.Estimator):
            raise self._error(node, "not an estimator, so it cannot be a pipeline step")
        if isinstance(obj, compose.Pipeline) and not obj.steps:
            raise self._error(node, "an empty pipeline cannot be a step")  # River chokes on it
        return obj

    def instance(self, node: ast.expr) -> base.Base:
        """``module.Class`` or ``module.Class(args)``, constructed."""
        if isinstance(node, ast.Attribute | ast.Name):
            return self._construct(node, self._resolve(node), [], {})
        if not isinstance(node, ast.Call):
            raise self._error(node, "not a River class or a call of one")
        cls = self._resolve(node.func)
        args = [self.value(arg) for arg in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self._error(kw.value, "** arguments are not allowed")
            kwargs[kw.arg] = self.value(kw.value)
        return self._construct(node, cls, args, kwargs)

    def value(self, node: ast.expr) -> Any:
        """An argument: a literal, a container of arguments, or a nested River object."""
        if isinstance(node, ast.Constant) and _is_literal(node.value):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.value(node.operand)
            if isinstance(operand, int | float) and not isinstance(operand, bool):
                return -operand if isinstance(node.op, ast.USub) else operand
            raise self._error(node, "a sign applies only to a number")
        if isinstance(node, ast.Tuple):
            return tuple(self.value(item) for item in node.elts)
        if isinstance(node, ast.List):
            return [self.value(item) for item in node.elts]
        if isinstance(node, ast.Dict):
            return self._dict(node)
        if isinstance(node, ast.Call | ast.Attribute):
            return self.instance(node)
        if isinstance(node, ast.Name):
            raise self._error(node, "a bare name; use a literal or a module.Class")
        if isinstance(node, ast.Starred):
            raise self._error(node, "* arguments are not allowed")
        raise self._error(node, f"{type(node).__name__} expressions are not allowed as arguments")

    def _dict(self, node: ast.Dict) -> dict[Any, Any]:
        result = {}
        for key, val in zip(node.keys, node.values, strict=True):
            if key is None:
                raise self._error(val, "** unpacking is not allowed")
            literal_key = self.value(key)
            if isinstance(literal_key, base.Base | list | dict):
                raise self._error(key, "a dict key must be a literal")
            result[literal_key] = self.value(val)
        return result

    def _resolve(self, node: ast.expr) -> type[base.Base]:
        """Find a public class of ``river.<module>`` by import and getattr only."""
        parts = self._dotted(node)
        if parts[0] == "river":
            parts = parts[1:]
        for part in parts:
            if part.startswith("_"):
                raise self._error(node, f"the private name {part!r} is not allowed")
        if len(parts) < 2:
            raise self._error(node, "name its River module too, e.g. tree.HoeffdingTreeClassifier")
        module_name = "river." + ".".join(parts[:-1])
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise self._error(node, f"there is no River module {module_name!r}") from None
        cls = getattr(module, parts[-1], None)
        if cls is None:
            raise self._error(node, f"{module_name} has no name {parts[-1]!r}")
        if not (isinstance(cls, type) and issubclass(cls, base.Base)):
            raise self._error(node, "not a River class (estimator, optimizer, loss, ...)")
        return cls

    def _dotted(self, node: ast.expr) -> list[str]:
        if isinstance(node, ast.Name):
            return [node.id]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            return [*self._dotted(node.value), node.attr]
        raise self._error(node, "not a dotted name of a River class")

    def _construct(
        self, node: ast.expr, cls: type[base.Base], args: list[Any], kwargs: dict[str, Any]
    ) -> base.Base:
        """Call the constructor; argument mistakes name the class and the argument."""
        name = self._quote(node.func if isinstance(node, ast.Call) else node)
        try:
            inspect.signature(cls).bind(*args, **kwargs)
        except TypeError as exc:
            accepted = ", ".join(inspect.signature(cls).parameters) or "no arguments"
            raise ModelSpecError(f"{name!r}: {exc} (it accepts: {accepted})") from None
        try:
            return cls(*args, **kwargs)
        except Exception as exc:  # any constructor complaint is a spec mistake at start-up
            raise ModelSpecError(f"{name!r} refused its arguments: {exc}") from exc

    def _quote(self, node: ast.expr) -> str:
        segment = ast.get_source_segment(self.text, node) or ast.unparse(node)
        return " ".join(segment.split())  # one line, for log lines

    def _error(self, node: ast.expr, reason: str) -> ModelSpecError:
        return ModelSpecError(f"{self._quote(node)!r}: {reason}. {_ALLOWED}")


def _syntax_error(exc: SyntaxError, text: str) -> str:
    """The parser's message, placed in the user's text (the wrapping brackets excluded)."""
    line = (exc.lineno or 0) - 1
    if 1 <= line <= len(text.strip().splitlines()):
        return f"{exc.msg} at line {line}, column {exc.offset}"
    return exc.msg


def _is_literal(value: object) -> bool:
    # Ellipsis, bytes and complex are constants too, but no River argument wants them.
    return value is None or isinstance(value, bool | int | float | str)


def final_step(model: base.Estimator) -> object:
    """The step that makes the predictions (None for an empty pipeline).

    River 0.26 dropped ``utils.inspect.isclassifier``; its ``isinstance`` unwraps pipelines
    but fails on an empty one, and walking the steps also names the culprit in errors.
    """
    while isinstance(model, compose.Pipeline):
        if not model.steps:
            return None
        model = list(model.steps.values())[-1]
    return model


def _describe_step(obj: base.Base) -> str:
    if isinstance(obj, compose.Pipeline):
        return f"({describe_model(obj)})"
    # River constructors swap None defaults for real objects (loss=None becomes Log()), so
    # "default" means "what a default-constructed instance holds", when one can be built.
    try:
        reference: object = type(obj)()
    except Exception:
        reference = None
    args = []
    for name, param in inspect.signature(type(obj)).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(obj, name, param.default)
        default = getattr(reference, name, param.default)
        if default is param.empty or repr(value) != repr(default):
            args.append(f"{name}={_describe_value(value)}")
    return f"{type(obj).__name__}({', '.join(args)})" if args else type(obj).__name__


def _describe_value(value: Any) -> str:
    if isinstance(value, base.Base):
        return _describe_step(value)
    if isinstance(value, list | tuple):
        inner = ", ".join(map(_describe_value, value))
        if isinstance(value, list):
            return f"[{inner}]"
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return " ".join(repr(value).split())
