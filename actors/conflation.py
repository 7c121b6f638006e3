"""Tick conflation: a per-symbol slot that keeps only the newest mark price (plus extremes).

Producers (a feed thread) call :meth:`TickSlot.put`; it returns True when the slot was empty,
i.e. the actor must be woken with one :class:`~actors.messages.TicksReady`. While the actor
is behind, newer ticks replace the older unhandled one, keeping the lowest and highest
price seen so the stop guard never misses a cross. The actor calls :meth:`TickSlot.take` when
it handles ``TicksReady``. So a burst on one symbol cannot grow its mailbox, and 1,000
symbols do not wake 1,000 threads per tick. Order updates never go through a slot.

The slot's lock guards three fields of one symbol between one producer and one consumer: it
is part of the mailbox, like the lock inside pykka's inbox queue, not shared logic state.
"""

from __future__ import annotations

import threading

from actors.messages import MarkPriceTick, TicksReady

__all__ = ["TickSlot", "TicksReady"]


class TickSlot:
    __slots__ = ("_high", "_lock", "_low", "_tick", "conflated")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tick: MarkPriceTick | None = None
        self._low = 0.0
        self._high = 0.0
        self.conflated = 0

    def put(self, tick: MarkPriceTick) -> bool:
        """Store ``tick``; True when the consumer must be woken (the slot was empty)."""
        with self._lock:
            old = self._tick
            if old is None:
                self._tick = tick
                self._low = tick.lowest
                self._high = tick.highest
                return True
            self.conflated += 1
            self._low = min(self._low, tick.lowest)
            self._high = max(self._high, tick.highest)
            if tick.event_time >= old.event_time:
                self._tick = tick
            return False

    def take(self) -> MarkPriceTick | None:
        """The newest tick with the extremes of everything it replaced; empties the slot."""
        with self._lock:
            t = self._tick
            if t is None:
                return None
            self._tick = None
            low, high = self._low, self._high
        if low == t.price and high == t.price:
            return t
        return MarkPriceTick(t.key, t.price, t.event_time, low, high, t.received_at)
