"""Measure the commit latency of one transition on a real PostgreSQL.

``python -m bench.store_latency [-n 2000] [--threads 1] [--dsn DSN] [--data-dir .data/pgbench]``

Creates a scratch database on the server (``ps_latency_<pid>``; the role needs CREATEDB),
drives positions through their life with the same commits the state machine makes (an entry
intent: INSERT position + order + event + signal; then fills, stop, close: UPDATE with the
expected version + order upserts + event), times every ``PostgresStore.commit`` call, prints
p50/p90/p99/max per kind and the throughput, and drops the database. A single-row
``INSERT`` + ``COMMIT`` on a plain connection, interleaved with the commits, gives the
server's own floor at that moment (shared machines are noisy: compare the ratio). Without
``--dsn`` an embedded server is used (stopped afterwards unless someone else uses it).

:func:`measure` is importable (``tests/store/test_latency.py`` runs it briefly); it returns the
figures as a dict. Runs on the caller's thread (``threads`` > 1 commits from worker threads of
its own); a failing commit propagates and the scratch database is still dropped. A benchmark,
not product code: it lived in ``infra/store/`` and moved here (issue 15); the percentiles are
:func:`bench.stats.pct`'s, as in every other benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from actors.messages import OpenSignal, OrderUpdate
from actors.model import ExchangeStatus, Key, OrderKind, OrderState, Side, Status
from actors.orders import intended_order
from actors.state import (
    Commit,
    JournalEvent,
    Position,
    SignalOutcome,
    SignalRecord,
)
from bench.stats import pct
from infra.store.embedded import EmbeddedPostgres
from infra.store.postgres import PostgresStore

__all__ = ["main", "measure"]


def _summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "count": len(s),
        "p50_ms": pct(s, 50) * 1000,
        "p90_ms": pct(s, 90) * 1000,
        "p99_ms": pct(s, 99) * 1000,
        "max_ms": (s[-1] if s else float("nan")) * 1000,
        "mean_ms": (statistics.fmean(s) if s else float("nan")) * 1000,
    }


def _life(store: PostgresStore, key: Key, now: float) -> list[tuple[str, Commit]]:
    """The commits of one position's life, as the state machine makes them."""
    (pid,) = store.allocate_ids(1)
    entry = intended_order(pid, OrderKind.ENTRY, 1, "buy", 0.01, now)
    pos = Position(
        id=pid,
        key=key,
        side=Side.LONG,
        status=Status.PENDING_ENTRY,
        source="bench",
        signal_id=f"b{pid}",
        requested_qty=0.01,
        stop_price=60_000.0,
        created_at=now,
        updated_at=now,
        orders=(entry,),
        version=1,
    )
    sig = OpenSignal(key, f"b{pid}", "bench", Side.LONG, 0.01, 60_000.0)
    rec = SignalRecord(key, sig.signal_id, "bench", SignalOutcome.ACCEPTED, "", now, pid)
    out = [
        (
            "entry_intent",
            Commit(
                key,
                sig,
                pos,
                0,
                (JournalEvent(pid, "entry_intent", None, pos.status, now, {}),),
                rec,
            ),
        )
    ]

    pos_ref = [pos]

    def step(kind: str, new: Position, **detail: object) -> Position:
        new = replace(new, version=pos_ref[0].version + 1, updated_at=now)
        update = OrderUpdate(key, entry.client_id, ExchangeStatus.FILLED, 0.01, 61_000.0, now)
        ev = JournalEvent(pid, kind, pos_ref[0].status, new.status, now, detail)
        out.append(("transition", Commit(key, update, new, pos_ref[0].version, (ev,))))
        pos_ref[0] = new
        return new

    filled_entry = replace(entry, state=OrderState.FILLED, filled_qty=0.01, avg_price=61_000.0)
    stop = intended_order(pid, OrderKind.STOP_LOSS, 1, "sell", 0.01, now, 60_000.0)
    p = step("entry_accepted", replace(pos, status=Status.ENTRY_PLACED))
    p = step(
        "entry_fill",
        replace(
            p,
            status=Status.PENDING_SL,
            qty=0.01,
            entry_price=61_000.0,
            filled_at=now,
            orders=(filled_entry, stop),
            stop_seq=1,
        ),
        qty=0.01,
        price=61_000.0,
        via="stream",
    )
    accepted = replace(stop, state=OrderState.ACCEPTED, exchange_id="1")
    p = step(
        "stop_confirmed",
        replace(p, status=Status.ACTIVE, protected_at=now, orders=(filled_entry, accepted)),
        via="stream",
    )
    close = intended_order(pid, OrderKind.CLOSE, 1, "sell", 0.01, now)
    p = step(
        "closing",
        replace(p, status=Status.CLOSING, close_seq=1, orders=(filled_entry, accepted, close)),
        reason="signal",
    )
    done = replace(close, state=OrderState.FILLED, filled_qty=0.01, avg_price=62_000.0)
    canceled = replace(accepted, state=OrderState.CANCELED)
    step(
        "closed",
        replace(p, status=Status.CLOSED, closed_at=now, orders=(filled_entry, canceled, done)),
        reason="signal",
    )
    return out


