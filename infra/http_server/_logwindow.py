"""At most one log line per kind per window: :class:`LogWindows`.

Used by :class:`infra.http_server.BoundedHttpServer` for the client-misbehaviour lines (loop
thread) and the failed-answer lines (worker threads), so a flood of rude clients or a
handler failing on every request costs one line per kind per 10 s. Thread-safe; never raises.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["LogWindows"]


class LogWindows:
    """One window per kind: the first line of a window passes, the others are counted."""

    def __init__(
        self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # kind -> [window start, held back]
        self._lock = threading.Lock()

    def admit(self, kind: str) -> int | None:
        """``None`` when a line of ``kind`` already passed within ``interval_s`` (this one
        is held back and counted); else the number held back since the last one that passed,
        and a new window starts now."""
        now = self._clock()
        with self._lock:
            w = self._windows.setdefault(kind, [-1e9, 0.0])
            if now - w[0] < self.interval_s:
                w[1] += 1
                return None
            held, w[0], w[1] = int(w[1]), now, 0.0
        return held
