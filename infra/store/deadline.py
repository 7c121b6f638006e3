"""Client-side deadlines on database calls, for a server that stops answering.

A PostgreSQL whose processes are stopped (SIGSTOP, a paused VM, a swap storm) or a network
path that silently drops packets leaves a client blocked in a read for as long as that lasts:
``statement_timeout`` is enforced by the server, which is not running, and TCP keepalives do
not apply to a Unix socket (nor to a connection with data in flight). :class:`Watchdog`
bounds these waits from the client side.

A call registers its connection with a deadline (:meth:`Watchdog.watch`). One watchdog
thread sleeps until the earliest deadline; a call still registered then is *abandoned*: its
socket is shut down (``shutdown(SHUT_RDWR)`` through a duplicate of the connection's
descriptor, taken at registration so that a descriptor number libpq closed and the system
reused is never touched). The calling thread, blocked in libpq, wakes at once with
:class:`psycopg.OperationalError` and the connection is broken. The server reads the end of
the stream when it runs again: whatever it had already received is still executed, then its
session ends and a transaction that had not received its ``COMMIT`` is rolled back (checked
on the embedded server, ``tests/store/test_hang.py``). The watchdog never calls psycopg on a
connection another thread uses (``Connection.close()`` frees the libpq object under the
other thread's feet).

Thread-safe. The watchdog thread starts with the first :meth:`Watchdog.watch` and ends with
:meth:`Watchdog.close` (or, when ``persistent=False``, as soon as no call is watched).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

__all__ = ["Watch", "Watchdog", "WatchdogClosed"]

log = logging.getLogger(__name__)


class WatchdogClosed(RuntimeError):
    """:meth:`Watchdog.watch` after :meth:`Watchdog.close`: no call may start unbounded."""


class Watch:
    """One registered call: its deadline (``time.monotonic()`` seconds), whether the
    watchdog abandoned it, and a note the caller may set to say what an abandon means at
    this point of the call (e.g. that a ``COMMIT`` was already sent)."""

    __slots__ = ("_fd", "fired", "note", "until")

    def __init__(self, until: float, fd: int) -> None:
        self.until = until
        self.fired = False
        self.note = ""
        self._fd = fd

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past)."""
        return self.until - time.monotonic()


class Watchdog:
    """Abandons connections whose call outlives its deadline. See the module docstring.

    ``name`` names the thread (``db-deadline:<name>``). ``persistent``: keep the thread
    between calls (a store: many calls a second) or end it whenever nothing is watched (an
    account lock: one check a second, and no thread left by an object nobody closes).
    """

    def __init__(self, name: str, *, persistent: bool = True) -> None:
        self._name = name
        self._persistent = persistent
        self._cond = threading.Condition(threading.Lock())
        self._active: set[Watch] = set()
        self._wake_at = float("inf")  # when the thread wakes next, as it last decided
        self._thread: threading.Thread | None = None
        self._closed = False
        self.abandoned = 0  # calls abandoned so far (for tests and logs)

    @contextmanager
    def watch(self, conn: psycopg.Connection[Any], until: float) -> Iterator[Watch]:
        """Bound what the caller does with ``conn`` inside the block by ``until``
        (``time.monotonic()``). Past it the connection's socket is shut down and the call
        fails with ``OperationalError``; ``Watch.fired`` then says so (it may also be set
        when the call completed in the same instant: its result stands, the connection is
        dead either way). Raises :class:`WatchdogClosed` after :meth:`close`; an
        ``OSError`` or ``psycopg.Error`` when ``conn`` has no descriptor (it is closed)."""
        w = Watch(until, os.dup(conn.fileno()))
        try:
            with self._cond:
                if self._closed:
                    raise WatchdogClosed(f"{self._name}: closed")
                self._active.add(w)
                if self._thread is None:
                    self._wake_at = float("inf")
                    self._thread = threading.Thread(
                        target=self._run, name=f"db-deadline:{self._name}", daemon=True
                    )
                    self._thread.start()
                elif until < self._wake_at:
                    self._cond.notify()
            yield w
        finally:
            with self._cond:
                self._active.discard(w)
                if not self._active and not self._persistent:
                    self._cond.notify()  # nothing to watch: let the thread end now
            os.close(w._fd)

    def close(self, timeout: float = 5.0) -> None:
        """Abandon the calls still registered and stop the thread. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            for w in list(self._active):
                self._fire(w)
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the watchdog thread

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._active and not self._persistent:
                    self._thread = None
                    return
                now = time.monotonic()
                nxt = float("inf")
                for w in self._active:
                    if w.fired:
                        continue
                    if w.until <= now:
                        self._fire(w)
                    elif w.until < nxt:
                        nxt = w.until
                self._wake_at = nxt
                self._cond.wait(None if nxt == float("inf") else nxt - now)

    def _fire(self, w: Watch) -> None:
        """Shut the socket down (called with the lock held, so ``w``'s descriptor is open)."""
        w.fired = True
        self.abandoned += 1
        try:
            sock = socket.socket(fileno=w._fd)
        except OSError as exc:
            log.warning("%s: cannot abandon a connection past its deadline: %s", self._name, exc)
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not connected any more: the call fails by itself
        finally:
            sock.detach()  # the descriptor is closed by watch(), not here
