"""``cold_start_1000_s``: the process starts on 1,000 open positions in mixed states and
resolves and protects every one through ccxt against a sim holding the matching state.

The states (``bench/seed.py``), written into PostgreSQL and the sim's engine before the
start, as a crash would leave them:

* 200 entries of unknown outcome (filled on the exchange): looked up, then protected;
* 200 awaiting a stop-loss whose placement's outcome is unknown (100 resting on the
  exchange, found by the lookup; 100 not there, placed again);
* 500 active (stop resting and confirmed);
* 100 closing, the close's outcome unknown (filled on the exchange): looked up, closed.

From :meth:`App.start` (the store opened, the markets loaded, every actor started and its
position loaded, the sync running, the feeds connected) until every position is ``active``
with a confirmed stop or ``closed`` (a position whose stop-loss deadline passed while the
process was down is closed at market, as it must be: ``by_status`` shows how many). The
exchange's order limits apply (300 orders in 10 s): the 300 stop-losses this needs fit in one
window. Baseline: starting 1,000 bare pykka actors.
Also reported once (full runs): 10,000 active positions.
"""

from __future__ import annotations

import time
from typing import Any

from bench import baselines
from bench.harness import QUICK, Product, SimProc, wait_for
from bench.seed import seed
from bench.stats import Rep, Target, summarise

MIX = (("unknown_entry", 200), ("awaiting_stop", 200), ("active", 500), ("closing", 100))


def _plan(symbols: list[str], mix: tuple[tuple[str, int], ...]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    it = iter(symbols)
    for state, n in mix:
        out.extend((next(it), state) for _ in range(n))
    return out


def _resolve(ctx: Any, mix: tuple[tuple[str, int], ...], tag: str) -> Rep:
    total = sum(n for _, n in mix)
    closing = dict(mix).get("closing", 0)
    by_status: dict[str, int] = {}
    with SimProc(total, workdir=ctx.workdir) as sim, ctx.db.fresh() as dsn:
        from infra.store.postgres import PostgresStore

        st = PostgresStore(dsn)
        try:
            t_seed = time.perf_counter()
            seed(st, sim, _plan(sim.symbols, mix), rests="half")
            seeded_s = time.perf_counter() - t_seed
        finally:
            st.close()
        refused0 = sim.limits()["refused_total"]
        product = Product(sim, dsn, sim.symbols, ctx.workdir / f"cold-{tag}", signals=False)
        t0 = time.perf_counter()
        product.start(timeout=600)
        started_s = time.perf_counter() - t0
        try:

            def settled() -> bool:
                by = product.supervisor.stats().by_status
                return set(by) <= {"active", "closed"} and sum(by.values()) == total

            wait_for(settled, 600, "every position resolved and protected", every=0.01)
            elapsed = time.perf_counter() - t0
            by_status = dict(product.supervisor.stats().by_status)
            limiter = product.limiter_stats()
        finally:
            product.stop()
        refused = sim.limits()["refused_total"] - refused0
    return Rep(
        elapsed,
        {"resolved_s": elapsed, "app_start_s": started_s},
        {},
        {
            "positions": total,
            "closed_expected": closing,
            "by_status": by_status,
            "seeding_s": round(seeded_s, 1),
            "responses_429": refused,
            "limiter_waits": None if limiter is None else limiter.waited,
            "limiter_max_wait_s": None if limiter is None else round(limiter.max_wait_s, 3),
        },
    )


def run(ctx: Any) -> dict[str, dict[str, Any]]:
    quick = ctx.quick or QUICK
    reps: list[Rep] = []
    for r in range(ctx.repeat):
        rep = _resolve(ctx, MIX, f"1000-{r}")
        bare = baselines.bare_start(1000)
        rep.baseline["bare_1000_actors_s"] = bare
        reps.append(rep)
    entry = summarise(
        "cold_start_1000_s",
        "1,000 positions in mixed states (200 unknown entries, 200 awaiting a stop, 500 active,"
        " 100 closing) resolved and protected through ccxt, sync running",
        Target("<= 5 s", "<=", 5.0),
        reps,
        main="resolved_s",
        base="bare_1000_actors_s",
        unit="s",
    )
    if not quick:
        try:
            big = _resolve(ctx, (("active", 10_000),), "10000")
        except Exception as exc:  # reported, not a figure of its own
            entry["active_10000"] = {"error": repr(exc)}
        else:
            entry["active_10000"] = {
                "resolved_s": big.measured["resolved_s"],
                "app_start_s": big.measured["app_start_s"],
                **big.notes,
            }
    return {"cold_start_1000_s": entry}
