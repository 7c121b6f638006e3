"""Helpers of the deploy tests: external tools, and PromQL taken out of the deploy files.

* :func:`need_tool` finds ``promtool`` / ``amtool`` (Debian's ``prometheus`` and
  ``prometheus-alertmanager``; ``.ci/run`` installs them). Missing on a developer's machine:
  the test is skipped saying how to install it. Missing in CI (``CI=true``): the test
  fails, because those checks must run there.
* :func:`rule_expressions` and :func:`dashboard_expressions` list every PromQL expression of
  ``deploy/alerts.yml`` and of the Grafana dashboards; :func:`series_names` the series an
  expression reads. Pure text handling, no YAML library (the project has none): the rules
  file is ours and kept in the form read here (``expr:`` on one line or a ``>-`` block).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

__all__ = [
    "DEPLOY",
    "GRAFANA_VARIABLES",
    "ROOT",
    "dashboard_expressions",
    "need_tool",
    "rule_expressions",
    "series_names",
]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

_PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def need_tool(name: str) -> str:
    """The path of ``name``; skip (fail when ``CI=true``) when it is not installed."""
    path = shutil.which(name)
    if path is not None:
        return path
    why = f"{name} not installed (apt-get install {_PACKAGES.get(name, name)}; .ci/run does)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}: CI must run this test")
    pytest.skip(why)


def rule_expressions(path: Path) -> dict[str, str]:
    """``{alert name: expr}`` of a rules file whose rules are ``- alert: NAME`` followed by
    ``expr: ...`` on one line or as a folded block (``expr: >-`` then deeper lines)."""
    lines = path.read_text().splitlines()
    out: dict[str, str] = {}
    current: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*- alert:\s*(\S+)\s*$", line)
        if m:
            current = m.group(1)
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m and current is not None:
            indent, value = len(m.group(1)), m.group(2).strip()
            if value in (">-", ">", "|", "|-"):
                block = []
                i += 1
                while i < len(lines) and (
                    not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
                ):
                    if lines[i].strip():
                        block.append(lines[i].strip())
                    i += 1
                value = " ".join(block)
                i -= 1
            out[current] = value
            current = None
        i += 1
    return out


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
}
"""What the Grafana variables of the dashboards stand for when an expression is checked."""


def dashboard_expressions(path: Path) -> list[str]:
    """Every ``targets[].expr`` of a Grafana dashboard (rows' nested panels included), with
    the Grafana variables replaced (:data:`GRAFANA_VARIABLES`)."""
    doc = json.loads(path.read_text())
    out: list[str] = []

    def walk(panels: list[dict[str, object]]) -> None:
        for p in panels:
            for t in p.get("targets", []) or []:  # type: ignore[attr-defined]
                expr = t.get("expr")
                if expr:
                    for var, value in GRAFANA_VARIABLES.items():
                        expr = expr.replace(var, value)
                    out.append(expr)
            walk(p.get("panels", []) or [])  # type: ignore[arg-type]

    walk(doc["panels"])
    return out


_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)


def series_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions (followed
    by ``(``), keywords, label lists of ``by``/``on``/… or text inside strings, braces and
    range brackets."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists (sum by (le) (x) reads as sum (x): a function)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        after = text[m.end() :].lstrip()
        if after.startswith("(") or word.lower() in _KEYWORDS:
            continue
        start = m.start()
        if start > 0 and (text[start - 1].isdigit() or text[start - 1] == "."):
            continue  # the exponent or unit of a number (1e3, 5m)
        names.add(word)
    return names
