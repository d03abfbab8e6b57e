"""PromQL found in the shipped Grafana dashboard and Prometheus rules.

Tests use these helpers to check every expression against a real Prometheus:
Grafana template variables are replaced by values Prometheus accepts, so an
expression copied from a panel can be sent to ``/api/v1/query`` as it is.

>>> exprs = dashboard_expressions(DASHBOARD)
>>> any("streamlearn_accuracy" in e for e in exprs)
True
>>> all("$" not in e for e in exprs + annotation_expressions(DASHBOARD))
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
DASHBOARD = _HERE / "grafana" / "dashboards" / "streamlearn.json"
PROMETHEUS_CONFIG = _HERE / "prometheus" / "prometheus.yml"
RULE_FILES = (
    _HERE / "prometheus" / "rules" / "recording.yml",
    _HERE / "prometheus" / "rules" / "alerts.yml",
)

# Values for Grafana's built-in variables. 1m keeps at least two scrapes in a
# rate window at the shipped 5s scrape interval; 5m is a short dashboard range.
BUILTIN_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
# A dashboard variable stands for "every value" when substituted.
ALL_VALUES = ".+"

# $name, ${name}, ${name:format} and the old [[name]]; "$1" (label_replace) is no variable.
_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]")
_MATCHER = re.compile(r'(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*(?![\w:]|\s*\()")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)


def substitute_variables(expr: str, variables: Iterable[str]) -> str:
    """Replace Grafana variables in ``expr`` with values Prometheus accepts.

    Dashboard variables become the regex ``.+`` inside label matchers (an
    equality matcher turns into a regex one); built-ins get fixed durations.

    >>> substitute_variables('rate(x{topic=~"$topic", p="${partition}"}[$__rate_interval])',
    ...                      ["topic", "partition"])
    'rate(x{topic=~".+", p=~".+"}[1m])'
    >>> substitute_variables('x{t=~"$nope"}', ["topic"])
    Traceback (most recent call last):
    ...
    ValueError: unknown Grafana variable 'nope' in x{t=~"$nope"}
    """
    known = set(variables)

    def value_of(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name in BUILTIN_VALUES:
            return BUILTIN_VALUES[name]
        if name in known:
            return ALL_VALUES
        raise ValueError(f"unknown Grafana variable {name!r} in {expr}")

    def matcher(match: re.Match[str]) -> str:
        op, value = match.groups()
        if not _VARIABLE.search(value):
            return match.group(0)
        regex_op = {"=": "=~", "!=": "!~"}.get(op, op)
        return f'{regex_op}"{_VARIABLE.sub(value_of, value)}"'

    return _VARIABLE.sub(value_of, _MATCHER.sub(matcher, expr))


def metric_names(expr: str) -> set[str]:
    """Names of the metrics (or recorded series) that a PromQL expression reads.

    Label names, function names, keywords, strings and durations are left out.

    >>> sorted(metric_names('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y"}[5m])))'
    ...                     ' / on (job) group_left b:rec offset 1m > bool 1e3'))
    ['a_bucket', 'b:rec']
    """
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub(" ", text)
    names = {m.group(0) for m in _IDENTIFIER.finditer(text)}
    return {n for n in names if n.lower() not in _KEYWORDS}


def load_dashboard(path: str | Path) -> dict[str, Any]:
    """The dashboard JSON at ``path`` as a dict."""
    with open(path, encoding="utf-8") as f:
        dashboard: dict[str, Any] = json.load(f)
    return dashboard


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows; rows themselves excluded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from iter_panels(panel)
        else:
            yield panel


def template_variables(dashboard: dict[str, Any]) -> list[str]:
    """Names of the dashboard's template variables."""
    return [v["name"] for v in dashboard.get("templating", {}).get("list", [])]


def dashboard_expressions(path: str | Path) -> list[str]:
    """The PromQL of every panel target, variables substituted.

    Annotation queries are left out on purpose: they return series only when
    an event (a drift, a reset) happened; see :func:`annotation_expressions`.
    """
    dashboard = load_dashboard(path)
    names = template_variables(dashboard)
    return [
        substitute_variables(target["expr"], names)
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def annotation_expressions(path: str | Path) -> list[str]:
    """The PromQL of the dashboard's Prometheus annotation queries, substituted."""
    dashboard = load_dashboard(path)
    names = template_variables(dashboard)
    return [
        substitute_variables(annotation["expr"], names)
        for annotation in dashboard.get("annotations", {}).get("list", [])
        if annotation.get("expr")
    ]


def rule_expressions(paths: Iterable[str | Path]) -> list[str]:
    """The ``expr`` of every recording and alerting rule in the given rule files."""
    import yaml  # only the tests and tools need PyYAML, not the daemon

    exprs: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
        for group in document.get("groups", []):
            exprs.extend(str(rule["expr"]).strip() for rule in group.get("rules", []))
    return exprs
