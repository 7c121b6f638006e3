"""``make soak``: the product as shipped under a steady mixed load for an hour (or
``--minutes N``), reporting what grows.

The load (``sim/`` in its own process, Binance's limits enforced, PostgreSQL): mark prices
of every symbol move once a second on a random walk wide enough that stops, take-profits and
trailing stops are hit all the time; signals arrive at ``--signal-rate`` a second on
rotating symbols (a third with a trailing stop, a third with a take-profit, a third with a
stop only; one in ten sent twice, as strategies do), and a burst of 20 every five minutes.

At the start (after ``--warm`` seconds), every ``--every`` seconds and at the end it prints
and records: RSS, threads, open file descriptors, GC pauses (p99 and max since the last
report, from ``gc.callbacks``), live actors, the size of every per-key structure the
process keeps (supervisor: actors, cells, tick slots, restart trackers; timers: heap and
generations; worker queues; intake's admitted map; the signal feed's awaiting map; the user
stream's algo-order map; the store's written-orders cache; the limiter's windows; ccxt
clients) and the rows of every table; then the growth of each per hour between the first
and the last report. Verdict: RSS growth <= 5 % from the first report to the last.
Results go to ``.data/bench/soak-<time>.json`` and one line to ``bench/HISTORY.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import DATA, Database, Product, SimProc, signal_doc
from bench.history import HISTORY, commit_id, load_average, utc_stamp
from infra.store.retention import GROWING_TABLES as _HISTORY_TABLES

HERE = Path(__file__).resolve().parent


class GcPauses:
    """Durations of the collector's runs (``gc.callbacks``), drained at each report."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self.pauses: list[float] = []
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        elif self._t0:
            self.pauses.append(time.perf_counter() - self._t0)

    def drain(self) -> list[float]:
        out, self.pauses = self.pauses, []
        return out

    def close(self) -> None:
        if self._cb in gc.callbacks:
            gc.callbacks.remove(self._cb)


def _len(obj: Any, *path: str) -> int | None:
    """``len`` of an attribute path, None when the path does not exist (the structures
    change as the product does: a missing one is reported as such, not an error)."""
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    try:
        return len(obj)
    except TypeError:
        return None


