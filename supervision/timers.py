"""Keyed timers for the actors, and a clock tests can drive.

:class:`TimerService` keeps one heap of due times. A newer timer with the same
``(key, name)`` supersedes the queued older one (Akka's keyed timers). Due timers become
:class:`~actors.messages.TimerFired` messages handed to ``deliver`` (the router).

Bounded for weeks of running: the table of timers (``_live``) holds only the timers that will
still fire; a timer that fires, is cancelled or is superseded leaves it at once, and
:meth:`TimerService.cancel_key` drops every timer of a key (its actor passivated). The heap
keeps superseded and cancelled entries until they come due (a lazy delete, skipped when
popped), but is rebuilt from the live timers whenever the dead entries outnumber the live ones,
so it never holds more than about twice the live timers (plus a small constant). Timer names
carry client order ids, so a table that kept every name ever used would grow with every order.

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

from actors.messages import Message, TimerFired, TimerId
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
    """Keyed one-shot timers. ``start``/``cancel``/``cancel_key`` are thread-safe and never block
    (actor threads call them); ``fire_due`` runs on the timer thread, or on the test's thread
    with a :class:`ManualClock`, and calls ``deliver`` outside the lock."""

    #: Dead heap entries tolerated beyond the live ones before the heap is rebuilt.
    COMPACT_SLACK = 64

    def __init__(self, clock: Callable[[], float], deliver: Callable[[Message], object]) -> None:
        self._now = clock
        self._deliver = deliver
        self._heap: list[tuple[float, int, Key, TimerId]] = []
        #: The timers that will still fire: key -> name -> sequence number of its heap entry.
        self._live: dict[Key, dict[TimerId, int]] = {}
        self._count = 0  # timers in ``_live``
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self, key: Key, name: TimerId, delay: float) -> None:
        """Fire ``TimerFired(key, name)`` after ``delay`` s, superseding a pending one."""
        due = self._now() + max(0.0, delay)
        with self._cond:
            seq = next(self._seq)
            names = self._live.setdefault(key, {})
            if name not in names:
                self._count += 1
            names[name] = seq
            heapq.heappush(self._heap, (due, seq, key, name))
            self._maybe_compact()
            self._cond.notify()

    def cancel(self, key: Key, name: TimerId) -> None:
        """Forget the pending timer ``(key, name)``, if any (its heap entry is skipped)."""
        with self._cond:
            names = self._live.get(key)
            if names is not None and names.pop(name, None) is not None:
                self._count -= 1
                if not names:
                    del self._live[key]
                self._maybe_compact()

    def cancel_key(self, key: Key) -> int:
        """Forget every pending timer of ``key`` (the supervisor calls this when the key's actor
        passivates: an idle actor has nothing a timer could be for). Returns how many."""
        with self._cond:
            names = self._live.pop(key, None)
            if not names:
                return 0
            self._count -= len(names)
            self._maybe_compact()
            return len(names)

    def pending(self, name: TimerId | None = None) -> int:
        """Timers that will still fire (not superseded or cancelled), only those called
        ``name`` if given."""
        with self._cond:
            if name is None:
                return self._count
            return sum(1 for names in self._live.values() if name in names)

    def sizes(self) -> dict[str, int]:
        """Sizes of the per-key structures: ``timers`` (live timers), ``timer_keys`` (keys
        with one) and ``timer_heap`` (heap entries, dead ones included)."""
        with self._cond:
            return {
                "timers": self._count,
                "timer_keys": len(self._live),
                "timer_heap": len(self._heap),
            }

    def _maybe_compact(self) -> None:
        """Rebuild the heap from the live timers when dead entries outnumber them (lock held).
        Amortised O(1) per operation: a rebuild costs O(live) and follows at least
        ``live + COMPACT_SLACK`` operations that each added at most one dead entry."""
        if len(self._heap) <= 2 * self._count + self.COMPACT_SLACK:
            return
        live = {seq for names in self._live.values() for seq in names.values()}
        self._heap = [e for e in self._heap if e[1] in live]
        heapq.heapify(self._heap)

    def fire_due(self) -> int:
        """Deliver every timer due now. Returns how many fired."""
        fired: list[TimerFired] = []
        now = self._now()
        with self._cond:
            while self._heap and self._heap[0][0] <= now:
                _, seq, key, name = heapq.heappop(self._heap)
                names = self._live.get(key)
                if names is not None and names.get(name) == seq:
                    del names[name]
                    self._count -= 1
                    if not names:
                        del self._live[key]
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
