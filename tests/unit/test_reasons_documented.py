"""Every refusal reason the code can give is declared in ``actors/reasons.py`` and documented in
the README's table with the same ``retry`` (I11: a signal server that follows the README must
know which refusals it may send again).

The reasons in code are found by reading the source (``ast``): string constants and f-string
prefixes passed to the functions that refuse (``Refusal``, ``refuse``, ``_refuse``,
``_refuse_signal``, ``set_entries_open``, ``SignalRecord``, ``SignalRecord.refused``) and
returned by the validators (``validate_signal``, ``_sides``, ``check_entry``,
``age_refusal``), plus the defaults of parameters named ``reason``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.reasons import FAMILIES, REASONS, known, retry_allowed

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    "actors/transition.py",
    "actors/position_actor.py",
    "actors/restarting.py",
    "actors/signal_age.py",
    "infra/feeds/parsing/_signal.py",
    "infra/feeds/signals.py",
    "supervision/intake.py",
    "supervision/supervisor.py",
]
REFUSING = {
    "Refusal",
    "refuse",
    "_refuse",
    "_refuse_signal",
    "set_entries_open",
    "SignalRecord",
    "refused",
}
VALIDATORS = {"validate_signal", "_sides", "check_entry", "age_refusal"}
#: Refusal reasons of the exchange streams' frames (mark prices, user data): counted and
#: logged, never a signal's answer.
STREAM_ONLY = {
    "bad_event_time",
    "bad_price",
    "bad_quantity",
    "missing_client_id",
    "missing_status",
    "missing_symbol",
    "server_error",
    "unexpected_shape",
}
_REASON = re.compile(r"^[a-z][a-z0-9_]*(:[a-z_<>]*)?$")


def _strings(node: ast.AST) -> Iterator[str]:
    """String constants (and f-string prefixes, as ``prefix:``) that ``node`` may evaluate to."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value
    elif isinstance(node, ast.IfExp):
        yield from _strings(node.body)
        yield from _strings(node.orelse)


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def reasons_in_code() -> dict[str, str]:
    found: dict[str, str] = {}
    for rel in SOURCES:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            candidates: list[ast.AST] = []
            if isinstance(node, ast.Call) and _name(node.func) in REFUSING:
                candidates += node.args + [k.value for k in node.keywords if k.arg == "reason"]
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("why", "reason") for t in node.targets
            ):
                candidates.append(node.value)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.name in VALIDATORS:
                    candidates += [
                        n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value
                    ]
                if node.name in REFUSING:
                    args = node.args.args + node.args.kwonlyargs
                    defaults = node.args.defaults + [d for d in node.args.kw_defaults if d]
                    pairs = zip(args[len(args) - len(defaults) :], defaults, strict=True)
                    candidates += [d for a, d in pairs if a.arg == "reason"]
            for c in candidates:
                for text in _strings(c):
                    if _REASON.match(text) and text not in STREAM_ONLY:
                        found.setdefault(text, f"{rel}:{getattr(c, 'lineno', '?')}")
    return found


def documented() -> dict[str, bool]:
    """``reason -> retry`` from the README's table (rows ``| `name` | outcome | yes/no |``)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| (\w+) \| (yes|no) \|", text, re.M)
    return {name.replace("<…>", ""): retry == "yes" for name, _, retry in rows}


def test_the_code_gives_reasons_of_the_registry_only() -> None:
    found = reasons_in_code()
    assert len(found) >= 40, "the scan finds the refusals (or it cannot fail)"
    assert {"restarting", "ownership_lock_lost", "no_mark_price", "missing:"} <= set(found)
    unknown = {r: where for r, where in found.items() if not (known(r) or r in FAMILIES or r == "")}
    assert not unknown, f"reasons given by the code but not in actors/reasons.py: {unknown}"


@pytest.mark.parametrize("name", [*REASONS, *FAMILIES])
def test_every_reason_is_in_the_readme_with_its_retry(name: str) -> None:
    table = documented()
    assert name in table, f"README's reason table lacks `{name}`"
    info = REASONS.get(name) or FAMILIES[name]
    assert table[name] is info.retry


def test_retry_follows_the_registry_for_prefixed_reasons() -> None:
    assert retry_allowed("invalid:size_step") is False
    assert retry_allowed("no_mark_price") is True
    assert retry_allowed("made_up") is False
