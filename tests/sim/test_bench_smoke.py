"""The benchmarks still run: ``python -m bench --help`` and one quick figure end to end
(against the sim in its own process and the embedded PostgreSQL). Nothing about the figure's
value is asserted here: figures are the benchmark's business, not the test suite's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import KEYS

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_help_lists_every_figure_and_the_options() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    for word in ("--only", "--repeat", "QUICK=1", *KEYS):
        assert word in p.stdout, word


def test_unknown_figure_is_refused() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nonsense", "--no-history"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode != 0 and "unknown figure" in p.stderr


def test_one_quick_figure_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    p = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "restart", "--no-history", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env={**os.environ, "QUICK": "1"},
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(KEYS) <= set(results)
    e = results["restart_p99_ms"]
    assert e["verdict"] in ("met", "missed"), e
    assert e["reps"] == 3 and len(e["spread"]["reps"]) == 3
    assert {"ask_p99_ms"} <= set(e["baseline"]) and "overhead" in e and "ratio" in e
    assert "restart_p99_ms:" in p.stdout
