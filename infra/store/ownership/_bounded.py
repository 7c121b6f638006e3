"""One database connection of its own, every call on it bounded on the client side and
serialised (the lease store's; the store's pool is :mod:`infra.store.connections`).

Called on any thread (calls wait for each other); see :class:`BoundedConnection` for what a
call raises.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import psycopg.errors

from actors.ports import StoreError, StoreUnavailable
from infra.store.connections import KEEPALIVES, Conn
from infra.store.deadline import Watchdog, WatchdogClosed

__all__ = ["BoundedConnection", "Conn"]

T = TypeVar("T")


class BoundedConnection:
    """A connection (autocommit, named ``application_name``) opened on first use and again
    after a failure; each :meth:`call` is bounded by ``timeout`` seconds, connecting
    included (:mod:`infra.store.deadline`). A call raises
    :class:`~actors.ports.StoreUnavailable` when the database does not answer in time, the
    connection broke or the row it needs is locked (the connection is then dropped, except
    for a lock), and :class:`~actors.ports.StoreError` for anything else the database
    refuses. ``name`` names the watchdog thread; ``closed_what`` the owner in the message
    after :meth:`close`. The session's ``statement_timeout`` is ``timeout``, its
    ``lock_timeout`` half of it.
    """

    def __init__(
        self, dsn: str, *, application_name: str, timeout: float, name: str, closed_what: str
    ) -> None:
        self.dsn = dsn
        self.application_name = application_name
        self.timeout = timeout
        self._closed_what = closed_what
        self._deadlines = Watchdog(name, persistent=False)
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._closed = False

    def close(self) -> None:
        """Close the connection and the watchdog. Idempotent; later calls raise
        :class:`StoreUnavailable`."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._deadlines.close()

    def call(self, what: str, fn: Callable[[Conn], T]) -> T:
        """``fn`` on the connection (opened now if needed), the whole call bounded by
        ``timeout``; errors mapped as the class docstring says."""
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"{what}: {self._closed_what} is closed")
            until = time.monotonic() + self.timeout
            try:
                conn = self._connection(until)
                with self._deadlines.watch(conn, until) as w:
                    try:
                        out = fn(conn)
                        if w.fired:  # answered in the same instant: its socket is shut down
                            self._drop()
                        return out
                    except psycopg.Error as exc:
                        if w.fired or conn.broken or conn.closed:
                            self._drop()
                            raise StoreUnavailable(
                                f"{what}: no answer from the database within "
                                f"{self.timeout:.2f}s ({exc})"
                                if w.fired
                                else f"{what}: connection lost: {exc}"
                            ) from exc
                        raise
            except StoreError:
                raise
            except WatchdogClosed as exc:
                raise StoreUnavailable(f"{what}: {self._closed_what} is closed") from exc
            except OSError as exc:
                self._drop()
                raise StoreUnavailable(f"{what}: cannot watch the connection: {exc}") from exc
            except psycopg.errors.LockNotAvailable as exc:
                raise StoreUnavailable(f"{what}: the lease row is locked (busy): {exc}") from exc
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop()
                raise StoreUnavailable(f"{what}: database unavailable: {exc}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def _connection(self, until: float) -> Conn:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        left = max(1, int(until - time.monotonic() + 0.999))
        conn = psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(2, left),
            application_name=self.application_name,
            **KEEPALIVES,
        )
        try:
            with self._deadlines.watch(conn, until):
                ms = int(self.timeout * 1000)
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false), "
                    "set_config('lock_timeout', %s, false), "
                    "set_config('idle_in_transaction_session_timeout', %s, false)",
                    (f"{ms}ms", f"{max(100, ms // 2)}ms", f"{max(1000, ms)}ms"),
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
