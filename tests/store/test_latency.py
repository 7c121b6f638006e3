"""The commit-latency tool runs and reports sensible figures (no timing bound asserted)."""

from __future__ import annotations

import pytest

from bench.store_latency import measure

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_measure_reports_percentiles(pg_admin: str) -> None:
    result = measure(pg_admin, n=60, threads=2)
    assert result["commits"] == 60
    for kind in ("all", "entry_intent", "transition", "baseline_insert_commit"):
        s = result[kind]
        assert isinstance(s, dict)
        assert 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert isinstance(result["p50_vs_baseline"], float)
