"""The layering check (``tests/layers.py``): the tree passes it, and it fails on each kind of
upward import, shown on small synthetic trees."""

from __future__ import annotations

from pathlib import Path

from tests.layers import LAYERS, ROOT, imports, violations


def _tree(root: Path, files: dict[str, str]) -> Path:
    for pkg in LAYERS:
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_tree_keeps_its_layers() -> None:
    assert violations() == []


def test_a_clean_synthetic_tree_passes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "infra/store.py": "import json\nfrom actors.model import Key\n",
            "supervision/app.py": "import infra.store\nfrom actors import model\n",
            "bench/run.py": "from testkit import pg\nimport sim.exchange\n",
            "demo/run.py": "from sim.exchange import SimExchange\nfrom supervision import app\n",
        },
    )
    assert violations(root, known=frozenset()) == []


def test_an_upward_import_at_module_level_fails(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"infra/config.py": "import os\nfrom supervision.restart import X\n"})
    assert violations(root, known=frozenset()) == [
        "infra/config.py:2: infra imports supervision (supervision.restart)"
    ]


def test_an_upward_import_inside_a_function_fails(tmp_path: Path) -> None:
    source = "def run() -> None:\n    if True:\n        import sim.exchange\n"
    root = _tree(tmp_path, {"supervision/demo.py": source})
    assert violations(root, known=frozenset()) == [
        "supervision/demo.py:3: supervision imports sim (sim.exchange)"
    ]


def test_each_forbidden_edge_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "actors/a.py": "import infra\n",
            "infra/deep/b.py": "from testkit.world import World\n",
            "supervision/c.py": "from tests import pg\n",
            "sim/d.py": "from actors.model import Key\n",
            "testkit/e.py": "from bench import harness\n",
            "demo/f.py": "import testkit.pg\n",
            "bench/g.py": "from tests.process import harness\n",
        },
    )
    assert violations(root, known=frozenset()) == [
        "actors/a.py:1: actors imports infra (infra)",
        "bench/g.py:1: bench imports tests (tests.process)",
        "demo/f.py:1: demo imports testkit (testkit.pg)",
        "infra/deep/b.py:1: infra imports testkit (testkit.world)",
        "sim/d.py:1: sim imports actors (actors.model)",
        "supervision/c.py:1: supervision imports tests (tests)",
        "testkit/e.py:1: testkit imports bench (bench)",
    ]


def test_known_violations_are_allowed_until_they_are_gone(tmp_path: Path) -> None:
    known = frozenset({("infra/config.py", "supervision"), ("infra/metrics.py", "supervision")})
    root = _tree(tmp_path, {"infra/config.py": "from supervision import SupervisorConfig\n"})
    assert violations(root, known=known) == [
        "infra/metrics.py: no longer imports supervision: remove it from KNOWN_VIOLATIONS"
    ]


def test_a_package_missing_from_the_layers_fails(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"tools/__init__.py": "", "tools/x.py": "import supervision\n"})
    assert violations(root, known=frozenset()) == [
        "tools/: a package missing from tests/layers.py's LAYERS"
    ]


def test_imports_skips_relative_ones() -> None:
    source = "from . import a\nfrom .b import c\nimport x.y, z\nfrom p.q import r\n"
    assert list(imports(source)) == [(3, "x.y"), (3, "z"), (4, "p.q")]


def test_the_readme_layout_table_names_every_package() -> None:
    """README.md's layout table has a row for each package of the layers (and no stale one)."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout") :].split("\n## ")[0].split("\n### ")[0]
    rows = {line.split("`")[1].rstrip("/") for line in table.splitlines() if line.startswith("| `")}
    assert set(LAYERS) <= rows, set(LAYERS) - rows
    assert all((ROOT / name).is_dir() for name in rows), rows


def test_the_readme_module_table_matches_the_product_tree() -> None:
    """README.md's "Modules, one job each" names every module and subpackage directly under
    actors/, infra/ and supervision/, and every file or folder it names exists."""
    import re

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Modules, one job each") :].split("\n## ")[0]
    named: dict[str, set[str]] = {}
    package = ""
    for line in table.splitlines():
        head = re.match(r"\| \*\*(\w+)/\*\* \|", line)
        if head:
            package = head.group(1)
            continue
        if package and line.startswith("| `"):
            first = line.split("|")[1]
            named.setdefault(package, set()).update(re.findall(r"`([\w.]+/?)`", first))
    for package in ("actors", "infra", "supervision"):
        here = {
            p.name + ("/" if p.is_dir() else "")
            for p in (ROOT / package).iterdir()
            if p.name not in ("__init__.py", "__main__.py", "__pycache__")
            and (p.suffix == ".py" or (p / "__init__.py").is_file())
        }
        assert named.get(package, set()) == here, (package, here ^ named.get(package, set()))
