"""A one-thread timer queue for delayed work (remaining partial fills, delayed events).

``call_later`` may be called from any thread (work queued before ``start`` waits for
it); callbacks run on the scheduler's own thread, in due-time order, and their
exceptions are logged and swallowed. ``stop()`` drops what is still pending and joins
the thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Scheduler:
    """Runs callables after a delay on one background thread."""

    def __init__(self, name: str = "sim-scheduler") -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._busy = False
        self._started = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread (once)."""
        with self._cond:
            if self._stopped or self._started:
                return
            self._started = True
            self._thread.start()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in ``delay_s`` seconds (ignored after ``stop``)."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), next(self._seq), fn))
            self._cond.notify()

    def idle(self) -> bool:
        """True when nothing is pending or running."""
        with self._cond:
            return not self._heap and not self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or running (or ``timeout``)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and not self._busy, timeout)

    def clear(self) -> None:
        """Drop pending callables (a running one finishes)."""
        with self._cond:
            self._heap.clear()
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Drop pending work and join the thread. Idempotent."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
                self._busy = True
            try:
                fn()
            except Exception:
                log.exception("scheduled callable failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
