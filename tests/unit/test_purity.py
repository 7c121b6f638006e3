"""``transition`` is pure (issue 16): no clock, no I/O, no locks, no randomness reachable from
it. Checked on the source: the modules ``actors.transition`` imports, transitively, and what
they import from outside the project. A new import of ``time``, ``threading``, ``random``,
``os``, ``logging`` or pykka anywhere in that closure fails here, as does a project module
outside the pure core (the shell, the worker pool) being pulled in."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The standard library a pure function may use: values, not the world.
PURE_STDLIB = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "itertools",
    "math",
    "operator",
    "re",
    "sys",  # sys.intern only (checked below)
    "types",
    "typing",
}

#: The modules of the pure core: the transition, its tables, its values.
PURE_CORE = {
    "actors.effects",
    "actors.lifecycle",
    "actors.messages",
    "actors.model",
    "actors.orders",
    "actors.reasons",
    "actors.signal_age",
    "actors.state",
    "actors.transition",
}


def _path(module: str) -> Path:
    p = ROOT / (module.replace(".", "/") + ".py")
    return p if p.exists() else ROOT / module.replace(".", "/") / "__init__.py"


def closure(start: str) -> tuple[set[str], dict[str, set[str]]]:
    """Project modules reachable from ``start`` by import, and the outside modules each of
    them imports (top-level package names)."""
    seen: set[str] = set()
    outside: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for node in ast.walk(ast.parse(_path(module).read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in ("actors", "infra", "supervision"):
                    todo.append(name)
                else:
                    outside.setdefault(top, set()).add(module)
    return seen, outside


def test_transition_reaches_only_the_pure_core() -> None:
    modules, _ = closure("actors.transition")
    assert modules <= PURE_CORE, f"not pure: {sorted(modules - PURE_CORE)}"


def test_the_pure_core_imports_no_clock_io_lock_or_randomness() -> None:
    _, outside = closure("actors.transition")
    impure = {name: sorted(users) for name, users in outside.items() if name not in PURE_STDLIB}
    assert impure == {}, f"impure imports: {impure}"


def test_sys_is_used_for_interning_only() -> None:
    for module in sorted(closure("actors.transition")[0]):
        for node in ast.walk(ast.parse(_path(module).read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "sys":
                    assert node.attr == "intern", f"{module}: sys.{node.attr}"


def test_the_check_sees_an_impure_module() -> None:
    """The closure is real: the shell (which reads the clock and holds pykka) is caught."""
    modules, outside = closure("actors.position_actor")
    assert modules - PURE_CORE
    assert "time" in outside and "pykka" in outside
