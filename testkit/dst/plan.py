"""What one seed of the deterministic simulation does, drawn up front from the seed: the
exchange's fault rates, the stream's, the store's, and the planned events (signals, outages,
freezes, kills, hand trades, the mark stream down, close requests) with their times.

Who calls: :class:`testkit.dst.world.Simulation`, once per seed. Pure: a seed gives the same
plan on every machine (its own ``random.Random``; nothing else is read).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from actors.model import Side
from testkit.dst.exchange import Faults

__all__ = ["PLANNED", "SYMBOLS", "Plan", "make_plan"]

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
#: The kinds of planned events (the faults and the traffic of the faulty part).
PLANNED = ("signal", "outage", "freeze", "kill", "manual", "mark_down", "close", "quiet")


@dataclass
class Plan:
    """What a seed does, drawn up front from the seed: the fault rates and the external
    events (signals, price drift, outages, freezes, kills, manual trades) with their times."""

    faults: Faults
    events: list[tuple[float, str, Any]]
    fault_s: float
    tail_s: float
    stream_drop: float
    stream_dup: float
    stream_delay: float
    crash_rate: float


def make_plan(seed: int, fault_s: float, tail_s: float) -> Plan:
    rng = random.Random(f"plan-{seed}")
    p = rng.random

    def rate(hi: float) -> float:
        return round(rng.choice((0.0, hi * p())), 3)

    faults = Faults(
        on=True,
        timeout_after_accept=rate(0.15),
        unavailable_after_place=rate(0.1),
        lost=rate(0.1),
        rate_limited=rate(0.2),
        partial=rate(0.5),
        stop_reject_place=rate(0.2),
        stop_lost=rate(0.9),
        stop_reject_trigger=rate(0.3),
        margin=rate(0.2),
        order_list_lag_s=rng.choice((0.0, 0.0, 1.0, 3.0)),
        fetch_fails=rate(0.2),
    )
    events: list[tuple[float, str, Any]] = []
    t = 0.0
    n = 0
    while True:
        t += rng.expovariate(1 / 6.0)
        if t >= fault_s:
            break
        n += 1
        sym = rng.choice(SYMBOLS)
        side = rng.choice((Side.LONG, Side.SHORT))
        hostile = rng.random() < 0.1
        events.append((t, "signal", (f"sig{n}", sym, side, hostile, rng.random() < 0.3)))
    for kind, mean, has in (
        ("outage", 40.0, 0.5),
        ("freeze", 50.0, 0.4),
        ("kill", 45.0, 0.6),
        ("manual", 40.0, 0.4),
        ("mark_down", 60.0, 0.3),
        ("close", 15.0, 0.8),
    ):
        if rng.random() >= has:
            continue
        t = rng.uniform(0, mean)
        while t < fault_s:
            if kind == "close":
                arg: Any = rng.choice(SYMBOLS)
            elif kind == "manual":
                arg = (rng.choice(SYMBOLS), rng.random() < 0.6, rng.choice(tuple(Side)))
            else:
                arg = round(rng.uniform(1.0, 12.0 if kind != "freeze" else 20.0), 3)
            events.append((round(t, 6), kind, arg))
            t += rng.expovariate(1 / mean)
    events.sort(key=lambda e: (e[0], e[1]))
    return Plan(
        faults,
        events,
        fault_s,
        tail_s,
        stream_drop=rate(0.2),
        stream_dup=rate(0.2),
        stream_delay=rng.choice((0.0, 0.5, 2.0)),
        crash_rate=rate(0.05),
    )
