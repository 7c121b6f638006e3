"""4: unprotected window (fill → stop acknowledged) against sim/ through ccxt vs one ccxt order
round trip. Not measured yet: infra/exchange (CcxtExchange) and sim/ (SimExchange) exist, but
the harness wiring them to a Supervisor with PostgreSQL is not written; null with a note."""

from __future__ import annotations

import importlib.util
from typing import Any


def run() -> dict[str, Any]:
    have = {m: importlib.util.find_spec(m) is not None for m in ("infra.exchange", "sim")}
    missing = [m for m, ok in have.items() if not ok]
    why = (
        f"missing {', '.join(missing)}"
        if missing
        else "harness (Supervisor + CcxtExchange against sim/) not written yet"
    )
    return {
        "unprotected_p50_ms": None,
        "unprotected_p99_ms": None,
        "ccxt_round_trip_p50_ms": None,
        "ccxt_round_trip_p99_ms": None,
        "unprotected_p99_ratio": None,
        "unprotected_p99_ratio_note": why,
    }
