"""Keyed timers for the actors, and a clock tests can drive.

:class:`TimerService` keeps one heap of due times. A newer timer with the same
``(key, name)`` supersedes the queued older one (Akka's keyed timers): the older entry stays in
the heap but carries a stale generation and is skipped. Due timers become
:class:`~actors.messages.TimerFired` messages handed to ``deliver`` (the router).

Two ways to run it:

* ``start()`` runs a thread that sleeps until the next due time (real clock);
* with a :class:`ManualClock`, tests call ``clock.advance(dt)``, which fires every timer that
  became due, on the calling thread, in due order (trio's ``MockClock`` idea).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable

from actors.messages import Message, TimerFired
from actors.model import Key

__all__ = ["ManualClock", "TimerService"]

log = logging.getLogger(__name__)


class ManualClock:
    """A clock that moves only when told to. Thread-safe."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], object]] = []

    def now(self) -> float:
        return self._now

    def on_advance(self, listener: Callable[[], object]) -> None:
        self._listeners.append(listener)

    def advance(self, seconds: float) -> None:
        """Move time forward, then fire whatever became due (on this thread)."""
        with self._lock:
            self._now += seconds
        for listener in list(self._listeners):
            listener()


class TimerService:
    """Keyed one-shot timers. ``start``/``cancel`` are thread-safe and never block."""

    def __init__(self, clock: Callable[[], float], deliver: Callable[[Message], object]) -> None:
        self._now = clock
        self._deliver = deliver
        self._heap: list[tuple[float, int, Key, str, int]] = []
        self._gen: dict[tuple[Key, str], int] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self, key: Key, name: str, delay: float) -> None:
        due = self._now() + max(0.0, delay)
        with self._cond:
            gen = self._gen.get((key, name), 0) + 1
            self._gen[(key, name)] = gen
            heapq.heappush(self._heap, (due, next(self._seq), key, name, gen))
            self._cond.notify()

    def cancel(self, key: Key, name: str) -> None:
        with self._cond:
            if (key, name) in self._gen:
                self._gen[(key, name)] += 1

    def pending(self, name: str | None = None) -> int:
        """Timers that will still fire (not superseded or cancelled), only those called
        ``name`` if given."""
        with self._cond:
            return sum(
                1
                for _, _, k, n, g in self._heap
                if self._gen.get((k, n)) == g and (name is None or n == name)
            )

    def fire_due(self) -> int:
        """Deliver every timer due now. Returns how many fired."""
        fired: list[TimerFired] = []
        now = self._now()
        with self._cond:
            while self._heap and self._heap[0][0] <= now:
                _, _, key, name, gen = heapq.heappop(self._heap)
                if self._gen.get((key, name)) == gen:
                    del self._gen[(key, name)]
                    fired.append(TimerFired(key, name))
        for msg in fired:
            try:
                self._deliver(msg)
            except Exception:
                log.exception("timer %s for %s could not be delivered", msg.name, msg.key)
        return len(fired)

    def run_in_thread(self) -> None:
        """Start the real-time thread (daemon: it holds no state worth a clean exit)."""
        self._thread = threading.Thread(target=self._loop, name="timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                wait = 1.0
                if self._heap:
                    wait = max(0.0, min(wait, self._heap[0][0] - self._now()))
                if wait > 0:
                    self._cond.wait(wait)
                if self._stopped:
                    return
            self.fire_due()