def measure(dsn: str, n: int = 2000, threads: int = 1, pool_max: int = 8) -> dict[str, object]:
    """Time ``n`` commits (about ``n / 6`` position lives) spread over ``threads`` threads,
    each on its own symbol, in a scratch database on ``dsn``'s server. Blocking."""
    name = f"ps_latency_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = make_conninfo(dsn, dbname=name)
    try:
        with PostgresStore(target, pool_min=min(threads, pool_max), pool_max=pool_max) as store:
            samples: dict[str, list[float]] = {"entry_intent": [], "transition": [], "raw": []}
            with psycopg.connect(target, autocommit=True) as conn:
                conn.execute("CREATE TABLE latency_baseline (id bigserial PRIMARY KEY, v int)")
            lock = threading.Lock()
            per_thread = max(1, n // threads)

            def run(i: int) -> None:
                key = Key("bench", f"SYM{i}USDT")
                mine: dict[str, list[float]] = {"entry_intent": [], "transition": [], "raw": []}
                done = 0
                with psycopg.connect(target, autocommit=True) as raw:
                    while done < per_thread:
                        for kind, commit in _life(store, key, time.time()):
                            if done >= per_thread and kind == "entry_intent":
                                break
                            t0 = time.perf_counter()
                            store.commit(commit)
                            mine[kind].append(time.perf_counter() - t0)
                            done += 1
                        # Baseline, interleaved: one single-row INSERT + COMMIT.
                        t0 = time.perf_counter()
                        raw.execute("INSERT INTO latency_baseline (v) VALUES (%s)", (done,))
                        mine["raw"].append(time.perf_counter() - t0)
                with lock:
                    for k, v in mine.items():
                        samples[k].extend(v)

            # Warm up: connections, prepared statements, caches.
            for _, commit in _life(store, Key("bench", "WARMUP"), time.time()):
                store.commit(commit)
            workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
            t0 = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            wall = time.perf_counter() - t0
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    everything = samples["entry_intent"] + samples["transition"]
    summary = _summary(everything)
    baseline = _summary(samples["raw"])
    return {
        "threads": threads,
        "commits": len(everything),
        "commits_per_s": len(everything) / wall if wall > 0 else float("nan"),
        "all": summary,
        "entry_intent": _summary(samples["entry_intent"]),
        "transition": _summary(samples["transition"]),
        "baseline_insert_commit": baseline,
        "p50_vs_baseline": summary["p50_ms"] / baseline["p50_ms"]
        if baseline["p50_ms"] > 0
        else float("nan"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=2000, help="commits to time (default 2000)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dsn", default=os.environ.get("PS_DSN") or None)
    parser.add_argument("--data-dir", default=".data/pgbench", help="embedded server folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    server: EmbeddedPostgres | None = None
    dsn = args.dsn
    if not dsn:
        Path(args.data_dir).parent.mkdir(parents=True, exist_ok=True)
        server = EmbeddedPostgres(args.data_dir)
        dsn = server.start()
    try:
        result = measure(dsn, args.n, args.threads)
    finally:
        if server is not None:
            server.close()
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['commits']} commits, {args.threads} thread(s), "
        f"{result['commits_per_s']:.0f} commits/s"
    )
    for kind in ("all", "entry_intent", "transition", "baseline_insert_commit"):
        s = result[kind]
        assert isinstance(s, dict)
        print(
            f"  {kind:22s} n={s['count']:5d}  p50 {s['p50_ms']:.3f} ms  p90 {s['p90_ms']:.3f} ms"
            f"  p99 {s['p99_ms']:.3f} ms  max {s['max_ms']:.3f} ms"
        )
    print(f"  commit p50 / single-row INSERT+COMMIT p50: {result['p50_vs_baseline']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
