"""``python -m bench`` (``make bench``): the benchmarks of issue 13, with baselines from the
same run, min / median / max over repetitions, targets fixed in advance.

Every figure runs the product as shipped (``bench/harness.py``): ``sim/`` in its own process
with Binance's limits enforced, the real PostgreSQL, ccxt through the account's limiter,
logging at INFO as JSON lines to a file. Results go to ``bench/results.json`` (every key of
the issue's table; figures not run this time keep their last entry, with its date), and
each run's verdicts are appended to ``bench/HISTORY.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.history import HISTORY, commit_id, load_average, utc_stamp

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
VENUES = ("binanceusdm", "bybit")
"""As :data:`bench.harness.VENUES` (not imported here: ``--help`` stays light)."""


@dataclass(frozen=True)
class Group:
    """Figures measured together (one setup): a name for ``--only``, its module, its keys."""

    name: str
    module: str
    keys: tuple[str, ...]
    about: str


GROUPS: tuple[Group, ...] = (
    Group(
        "stop_cross",
        "bench.fig_stop_cross",
        ("stop_cross_p99_ratio",),
        "tick crossing an unconfirmed stop -> close handed to the exchange port, 500 positions,"
        " 5,000 ticks/s",
    ),
    Group(
        "trailing",
        "bench.fig_trailing",
        ("trailing_staleness_p99",),
        "500 trailing stops in a trending market, exchange limits enforced",
    ),
    Group(
        "ticks",
        "bench.fig_ticks",
        ("tick_throughput_ratio", "band_off_throughput_ratio"),
        "ticks/s through the feed over 1,000 positions (band on / off)",
    ),
    Group(
        "signals",
        "bench.fig_signals",
        ("signal_overhead_p50_ms", "signal_throughput_ratio", "burst_protected_s"),
        "signal frame -> entry order; accepted signals/s; a burst of 100 signals",
    ),
    Group(
        "unprotected",
        "bench.fig_unprotected",
        ("unprotected_p99_ratio",),
        "exchange fill -> stop acknowledged",
    ),
    Group(
        "restart",
        "bench.fig_restart",
        ("restart_p99_ms",),
        "crash -> successor handling with its state from PostgreSQL",
    ),
    Group(
        "cold_start",
        "bench.fig_cold_start",
        ("cold_start_1000_s",),
        "1,000 positions in mixed states resolved and protected (10,000 reported)",
    ),
    Group("rss", "bench.fig_rss", ("rss_per_actor_ratio",), "RSS per actor at 1,000 and 5,000"),
)

KEYS = tuple(k for g in GROUPS for k in g.keys)


@dataclass
class Ctx:
    """What a figure module's ``run(ctx)`` gets."""

    repeat: int
    quick: bool
    workdir: Path
    db: Any  # bench.harness.Database


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {g.name:12} {', '.join(g.keys)}\n  {'':12} {g.about}" for g in GROUPS)
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"figures (--only takes a group name or a key):\n{listing}\n\n"
        "QUICK=1 in the environment (or --quick) runs shorter samples; make bench QUICK=1.\n"
        "make soak runs bench/soak.py for an hour (python -m bench.soak --help).",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this group or key (repeatable, or comma-separated)",
    )
    p.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="repetitions per figure (>= 3)"
    )
    p.add_argument("--quick", action="store_true", help="short samples (as QUICK=1)")
    p.add_argument("--no-history", action="store_true", help="do not append to HISTORY.md")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (bench/results.json)")
    p.add_argument(
        "--venue",
        choices=VENUES,
        default=os.environ.get("BENCH_VENUE") or VENUES[0],
        help="the venue the account trades on, the sim speaking its wire (make bench"
        " VENUE=bybit); a figure's key gets '@<venue>' for any but binanceusdm",
    )
    return p


def venue_key(key: str, venue: str) -> str:
    """The results key of ``key`` measured on ``venue`` (Binance's keys stay as they were)."""
    return key if venue == VENUES[0] else f"{key}@{venue}"


