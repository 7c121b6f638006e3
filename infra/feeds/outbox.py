"""The send queue of one feed connection: text frames queued from any thread, bounded.

:class:`Outbox` is filled by :meth:`Outbox.offer` from any thread (never blocking; a full
queue refuses the frame and counts it) and emptied by the runner thread of
:class:`~infra.feeds.ws_client.ReconnectingWebSocket` with :meth:`Outbox.write`, between
reads. A frame whose write fails stays first in the queue, for the next connection.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

__all__ = ["Outbox"]


class Outbox:
    """At most ``limit`` text frames waiting to be written (see the module docstring).

    ``frames`` is the queue itself: the runner reads its truthiness on its hot path (cheaper
    than a method); only :meth:`offer` and :meth:`write` change it. ``refused``: frames
    refused because the queue was full.
    """

    __slots__ = ("_lock", "frames", "limit", "refused")

    def __init__(self, limit: int) -> None:
        self.frames: deque[str] = deque()
        self._lock = threading.Lock()
        self.limit = limit
        self.refused = 0

    def offer(self, payload: str) -> bool:
        """Queue ``payload`` (any thread, never blocks); False when the queue is full."""
        with self._lock:
            if len(self.frames) >= self.limit:
                self.refused += 1
                return False
            self.frames.append(payload)
        return True

    def clear(self) -> int:
        """Drop every queued frame (any thread; e.g. requests meant for a connection that
        ended); returns how many were dropped."""
        with self._lock:
            n = len(self.frames)
            self.frames.clear()
        return n

    def write(self, send: Callable[[str], object]) -> None:
        """Write the queued frames in order with ``send`` (the runner thread). When ``send``
        raises, the frame stays first in the queue and the exception propagates."""
        while True:
            with self._lock:
                if not self.frames:
                    return
                payload = self.frames[0]
            send(payload)
            with self._lock:
                self.frames.popleft()
