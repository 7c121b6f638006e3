"""The per-account session advisory lock (:class:`AccountLock`), the rule before the leases.

The app no longer takes it (a free advisory lock only says that the owner's *session* ended,
not that the owner stopped sending orders: a process cut off from the database is alive). It
remains for tools that want a lock bound to a session. Threads: see :class:`AccountLock`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psycopg

from actors.ports import StoreUnavailable
from infra.store.connections import KEEPALIVES, Conn
from infra.store.deadline import Watchdog, WatchdogClosed
from infra.store.keys import ACCOUNT_PREFIX, advisory_key, split_key

__all__ = ["AccountLock", "AccountLocked", "account_lock_key"]

log = logging.getLogger(__name__)


_HOLDER_SQL = (
    "SELECT l.pid, a.application_name, coalesce(a.client_addr::text, 'local'), "
    "extract(epoch FROM a.backend_start)::float8 "
    "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.classid::bigint = %s AND l.objid::bigint = %s "
    "AND l.objsubid = 1 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_MINE_SQL = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
    "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1 AND granted"
)


def account_lock_key(account: str) -> int:
    """The advisory-lock key of ``account``."""
    return advisory_key(ACCOUNT_PREFIX + account)


class AccountLocked(RuntimeError):
    """Another process manages the account. ``holder`` describes it when the server says."""

    def __init__(self, account: str, holder: str | None, waited: float | None = None) -> None:
        self.account = account
        self.holder = holder
        self.waited = waited
        who = f" ({holder})" if holder else ""
        after = f" after waiting {waited:.1f} s" if waited is not None else ""
        super().__init__(
            f"account {account!r} is already managed by another process{who}{after}; "
            "this process will not trade it"
        )


class AccountLock:
    """The advisory lock of one account (see the module docstring), held by one connection
    of its own and checked every ``check_interval`` s by a watchdog thread, which takes it
    again (with backoff) after it was lost.

    ``acquire`` and ``release`` are called by the owner (any one thread); ``held`` and
    ``backend_pid`` may be read from any thread; ``on_change`` runs on the watchdog thread
    (keep it short and non-blocking; its exceptions are logged and ignored). Single use:
    after :meth:`release` the object cannot acquire again.
    """

    def __init__(
        self,
        dsn: str,
        account: str,
        *,
        wait: bool = False,
        timeout: float = 30.0,
        check_interval: float = 1.0,
        on_change: Callable[[bool], None] | None = None,
        backoff_min: float = 0.2,
        backoff_max: float = 5.0,
        connect_timeout: int = 5,
        check_timeout: float = 2.0,
    ) -> None:
        self.dsn = dsn
        self.account = account
        self.key = account_lock_key(account)
        self.wait = wait
        self.timeout = timeout
        self.check_interval = check_interval
        self.on_change = on_change
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.check_timeout = check_timeout
        self._deadlines = Watchdog(f"account-lock:{account}", persistent=False)
        self._classid, self._objid = split_key(self.key)
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._held = False
        self._closed = False
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._retries = 0
        self.application_name = (
            f"position-supervisor:{socket.gethostname()}:{os.getpid()}:{account}"
        )[:63]

    # -- public

    @property
    def held(self) -> bool:
        """True while this process holds the account's lock (as last checked)."""
        return self._held

    @property
    def retries(self) -> int:
        """Failed re-acquisition attempts since the lock was last lost (0 while held)."""
        return self._retries

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the connection holding the lock (tests terminate it)."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        return int(conn.info.backend_pid)

    def __enter__(self) -> AccountLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> bool:
        """Take the lock and start the watchdog; True when held.

        Raises :class:`AccountLocked` when another process holds it (with ``wait=True``: when
        it still does after ``timeout`` s), :class:`~actors.ports.StoreUnavailable` when the
        server cannot be reached (with ``wait=True``: for the whole ``timeout``), and
        :class:`RuntimeError` after :meth:`release`.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError(f"account lock {self.account!r} was released; make a new one")
            if self._held:
                return True
        started = time.monotonic()
        deadline = started + (self.timeout if self.wait else 0.0)
        poll = max(0.05, min(self.check_interval, 0.5))
        while True:
            holder: str | None = None
            try:
                conn = self._connect()
                try:
                    if self._try_lock(conn):
                        self._start_holding(conn)
                        log.info("account %s: ownership lock acquired", self.account)
                        return True
                    holder = self._describe_holder(conn)
                finally:
                    if self._conn is not conn:
                        conn.close()
                failure: Exception = AccountLocked(
                    self.account, holder, time.monotonic() - started if self.wait else None
                )
            except psycopg.Error as exc:
                failure = StoreUnavailable(
                    f"account {self.account!r}: cannot reach the database to take the "
                    f"ownership lock: {exc}"
                )
            if time.monotonic() + poll > deadline or self._stop.wait(poll):
                raise failure

    def release(self) -> None:
        """Stop the watchdog, unlock, close the connection. Idempotent; no thread is left.
        Does not call ``on_change``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        thread = self._thread
        if thread is not None:
            thread.join(timeout=max(5.0, self.check_interval * 2))
            if thread.is_alive():
                log.warning("account %s: lock watchdog did not stop in time", self.account)
        with self._lock:
            conn, self._conn = self._conn, None
            self._held = False
        if conn is not None:
            if not conn.closed and not conn.broken:
                with contextlib.suppress(psycopg.Error), self._bounded(conn):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            conn.close()  # ends the session: the server drops the lock even if unlock failed
        self._deadlines.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        log.info("account %s: ownership lock released", self.account)

    close = release

    # -- internals

    @contextlib.contextmanager
    def _bounded(self, conn: Conn) -> Iterator[None]:
        """Bound what the block does on ``conn`` by ``check_timeout`` s: past it the
        connection is abandoned and the block raises ``psycopg.OperationalError``."""
        with contextlib.ExitStack() as stack:
            try:
                w = stack.enter_context(
                    self._deadlines.watch(conn, time.monotonic() + self.check_timeout)
                )
            except WatchdogClosed as exc:
                raise psycopg.OperationalError(f"account lock {self.account!r} released") from exc
            except OSError as exc:  # no descriptor left to duplicate
                raise psycopg.OperationalError(f"cannot watch the connection: {exc}") from exc
            try:
                yield
            except psycopg.Error as exc:
                if w.fired:
                    raise psycopg.OperationalError(
                        f"no answer from the database within {self.check_timeout:.2f}s "
                        "(connection abandoned)"
                    ) from exc
                raise
        if w.fired:
            conn.close()  # answered in the same instant, but its socket is shut down

    def _connect(self) -> Conn:
        conn = psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=self.connect_timeout,
            application_name=self.application_name,
            **{**KEEPALIVES, "keepalives_idle": 10, "keepalives_interval": 5},
        )
        try:
            # The lock lives as long as this session: never let the server end it for idling.
            with self._bounded(conn):
                conn.execute(
                    "SELECT set_config('idle_session_timeout', '0', false), "
                    "set_config('idle_in_transaction_session_timeout', '0', false), "
                    "set_config('statement_timeout', '10s', false)"
                )
        except psycopg.Error:
            conn.close()
            raise
        return conn

    def _try_lock(self, conn: Conn) -> bool:
        with self._bounded(conn):
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        return bool(row and row[0])

    def _describe_holder(self, conn: Conn) -> str | None:
        try:
            with self._bounded(conn):
                row = conn.execute(_HOLDER_SQL, (self._classid, self._objid)).fetchone()
        except psycopg.Error:
            return None
        if row is None:
            return None
        pid, app, addr, started = row
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
        return (
            f"held by PostgreSQL backend pid {pid}, application {app or '?'!r}, "
            f"from {addr}, since {since}"
        )

    def _start_holding(self, conn: Conn) -> None:
        with self._lock:
            self._conn = conn
            self._held = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name=f"account-lock:{self.account}", daemon=True
                )
                self._thread.start()

    def _still_mine(self, conn: Conn) -> bool:
        try:
            with self._bounded(conn):
                row = conn.execute(_MINE_SQL, (self._classid, self._objid)).fetchone()
        except psycopg.Error as exc:
            log.warning("account %s: ownership lock connection lost: %s", self.account, exc)
            return False
        return bool(row and row[0])

    def _notify(self, held: bool) -> None:
        cb = self.on_change
        if cb is None:
            return
        try:
            cb(held)
        except Exception:
            log.exception("account %s: on_change(%s) failed", self.account, held)

    def _wait_on(self, conn: Conn | None, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early on release or when ``conn`` has input."""
        poller = select.poll()  # not select(): it fails on descriptors >= 1024
        poller.register(self._wake_r, select.POLLIN)
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error, OSError, ValueError):
                poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        with contextlib.suppress(OSError, ValueError):
            poller.poll(max(0.0, seconds) * 1000)

    def _watch(self) -> None:
        """Watchdog thread: check while held; reconnect with backoff while not."""
        backoff = self.backoff_min
        while not self._stop.is_set():
            conn = self._conn
            if conn is not None and self._held:
                self._wait_on(conn, self.check_interval)
                if self._stop.is_set():
                    return
                if self._still_mine(conn):
                    continue
                with self._lock:
                    if self._closed:
                        return
                    self._held = False
                    self._conn = None
                conn.close()
                log.error(
                    "account %s: ownership lock LOST; no new positions until it is held again",
                    self.account,
                )
                self._notify(False)
                backoff = self.backoff_min
                continue
            self._wait_on(None, backoff)
            if self._stop.is_set():
                return
            try:
                new = self._connect()
            except psycopg.Error as exc:
                self._retries += 1
                log.info("account %s: reconnect for the lock failed: %s", self.account, exc)
                backoff = min(self.backoff_max, backoff * 2)
                continue
            try:
                got = self._try_lock(new)
            except psycopg.Error:
                got = False
            if not got:
                holder = self._describe_holder(new)
                new.close()
                self._retries += 1
                log.log(
                    logging.WARNING if self._retries % 50 == 1 else logging.DEBUG,
                    "account %s: lock not re-acquired (%s)",
                    self.account,
                    holder or "held elsewhere",
                )
                backoff = min(self.backoff_max, backoff * 2)
                continue
            with self._lock:
                if self._closed:
                    new.close()
                    return
                self._conn = new
                self._held = True
                self._retries = 0
            log.info("account %s: ownership lock re-acquired", self.account)
            self._notify(True)
            backoff = self.backoff_min