def sizes(product: Product) -> dict[str, int | None]:
    app = product.app
    sup = product.supervisor
    out: dict[str, int | None] = {
        "supervisor.actors": _len(sup, "_actors"),
        "supervisor.cells": _len(sup, "_cells"),
        "supervisor.tick_slots": _len(sup, "_slots"),
        "supervisor.restart_trackers": _len(sup, "_trackers"),
        "timers.heap": _len(sup, "timers", "_heap"),
        "timers.live_keys": _len(sup, "timers", "_live"),
        "intake.admitted": _len(app, "intake", "_admitted"),
        "signal_feed.awaiting": _len(product.signal_feed, "_awaiting"),
        "market_feed.pending": _len(product.market_feed, "_pending"),
    }
    for acc, w in getattr(sup, "_workers", {}).items():
        out[f"workers.{acc}.queue"] = _len(w, "_queue")
    for feed in getattr(app, "feeds", []):
        n = _len(feed, "_algo_of_order")
        if n is not None:
            out[f"{getattr(feed, 'name', 'user')}.algo_of_order"] = n
    store = getattr(app, "store", None)
    inner = getattr(store, "inner", None)
    out["store.written"] = _len(inner, "_written")
    port = product.port
    ex = None if port is None else port.inner
    out["exchange.clients"] = _len(ex, "_clients")
    lim = getattr(ex, "limiter", None)
    if lim is not None:
        for w in getattr(lim, "_windows", []):
            out[f"limiter.{w.limit.header}.entries"] = len(w.entries)
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rows(dsn: str) -> dict[str, int]:
    """Rows of every table (a partitioned table counts its partitions, which are not listed)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                "ORDER BY 1"
            ).fetchall()
        ]
        return {
            str(t): int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])  # type: ignore[index]
            for t in tables
        }


def _bytes(dsn: str) -> dict[str, int]:
    """Bytes on disk (heap, indexes, TOAST) of the tables that grow with the signals, each
    with its partitions, and of the whole database."""
    import psycopg

    from infra.store.retention import table_bytes

    with psycopg.connect(dsn) as conn:
        out = {t: table_bytes(conn, t) or 0 for t in _HISTORY_TABLES}
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        out["database"] = int(row[0]) if row else 0
        return out


def snapshot(product: Product, dsn: str, gcp: GcPauses, t0: float, sent: int = 0) -> dict[str, Any]:
    pauses = sorted(gcp.drain())
    stats = product.supervisor.stats()
    lim = product.limiter_stats()
    return {
        "at_s": round(time.monotonic() - t0, 1),
        "rss_mib": round(_rss() / 2**20, 1),
        "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        "gc_runs": len(pauses),
        "gc_pause_p99_ms": round(pauses[min(len(pauses) - 1, int(0.99 * len(pauses)))] * 1e3, 2)
        if pauses
        else 0.0,
        "gc_pause_max_ms": round(pauses[-1] * 1e3, 2) if pauses else 0.0,
        "live_actors": stats.live_actors,
        "by_status": dict(stats.by_status),
        "restarts": stats.restarts,
        "dead_letters": stats.dead_letters,
        "structures": sizes(product),
        "rows": _rows(dsn),
        "bytes": _bytes(dsn),
        "signals_sent": sent,
        "limiter_waited": None if lim is None else lim.waited,
        "limiter_refused": None if lim is None else lim.refused,
    }


def _print(s: dict[str, Any]) -> None:
    print(
        f"[{s['at_s']:>7.0f}s] rss {s['rss_mib']} MiB, threads {s['threads']}, fds {s['fds']},"
        f" gc p99 {s['gc_pause_p99_ms']} ms (max {s['gc_pause_max_ms']}, {s['gc_runs']} runs),"
        f" actors {s['live_actors']} {s['by_status']}",
        flush=True,
    )
    print("          structures: " + ", ".join(f"{k}={v}" for k, v in s["structures"].items()))
    print("          rows: " + ", ".join(f"{k}={v}" for k, v in s["rows"].items()), flush=True)
    print(
        f"          signals sent {s['signals_sent']}, bytes: "
        + ", ".join(f"{k}={v / 2**20:.1f} MiB" for k, v in s["bytes"].items()),
        flush=True,
    )


def growth(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    hours = max((last["at_s"] - first["at_s"]) / 3600.0, 1e-9)
    out: dict[str, Any] = {"hours": round(hours, 3)}

    def per_hour(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round((b - a) / hours, 1)

    out["rss_growth_pct"] = round((last["rss_mib"] / first["rss_mib"] - 1) * 100, 2)
    for k in ("rss_mib", "threads", "fds", "live_actors"):
        out[f"{k}_per_hour"] = per_hour(first[k], last[k])
    out["structures_per_hour"] = {
        k: per_hour(first["structures"].get(k), v) for k, v in last["structures"].items()
    }
    out["rows_per_hour"] = {
        k: per_hour(first["rows"].get(k, 0), v) for k, v in last["rows"].items()
    }
    sent = last.get("signals_sent", 0) - first.get("signals_sent", 0)
    if sent > 0:
        out["signals_per_hour"] = round(sent / hours, 1)
        out["rows_per_1000_signals"] = {
            k: round((v - first["rows"].get(k, 0)) * 1000 / sent, 1)
            for k, v in last["rows"].items()
            if k in _HISTORY_TABLES
        }
        out["mib_per_1000_signals"] = {
            k: round((v - first["bytes"].get(k, 0)) * 1000 / sent / 2**20, 3)
            for k, v in last["bytes"].items()
        }
    return out


def _signals(sim: SimProc, rng: random.Random, n: int, seq: list[int]) -> list[dict[str, Any]]:
    prices = sim.call("GET", "/_sim/prices")
    out = []
    for _ in range(n):
        seq[0] += 1
        s = sim.symbols[seq[0] % len(sim.symbols)]
        kind = seq[0] % 3
        doc = signal_doc(
            s,
            prices[s],
            sid=f"soak-{seq[0]}",
            trailing_pct=0.01 if kind == 0 else None,
            take_profit_pct=0.015 if kind == 1 else None,
        )
        out.append(doc)
        if rng.random() < 0.1:
            out.append(dict(doc))  # a replay
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="duration (default 60)")
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--signal-rate", type=float, default=1.0, help="signals a second")
    ap.add_argument("--every", type=float, default=None, help="seconds between reports")
    ap.add_argument("--warm", type=float, default=None, help="seconds before the first report")
    ap.add_argument("--no-history", action="store_true")
    args = ap.parse_args(argv)
    total = args.minutes * 60.0
    warm = args.warm if args.warm is not None else min(120.0, total / 6)
    every = args.every if args.every is not None else max(30.0, total / 12)
    workdir = DATA / "bench" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(13)
    gcp = GcPauses()
    db = Database().start()
    reports: list[dict[str, Any]] = []
    seq = [0]
    sent = 0  # signals sent, replays included (send_signals returns once they went out)
    try:
        with SimProc(args.symbols, walk_interval_s=1.0, workdir=workdir) as sim, db.fresh() as dsn:
            sim.call("POST", "/_sim/walk", {"interval_s": 1.0, "step_pct": 0.003})
            product = Product(sim, dsn, sim.symbols, workdir).start()
            try:
                t0 = time.monotonic()
                next_report = t0 + warm
                next_burst = t0 + 300.0
                while True:
                    now = time.monotonic()
                    if now - t0 >= total:
                        break
                    batch = _signals(sim, rng, max(1, round(args.signal_rate * 5)), seq)
                    if now >= next_burst:
                        batch += _signals(sim, rng, 20, seq)
                        next_burst += 300.0
                    # Paced in the sim: the clock here.
                    sent += len(sim.send_signals(batch, args.signal_rate))
                    if time.monotonic() >= next_report:
                        reports.append(snapshot(product, dsn, gcp, t0, sent))
                        _print(reports[-1])
                        next_report += every
                reports.append(snapshot(product, dsn, gcp, t0, sent))
                _print(reports[-1])
            finally:
                clean = product.stop()
    finally:
        db.close()
        gcp.close()
    g = growth(reports[0], reports[-1])
    verdict = "met" if g["rss_growth_pct"] <= 5.0 else "missed"
    print(
        f"soak: {args.minutes:g} min, RSS {reports[0]['rss_mib']} -> {reports[-1]['rss_mib']} MiB"
        f" ({g['rss_growth_pct']:+.2f} %, target <= 5 %: {verdict}), threads"
        f" {reports[0]['threads']} -> {reports[-1]['threads']}, stopped clean: {clean}",
        flush=True,
    )
    print("growth per hour: " + json.dumps(g), flush=True)
    out = {"reports": reports, "growth": g, "verdict": verdict, "args": vars(args)}
    (workdir / "soak.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    if not args.no_history:
        _history(args, reports, g, verdict)
    return 0


def _history(args: Any, reports: list[dict[str, Any]], g: dict[str, Any], verdict: str) -> None:
    gc_p99 = max(r["gc_pause_p99_ms"] for r in reports)
    rss = g["rss_growth_pct"]
    line = (
        f"| {utc_stamp()} | {commit_id()} | soak ({args.minutes:g} min) | RSS {rss:+.2f} %,"
        f" threads {reports[0]['threads']}->{reports[-1]['threads']}, gc p99 {gc_p99} ms |"
        f" RSS growth <= 5 % | {verdict} | load {load_average()} |\n"
    )
    with HISTORY.open("a") as f:
        f.write(line)


if __name__ == "__main__":
    raise SystemExit(main())
