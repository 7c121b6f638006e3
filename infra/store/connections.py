"""The store's pooled connections: their health, their bounds, and the translation of driver
errors into the port's exceptions.

:class:`Connections` owns the :class:`psycopg_pool.ConnectionPool` and the
:class:`~infra.store.deadline.Watchdog` of one :class:`~infra.store.postgres.PostgresStore`.
Every call of the store runs through :meth:`Connections.run` (or :meth:`Connections.run_watched`)
on the caller's thread (an actor thread, the CLI's main thread, the live view's): it borrows a
healthy-looking connection, bounds the whole call (checkout included) by a deadline, and maps
psycopg's and the pool's errors onto :class:`~actors.ports.StoreUnavailable`,
:class:`StoreRejected` and :class:`~actors.ports.StoreError` (:meth:`Connections.translate`).

Health: the store is *degraded* from a failure that says the server is unreachable (a broken
connection, a dead idle one found in the pool, an abandoned call) until a call succeeds;
while degraded, calls get the short ``outage_timeout`` bound (:meth:`Connections.bound`).

Thread-safe: many actor threads call :meth:`Connections.run` at once; the pool configures new
connections on its own threads (:meth:`Connections.configure`).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from actors.ports import StoreError, StoreUnavailable
from infra.store.deadline import Watch, Watchdog, WatchdogClosed

__all__ = [
    "KEEPALIVES",
    "Conn",
    "Connections",
    "StoreRejected",
    "connection_kwargs",
    "looks_dead",
    "rollback",
]

Conn = psycopg.Connection[TupleRow]
T = TypeVar("T")

KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
"""How a connection notices a dead peer over TCP (ignored by libpq on a Unix socket): on an
idle connection after 5 s and three probes 2 s apart, with unacknowledged data after 10 s,
without waiting for the OS defaults. Every connection of ours (the store's pool, the lease
store's, the account lock's with longer probes) uses them."""


class StoreRejected(StoreError):
    """The database refused a value of the commit (a CHECK constraint, a bad value).

    Nothing was written. Retrying the same commit is refused again: it is a bug or bad input
    upstream, to be crashed on and dead-lettered, not waited out.
    """


def rollback(conn: Conn) -> None:
    """End the open transaction of ``conn`` if any (errors ignored: a connection left in a
    transaction is closed before it returns to the pool)."""
    if conn.closed or conn.broken:
        return
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with suppress(psycopg.Error):
            conn.execute("ROLLBACK")


def looks_dead(conn: Conn) -> bool:
    """True when an idle pooled connection cannot be healthy (closed, broken, or its socket
    has something to read: the server's goodbye after a restart or ``pg_terminate_backend``).
    A local check, no round trip."""
    if conn.closed or conn.broken:
        return True
    try:
        poller = select.poll()  # not select(): it fails on descriptors >= 1024
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        ready = poller.poll(0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(ready)


def connection_kwargs(dsn: str) -> dict[str, Any]:
    """The connection parameters of a pooled connection: autocommit, and the defaults below
    for every one ``dsn`` does not set itself."""
    given = conninfo_to_dict(dsn)
    kwargs: dict[str, Any] = {"autocommit": True}
    defaults: dict[str, Any] = {
        "application_name": "position-supervisor",
        "connect_timeout": 2,  # libpq's minimum; the pool connects on its own threads
        **KEEPALIVES,
    }
    for param, value in defaults.items():
        if param not in given:
            kwargs[param] = value
    return kwargs


class Connections:
    """The pool, the watchdog and the health of one store. See the module docstring.

    ``deadline``: the bound of a call while healthy; ``timeout``: the longest part of it
    spent waiting for a pooled connection; ``outage_timeout``: the bound of a call (and of
    the wait) while degraded; ``reconnect_timeout``: how long the pool retries one failed
    connection attempt; ``statement_timeout``: the server-side limit per statement, in
    seconds. The caller validates the numbers (:class:`~infra.store.postgres.PostgresStore`).
    The pool opens without waiting for a connection.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_min: int,
        pool_max: int,
        deadline: float,
        timeout: float,
        outage_timeout: float,
        reconnect_timeout: float,
        statement_timeout: float,
        name: str,
    ) -> None:
        self.deadline = deadline
        self._timeout = min(timeout, deadline)
        self._outage_timeout = min(outage_timeout, deadline)
        self._degraded = False
        self._statement_timeout_ms = max(1, int(statement_timeout * 1000))
        self._pool_max = pool_max
        self._watchdog = Watchdog(name)
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            dsn,
            min_size=pool_min,
            max_size=pool_max,
            kwargs=connection_kwargs(dsn),
            configure=self.configure,
            timeout=self._timeout,
            reconnect_timeout=reconnect_timeout,
            name=name,
            open=False,
        )
        self.pool.open(wait=False)

    def close(self, timeout: float) -> None:
        """Close every connection and stop the pool's and the watchdog's threads; a call still
        in flight is abandoned. Idempotent; later calls raise :class:`StoreUnavailable`."""
        try:
            self.pool.close(timeout=timeout)
        finally:
            self._watchdog.close(timeout=timeout)

    @property
    def degraded(self) -> bool:
        """True after a connection broke, until a call succeeds (waits are then short)."""
        return self._degraded

    def mark_degraded(self) -> None:
        """A caller found the server unreachable or too slow (e.g. a commit given up)."""
        self._degraded = True

    def bound(self) -> float:
        """The bound of a Store port call starting now."""
        return self._outage_timeout if self._degraded else self.deadline

    def configure(self, conn: Conn) -> None:
        """Session settings of a new pooled connection (on a pool thread), within the
        ``deadline``; on failure the connection is closed and the pool tries again."""
        try:
            with self._watchdog.watch(conn, time.monotonic() + self.deadline):
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (f"{self._statement_timeout_ms}ms",),
                )
                # The commit statement is one large WITH; planned afresh it costs more than
                # running it (about 1 ms here). psycopg prepares it after a few uses; a
                # generic plan is then reused instead of a custom plan per call (every lookup
                # in it is by key or id).
                conn.execute("SET plan_cache_mode = force_generic_plan")
                # A commit holds its account's lease row (FOR KEY SHARE, the epoch check) until
                # it ends: a client that stops between its statement and its COMMIT (SIGSTOP,
                # a lost network) must not hold a takeover up for longer than a commit may
                # take. Its transaction is rolled back, as the client would have given up.
                conn.execute(
                    "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                    (f"{max(1000, int(self.deadline * 1000))}ms",),
                )
        except BaseException:
            conn.close()
            raise

    def run(self, what: str, fn: Callable[[Conn], T], *, bound: float | None = None) -> T:
        """``fn`` on a pooled connection; see :meth:`run_watched`."""
        return self.run_watched(what, lambda conn, _watch: fn(conn), bound=bound)

    def run_watched(
        self, what: str, fn: Callable[[Conn, Watch], T], *, bound: float | None = None
    ) -> T:
        """``fn`` on a pooled connection, the whole call (checkout included) bounded by
        ``bound`` seconds (default: :meth:`bound`); errors mapped by :meth:`translate`.
        A success ends the degraded state."""
        if bound is None:
            bound = self.bound()
        until = time.monotonic() + bound
        with self.translate(what), self._connection(what, until, bound) as (conn, watch):
            result = fn(conn, watch)
        self._degraded = False
        return result

    @contextmanager
    def _connection(self, what: str, until: float, bound: float) -> Iterator[tuple[Conn, Watch]]:
        """A healthy-looking pooled connection, watched until ``until``; idle ones the server
        hung up on are dropped (closed, so the pool replaces them) instead of failing the
        caller once each after an outage. Marks the store degraded when it finds one, when
        a connection breaks, and when the watchdog abandons one. A connection that is not
        idle afterwards (abandoned, or its transaction left open) is closed, never handed to
        the pool to roll back (that would wait on the server)."""
        timeout = self._outage_timeout if self._degraded else self._timeout
        conn: Conn | None = None
        for _ in range(self._pool_max + 2):
            wait = min(timeout, until - time.monotonic())
            candidate = self.pool.getconn(timeout=max(wait, 0.001))
            if not looks_dead(candidate):
                conn = candidate
                break
            candidate.close()
            self.pool.putconn(candidate)
            self._degraded = True
            timeout = self._outage_timeout
        if conn is None:
            raise StoreUnavailable(f"{what}: only dead connections in the pool")
        watch: Watch | None = None
        backend = conn.info.backend_pid  # local, no round trip
        try:
            with ExitStack() as stack:
                try:
                    watch = stack.enter_context(self._watchdog.watch(conn, until))
                except OSError as exc:  # no descriptor left to duplicate
                    raise StoreUnavailable(f"{what}: cannot watch the connection: {exc}") from exc
                try:
                    yield conn, watch
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    if watch.fired:
                        self._degraded = True
                        note = f"; {watch.note}" if watch.note else ""
                        raise StoreUnavailable(
                            f"{what}: no answer from the database within {bound:.2f}s, "
                            f"connection to backend {backend} abandoned (server stopped, "
                            f"overloaded or unreachable){note}"
                        ) from exc
                    if conn.broken or conn.closed:
                        self._degraded = True
                        if watch.note:
                            raise StoreUnavailable(
                                f"{what}: connection lost: {exc}; {watch.note}"
                            ) from exc
                    raise
        finally:
            if not conn.closed and (
                (watch is not None and watch.fired)
                or conn.info.transaction_status != TransactionStatus.IDLE
            ):
                conn.close()
            self.pool.putconn(conn)

    @contextmanager
    def translate(self, what: str) -> Iterator[None]:
        """Map driver errors onto the port's exceptions (see the module docstring of
        :mod:`infra.store.postgres`); :class:`StoreError` passes unchanged."""
        try:
            yield
        except StoreError:
            raise
        except (PoolClosed, WatchdogClosed) as exc:
            raise StoreUnavailable(f"{what}: the store is closed") from exc
        except PoolTimeout as exc:
            down = (
                " (database unreachable)"
                if self._degraded
                else " (database down or pool exhausted)"
            )
            raise StoreUnavailable(f"{what}: no database connection in time{down}") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"{what}: database unavailable: {exc}") from exc
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            raise StoreRejected(f"{what}: refused by the database: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"{what}: {type(exc).__name__}: {exc}") from exc
        except (UnicodeError, ValueError, TypeError, OverflowError) as exc:
            raise StoreRejected(f"{what}: bad value: {exc}") from exc
