"""``python -m bench.report``: the README's performance table from ``bench/results.json``.

One row per key of issue 13: the product's main number (median and min..max over the
repetitions), the baseline's, the overhead and ratio, the target and the verdict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.__main__ import KEYS, RESULTS

# key -> (measured name, baseline name, unit of both, how to show the value)
SHOWN: dict[str, tuple[str, str | None, str]] = {
    "stop_cross_p99_ratio": ("p99_ms", "bare_p99_ms", "ms"),
    "trailing_staleness_p99": ("staleness_p99", None, "d"),
    "tick_throughput_ratio": ("ticks_per_s", "own_reader_per_s", "/s"),
    "band_off_throughput_ratio": ("ticks_per_s", "bare_pykka_per_s", "/s"),
    "signal_overhead_p50_ms": ("p50_ms", "insert_commit_p50_ms", "ms"),
    "signal_throughput_ratio": ("accepted_per_s", "insert_commit_per_s", "/s"),
    "burst_protected_s": ("protected_s", "ccxt_200_orders_s", "s"),
    "unprotected_p99_ratio": ("p99_ms", "round_trip_p99_ms", "ms"),
    "restart_p99_ms": ("p99_ms", "ask_p99_ms", "ms"),
    "cold_start_1000_s": ("resolved_s", "bare_1000_actors_s", "s"),
    "rss_per_actor_ratio": ("actor_5000_kib", "bare_5000_kib", "KiB"),
}


def _n(x: float | None) -> str:
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _spread(s: dict[str, Any] | None, unit: str) -> str:
    if not s:
        return "n/a"
    return f"{_n(s['median'])} {unit} ({_n(s['min'])}..{_n(s['max'])})"


def table(results: dict[str, Any]) -> str:
    rows = [
        "| key | measured (median, min..max) | baseline (same run) | overhead | value"
        " | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in KEYS:
        e = results.get(key) or {}
        main, base, unit = SHOWN[key]
        measured = (e.get("measured") or {}).get(main)
        if measured is None and key == "rss_per_actor_ratio":
            main, base = "actor_2000_kib", "bare_2000_kib"
            measured = (e.get("measured") or {}).get(main)
        baseline = (e.get("baseline") or {}).get(base) if base else None
        ov = e.get("overhead")
        sp = e.get("spread")
        value = f"{_n(sp['median'])} ({_n(sp['min'])}..{_n(sp['max'])})" if sp else "n/a"
        rows.append(
            f"| `{key}` | {_spread(measured, unit)} | {_spread(baseline, unit)} |"
            f" {_n(ov['median']) + ' ' + unit if ov else '-'} | {value} {e.get('unit', '')} |"
            f" {e.get('target', '')} | **{e.get('verdict', 'not measured')}** |"
        )
    return "\n".join(rows)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    print(table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
