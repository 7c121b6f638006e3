"""The layering rule of the tree, checked by walking every import (``make lint`` runs
``python -m tests.layers``; ``tests/test_layers.py`` runs it too and shows it can fail).

The product goes one way, ``supervision -> infra -> actors``; ``actors`` imports nothing of
ours. ``sim/`` (the exchange simulator) imports nothing of ours either. Above them sit the
packages the product never imports: ``testkit/`` (fakes and test infrastructure), ``demo/``,
``bench/`` and ``tests/``. :data:`LAYERS` says what each top-level package may import besides
itself; every ``import`` and ``from … import`` counts, at module level or inside a function,
under ``TYPE_CHECKING`` too. A top-level package missing from :data:`LAYERS` is an error, so
a new package must take its place in it.

Exit code 0 when the tree keeps its layers; 1 with one line per violation
(``path:line: infra imports supervision (supervision.restart)``) otherwise.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["KNOWN_VIOLATIONS", "LAYERS", "ROOT", "imports", "main", "violations"]

ROOT = Path(__file__).resolve().parents[1]

_PRODUCT = frozenset({"actors", "infra", "supervision"})

#: For each top-level package of ours, the others it may import.
LAYERS: Mapping[str, frozenset[str]] = {
    "actors": frozenset(),
    "infra": frozenset({"actors"}),
    "supervision": frozenset({"actors", "infra"}),
    "sim": frozenset(),
    "testkit": _PRODUCT,
    "demo": _PRODUCT | {"sim"},
    "bench": _PRODUCT | {"sim", "testkit"},
    "tests": _PRODUCT | {"sim", "testkit", "demo", "bench"},
}

#: Upward imports being removed (none left: ``infra.config`` no longer builds the supervisor's
#: types, :mod:`supervision.wiring` does). Each entry is ``(file, imported package)``; an entry
#: that no longer matches an import is reported as stale, so the list cannot outlive its
#: reason.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


def imports(source: str) -> Iterator[tuple[int, str]]:
    """Every absolute module name that ``source`` imports, with its line, in any scope.

    Relative imports (``from . import x``) stay inside their own package and are skipped."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def violations(
    root: Path = ROOT,
    layers: Mapping[str, frozenset[str]] = LAYERS,
    known: frozenset[tuple[str, str]] = KNOWN_VIOLATIONS,
) -> list[str]:
    """The layering violations under ``root``, one readable line each; empty when none.

    Looks at every top-level folder of ``root`` that is a package (has ``__init__.py``)."""
    ours = set(layers)
    found: list[str] = []
    seen_known: set[tuple[str, str]] = set()
    for pkg in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
        if pkg.name not in layers:
            found.append(f"{pkg.name}/: a package missing from tests/layers.py's LAYERS")
            continue
        allowed = layers[pkg.name] | {pkg.name}
        for path in sorted(pkg.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, module in imports(path.read_text(encoding="utf-8")):
                top = module.split(".")[0]
                if top not in ours or top in allowed:
                    continue
                if (rel, top) in known:
                    seen_known.add((rel, top))
                    continue
                found.append(f"{rel}:{line}: {pkg.name} imports {top} ({module})")
    for rel, top in sorted(known - seen_known):
        found.append(f"{rel}: no longer imports {top}: remove it from KNOWN_VIOLATIONS")
    return found


def main() -> int:
    """Print the violations; 0 when there are none, 1 otherwise."""
    found = violations()
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(f"{len(found)} layering violation(s); see tests/layers.py", file=sys.stderr)
        return 1
    print(f"layers ok: {', '.join(LAYERS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
