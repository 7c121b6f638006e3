"""5: actor crash → successor handling messages with its state restored, vs one ask."""

from __future__ import annotations

import time
from typing import Any

from actors.state import Commit
from bench.common import QUICK, pct
from bench.world import key, make_world, open_positions, sym
from tests.fakes.world import signal


def run() -> dict[str, Any]:
    n = 50 if QUICK else 200
    w = make_world(n)
    lat: list[float] = []
    ask: list[float] = []
    restored = 0
    try:
        active = open_positions(w, n)
        for i in range(n):
            k = key(i)
            for _ in range(5):
                t0 = time.perf_counter()
                w.sup.state(k)
                ask.append(time.perf_counter() - t0)
        before = w.sup.stats().restarts
        for i in range(n):
            k = key(i)
            armed = [True]

            def crash(c: Commit, k: Any = k, armed: list[bool] = armed) -> bool:
                if armed[0] and c.key == k:
                    armed[0] = False
                    return True
                return False

            w.store.crash_when = crash
            t0 = time.perf_counter()
            # a duplicate signal for the open position: its record is a commit → crash
            w.sup.tell(signal(sym(i), source="dup", stop=90.0))
            st = w.sup.state(k)
            lat.append(time.perf_counter() - t0)
            if st.position is not None and not armed[0]:
                restored += 1
        w.store.crash_when = None
        restarts = w.sup.stats().restarts - before
    finally:
        w.close()
    p50, p99 = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
    a50, a99 = pct(ask, 50) * 1e3, pct(ask, 99) * 1e3
    return {
        "restart_samples": n,
        "restart_active_before": active,
        "restart_crashes": restarts,
        "restart_state_restored": restored,
        "restart_p50_ms": p50,
        "restart_p99_ms": p99,
        "ask_p50_ms": a50,
        "ask_p99_ms": a99,
        "restart_p99_ratio": p99 / a99,
    }