def _select(only: list[str]) -> list[Group]:
    names = {n.strip() for item in only for n in item.split(",") if n.strip()}
    if not names:
        return list(GROUPS)
    chosen = [g for g in GROUPS if g.name in names or names & set(g.keys)]
    unknown = names - {g.name for g in GROUPS} - set(KEYS)
    if unknown:
        raise SystemExit(f"unknown figure(s): {', '.join(sorted(unknown))} (see --help)")
    return chosen


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _print(key: str, e: dict[str, Any]) -> None:
    sp = e.get("spread") or {}
    ov = e.get("overhead") or {}
    ra = e.get("ratio") or {}
    line = (
        f"{key}: {_fmt(e.get('value'))} {e.get('unit', '')}"
        f" [min {_fmt(sp.get('min'))} / median {_fmt(sp.get('median'))} / max"
        f" {_fmt(sp.get('max'))}]"
    )
    if ov:
        line += f" | overhead {_fmt(ov.get('median'))} ({ov.get('of')})"
    if ra:
        line += f" | ratio {_fmt(ra.get('median'))}x"
    line += f" | target {e.get('target')} | {str(e.get('verdict', '')).upper()}"
    print(line, flush=True)
    for name, s in (e.get("measured") or {}).items():
        print(f"    measured {name}: {_fmt(s['median'])} ({_fmt(s['min'])}..{_fmt(s['max'])})")
    for name, s in (e.get("baseline") or {}).items():
        print(f"    baseline {name}: {_fmt(s['median'])} ({_fmt(s['min'])}..{_fmt(s['max'])})")
    if e.get("error"):
        print(f"    error: {e['error']}")


def _history(entries: dict[str, dict[str, Any]], meta: dict[str, Any]) -> None:
    rows = []
    for key, e in entries.items():
        rows.append(
            f"| {meta['date']} | {meta['commit']} | {key} | {_fmt(e.get('value'))}"
            f" {e.get('unit', '')} | {e.get('target')} | {e.get('verdict')} |"
            f" {'quick' if meta['quick'] else 'full'}, load {meta['load_before']}"
            f" -> {meta['load_after']} |"
        )
    text = HISTORY.read_text() if HISTORY.exists() else "# Benchmark history\n"
    if "| date | commit | figure |" not in text:
        text += (
            "\n## Verdicts of every `make bench` run (appended by bench/__main__.py)\n\n"
            "| date | commit | figure | value | target | verdict | run |\n"
            "|---|---|---|---|---|---|---|\n"
        )
    if not text.endswith("\n"):
        text += "\n"
    HISTORY.write_text(text + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.repeat < 3:
        print("--repeat must be at least 3 (min / median / max)", file=sys.stderr)
        return 2
    quick = args.quick or os.environ.get("QUICK", "0") not in ("", "0")
    if quick:
        os.environ["QUICK"] = "1"
    os.environ["BENCH_VENUE"] = args.venue  # read by bench.harness at its import, below
    groups = _select(args.only)

    from bench.harness import DATA, Database

    workdir = DATA / "bench" / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "date": utc_stamp(),
        "commit": commit_id(),
        "quick": quick,
        "venue": args.venue,
        "repeat": args.repeat,
        "load_before": load_average(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "logs": str(workdir),
    }
    print(
        f"bench: {meta['date']} commit {meta['commit']} venue {args.venue}"
        f" load {meta['load_before']}",
        flush=True,
    )
    db = Database().start()
    ctx = Ctx(args.repeat, quick, workdir, db)
    entries: dict[str, dict[str, Any]] = {}
    t_all = time.monotonic()
    try:
        for g in groups:
            t0 = time.monotonic()
            print(f"== {g.name}: {g.about}", flush=True)
            try:
                run: Callable[[Ctx], dict[str, dict[str, Any]]] = importlib.import_module(
                    g.module
                ).run
                got = run(ctx)
            except Exception as exc:
                traceback.print_exc()
                got = {
                    k: {"value": None, "verdict": "not measured", "error": repr(exc)}
                    for k in g.keys
                }
            for k in g.keys:
                e = got.get(k) or {"value": None, "verdict": "not measured"}
                e["seconds"] = round(time.monotonic() - t0, 1)
                e["date"] = meta["date"]
                e["commit"] = meta["commit"]
                e["quick"] = quick
                e["venue"] = args.venue
                key = venue_key(k, args.venue)
                entries[key] = e
                _print(key, e)
            _threads_left(g.name)
    finally:
        db.close()
    meta["load_after"] = load_average()
    meta["total_s"] = round(time.monotonic() - t_all, 1)
    previous: dict[str, Any] = {}
    if args.out.exists():
        try:
            previous = json.loads(args.out.read_text())
        except ValueError:
            previous = {}
    # Every key of the table (and of another venue's runs) keeps its last entry unless
    # measured now; ``_run`` (``_run@bybit``) describes this venue's latest run.
    results: dict[str, Any] = dict(previous)
    results.update(entries)
    for k in KEYS:
        if results.get(k) is None:
            results[k] = {"value": None, "verdict": "not measured"}
    results[venue_key("_run", args.venue)] = meta
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    if not args.no_history:
        _history(entries, meta)
    print(f"wrote {args.out} ({meta['total_s']} s, load {meta['load_after']})", flush=True)
    return 0


def _threads_left(name: str) -> None:
    import threading

    import pykka

    pykka.ActorRegistry.stop_all(block=True, timeout=10)
    left = [
        t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()
    ]
    if left:
        print(f"  warning: {len(left)} threads left after {name}: {left[:5]}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
