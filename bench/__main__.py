"""`make bench`: run every benchmark in its own function, print figures, write results.json.

Each figure is printed with its baseline measured in the same run, the ratio, the target and
whether it is met. ``QUICK=1`` runs shorter samples (under 2 minutes on 2 cores).
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka

from bench.common import QUICK, fig, no_threads_left

OUT = Path(__file__).resolve().parent / "results.json"

KEYS = [
    "tick_p99_ratio",
    "tick_throughput_ratio",
    "tick_ingest_vs_ws_raw",
    "signal_to_order_p50_ratio",
    "unprotected_p99_ratio",
    "restart_p99_ms",
    "cold_start_1000_s",
    "rss_per_actor_ratio",
]


def _le(x: float | None, t: float) -> bool | None:
    return None if x is None else x <= t


def _ge(x: float | None, t: float) -> bool | None:
    return None if x is None else x >= t


def report_tick_path(r: dict[str, Any]) -> None:
    _report_tick_path(r)
    report_tick_actor(r)


def _report_tick_path(r: dict[str, Any]) -> None:
    fig(
        "1 tick path p50",
        r["tick_p50_us"],
        "us",
        r["tick_bare_p50_us"],
        "us",
        r["tick_p50_ratio"],
        "report",
        None,
    )
    fig(
        "1 tick path p99",
        r["tick_p99_us"],
        "us",
        r["tick_bare_p99_us"],
        "us",
        r["tick_p99_ratio"],
        "<= 2x",
        _le(r["tick_p99_ratio"], 2.0),
    )


def report_tick_actor(r: dict[str, Any]) -> None:
    fig(
        "1 tick path p99, every tick through the actor (band off)",
        r["tick_actor_p99_us"],
        "us",
        r["tick_bare_p99_us"],
        "us",
        r["tick_actor_p99_ratio"],
        "report",
        None,
    )
    print(
        f"  parked at routing {r['tick_parked']} of {r['tick_samples']} decided ticks"
        f" (band on); via the actor {r['tick_via_actor']}"
    )


def report_throughput(r: dict[str, Any]) -> None:
    fig(
        "2 tick throughput (1,000 symbols, conflation)",
        r["tick_throughput_per_s"],
        "ticks/s",
        r["tick_bare_throughput_per_s"],
        "msg/s",
        r["tick_throughput_ratio"],
        ">= 3x",
        _ge(r["tick_throughput_ratio"], 3.0),
    )
    fig(
        "2 tick ingest vs websocket-client raw",
        r.get("tick_ingest_per_s"),
        "ticks/s",
        r.get("tick_ws_raw_per_s"),
        "frames/s (raw receive)",
        r.get("tick_ingest_vs_ws_raw"),
        ">= 0.8",
        _ge(r.get("tick_ingest_vs_ws_raw"), 0.8),
    )


def report_signal(r: dict[str, Any]) -> None:
    fig(
        "3 signal -> entry order p50",
        r["signal_to_order_p50_ms"],
        "ms",
        r["signal_commit_p50_ms"],
        "ms (INSERT+COMMIT, paced like the signals)",
        r["signal_to_order_p50_ratio"],
        "<= 3x",
        _le(r["signal_to_order_p50_ratio"], 3.0),
    )
    fig(
        "3 signal -> entry order p50, vs back to back",
        r["signal_to_order_p50_ms"],
        "ms",
        r.get("signal_commit_hot_p50_ms"),
        "ms (INSERT+COMMIT back to back)",
        r.get("signal_to_order_p50_vs_hot"),
        "report",
        None,
    )
    fig(
        "3 signal -> entry order p99",
        r["signal_to_order_p99_ms"],
        "ms",
        r["signal_commit_p99_ms"],
        "ms (INSERT+COMMIT)",
        None,
        "report",
        None,
    )


def report_commit(r: dict[str, Any]) -> None:
    fig(
        "3b store commit of one transition p50",
        r["commit_p50_ms"],
        "ms",
        r["commit_baseline_p50_ms"],
        "ms (INSERT+COMMIT)",
        r["commit_p50_ratio"],
        "report",
        None,
    )
    fig(
        "3b store commit of one transition p99",
        r["commit_p99_ms"],
        "ms",
        r["commit_baseline_p99_ms"],
        "ms (INSERT+COMMIT)",
        r["commit_p99_ms"] / r["commit_baseline_p99_ms"],
        "report",
        None,
    )


def report_unprotected(r: dict[str, Any]) -> None:
    fig(
        "4 unprotected window p50",
        r.get("unprotected_p50_ms"),
        "ms",
        r.get("ccxt_round_trip_p50_ms"),
        "ms",
        None,
        "report",
        None,
    )
    fig(
        "4 unprotected window p99",
        r.get("unprotected_p99_ms"),
        "ms",
        r.get("ccxt_round_trip_p99_ms"),
        "ms",
        r.get("unprotected_p99_ratio"),
        "<= 5x",
        _le(r.get("unprotected_p99_ratio"), 5.0),
    )


def report_restart(r: dict[str, Any]) -> None:
    fig(
        "5 crash -> successor p50",
        r["restart_p50_ms"],
        "ms",
        r["ask_p50_ms"],
        "ms (ask)",
        r["restart_p50_ms"] / r["ask_p50_ms"],
        "report",
        None,
    )
    fig(
        "5 crash -> successor p99",
        r["restart_p99_ms"],
        "ms",
        r["ask_p99_ms"],
        "ms (ask)",
        r["restart_p99_ratio"],
        "<= 20 ms",
        _le(r["restart_p99_ms"], 20.0),
    )


def report_cold(r: dict[str, Any]) -> None:
    fig(
        f"6 cold start {r['cold_start_positions']} positions ({r['cold_start_store']})",
        r["cold_start_1000_s"],
        "s",
        r["bare_start_1000_s"],
        "s (1,000 bare actors)",
        r["cold_start_ratio"],
        "<= 5 s",
        _le(r["cold_start_1000_s"], 5.0),
    )


def report_rss(r: dict[str, Any]) -> None:
    for n in r["rss_symbols"]:
        fig(
            f"7 RSS per symbol actor at {n}",
            r[f"rss_per_actor_{n}_kib"],
            "KiB",
            r[f"rss_per_bare_actor_{n}_kib"],
            "KiB (bare)",
            r[f"rss_per_actor_{n}_ratio"],
            "<= 2x",
            _le(r[f"rss_per_actor_{n}_ratio"], 2.0),
        )


BENCHES: list[tuple[str, str, Callable[[dict[str, Any]], None], list[str]]] = [
    ("tick path", "bench.tick_path", report_tick_path, ["tick_p99_ratio"]),
    (
        "throughput",
        "bench.throughput",
        report_throughput,
        ["tick_throughput_ratio", "tick_ingest_vs_ws_raw"],
    ),
    ("signal", "bench.signal_order", report_signal, ["signal_to_order_p50_ratio"]),
    ("commit", "bench.commit", report_commit, ["commit_p50_ratio"]),
    ("unprotected", "bench.unprotected", report_unprotected, ["unprotected_p99_ratio"]),
    ("restart", "bench.restart", report_restart, ["restart_p99_ms"]),
    ("cold start", "bench.cold_start", report_cold, ["cold_start_1000_s"]),
    ("rss", "bench.rss", report_rss, ["rss_per_actor_ratio"]),
]


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL + 1)
    results: dict[str, Any] = {"quick": QUICK}
    t_all = time.monotonic()
    for name, mod, report, keys in BENCHES:
        t0 = time.monotonic()
        try:
            r = importlib.import_module(mod).run()
        except Exception as exc:
            traceback.print_exc()
            r = {k: None for k in keys}
            for k in keys:
                r[f"{k}_note"] = f"{name} failed: {type(exc).__name__}: {exc}"
        finally:
            left = no_threads_left()
            if left:
                print(f"# warning: {left} threads left after {name}")
        results.update(r)
        try:
            report(r)
        except Exception as exc:  # a failed bench has no figures to print
            print(f"{name}: not measured ({exc!r})")
        for k, v in r.items():
            if k.endswith("_note"):
                print(f"  note {k}: {v}")
        print(f"  ({name}: {time.monotonic() - t0:.1f} s)", flush=True)
    for k in KEYS:
        results.setdefault(k, None)
        if results[k] is None:
            results.setdefault(f"{k}_note", "not measured")
    results["total_s"] = time.monotonic() - t_all
    OUT.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    print(f"wrote {OUT} ({results['total_s']:.1f} s)")
    pykka.ActorRegistry.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
