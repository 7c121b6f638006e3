"""The demo's entry points after it left the product: ``python -m demo`` reports a bad
configuration like the CLI does (exit 2, one line), and ``position-supervisor demo`` only
says where the demo went. Neither starts anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_python_m_demo_reports_a_missing_configuration(tmp_path: Path) -> None:
    r = _run("demo", "--config", str(tmp_path / "missing.toml"), "--no-ui")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("configuration error: ") and "cannot read" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_product_cli_points_at_the_demo_package() -> None:
    r = _run("supervision", "demo", "--duration", "1")
    assert r.returncode == 2
    assert "python -m demo" in r.stderr and r.stdout == ""
