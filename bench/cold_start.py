"""6: cold start with 1,000 open positions → all recovered and reconciled vs 1,000 bare actors."""

from __future__ import annotations

import time
from typing import Any

from bench.common import BareActor, stop_refs
from bench.pg import database
from bench.world import make_world, open_positions
from tests.fakes.exchange import InMemoryExchange

N = 1_000


def run() -> dict[str, Any]:
    t0 = time.perf_counter()
    refs = [BareActor.start(None, [0]) for _ in range(N)]
    bare = time.perf_counter() - t0
    stop_refs(refs)
    out: dict[str, Any] = {"bare_start_1000_s": bare}
    with database() as (dsn, note):
        store: Any = None
        if dsn is not None:
            from infra.store.postgres import PostgresStore

            store = PostgresStore(dsn, pool_max=4)
        else:
            out["cold_start_1000_s_note"] = note
        out["cold_start_store"] = "PostgresStore" if dsn else "InMemoryStore"
        from bench.world import sym

        ex = InMemoryExchange("main", {sym(i): 100.0 for i in range(N)})
        w = make_world(N, store=store, exchange=ex)
        try:
            out["cold_start_positions"] = open_positions(w, N, timeout=120)
        finally:
            w.close()
        w2 = make_world(N, store=w.store, exchange=ex)
        try:
            t0 = time.perf_counter()
            keys = w2.sup.recover()
            w2.settle(timeout=120)  # every actor loaded, resolved its lookups, idle
            out["cold_start_1000_s"] = time.perf_counter() - t0
            out["cold_start_recovered"] = len(keys)
            out["cold_start_open_after"] = len(w2.store.open_positions())
        finally:
            w2.close()
            if store is not None:
                store.close()
    out["cold_start_ratio"] = out["cold_start_1000_s"] / bare
    return out
