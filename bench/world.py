"""A World (tests/fakes) with a recording Metrics and helpers to open positions in bulk."""

from __future__ import annotations

import threading
import time
from typing import Any

from actors.conflation import TickSlot
from actors.messages import MarkPriceTick
from actors.model import Key, Status
from tests.fakes.world import ACCOUNT, CountingMetrics, World, signal

_local = threading.local()


class RecordingMetrics(CountingMetrics):
    """CountingMetrics that also records tick → decision latencies (perf_counter stamps)."""

    def __init__(self) -> None:
        super().__init__()
        self.tick_lat: list[float] = []
        self.ticks_handled = 0

    def handled(self, message_type: str, seconds: float) -> None:
        super().handled(message_type, seconds)
        if message_type in ("TicksReady", "MarkPriceTick"):  # the shell takes the tick
            ra = getattr(_local, "received_at", None)
            if ra is not None:
                self.tick_lat.append(time.perf_counter() - ra)
                _local.received_at = None
            self.ticks_handled += 1


#: Latencies of ticks decided at routing: parked inside their actor's band (perf_counter).
PARKED_LAT: list[float] = []


class StampedSlot(TickSlot):
    """A TickSlot that tells the actor thread the received_at of the tick it took, and records
    the latency of a tick it parks (decided against the actor's band, on the feed thread)."""

    __slots__ = ()

    def put(self, tick: MarkPriceTick) -> bool:
        woke = super().put(tick)
        if not woke and self._parked and tick.received_at:
            PARKED_LAT.append(time.perf_counter() - tick.received_at)
        return woke

    def take(self) -> MarkPriceTick | None:
        t = super().take()
        if t is not None:
            _local.received_at = t.received_at
        return t


class NoBandSlot(StampedSlot):
    """Ignores the actor's band: every tick goes through the actor thread (for comparison)."""

    __slots__ = ()

    def set_band(self, band: tuple[float, float] | None) -> bool:
        return super().set_band(None)


def make_world(n_symbols: int, *, store: Any = None, exchange: Any = None) -> World:
    prices = {sym(i): 100.0 for i in range(n_symbols)}
    w = World(prices=prices, store=store, exchange=exchange)
    rec = RecordingMetrics()
    w.metrics = rec
    w.sup.metrics = rec
    return w


def sym(i: int) -> str:
    return f"S{i:05d}USDT"


def key(i: int) -> Key:
    return Key(ACCOUNT, sym(i))


def open_positions(w: World, n: int, timeout: float = 60.0) -> int:
    """Open one protected position per symbol (signal → entry → fill → stop). Returns how many
    are ACTIVE."""
    for b in range(0, n, 100):  # batches: a pool of a few DB connections, not 1,000 at once
        for i in range(b, min(n, b + 100)):
            w.sup.tell(signal(sym(i), stop=90.0))
        w.settle(timeout=timeout)
    return sum(1 for p in w.store.open_positions() if p.status is Status.ACTIVE)


def install_stamped_slots(w: World, n: int, band: bool = True) -> None:
    PARKED_LAT.clear()
    for i in range(n):
        w.sup._slots[key(i)] = StampedSlot() if band else NoBandSlot()
