"""The recovery's start window (:class:`StartWindow`): how many actors load their positions
at the same time when a recovery starts them.

A thousand loads at once exhausted the store's pool (loads and commits timed out, recovery
failed). At most :data:`RECOVERY_WAVE` actors are starting at a time: a sliding window, the
next actor spawned as soon as the oldest starting one has loaded (or after
:data:`RECOVERY_WAVE_WAIT_S`); waves that waited for their slowest member made a thousand
positions take 63 waits.

Called by :meth:`Supervisor.recover <supervision.supervisor.Supervisor.recover>` on the
thread that recovers (the main thread, or the lease keeper's); blocks that thread, never an
actor's. A failed or slow start is the actor's to handle, not the recovery's: nothing here
raises.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

import pykka

from actors.host import Barrier

__all__ = ["RECOVERY_WAVE", "RECOVERY_WAVE_WAIT_S", "StartWindow"]

RECOVERY_WAVE = 16
RECOVERY_WAVE_WAIT_S = 10.0


def _started(ref: pykka.ActorRef[Any]) -> pykka.Future[Any] | None:
    """A future answered once ``ref`` has run its start (loaded from the store) and handled
    what came before; ``None`` if it is dead already."""
    try:
        return ref.ask(Barrier(), block=False)
    except pykka.ActorDeadError:
        return None


def _wait_started(future: pykka.Future[Any] | None) -> None:
    """Wait (at most ``RECOVERY_WAVE_WAIT_S``) for a :func:`_started` future."""
    if future is not None:
        with contextlib.suppress(Exception):
            future.get(timeout=RECOVERY_WAVE_WAIT_S)


class StartWindow:
    """The actors a recovery started and that may still be loading, oldest first."""

    def __init__(self, size: int = RECOVERY_WAVE) -> None:
        self._size = size
        self._starting: deque[pykka.Future[Any] | None] = deque()

    def started(self, ref: pykka.ActorRef[Any]) -> None:
        """``ref`` was just spawned: it counts as starting until it has loaded."""
        self._starting.append(_started(ref))

    def make_room(self) -> None:
        """Wait until fewer than the window's size are starting (the oldest first)."""
        while len(self._starting) >= self._size:
            _wait_started(self._starting.popleft())

    def wait_all(self) -> None:
        """Wait until every actor started has loaded (each at most RECOVERY_WAVE_WAIT_S)."""
        while self._starting:
            _wait_started(self._starting.popleft())
