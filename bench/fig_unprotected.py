"""``unprotected_p99_ratio``: the exchange's fill -> the stop-loss acknowledged by the actor.

Shipped configuration (ccxt through the account's limiter, which lets a stop go as soon as
the exchange's limits allow instead of 200 ms behind its entry), ``sim/`` in its own process,
mark prices once a second on every symbol. Signals arrive one every 0.25 s, each on a symbol
of its own (so the exchange's order limits never hold anything back). For each position:

* the fill: the time the sim's engine executed the entry (``done_at`` of the order log,
  the sim's clock; the same machine's ``time.time()`` as the product's);
* acknowledged: the actor's ``stop_confirmed`` journal time (the actor's clock, when it
  handled the stop's acceptance).

Baseline: one market order's round trip through ccxt (``CcxtExchange.place_order``, limiter
off) to a sim process of the same build (its orders must not become positions the product's
sync adopts), timed in the same run between the signals.
"""

from __future__ import annotations

import re
import time
from typing import Any

from actors.model import Key, OrderKind
from actors.ports import OrderRequest
from bench.harness import ACCOUNT, QUICK, Product, SimProc, signal_doc, wait_for
from bench.stats import Rep, Target, pct, summarise


def run(ctx: Any) -> dict[str, dict[str, Any]]:
    quick = ctx.quick or QUICK
    n = 40 if quick else 150
    reps: list[Rep] = []
    with (
        SimProc(ctx.repeat * n + 10, walk_interval_s=1.0, workdir=ctx.workdir) as sim,
        SimProc(10, workdir=ctx.workdir) as base_sim,
        ctx.db.fresh() as dsn,
    ):
        product = Product(sim, dsn, sim.symbols, ctx.workdir / "unprotected").start()
        from infra.exchange import CcxtExchange, VenueConfig

        base = CcxtExchange(
            "bench-base",
            VenueConfig(
                venue=base_sim.venue,
                base_url=base_sim.rest,
                require_credentials=False,
                enable_rate_limit=False,
            ),
        )
        try:
            base.load_markets()
            wait_for(
                lambda: product.priced() >= len(sim.symbols) * 0.9,
                60,
                "a mark price of every symbol",
            )
            cursor = iter(sim.symbols)
            rt_i = 0
            for _ in range(ctx.repeat):
                syms = [next(cursor) for _ in range(n)]
                prices = sim.call("GET", "/_sim/prices")
                rts: list[float] = []
                for s in syms:
                    sim.send_signals([signal_doc(s, prices[s], sid=f"up-{s}")], None)
                    for _ in range(2):  # the baseline, between the signals
                        side = "buy" if rt_i % 2 == 0 else "sell"
                        key = Key(ACCOUNT, base_sim.symbols[0])
                        req = OrderRequest(key, f"rt{rt_i}", OrderKind.ENTRY, side, 1.0)
                        t0 = time.perf_counter()
                        base.place_order(req)
                        rts.append(time.perf_counter() - t0)
                        rt_i += 1
                    threading_pause(0.25)
                reps.append(_measure(product, sim, dsn, syms, rts))
        finally:
            base.close()
            product.stop()
    return {
        "unprotected_p99_ratio": summarise(
            "unprotected_p99_ratio",
            "exchange fill -> stop-loss acknowledged by the actor, shipped configuration, p99",
            Target("p99 <= 3x", "<=", 3.0),
            reps,
            main="p99_ms",
            base="round_trip_p99_ms",
            unit="x",
        )
    }


def threading_pause(seconds: float) -> None:
    """Pacing between signals (not synchronisation: nothing waits for a state)."""
    import threading

    threading.Event().wait(seconds)


def _measure(product: Product, sim: SimProc, dsn: str, syms: list[str], rts: list[float]) -> Rep:
    import psycopg

    wanted = set(syms)

    def confirmed() -> dict[str, float] | None:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT symbol, min(at) FROM journal WHERE kind = 'stop_confirmed'"
                " AND symbol = ANY(%s) GROUP BY symbol",
                (list(wanted),),
            ).fetchall()
        got = {str(s): float(t) for s, t in rows}
        return got if len(got) >= len(wanted) else None

    acked = wait_for(confirmed, 60, "every stop acknowledged", every=0.2)
    fills: dict[str, float] = {}
    for e in sim.call("GET", "/_sim/orders"):
        # Our first entry of each position (``ps<id>e1``), whatever the venue's endpoint.
        if e["symbol"] in wanted and e["outcome"] == "accepted":
            if re.fullmatch(r"ps\d+e1", e["client_id"]) and e["done_at"] is not None:
                fills.setdefault(e["symbol"], float(e["done_at"]))
    windows = [(acked[s] - fills[s]) * 1e3 for s in syms if s in fills and s in acked]
    base = [x * 1e3 for x in rts]
    limiter = product.limiter_stats()
    return Rep(
        pct(windows, 99) / pct(base, 99),
        {"p50_ms": pct(windows, 50), "p99_ms": pct(windows, 99), "max_ms": max(windows)},
        {"round_trip_p50_ms": pct(base, 50), "round_trip_p99_ms": pct(base, 99)},
        {
            "positions": len(windows),
            "limiter_waited": None if limiter is None else limiter.waited,
        },
    )
