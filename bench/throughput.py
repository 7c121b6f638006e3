"""2: tick throughput over 1,000 symbols with conflation vs bare pykka round-robin."""

from __future__ import annotations

import time
from typing import Any

from actors.messages import MarkPriceTick
from bench.common import QUICK, BareActor, stop_refs, wait_until
from bench.world import key, make_world, open_positions

SYMBOLS = 1_000


def run() -> dict[str, Any]:
    n = 50_000 if QUICK else 200_000
    count = [0]
    refs = [BareActor.start(None, count) for _ in range(SYMBOLS)]
    t0 = time.perf_counter()
    for i in range(n):
        refs[i % SYMBOLS].tell(1)
    wait_until(lambda: count[0] >= n, 60)
    bare = n / (time.perf_counter() - t0)
    stop_refs(refs)

    w = make_world(SYMBOLS)
    try:
        keys = [key(i) for i in range(SYMBOLS)]
        open_positions(w, SYMBOLS)  # an open, protected position on every symbol
        for k in keys:  # spawn and load first: creation is not the steady state
            w.sup.state(k)
        t_ev = w.clock.now()
        for k in keys:  # one tick each first: every actor has learnt its slot (steady state)
            w.sup.tell_tick(MarkPriceTick(k, 100.0, t_ev - 1.0))
        w.settle(timeout=60)
        rec = w.metrics
        handled0 = rec.ticks_handled  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for i in range(n):
            w.sup.tell_tick(MarkPriceTick(keys[i % SYMBOLS], 100.0 + (i % 5) * 0.01, t_ev + i))
        w.settle(timeout=60)  # every slot drained and handled
        elapsed = time.perf_counter() - t0
        wakeups = rec.ticks_handled - handled0  # type: ignore[attr-defined]
    finally:
        w.close()
    out: dict[str, Any] = {
        "tick_throughput_per_s": n / elapsed,
        "tick_throughput_wakeups": wakeups,
        "tick_throughput_ticks": n,
        "tick_bare_throughput_per_s": bare,
        "tick_throughput_ratio": (n / elapsed) / bare,
        "tick_ingest_vs_ws_raw": None,
    }
    # Ingest: WebSocket frame -> parsed -> conflated -> actor, against websocket-client's raw
    # receive rate from the same sim in the same run (tests/feeds/measure.py).
    from tests.feeds.measure import measure_ingest

    r = measure_ingest(n)
    out.update({f"ws_{k}": v for k, v in dict(r).items()})
    out["tick_ingest_per_s"] = r["ingest_per_s"]
    out["tick_ws_raw_per_s"] = r["raw_per_s"]
    out["tick_ingest_vs_ws_raw"] = r["ingest_per_s"] / r["raw_per_s"]
    return out
