"""Store commit latency of one transition (``infra.store.latency.measure``) vs a single-row
INSERT + COMMIT interleaved on the same server: the durable write every transition pays."""

from __future__ import annotations

from typing import Any

from bench.common import QUICK


def run() -> dict[str, Any]:
    from infra.store.latency import measure
    from tests import pg

    admin = pg.admin_dsn()
    try:
        r = measure(admin, n=400 if QUICK else 2000)
    finally:
        pg.shutdown()
    every: dict[str, float] = r["all"]  # type: ignore[assignment]
    intent: dict[str, float] = r["entry_intent"]  # type: ignore[assignment]
    base: dict[str, float] = r["baseline_insert_commit"]  # type: ignore[assignment]
    return {
        "commit_p50_ms": every["p50_ms"],
        "commit_p99_ms": every["p99_ms"],
        "commit_entry_intent_p50_ms": intent["p50_ms"],
        "commit_baseline_p50_ms": base["p50_ms"],
        "commit_baseline_p99_ms": base["p99_ms"],
        "commit_p50_ratio": r["p50_vs_baseline"],
        "commit_count": r["commits"],
    }
