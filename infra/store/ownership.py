"""One owner per account (I7): leases with fencing tokens in PostgreSQL.

:class:`LeaseStore` is the database side of the rule the supervisor's lease keeper applies
(:mod:`supervision.leases`): every account has one row in ``leases`` (migration 3) holding
its *epoch* (the fencing token, +1 at every takeover), its owner (a process id drawn at start,
with host, pid and a process token) and ``expires_at`` on the database's clock. The owner
renews its leases every few seconds (:meth:`LeaseStore.renew`); another process takes an
account (:meth:`LeaseStore.acquire`) only when its lease is free (released, or never held),
expired, its own, or held by a process that is certainly dead (same kernel boot and PID
namespace, and no process with that pid and start time: the *same-host fast path*, see
:func:`process_gone`). Every commit of the account's state carries the epoch and the
database refuses a stale one (:mod:`infra.store.commit_sql`); the takeover locks the lease
row ``FOR UPDATE`` first, so it waits for commits in flight (which hold it ``FOR KEY SHARE``)
and every commit that follows it sees the new epoch. Times are the database's (``now()``):
the hosts' clocks never decide who owns an account.

``lease_epochs`` keeps every epoch granted (owner, acquired, last expiry, release): who owned
an account when. ``supervisor_processes`` holds each process's heartbeat (what it owns and
waits for), ``installation_alerts`` the orders of another installation seen on an account.

:class:`AccountLock` (a session advisory lock per account) was the rule before the leases;
the app no longer takes it (a free advisory lock only says that the owner's *session* ended,
not that the owner stopped sending orders: a process cut off from the database is alive).
It remains for tools that want a lock bound to a session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from actors.ports import StoreError, StoreUnavailable
from actors.state import Installation
from infra.store.deadline import Watchdog, WatchdogClosed
from infra.store.keys import ACCOUNT_PREFIX, advisory_key, split_key

__all__ = [
    "AccountLock",
    "AccountLocked",
    "Grant",
    "InstallationAlert",
    "LeaseInfo",
    "LeaseStore",
    "ProcessIdentity",
    "ProcessRow",
    "account_lock_key",
    "process_gone",
]

_T = TypeVar("_T")

log = logging.getLogger(__name__)

Conn = psycopg.Connection[TupleRow]

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
    """The advisory lock of one account. See the module docstring.

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
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=10_000,
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


