"""Every test can fail: each ``test_*`` function under ``tests/`` checks something.

A test that calls the code and asserts nothing passes whatever the code does (two wiring
tests did, issue 16). This scan reads every test module's syntax tree and lists the test
functions with no check in them: a check is an ``assert``, a ``raise``, ``pytest.raises`` /
``warns`` / ``fail``, or a call by name to a helper of ours (a function defined in ``tests/``
or ``testkit/``) that itself checks, followed through helpers calling helpers. A method call
(``s.stop()``) does not count: one method name means too many things to vouch for a test.
Called by pytest (and by ``python -m tests.test_assertions`` to print the list); nothing here
touches the product.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PYTEST_CHECKS = frozenset({"raises", "warns", "fail", "deprecated_call"})


def _called(fn: ast.AST, methods: bool = True) -> Iterator[str]:
    for n in ast.walk(fn):
        if isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Attribute) and methods:
                yield f.attr
            elif isinstance(f, ast.Name):
                yield f.id


def _checks_itself(fn: ast.AST) -> bool:
    return any(isinstance(n, (ast.Assert, ast.Raise)) for n in ast.walk(fn)) or any(
        name in _PYTEST_CHECKS for name in _called(fn)
    )


def _functions(paths: Iterable[Path]) -> Iterator[tuple[Path, ast.FunctionDef]]:
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                yield path, node


def checking_helpers(paths: Iterable[Path]) -> frozenset[str]:
    """Names of the functions in ``paths`` that check, directly or through one another."""
    calls: dict[str, set[str]] = {}
    checking: set[str] = set()
    for _, fn in _functions(paths):
        calls.setdefault(fn.name, set()).update(_called(fn))
        if _checks_itself(fn):
            checking.add(fn.name)
    grew = True
    while grew:
        grew = False
        for name, called in calls.items():
            if name not in checking and called & checking:
                checking.add(name)
                grew = True
    return frozenset(checking)


def unchecked_tests(test_files: Iterable[Path], helpers: frozenset[str]) -> list[str]:
    """``path:line:name`` of each ``test_*`` function with no check and no checking call."""
    found = []
    for path, fn in _functions(test_files):
        if not fn.name.startswith("test"):
            continue
        if _checks_itself(fn) or any(name in helpers for name in _called(fn, methods=False)):
            continue
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        found.append(f"{rel}:{fn.lineno}:{fn.name}")
    return found


def scan(root: Path = ROOT) -> list[str]:
    ours = sorted([*(root / "tests").rglob("*.py"), *(root / "testkit").rglob("*.py")])
    tests = sorted((root / "tests").rglob("test_*.py"))
    return unchecked_tests(tests, checking_helpers(ours))


def test_every_test_checks_something() -> None:
    assert scan() == []


def test_the_scan_finds_a_test_without_a_check(tmp_path: Path) -> None:
    """The scan itself can fail: on a synthetic module it lists the test that only calls the
    code, and accepts the ones that assert, expect a raise, or call a helper that asserts."""
    module = tmp_path / "test_synthetic.py"
    module.write_text(
        "import pytest\n"
        "def _must_be_two(x):\n    assert x == 2\n"
        "def _through(x):\n    _must_be_two(x)\n"
        "def test_calls_only():\n    print(1 + 1)\n"
        "def test_asserts():\n    assert 1 + 1 == 2\n"
        "def test_expects_raise():\n    with pytest.raises(ZeroDivisionError):\n        1 / 0\n"
        "def test_by_helper():\n    _through(1 + 1)\n",
        encoding="utf-8",
    )
    assert unchecked_tests([module], checking_helpers([module])) == [f"{module}:6:test_calls_only"]


if __name__ == "__main__":
    print("\n".join(scan()) or "every test checks something")
