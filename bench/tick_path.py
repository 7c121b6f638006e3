"""1: tick path latency at 10,000 ticks/s over 500 symbols vs bare pykka tell → on_receive.

The measured path starts at a Binance ``markPriceUpdate`` JSON frame (bytes, as the WebSocket
delivers it): parsed and validated (``infra.feeds.parse_mark_prices``), routed through the
supervisor's conflation slot, handled by the symbol's actor, stop guard evaluated. The stamp is
taken before parsing; the latency is recorded when the actor has decided.
"""

from __future__ import annotations

import time
from typing import Any

import pykka

from actors.messages import MarkPriceTick
from actors.model import Key
from bench.common import QUICK, BareActor, paced, pct, stop_refs, wait_until
from bench.world import PARKED_LAT, install_stamped_slots, key, make_world, open_positions
from infra.feeds import parse_mark_prices

RATE = 10_000
SYMBOLS = 500


def run() -> dict[str, Any]:
    n = RATE * (1 if QUICK else 5)
    # baseline: bare pykka at the same rate over the same number of actors
    lat: list[float] = []
    count = [0]
    refs = [BareActor.start(lat, count) for _ in range(SYMBOLS)]
    paced(n, RATE, lambda i: refs[i % SYMBOLS].tell(time.perf_counter()))
    wait_until(lambda: count[0] >= n, 30)
    stop_refs(refs)
    base50, base99 = pct(lat, 50), pct(lat, 99)

    out: dict[str, Any] = {"tick_symbols": SYMBOLS}
    for band, tag in ((True, "tick"), (False, "tick_actor")):
        r = _path(n, band)
        out.update({f"{tag}_{k}": v for k, v in r.items()})
        out[f"{tag}_p99_ratio"] = r["p99_us"] / (base99 * 1e6)
        out[f"{tag}_p50_ratio"] = r["p50_us"] / (base50 * 1e6)
    out["tick_bare_p50_us"] = base50 * 1e6
    out["tick_bare_p99_us"] = base99 * 1e6
    return out


def _path(n: int, band: bool) -> dict[str, Any]:
    """Frames at RATE over SYMBOLS open positions; ``band`` False: every tick to the actor."""
    w = make_world(SYMBOLS)
    try:
        active = open_positions(w, SYMBOLS)
        keys = [key(i) for i in range(SYMBOLS)]
        install_stamped_slots(w, SYMBOLS, band=band)
        for k in keys:  # one tick each first: every actor has learnt its slot (steady state)
            w.sup.tell_tick(MarkPriceTick(k, 100.0, w.clock.now() - 1.0))
        w.settle(timeout=30)
        rec = w.metrics
        rec.tick_lat.clear()  # type: ignore[attr-defined]
        PARKED_LAT.clear()
        by_symbol: dict[str, Key] = {k.symbol: k for k in keys}
        t_ms = int(w.clock.now() * 1000)
        # prices stay above the stop (90): the actor evaluates the stop guard, no trigger
        frames = [
            (
                f'{{"e":"markPriceUpdate","E":{t_ms + i},"s":"{keys[i % SYMBOLS].symbol}",'
                f'"p":"{100.0 + (i % 7) * 0.01:.2f}","i":"100.0","P":"100.0","r":"0.0001",'
                f'"T":{t_ms + 3_600_000}}}'
            ).encode()
            for i in range(min(n, 50_000))
        ]

        def send(i: int) -> None:
            stamp = time.perf_counter()
            prices, _ = parse_mark_prices(frames[i % len(frames)])
            for mp in prices:
                w.sup.tell_tick(
                    MarkPriceTick(by_symbol[mp.symbol], mp.price, mp.event_time, received_at=stamp)
                )

        elapsed = paced(n, RATE, send)
        w.settle(timeout=30)
        actor_lat = list(rec.tick_lat)  # type: ignore[attr-defined]
        parked = list(PARKED_LAT)
    finally:
        w.close()
    lat = actor_lat + parked
    return {
        "rate_per_s": n / elapsed,
        "active_positions": active,
        "samples": len(lat),
        "via_actor": len(actor_lat),
        "parked": len(parked),
        "conflated": n - len(lat),
        "p50_us": pct(lat, 50) * 1e6,
        "p99_us": pct(lat, 99) * 1e6,
    }


if __name__ == "__main__":
    print(run())
    pykka.ActorRegistry.stop_all()