# --- leases (the rule) ----------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat``: when the process started (clock ticks after boot)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # comm may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_token(pid: int) -> str:
    """``<boot id>|<pid namespace>|<pid>|<start ticks>`` of a process of this kernel and
    namespace, or ``""`` when any part cannot be read (no fast path then)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    ns = _pid_namespace()
    start = _start_ticks(pid)
    if not boot or not ns or not start:
        return ""
    return f"{boot}|{ns}|{pid}|{start}"


def process_gone(token: str | None) -> bool:
    """True only when the process ``token`` names (:attr:`ProcessIdentity.token`) is certainly
    not running: it ran on this kernel since its last boot and in this PID namespace, and no
    process with its pid and start time exists now. False whenever that cannot be told (another
    host, container or boot, an unreadable ``/proc``, an empty token)."""
    if not token:
        return False
    parts = token.split("|")
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    boot, ns, pid, start = parts
    if boot != _read("/proc/sys/kernel/random/boot_id") or ns != _pid_namespace():
        return False
    return _start_ticks(int(pid)) != start


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who a process is, as the lease table records it. ``id`` is drawn at start: a
    restarted process is another owner (it takes its predecessor's accounts like any
    standby). ``token``: see :func:`process_gone`."""

    id: uuid.UUID
    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(uuid.uuid4(), socket.gethostname()[:255], pid, _process_token(pid))

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """One account's lease as the database showed it at ``now`` (its clock, epoch seconds)."""

    account: str
    epoch: int
    owner: uuid.UUID | None
    host: str | None
    pid: int | None
    process: str | None
    since: float | None
    expires_at: float | None
    now: float

    @property
    def expired(self) -> bool:
        """No live owner: released, never held, or past its expiry."""
        return self.owner is None or self.expires_at is None or self.expires_at <= self.now

    @property
    def remaining_s(self) -> float:
        """Seconds until it expires (0 when it has)."""
        if self.expired or self.expires_at is None:
            return 0.0
        return self.expires_at - self.now

    def describe(self) -> str:
        """``epoch 4, pid 123 on host-a, expires in 6.2 s`` (or why nobody owns it)."""
        who = f"pid {self.pid} on {self.host}" if self.host else "nobody"
        if self.owner is None:
            return f"epoch {self.epoch}, released (last owner {who})"
        if self.expired:
            return (
                f"epoch {self.epoch}, {who}, expired {self.now - (self.expires_at or 0):.1f} s ago"
            )
        return f"epoch {self.epoch}, {who}, expires in {self.remaining_s:.1f} s"


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease this process was granted. ``sent_at``: ``time.monotonic()`` just before the
    statement that set its expiry left (the database's ``now()`` is later, so
    ``sent_at + lease_s`` is never after the expiry the database recorded). ``how``: why it
    could be taken (``free``, ``expired``, ``owner_dead``, ``own``). ``previous``: the lease as
    read before (its owner, when it had one)."""

    account: str
    epoch: int
    sent_at: float
    how: str
    previous: LeaseInfo | None = None


@dataclass(frozen=True, slots=True)
class InstallationAlert:
    """Orders of another installation seen on an account (the first one's id and symbol)."""

    account: str
    installation: int
    client_id: str
    symbol: str
    seen_at: float
    seen_by: str
    confirmed_at: float | None = None
    confirmed_by: str | None = None

    @property
    def label(self) -> str:
        return f"{self.installation:06d}"


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """A supervisor process's last heartbeat (``supervisor_processes``)."""

    id: uuid.UUID
    host: str
    pid: int
    started_at: float
    seen_at: float
    max_accounts: int | None
    owns: tuple[str, ...]
    waits: tuple[str, ...]
    stopped_at: float | None
    now: float

    @property
    def age_s(self) -> float:
        """Seconds since its last heartbeat."""
        return max(0.0, self.now - self.seen_at)


_LEASE_COLS = (
    "account, epoch, owner, host, pid, process, extract(epoch FROM since)::float8, "
    "extract(epoch FROM expires_at)::float8, extract(epoch FROM now())::float8"
)
_TAKE = """
WITH cur AS (
    SELECT account, owner, process, expires_at FROM leases WHERE account = %(account)s
    FOR UPDATE
), ok AS (
    SELECT cur.account, CASE
        WHEN cur.owner IS NULL THEN 'free'
        WHEN cur.owner = %(me)s THEN 'own'
        WHEN cur.expires_at <= now() THEN 'expired'
        WHEN %(dead)s::text IS NOT NULL AND cur.process = %(dead)s::text THEN 'owner_dead'
    END AS how FROM cur
), upd AS (
    UPDATE leases l SET epoch = l.epoch + 1, owner = %(me)s, host = %(host)s, pid = %(pid)s,
        process = %(process)s, since = now(),
        expires_at = now() + %(lease)s * interval '1 second', renewed_at = now()
    FROM ok WHERE l.account = ok.account AND ok.how IS NOT NULL
    RETURNING l.epoch, l.expires_at, ok.how
), closed AS (
    UPDATE lease_epochs e SET released_at = least(e.expires_at, now())
    FROM upd WHERE e.account = %(account)s AND e.epoch = upd.epoch - 1 AND e.released_at IS NULL
    RETURNING 1
), hist AS (
    INSERT INTO lease_epochs (account, epoch, owner, host, pid, acquired_at, expires_at, how)
    SELECT %(account)s, upd.epoch, %(me)s, %(host)s, %(pid)s, now(), upd.expires_at, upd.how
    FROM upd RETURNING 1
)
SELECT epoch, how, (SELECT count(*) FROM closed), (SELECT count(*) FROM hist) FROM upd
"""
_RENEW = """
WITH r AS (
    UPDATE leases SET expires_at = now() + %(lease)s * interval '1 second', renewed_at = now()
    WHERE owner = %(me)s AND expires_at > now()
    AND (account, epoch) IN (SELECT * FROM unnest(%(accounts)s::text[], %(epochs)s::bigint[]))
    RETURNING account, epoch, expires_at
), h AS (
    UPDATE lease_epochs e SET expires_at = r.expires_at FROM r
    WHERE e.account = r.account AND e.epoch = r.epoch RETURNING 1
)
SELECT account, (SELECT count(*) FROM h) FROM r
"""
_RELEASE = """
WITH u AS (
    UPDATE leases SET owner = NULL, expires_at = now(), renewed_at = now()
    WHERE account = %(account)s AND owner = %(me)s AND epoch = %(epoch)s
    RETURNING account, epoch
), h AS (
    UPDATE lease_epochs e SET released_at = now(), expires_at = least(e.expires_at, now())
    FROM u WHERE e.account = u.account AND e.epoch = u.epoch RETURNING 1
)
SELECT count(*), (SELECT count(*) FROM h) FROM u
"""
_ALERT_COLS = (
    "account, installation, client_id, symbol, extract(epoch FROM seen_at)::float8, seen_by, "
    "extract(epoch FROM confirmed_at)::float8, confirmed_by"
)
_PROCESS_COLS = (
    "id, host, pid, extract(epoch FROM started_at)::float8, extract(epoch FROM seen_at)::float8, "
    "max_accounts, owns, waits, extract(epoch FROM stopped_at)::float8, "
    "extract(epoch FROM now())::float8"
)


class LeaseStore:
    """The lease table and its neighbours, for one process (its :class:`ProcessIdentity`).

    One connection of its own (autocommit; ``application_name``: the DSN's with ``:lease``
    appended, else ``position-supervisor:lease:<host>:<pid>``), opened
    on first use and again after a failure. Every method is bounded on the client side by
    ``timeout`` seconds (:mod:`infra.store.deadline`), connection included, and raises
    :class:`~actors.ports.StoreUnavailable` when the database does not answer within it
    (the connection is then dropped; the next call reconnects), :class:`StoreError` for
    anything else the database refuses. Thread-safe (calls are serialised); meant for the
    lease keeper's thread, the alarm path and the CLI.

    ``lease_s``: how long a lease lasts from its last renewal, on the database's clock.
    """

    def __init__(
        self,
        dsn: str,
        identity: ProcessIdentity | None = None,
        *,
        lease_s: float = 10.0,
        timeout: float = 2.0,
        application_name: str | None = None,
    ) -> None:
        if not lease_s > 0 or not timeout > 0:
            raise ValueError(f"lease_s and timeout must be > 0: {lease_s}, {timeout}")
        self.dsn = dsn
        self.identity = identity or ProcessIdentity.current()
        self.lease_s = lease_s
        self.timeout = timeout
        ident = self.identity
        given = conninfo_to_dict(dsn).get("application_name")
        self.application_name = (
            application_name
            or (
                f"{given}:lease" if given else f"position-supervisor:lease:{ident.host}:{ident.pid}"
            )
        )[:63]
        self._deadlines = Watchdog(f"lease:{ident.pid}", persistent=False)
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._closed = False

    # -- leases

    def leases(self, accounts: Iterable[str] | None = None) -> dict[str, LeaseInfo]:
        """The leases of ``accounts`` (every lease when ``None``) that have a row."""
        wanted = None if accounts is None else list(accounts)

        def run(conn: Conn) -> dict[str, LeaseInfo]:
            sql = f"SELECT {_LEASE_COLS} FROM leases"
            params: tuple[object, ...] = ()
            if wanted is not None:
                sql += " WHERE account = ANY(%s)"
                params = (wanted,)
            rows = conn.execute(sql + " ORDER BY account", params).fetchall()
            return {str(r[0]): _lease(r) for r in rows}

        return self._call("read leases", run)

    def acquire(self, account: str) -> Grant | LeaseInfo:
        """Take ``account``'s lease when it is free, expired, ours, or its owner is certainly
        dead (:func:`process_gone`): epoch + 1, expiry ``lease_s`` from now. Returns the
        :class:`Grant`, or the lease as it is when another live owner holds it (or took it
        first). A takeover waits for the commits in flight of the account (row locks)."""
        ident = self.identity

        def run(conn: Conn) -> Grant | LeaseInfo:
            conn.execute(
                "INSERT INTO leases (account) VALUES (%s) ON CONFLICT DO NOTHING", (account,)
            )
            row = conn.execute(
                f"SELECT {_LEASE_COLS} FROM leases WHERE account = %s", (account,)
            ).fetchone()
            assert row is not None
            info = _lease(row)
            dead = info.process if info.owner not in (None, ident.id) else None
            dead = dead if not info.expired and process_gone(dead) else None
            if not (info.expired or info.owner == ident.id or dead):
                return info
            sent_at = time.monotonic()
            got = conn.execute(
                _TAKE,
                {
                    "account": account,
                    "me": ident.id,
                    "host": ident.host,
                    "pid": ident.pid,
                    "process": ident.token,
                    "lease": self.lease_s,
                    "dead": dead,
                },
            ).fetchone()
            if got is None:
                again = conn.execute(
                    f"SELECT {_LEASE_COLS} FROM leases WHERE account = %s", (account,)
                ).fetchone()
                assert again is not None
                return _lease(again)
            return Grant(account, int(got[0]), sent_at, str(got[1]), info)

        return self._call(f"take the lease of {account!r}", run)

    def renew(self, held: Mapping[str, int]) -> tuple[float, set[str]]:
        """Extend every lease of ``held`` (``account -> epoch``) still ours, current and not
        expired to ``lease_s`` from now, in one statement. Returns ``(sent_at, renewed)``:
        ``sent_at`` is ``time.monotonic()`` just before the statement left (see
        :class:`Grant`); an account of ``held`` missing from ``renewed`` is lost (expired,
        released, or taken over: its epoch moved on)."""
        if not held:
            return time.monotonic(), set()
        accounts = list(held)
        epochs = [held[a] for a in accounts]

        def run(conn: Conn) -> tuple[float, set[str]]:
            sent_at = time.monotonic()
            rows = conn.execute(
                _RENEW,
                {
                    "lease": self.lease_s,
                    "me": self.identity.id,
                    "accounts": accounts,
                    "epochs": epochs,
                },
            ).fetchall()
            return sent_at, {str(r[0]) for r in rows}

        return self._call("renew leases", run)

    def release(self, account: str, epoch: int) -> bool:
        """Give ``account``'s lease up now (it must be ours at ``epoch``): another process may
        take it at once. Call it only when nothing of this process can still send an order
        for the account. True when it was ours."""

        def run(conn: Conn) -> bool:
            row = conn.execute(
                _RELEASE, {"account": account, "me": self.identity.id, "epoch": epoch}
            ).fetchone()
            return bool(row and row[0])

        return self._call(f"release the lease of {account!r}", run)

    def epochs(self, account: str, since: float | None = None) -> list[dict[str, Any]]:
        """The history of ``account``'s leases (``lease_epochs``), oldest first; with ``since``
        (epoch seconds) only epochs that ended after it or have not."""

        def run(conn: Conn) -> list[dict[str, Any]]:
            sql = (
                "SELECT epoch, owner, host, pid, extract(epoch FROM acquired_at)::float8, "
                "extract(epoch FROM expires_at)::float8, "
                "extract(epoch FROM released_at)::float8, how FROM lease_epochs "
                "WHERE account = %s"
            )
            params: list[object] = [account]
            if since is not None:
                sql += " AND coalesce(released_at, expires_at) >= to_timestamp(%s)"
                params.append(since)
            rows = conn.execute(sql + " ORDER BY epoch", params).fetchall()
            keys = ("epoch", "owner", "host", "pid", "acquired_at", "expires_at")
            return [
                {**dict(zip(keys, r[:6], strict=True)), "released_at": r[6], "how": r[7]}
                for r in rows
            ]

        return self._call("read lease history", run)

    # -- processes

    def heartbeat(
        self, owns: Sequence[str], waits: Sequence[str], max_accounts: int | None
    ) -> None:
        """Record that this process is alive, what it owns and what it waits for."""
        ident = self.identity

        def run(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO supervisor_processes (id, host, pid, max_accounts, owns, waits) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "seen_at = now(), owns = EXCLUDED.owns, waits = EXCLUDED.waits, "
                "max_accounts = EXCLUDED.max_accounts, stopped_at = NULL",
                (ident.id, ident.host, ident.pid, max_accounts, list(owns), list(waits)),
            )

        self._call("heartbeat", run)

    def ensure_partitions(self) -> int:
        """Make the history's missing monthly partitions (this month and the next two, see
        :func:`infra.store.retention.ensure_partitions`); returns how many were made."""
        from infra.store.retention import ensure_partitions  # noqa: PLC0415

        return self._call("partitions", ensure_partitions)

    def stopped(self) -> None:
        """Record that this process stopped (it owns and waits for nothing any more) and drop
        the heartbeats of processes gone for over a day."""

        def run(conn: Conn) -> None:
            conn.execute(
                "UPDATE supervisor_processes SET stopped_at = now(), seen_at = now(), "
                "owns = '{}', waits = '{}' WHERE id = %s",
                (self.identity.id,),
            )
            conn.execute(
                "DELETE FROM supervisor_processes "
                "WHERE coalesce(stopped_at, seen_at) < now() - interval '1 day'"
            )

        self._call("record the stop", run)

    def processes(self) -> list[ProcessRow]:
        """Every process heartbeat, newest first."""

        def run(conn: Conn) -> list[ProcessRow]:
            rows = conn.execute(
                f"SELECT {_PROCESS_COLS} FROM supervisor_processes ORDER BY seen_at DESC"
            ).fetchall()
            return [
                ProcessRow(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]), tuple(r[7]), r[8], r[9])
                for r in rows
            ]

        return self._call("read processes", run)

    # -- installation

    def installation(self) -> Installation:
        """This database's installation id (migration 3)."""

        def run(conn: Conn) -> Installation:
            row = conn.execute("SELECT id, legacy_below FROM installation").fetchone()
            if row is None:
                raise StoreError("the installation table is empty (migration 3 not applied?)")
            return Installation(int(row[0]), int(row[1]))

        return self._call("read the installation id", run)

    def record_alert(self, account: str, installation: int, client_id: str, symbol: str) -> bool:
        """Record that an order of ``installation`` was seen on ``account`` (the first one
        per installation is kept). True when this is the first time."""

        def run(conn: Conn) -> bool:
            cur = conn.execute(
                "INSERT INTO installation_alerts (account, installation, client_id, symbol, "
                "seen_by) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (account, installation, client_id[:64], symbol[:64], self.identity.describe()),
            )
            return cur.rowcount == 1

        return self._call("record an installation alert", run)

    def alerts(self, accounts: Iterable[str] | None = None) -> list[InstallationAlert]:
        """Installation alerts (of ``accounts``), confirmed or not, oldest first."""
        wanted = None if accounts is None else list(accounts)

        def run(conn: Conn) -> list[InstallationAlert]:
            sql = f"SELECT {_ALERT_COLS} FROM installation_alerts"
            params: tuple[object, ...] = ()
            if wanted is not None:
                sql += " WHERE account = ANY(%s)"
                params = (wanted,)
            rows = conn.execute(sql + " ORDER BY seen_at, account", params).fetchall()
            return [InstallationAlert(*r) for r in rows]

        return self._call("read installation alerts", run)

    def confirm(
        self, account: str, by: str, installation: int | None = None
    ) -> list[InstallationAlert]:
        """An operator confirms the unconfirmed alerts of ``account`` (of one installation,
        or all): entries may resume. Returns the alerts confirmed now."""

        def run(conn: Conn) -> list[InstallationAlert]:
            rows = conn.execute(
                "UPDATE installation_alerts SET confirmed_at = now(), confirmed_by = %s "
                "WHERE account = %s AND confirmed_at IS NULL "
                "AND (%s::integer IS NULL OR installation = %s::integer) "
                f"RETURNING {_ALERT_COLS}",
                (by[:255], account, installation, installation),
            ).fetchall()
            return [InstallationAlert(*r) for r in rows]

        return self._call("confirm installation alerts", run)

    # -- lifecycle

    def close(self) -> None:
        """Close the connection and the watchdog. Idempotent; later calls raise
        :class:`StoreUnavailable`."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._deadlines.close()

    def __enter__(self) -> LeaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals

    def _call(self, what: str, fn: Callable[[Conn], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"{what}: the lease store is closed")
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
                raise StoreUnavailable(f"{what}: the lease store is closed") from exc
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
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=10_000,
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


def _lease(r: Sequence[Any]) -> LeaseInfo:
    return LeaseInfo(
        account=str(r[0]),
        epoch=int(r[1]),
        owner=r[2],
        host=r[3],
        pid=r[4],
        process=r[5],
        since=r[6],
        expires_at=None if r[7] is None or r[7] == float("-inf") else float(r[7]),
        now=float(r[8]),
    )
