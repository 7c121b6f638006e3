"""3: signal → entry order handed to the exchange port (durable commit included) vs one
INSERT + COMMIT on the same database."""

from __future__ import annotations

import threading
import time
from typing import Any

from actors.ports import OrderReply, OrderRequest
from bench.common import QUICK, pct, wait_until
from bench.pg import database
from bench.world import make_world, sym
from tests.fakes.exchange import InMemoryExchange
from tests.fakes.world import signal


class StampingExchange(InMemoryExchange):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.first_place: dict[str, float] = {}
        self.mu = threading.Lock()

    def place_order(self, req: OrderRequest) -> OrderReply:
        t = time.perf_counter()
        with self.mu:
            self.first_place.setdefault(req.key.symbol, t)
        return super().place_order(req)


def run() -> dict[str, Any]:
    n = 60 if QUICK else 300
    out: dict[str, Any] = {}
    with database() as (dsn, note):
        out["signal_store"] = note
        store: Any = None
        if dsn is not None:
            import psycopg

            from infra.store.postgres import PostgresStore

            store = PostgresStore(dsn, pool_max=4)
            base: list[float] = []
            with psycopg.connect(dsn, autocommit=False) as conn:
                conn.execute("CREATE TABLE bench_commit (id serial primary key, v text)")
                conn.commit()
                for _ in range(n * 2):
                    t0 = time.perf_counter()
                    conn.execute("INSERT INTO bench_commit (v) VALUES (%s)", ("x",))
                    conn.commit()
                    base.append(time.perf_counter() - t0)
        else:
            out["signal_to_order_p50_ratio_note"] = note + "; baseline is not a DB commit"
            base = [1e-6]
        ex = StampingExchange("main", {sym(i): 100.0 for i in range(n)})
        w = make_world(n, store=store, exchange=ex)
        lat: list[float] = []
        try:
            for i in range(n):  # spawn and load first; the figure is the signal path
                w.sup.state(__import__("bench.world").world.key(i))
            for i in range(n):
                s = sym(i)
                t0 = time.perf_counter()
                w.sup.tell(signal(s, stop=90.0))
                if wait_until(lambda s=s: s in ex.first_place, 10):  # type: ignore[misc]
                    lat.append(ex.first_place[s] - t0)
                w.settle(timeout=10)
        finally:
            w.close()
            if store is not None:
                store.close()
    p50, p99 = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
    b50, b99 = pct(base, 50) * 1e3, pct(base, 99) * 1e3
    out.update(
        {
            "signal_samples": len(lat),
            "signal_to_order_p50_ms": p50,
            "signal_to_order_p99_ms": p99,
            "signal_commit_p50_ms": b50,
            "signal_commit_p99_ms": b99,
            "signal_to_order_p50_ratio": p50 / b50 if dsn is not None else None,
        }
    )
    return out
