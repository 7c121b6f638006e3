"""``rss_per_actor_ratio``: resident memory per position actor holding an open trailing
position, at 1,000 and 5,000 actors, against a bare pykka actor.

Open trailing positions are written into PostgreSQL (``bench/seed.py``). Each measurement
runs in a fresh child process (``python -m bench.fig_rss ...``) so that none inherits
another's heap: the product's :class:`~supervision.supervisor.Supervisor` on the real
:class:`~infra.store.postgres.PostgresStore` and the real ccxt adapter starts (one warm-up
actor first), RSS is read, then ``recover()`` starts one actor per position, each loads its
position from PostgreSQL; once every actor holds its position (``active``), RSS is read
again: the difference over the number of actors. The bare baseline starts as many bare
pykka actors the same way. The figure is the larger ratio of the two sizes.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.harness import ACCOUNT, QUICK, REPO, VENUE, SimProc, wait_for
from bench.seed import seed
from bench.stats import Rep, Target, summarise

SIZES = (1000, 5000)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(kind: str, n: int, dsn: str, rest: str) -> float:
    """Bytes of RSS per actor (runs in a child process; prints nothing else)."""
    import pykka

    from bench.baselines import BareActor, stop_refs

    if kind == "bare":
        BareActor.start(None, [0]).stop()
        gc.collect()
        before = _rss()
        refs = [BareActor.start(None, [0]) for _ in range(n)]
        for r in refs:
            r.ask(1.0)
        gc.collect()
        after = _rss()
        stop_refs(refs)
        return (after - before) / n
    from actors.model import Key
    from actors.ports import SystemClock
    from infra.exchange import CcxtExchange, VenueConfig
    from infra.store.postgres import PostgresStore
    from infra.store.timed import TimedStore
    from supervision.supervisor import Supervisor

    store = PostgresStore(dsn, migrate_schema=False)
    ex = CcxtExchange(ACCOUNT, VenueConfig(venue=VENUE, base_url=rest, require_credentials=False))
    sup = Supervisor(TimedStore(store), {ACCOUNT: ex}, SystemClock())
    sup.start()  # the timer thread: a load that found the store busy is retried by a timer
    try:
        sup.state(Key(ACCOUNT, "WARMUPUSDT"))  # one actor: imports, first thread, the pool
        gc.collect()
        before = _rss()
        sup.recover()
        wait_for(
            lambda: sup.stats().by_status.get("active", 0) >= n, 300, "every actor loaded", 0.05
        )
        gc.collect()
        after = _rss()
        return (after - before) / n
    finally:
        sup.stop(5.0)
        ex.close()
        store.close()
        pykka.ActorRegistry.stop_all()


def _measure(kind: str, n: int, dsn: str, rest: str) -> float:
    p = subprocess.run(
        [sys.executable, "-m", "bench.fig_rss", kind, str(n), dsn, rest],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if p.returncode != 0:
        raise RuntimeError(f"rss child {kind} {n} failed: {p.stderr.strip()[-600:]}")
    return float(json.loads(p.stdout.strip().splitlines()[-1]))


def run(ctx: Any) -> dict[str, dict[str, Any]]:
    quick = ctx.quick or QUICK
    sizes = (1000, 2000) if quick else SIZES
    dsns: dict[int, str] = {}
    reps: list[Rep] = [Rep(None) for _ in range(ctx.repeat)]
    with SimProc(max(sizes), workdir=ctx.workdir) as sim:
        for n in sizes:
            sim.call("POST", "/_sim/reset")  # the next database allocates the same ids again
            with ctx.db.fresh() as dsn:
                from infra.store.postgres import PostgresStore

                st = PostgresStore(dsn)
                try:
                    t0 = time.perf_counter()
                    seed(st, sim, [(s, "active") for s in sim.symbols[:n]], trailing_pct=0.01)
                    seeded = time.perf_counter() - t0
                finally:
                    st.close()
                dsns[n] = dsn
                for r in range(ctx.repeat):
                    actor = _measure("actor", n, dsn, sim.rest)
                    bare = _measure("bare", n, dsn, sim.rest)
                    rep = reps[r]
                    rep.measured[f"actor_{n}_kib"] = actor / 1024
                    rep.baseline[f"bare_{n}_kib"] = bare / 1024
                    rep.notes[f"ratio_{n}"] = round(actor / bare, 3)
                    rep.notes[f"seeding_{n}_s"] = round(seeded, 1)
    for rep in reps:
        rep.value = max(float(rep.notes[f"ratio_{n}"]) for n in sizes)
    return {
        "rss_per_actor_ratio": summarise(
            "rss_per_actor_ratio",
            f"RSS per actor holding an open trailing position at {sizes[0]:,} and {sizes[1]:,}"
            " (the larger ratio)",
            Target("<= 2x", "<=", 2.0),
            reps,
            main=f"actor_{sizes[-1]}_kib",
            base=f"bare_{sizes[-1]}_kib",
            unit="x",
        )
    }


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])))
