"""3: signal → entry order handed to the exchange port (durable commit included) vs one
INSERT + COMMIT on the same database.

Signals are measured one at a time (the world settles between them), so the database is idle
before each one. An idle PostgreSQL answers its next statement much later than a busy one on
these machines: a single-row INSERT + COMMIT took 0.37 ms back to back and 1.34 ms after a
20 ms pause, the commit statement of an entry 0.65 and 1.97 ms (same server, same session).
So the baseline is paced like the signals: before each signal, after the same pause, one
INSERT + COMMIT; then, after the same pause again, the signal. The ratio compares the two.
The back-to-back baseline is reported too (``signal_commit_hot_p50_ms``, with the ratio
``signal_to_order_p50_vs_hot``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from actors.ports import OrderReply, OrderRequest
from bench.common import QUICK, pct
from bench.pg import database
from bench.world import key, make_world, sym
from tests.fakes.exchange import InMemoryExchange
from tests.fakes.world import signal

#: Idle time before each baseline statement and each signal (pacing, not synchronisation).
PAUSE_S = 0.02


class StampingExchange(InMemoryExchange):
    """Stamps the first order per symbol as it reaches the port, and wakes the bench."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.first_place: dict[str, float] = {}
        self.placed = threading.Condition()

    def place_order(self, req: OrderRequest) -> OrderReply:
        t = time.perf_counter()
        with self.placed:
            self.first_place.setdefault(req.key.symbol, t)
            self.placed.notify_all()
        return super().place_order(req)

    def wait_placed(self, symbol: str, timeout: float) -> float | None:
        with self.placed:
            self.placed.wait_for(lambda: symbol in self.first_place, timeout)
            return self.first_place.get(symbol)


def run() -> dict[str, Any]:
    n = 60 if QUICK else 300
    out: dict[str, Any] = {}
    idle = threading.Event()  # never set: wait(PAUSE_S) is the pause
    with database() as (dsn, note):
        out["signal_store"] = note
        store: Any = None
        conn: Any = None
        hot: list[float] = []
        if dsn is not None:
            import psycopg

            from infra.store.postgres import PostgresStore

            store = PostgresStore(dsn, pool_max=4)
            conn = psycopg.connect(dsn, autocommit=False)
            conn.execute("CREATE TABLE bench_commit (id serial primary key, v text)")
            conn.commit()
            for _ in range(n):
                t0 = time.perf_counter()
                conn.execute("INSERT INTO bench_commit (v) VALUES (%s)", ("x",))
                conn.commit()
                hot.append(time.perf_counter() - t0)
        else:
            out["signal_to_order_p50_ratio_note"] = note + "; baseline is not a DB commit"
        ex = StampingExchange("main", {sym(i): 100.0 for i in range(n)})
        w = make_world(n, store=store, exchange=ex)
        lat: list[float] = []
        base: list[float] = []
        try:
            for i in range(n):  # spawn and load first; the figure is the signal path
                w.sup.state(key(i))
            for i in range(n):
                s = sym(i)
                if conn is not None:
                    idle.wait(PAUSE_S)
                    t0 = time.perf_counter()
                    conn.execute("INSERT INTO bench_commit (v) VALUES (%s)", ("x",))
                    conn.commit()
                    base.append(time.perf_counter() - t0)
                idle.wait(PAUSE_S)
                t0 = time.perf_counter()
                w.sup.tell(signal(s, stop=90.0))
                placed = ex.wait_placed(s, 10.0)
                if placed is not None:
                    lat.append(placed - t0)
                w.settle(timeout=10)
        finally:
            w.close()
            if conn is not None:
                conn.close()
            if store is not None:
                store.close()
    p50, p99 = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
    if not base:
        base = [1e-6]
    b50, b99 = pct(base, 50) * 1e3, pct(base, 99) * 1e3
    h50 = pct(hot, 50) * 1e3 if hot else None
    out.update(
        {
            "signal_samples": len(lat),
            "signal_pause_ms": PAUSE_S * 1e3,
            "signal_to_order_p50_ms": p50,
            "signal_to_order_p99_ms": p99,
            "signal_commit_p50_ms": b50,
            "signal_commit_p99_ms": b99,
            "signal_commit_hot_p50_ms": h50,
            "signal_to_order_p50_ratio": p50 / b50 if dsn is not None else None,
            "signal_to_order_p50_vs_hot": p50 / h50 if h50 else None,
        }
    )
    return out
