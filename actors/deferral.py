"""Signals that wait: a signal the transition defers (no fresh mark price yet, an earlier
position's orders not confirmed gone) is offered to it again every :data:`DEFER_POLL_S` s
until ``Policy.mark_wait_s`` has passed; at most :data:`MAX_DEFERRED` wait per symbol.

Who uses it: :class:`~actors.position_actor.PositionActor`, on its thread only (no lock).
The poll is the actor's :data:`DEFER_TIMER`. Nothing here raises but the timer service.
"""

from __future__ import annotations

from collections import deque

from actors.messages import OpenSignal, TimerId, TimerKind
from actors.model import Key
from actors.ports import Timers

__all__ = ["DEFER_POLL_S", "DEFER_TIMER", "MAX_DEFERRED", "DeferredSignals"]

#: The actor's timer that offers waiting signals again.
DEFER_TIMER = TimerId(TimerKind.SHELL_DEFER)
#: How often signals that wait for a fresh mark price are offered again (a failed fetch is
#: retried at this pace; the wait itself is bounded by ``Policy.mark_wait_s``).
DEFER_POLL_S = 0.5
#: Signals waiting for a symbol at most; more are refused ``busy`` (transient).
MAX_DEFERRED = 64


class DeferredSignals:
    """The signals of one actor that wait, each with when it first arrived, in order."""

    __slots__ = ("_key", "_timers", "_waiting")

    def __init__(self, key: Key, timers: Timers) -> None:
        self._key = key
        self._timers = timers
        self._waiting: deque[tuple[OpenSignal, float]] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, sig: OpenSignal, since: float) -> bool:
        """Let ``sig`` (first arrived at ``since``) wait; False when too many wait already
        (the caller refuses it ``busy``). The first to wait arms the poll."""
        if len(self._waiting) >= MAX_DEFERRED:
            return False
        if not self._waiting:
            self._timers.start(self._key, DEFER_TIMER, DEFER_POLL_S)
        self._waiting.append((sig, since))
        return True

    def take(self) -> list[tuple[OpenSignal, float]]:
        """All that wait, in arrival order, to offer again (they wait no more)."""
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting

    def keep(self, rest: list[tuple[OpenSignal, float]]) -> None:
        """Put back, at the end, signals taken but not offered (the actor crashed)."""
        self._waiting.extend(rest)

    def rearm(self) -> None:
        """Poll again while any waits."""
        if self._waiting:
            self._timers.start(self._key, DEFER_TIMER, DEFER_POLL_S)
