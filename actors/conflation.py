"""Tick conflation: a per-symbol slot that keeps only the newest mark price (plus extremes).

Producers (a feed thread) call :meth:`TickSlot.put`; it returns True when the actor must be
woken with one :class:`~actors.messages.TicksReady` (the slot was empty, or held a tick parked
inside the actor's band, and the prices now leave the band; see :class:`TickSlot`). While the actor
is behind, newer ticks replace the older unhandled one, keeping the lowest and highest
price seen so the stop guard never misses a cross. The actor calls :meth:`TickSlot.take` when
it handles ``TicksReady``. So a burst on one symbol cannot grow its mailbox, and 1,000
symbols do not wake 1,000 threads per tick. Order updates never go through a slot.

The slot's lock guards three fields of one symbol between one producer and one consumer: it
is part of the mailbox, like the lock inside pykka's inbox queue, not shared logic state.

Tick latency. A tick taken after a wake-up carries, as ``received_at``, the arrival of the
frame that woke the actor (the first price since the last take that left the band), not that
of the newest frame merged into it, nor that of a tick parked before it: that is when a price
that may decide something reached the process, and what ``ps_tick_decision_seconds`` measures
from (the price's age for freshness checks is so never understated). :attr:`TickSlot.woken`
tells the consumer whether its last take was such a wake-up; a parked tick (taken before
another message, or released by the actor's own narrower band) was not one.
"""

from __future__ import annotations

import threading

from actors.messages import MarkPriceTick, TicksReady

__all__ = ["TickSlot", "TicksReady"]


class TickSlot:
    """One symbol's conflation slot, with the actor's *band*: the mark prices that cannot
    change anything durable for its position (:func:`actors.transition.tick_band`).

    A tick whose extremes (merged with any waiting tick) stay strictly inside the band is
    *parked*: kept in the slot, newest price and extremes merged, without waking the actor.
    The actor reads it before its next message (:meth:`take_parked`), so its last price stays
    fresh for signal checks. A tick that leaves the band wakes the actor. With no band set (a
    new actor, or one that has not seen a tick yet) every tick wakes it.

    Producer: the feed thread (:meth:`put`). Consumer: the actor thread (:meth:`take`,
    :meth:`take_parked`, :meth:`set_band`). Band and park decision change under the slot's
    lock, so a band tightened by the actor catches a tick parked under the older band.
    """

    __slots__ = (
        "_band",
        "_high",
        "_lock",
        "_low",
        "_parked",
        "_tick",
        "_woke_at",
        "conflated",
        "parked",
        "woken",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tick: MarkPriceTick | None = None
        self._low = 0.0
        self._high = 0.0
        self._band: tuple[float, float] | None = None
        self._parked = False
        #: Arrival of the frame whose tick woke the consumer (``put`` returned True), until
        #: the next take; ``None`` while nothing woke it.
        self._woke_at: float | None = None
        self.conflated = 0
        self.parked = 0
        #: Consumer side: whether the tick of the last take had woken it (see module doc).
        self.woken = False

    def _inside(self) -> bool:
        band = self._band
        return band is not None and band[0] < self._low and self._high < band[1]

    def put(self, tick: MarkPriceTick) -> bool:
        """Store ``tick``; True when the consumer must be woken (one ``TicksReady``): the slot
        was empty, or held a parked tick, and the prices now leave the band."""
        with self._lock:
            old = self._tick
            if old is None:
                self._tick = tick
                self._low = tick.lowest
                self._high = tick.highest
            else:
                self.conflated += 1
                self._low = min(self._low, tick.lowest)
                self._high = max(self._high, tick.highest)
                if tick.event_time >= old.event_time:
                    self._tick = tick
                if not self._parked:
                    return False  # a wake-up is in flight already
            if self._inside():
                self._parked = True
                self.parked += 1
                return False
            self._parked = False
            self._woke_at = tick.received_at  # this frame's price leaves the band
            return True

    def set_band(self, band: tuple[float, float] | None) -> bool:
        """The actor's new band (``None``: wake on every tick). True when a parked tick is
        now outside it: the caller (the actor) must take and handle it."""
        with self._lock:
            self._band = band
            if self._tick is not None and self._parked and not self._inside():
                self._parked = False
                return True
            return False

    def take(self) -> MarkPriceTick | None:
        """The newest tick with the extremes of everything it replaced; empties the slot.
        After a wake-up its ``received_at`` is the waking frame's arrival (and ``woken`` is
        True)."""
        with self._lock:
            return self._take_locked()

    def take_parked(self) -> MarkPriceTick | None:
        """The parked tick, if one is parked (a tick with a wake-up in flight stays)."""
        with self._lock:
            if not self._parked:
                return None
            return self._take_locked()

    def _take_locked(self) -> MarkPriceTick | None:
        t = self._tick
        woke_at = self._woke_at
        self.woken = t is not None and woke_at is not None
        if t is None:
            return None
        self._tick = None
        self._parked = False
        self._woke_at = None
        received_at = t.received_at if woke_at is None else woke_at
        low, high = self._low, self._high
        if low == t.price and high == t.price and received_at == t.received_at:
            return t
        return MarkPriceTick(t.key, t.price, t.event_time, low, high, received_at)
