"""The PostgreSQL implementation of :class:`actors.ports.Store` (psycopg 3 + psycopg-pool).

One :class:`PostgresStore` per process, shared by every position actor: each method borrows a
connection from a :class:`psycopg_pool.ConnectionPool`, so many actor threads call it at once.

Every call is bounded on the client side (B6): it returns or raises within ``deadline``
seconds (default 2 s; ``outage_timeout`` while the store is degraded, ``read_deadline`` for
the inspection reads), whatever the server does -- also when its processes are stopped and
``statement_timeout``, which the server enforces, cannot act. The bound covers the wait for a
pooled connection and every statement; past it the connection is abandoned (its socket shut
down by a watchdog thread, :mod:`infra.store.deadline`) and the call raises
:class:`~actors.ports.StoreUnavailable`. The pool replaces the abandoned connection.

Every commit runs as ``BEGIN``; the commit statement; ``COMMIT`` (three round trips), and
its ``COMMIT`` is sent only when the statement's answer came back with at least a quarter of
the bound left. So a commit abandoned before its ``COMMIT`` was sent is *never* written: the
server, when it runs again, reads the end of the stream and rolls the transaction back (it
would execute a single autocommit statement it had already received). Only a ``COMMIT``
sent and not answered within the bound (the server stopped within that last round trip)
leaves the outcome unknown; the error then says so.

Failure contract (what the actor shell relies on):

* :class:`~actors.ports.StaleVersion`: the expected version did not match, the position
  already exists, or the write would make a second non-terminal position of the same
  ``(account, symbol)`` (I1, the ``positions_one_open`` index). Nothing was written.
* :class:`~actors.ports.SignalSeen`: the commit accepts a signal whose id the account's
  signal history holds already (the ``signals_once`` constraint). Nothing was written.
* :class:`~actors.ports.Fenced` (I7): with ``epochs`` (the app's lease keeper), every commit
  carries the account's lease epoch and the statement writes nothing when the database's
  epoch differs (another process took the account over); a commit for an account whose
  lease this process does not hold (``epochs`` says ``None``) is refused before it is sent.
  Nothing was written.
* :class:`~actors.ports.StoreUnavailable`: the server cannot be reached, a connection broke,
  no pooled connection came in time, a statement timed out, the call outlived its bound, or
  the store is closed. Nothing was written -- except in the one case no client can rule out:
  the ``COMMIT`` was sent and its answer did not come back (the connection broke, or the
  bound passed); the message then says "outcome unknown". A commit retried after that either
  succeeds or fails with :class:`StaleVersion` (the position is already at that version);
  reloading from the store then shows the truth. An entry intent (a new ``pending_entry``
  position) that lands that way was never sent: the actor that reloads it looks its entry
  order up by client id, does not find it and fails the position (``entry_not_found``).
* :class:`StoreRejected` (a :class:`~actors.ports.StoreError`): the database refused a value
  (NaN or infinite price, negative quantity, unknown status, an identifier too long, a NUL
  character ...). Nothing was written; the same commit will be refused again.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from actors.messages import Message
from actors.model import NON_TERMINAL, Key, OrderRecord
from actors.ports import (
    Fenced,
    SignalSeen,
    Snapshot,
    StaleVersion,
    StoreError,
    StoreUnavailable,
)
from actors.state import Commit, JournalEvent, Position, SignalRecord
from infra.store import codec, commit_sql
from infra.store.deadline import Watch, Watchdog, WatchdogClosed
from infra.store.migrations import migrate

__all__ = ["JournalEntry", "PostgresStore", "StoreRejected", "SymbolControl"]

log = logging.getLogger(__name__)

Conn = psycopg.Connection[TupleRow]
T = TypeVar("T")


class StoreRejected(StoreError):
    """The database refused a value of the commit (a CHECK constraint, a bad value).

    Nothing was written. Retrying the same commit is refused again: it is a bug or bad input
    upstream, to be crashed on and dead-lettered, not waited out.
    """


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One row of the journal as :meth:`PostgresStore.journal` returns it."""

    id: int
    key: Key
    event: JournalEvent
    cause_type: str
    cause_data: Mapping[str, object] = field(default_factory=dict)
    recorded_at: float = 0.0

    @property
    def cause(self) -> Message | None:
        """The message that caused the event, or ``None`` when it no longer decodes."""
        try:
            return codec.decode_message(self.cause_type, self.cause_data)
        except codec.CodecError:
            return None


@dataclass(frozen=True, slots=True)
class SymbolControl:
    """A symbol's stored control flags (:meth:`PostgresStore.controls`): an operator's pause
    and a quarantine after repeated crashes, each with when (epoch seconds) and why."""

    key: Key
    paused: bool
    paused_at: float | None
    paused_note: str
    quarantined: bool
    quarantined_at: float | None
    quarantined_note: str


# --- SQL ----------------------------------------------------------------------------------

_NON_TERMINAL = "(" + ", ".join(f"'{s.value}'" for s in NON_TERMINAL) + ")"
_P_COLS = ", ".join(f"p.{c}" for c in codec.POSITION_COLUMNS)
_O_COLS = ", ".join(f"o.{c}" for c in codec.ORDER_COLUMNS)
_NP = len(codec.POSITION_COLUMNS)
_POSITIONS_WITH_ORDERS = (
    f"SELECT {_P_COLS}, {_O_COLS} FROM positions p LEFT JOIN orders o ON o.position_id = p.id "
)
_LATEST_OF_KEY = (
    _POSITIONS_WITH_ORDERS + "WHERE p.id = (SELECT id FROM positions "
    "WHERE account = %s AND symbol = %s "
    f"ORDER BY status IN {_NON_TERMINAL} DESC, id DESC LIMIT 1) "
    "ORDER BY o.ord"
)
_KEY_FACTS = (
    "SELECT max(closed_at) FILTER (WHERE status = 'closed'), "
    "coalesce(bool_or(qty > 0 OR filled_at IS NOT NULL), false) "
    "FROM positions WHERE account = %s AND symbol = %s"
)
_SIGNAL_COLS = "account, symbol, signal_id, source, outcome, reason, at, position_id"
_RECENT_SIGNALS = (
    f"SELECT {_SIGNAL_COLS} FROM (SELECT id, {_SIGNAL_COLS} FROM signals "
    "WHERE account = %s AND symbol = %s AND NOT retry ORDER BY id DESC LIMIT %s) r ORDER BY id"
)
_RECORDED_SIGNAL = (
    f"SELECT {_SIGNAL_COLS} FROM signals WHERE account = %s AND signal_id = %s AND NOT retry"
)
_CONTROLS_OF_KEY = (
    "SELECT paused, quarantined FROM symbol_controls WHERE account = %s AND symbol = %s"
)
_CONTROLS = (
    "SELECT account, symbol, paused, paused_at, paused_note, quarantined, quarantined_at, "
    "quarantined_note FROM symbol_controls WHERE paused OR quarantined"
)
_JOURNAL_COLS = (
    "id, account, symbol, position_id, kind, status_before, status_after, at, "
    "detail, cause_type, cause, extract(epoch FROM recorded_at)::float8"
)
_OPEN_OF_KEY = (
    "SELECT id, status, version FROM positions "
    f"WHERE account = %s AND symbol = %s AND status IN {_NON_TERMINAL}"
)
_READ_ONLY = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_O_FIELDS = tuple(name for name, _ in commit_sql.ORDER_FIELDS)


def _group_positions(rows: Sequence[Sequence[Any]]) -> list[Position]:
    """Positions from rows of ``_POSITIONS_WITH_ORDERS`` ordered by position id, then ord."""
    out: list[Position] = []
    current: Sequence[Any] | None = None
    orders: list[Any] = []
    for row in rows:
        prow, orow = row[:_NP], row[_NP:]
        if current is None or current[0] != prow[0]:
            if current is not None:
                out.append(codec.position_from_row(current, orders))
            current, orders = prow, []
        if orow[0] is not None:
            orders.append(codec.order_from_row(orow))
    if current is not None:
        out.append(codec.position_from_row(current, orders))
    return out


def _journal_entry(row: Sequence[Any]) -> JournalEntry:
    """A :class:`JournalEntry` from a row of ``_JOURNAL_COLS``."""
    id_, acc, sym, pid, kind, before, after, at, detail, ctype, cause, rec = row
    return JournalEntry(
        id=id_,
        key=Key(acc, sym),
        event=codec.event_from_row(pid, kind, before, after, at, detail),
        cause_type=ctype,
        cause_data=cause,
        recorded_at=rec,
    )


def _rollback(conn: Conn) -> None:
    """End the open transaction of ``conn`` if any (errors ignored: a connection left in a
    transaction is closed before it returns to the pool)."""
    if conn.closed or conn.broken:
        return
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with suppress(psycopg.Error):
            conn.execute("ROLLBACK")


def _looks_dead(conn: Conn) -> bool:
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


class PostgresStore:
    """:class:`actors.ports.Store` on PostgreSQL. Thread-safe; see the module docstring.

    ``dsn``: a libpq connection string or URI. ``pool_min``/``pool_max``: pooled connections.
    ``deadline``: the client-side bound of every call of the Store port (``load``,
    ``commit``, ``allocate_ids``, ``open_positions``) and of :meth:`ping`, in seconds: the
    wait for a connection, the statements and the commit together (default 2 s).
    ``timeout``: the longest part of it spent waiting for a pooled connection (keep it short:
    the caller is an actor thread). ``outage_timeout``: the bound of a whole call while the
    store is degraded (from a failure that says the server is unreachable, until a call
    succeeds), so that actors retrying their writes during an outage or a freeze are not
    held up; :meth:`ping` always gets the full ``deadline`` and so recognises a server that
    is back but slow. ``read_deadline``: the bound of the inspection reads
    (:meth:`positions` with terminal ones, :meth:`journal`, :meth:`signals`) that may return
    a long history. ``reconnect_timeout``: how long the pool keeps retrying one failed
    connection attempt (with backoff) before a new call starts a fresh one; it bounds how
    long after the server's return the store may still report it unavailable.
    ``statement_timeout``: server-side limit per statement (a safety net for a running
    server; the deadline is what bounds the caller). ``migrate_schema``: run
    :func:`infra.store.migrations.migrate` first (raises :class:`StoreUnavailable` when the
    server is down). ``recent_signals``: how many signal ids :meth:`load` returns.
    ``epochs``: the fencing tokens (I7), ``account -> lease epoch`` or ``None`` while this
    process may not write the account (see :meth:`fence_with`); without it commits are not
    fenced (tools, tests).

    Connections get ``connect_timeout`` (2 s, libpq's minimum) and, over TCP, keepalives
    (idle 5 s, interval 2 s, 3 probes) and ``tcp_user_timeout`` (10 s), unless the DSN sets
    them: a dead peer is noticed on an idle pooled connection too.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_min: int = 1,
        pool_max: int = 8,
        deadline: float = 2.0,
        timeout: float = 1.0,
        outage_timeout: float = 0.25,
        read_deadline: float = 30.0,
        reconnect_timeout: float = 1.0,
        statement_timeout: float = 10.0,
        migrate_schema: bool = True,
        recent_signals: int = 32,
        name: str = "position-store",
        epochs: Callable[[str], int | None] | None = None,
    ) -> None:
        if pool_min < 0 or pool_max < max(1, pool_min):
            raise ValueError(f"bad pool sizes: min {pool_min}, max {pool_max}")
        if not deadline > 0 or not read_deadline > 0 or not outage_timeout > 0:
            raise ValueError(
                f"bounds must be > 0: deadline {deadline}, read_deadline {read_deadline}, "
                f"outage_timeout {outage_timeout}"
            )
        self._deadline = deadline
        self._read_deadline = read_deadline
        self._timeout = min(timeout, deadline)
        self._outage_timeout = min(outage_timeout, deadline)
        self._degraded = False
        # Orders as this store last wrote them, per non-terminal position: (version, orders).
        self._written: dict[int, tuple[int, tuple[OrderRecord, ...]]] = {}
        self._written_lock = threading.Lock()
        self._statement_timeout_ms = max(1, int(statement_timeout * 1000))
        self._recent = recent_signals
        self._pool_max = pool_max
        self._epochs = epochs
        if migrate_schema:
            migrate(dsn)
        given = conninfo_to_dict(dsn)
        kwargs: dict[str, Any] = {"autocommit": True}
        defaults: dict[str, Any] = {
            "application_name": "position-supervisor",
            "connect_timeout": 2,  # libpq's minimum; the pool connects on its own threads
            # Ignored by libpq on a Unix socket; over TCP they notice a dead peer on an idle
            # connection, and unacknowledged data, without waiting for the OS defaults.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        }
        for param, value in defaults.items():
            if param not in given:
                kwargs[param] = value
        self._watchdog = Watchdog(name)
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            dsn,
            min_size=pool_min,
            max_size=pool_max,
            kwargs=kwargs,
            configure=self._configure,
            timeout=self._timeout,
            reconnect_timeout=reconnect_timeout,
            name=name,
            open=False,
        )
        self._pool.open(wait=False)

    # -- lifecycle

    def fence_with(self, epochs: Callable[[str], int | None]) -> None:
        """Fence every later commit with ``epochs(account)`` (I7): the lease epoch this
        process holds for the account, or ``None`` when it may not write it (the commit is
        then refused with :class:`Fenced` without being sent). Called once at start, before
        any actor commits; ``epochs`` is called on actor threads and must not block."""
        self._epochs = epochs

    def close(self, timeout: float = 5.0) -> None:
        """Close every connection and stop the pool's and the watchdog's threads; a call still
        in flight is abandoned (it raises :class:`StoreUnavailable`). Idempotent. Later calls
        raise :class:`StoreUnavailable`."""
        try:
            self._pool.close(timeout=timeout)
        finally:
            self._watchdog.close(timeout=timeout)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """Round trip to the server within the full ``deadline`` (also while degraded: this
        is the health probe); raises :class:`StoreUnavailable` when it is not reachable."""
        self._run("ping", lambda conn: conn.execute("SELECT 1"), bound=self._deadline)

    # -- the Store port

    def load(self, key: Key) -> Snapshot:
        """What an actor needs at start for ``key``: the non-terminal position if any, else
        the most recent terminal one (highest id), with its orders in order; the latest
        ``closed_at`` of a closed position; whether any position ever had a quantity; the
        final decisions on the key's last ``recent_signals`` signal ids, oldest first; the
        symbol's stored pause and quarantine. One consistent snapshot (repeatable read)."""

        def run(conn: Conn) -> Snapshot:
            with conn.transaction():
                conn.execute(_READ_ONLY)
                found = _group_positions(
                    conn.execute(_LATEST_OF_KEY, (key.account, key.symbol)).fetchall()
                )
                facts = conn.execute(_KEY_FACTS, (key.account, key.symbol)).fetchone()
                recent = conn.execute(
                    _RECENT_SIGNALS, (key.account, key.symbol, self._recent)
                ).fetchall()
                controls = conn.execute(_CONTROLS_OF_KEY, (key.account, key.symbol)).fetchone()
            last_closed, bought = facts if facts is not None else (None, False)
            paused, quarantined = controls if controls is not None else (False, False)
            return Snapshot(
                position=found[0] if found else None,
                last_closed_at=last_closed,
                bought=bool(bought),
                decided=tuple(codec.signal_from_row(r) for r in recent),
                paused=bool(paused),
                quarantined=bool(quarantined),
            )

        return self._run(f"load {key}", run)

    def commit(self, commit: Commit) -> None:
        """Write one transition in one transaction: the position (INSERT when
        ``expected_version`` is 0, else UPDATE guarded by the expected version, setting the
        position's own version), its orders (upserted by client id; never deleted), its
        journal events with the cause, and the signal record (once per account and signal
        id). All or nothing; raises as the module docstring says.

        One statement (:mod:`infra.store.commit_sql`) between ``BEGIN`` and ``COMMIT``,
        bounded as the module docstring says. Orders this store wrote unchanged at the
        expected version are not written again. A ``control`` change (pause, quarantine;
        only without a position) is written to ``symbol_controls`` in the same statement."""
        pos = commit.position
        control = commit.control
        if control is not None:
            if pos is not None or control.flag not in commit_sql.CONTROL:
                raise StoreRejected(
                    f"commit for {commit.key}: a control change ({control.flag!r}) goes "
                    "without a position"
                )
            stmt = commit_sql.CONTROL[control.flag]
        elif pos is None:
            stmt = commit_sql.EVENTS_ONLY
        elif commit.expected_version == 0:
            stmt = commit_sql.INSERT
        else:
            stmt = commit_sql.UPDATE
        what = f"commit for {commit.key}"
        epoch: int | None = None
        if self._epochs is not None:
            epoch = self._epochs(commit.key.account)
            if epoch is None:
                raise Fenced(
                    f"{what}: this process does not hold the lease of account "
                    f"{commit.key.account!r}; nothing written"
                )
        try:
            self._validate(commit)
            values, n_orders = self._commit_values(commit)
            values["epoch"] = epoch
            params = stmt.params(values)
        except (TypeError, ValueError, AttributeError) as exc:
            raise StoreRejected(f"commit for {commit.key}: cannot encode: {exc}") from exc

        bound = self._bound()

        def run(conn: Conn, watch: Watch) -> None:
            cur = psycopg.RawCursor(conn)
            try:
                cur.execute("BEGIN")
                row = cur.execute(stmt.query, params).fetchone()
            except BaseException as exc:
                self._forget(pos)
                _rollback(conn)
                if pos is not None and isinstance(exc, psycopg.errors.UniqueViolation):
                    self._unique_violation(conn, commit, exc)
                if (
                    pos is not None
                    and isinstance(exc, psycopg.errors.NotNullViolation)
                    and exc.diag.table_name == "orders"
                    and exc.diag.column_name == "position_id"
                ):
                    raise StoreRejected(
                        f"position {pos.id}: an order client id of it belongs to another "
                        "position; nothing written"
                    ) from exc
                raise
            written, orders, current = row if row is not None else (0, 0, True)
            if not current:
                self._forget(pos)
                _rollback(conn)
                self._fenced(conn, commit, epoch)
            if pos is not None and not written:
                self._forget(pos)
                _rollback(conn)
                self._stale(conn, commit, pos)
            if pos is not None and orders != n_orders:  # cannot happen: a conflict aborts
                self._forget(pos)
                _rollback(conn)
                raise StoreError(f"position {pos.id}: {orders} of {n_orders} orders written")
            try:
                self._commit_transaction(cur, watch, what, bound)
            except BaseException:
                self._forget(pos)
                raise
            if pos is not None:
                self._remember(pos)

        self._run_watched(what, run, bound=bound)

    def _commit_transaction(
        self, cur: psycopg.RawCursor[TupleRow], watch: Watch, what: str, bound: float
    ) -> None:
        """Send ``COMMIT`` when enough of the bound is left to hear its answer; else close
        the connection, so that the server rolls the transaction back (the caller gets
        :class:`StoreUnavailable`, and nothing is written)."""
        left = watch.remaining()
        if left < bound / 4:
            cur.connection.close()
            self._degraded = True
            raise StoreUnavailable(
                f"{what}: the database took {bound - left:.2f}s of the {bound:.2f}s bound to "
                "answer the statement; not committed (the transaction is rolled back)"
            )
        watch.note = "its COMMIT was sent: outcome unknown (it is written if the server got it)"
        cur.execute("COMMIT")

    def _commit_values(self, c: Commit) -> tuple[dict[str, object], int]:
        """Named values of the commit statement, and how many orders it writes."""
        cause_type, cause = codec.encode_message(c.cause)
        events = [
            {
                "position_id": ev.position_id,
                "kind": ev.kind,
                "status_before": codec.row_json(ev.status_before),
                "status_after": codec.row_json(ev.status_after),
                "at": codec.row_json(ev.at),
                "detail": codec.encode_detail(ev.detail),
            }
            for ev in c.events
        ]
        signals = []
        if c.signal is not None:
            r = c.signal
            signals.append(
                {
                    "account": r.key.account,
                    "symbol": r.key.symbol,
                    "signal_id": r.signal_id,
                    "source": r.source,
                    "outcome": codec.row_json(r.outcome),
                    "reason": r.reason,
                    "at": codec.row_json(r.at),
                    "position_id": r.position_id,
                    "retry": r.retry,
                }
            )
        values: dict[str, object] = {
            "account": c.key.account,
            "symbol": c.key.symbol,
            "cause_type": cause_type,
            "cause": codec.dumps(cause),
            "events": codec.dumps(events),
            "signal": codec.dumps(signals),
        }
        if c.control is not None:
            values.update(
                value=c.control.value,
                at=codec.row_json(c.events[0].at) if c.events else None,
                note=c.control.note,
            )
        pos = c.position
        if pos is None:
            return values, 0
        values.update(zip(codec.POSITION_COLUMNS, codec.position_params(pos), strict=True))
        values["expected"] = c.expected_version
        orders = [
            {name: codec.row_json(getattr(o, name)) if name != "ord" else i for name in _O_FIELDS}
            for i, o in self._changed_orders(c)
        ]
        values["orders"] = codec.dumps(orders)
        return values, len(orders)

    def allocate_ids(self, n: int) -> Sequence[int]:
        """``n`` new position ids from the ``position_ids`` sequence, ascending; unique across
        every process using the database (not necessarily contiguous)."""
        if n <= 0:
            return []
        if n > 100_000:
            raise StoreRejected(f"allocate_ids: {n} ids at once is not sensible")

        def run(conn: Conn) -> list[int]:
            rows = conn.execute(
                "SELECT nextval('position_ids') FROM generate_series(1, %s)", (n,)
            ).fetchall()
            return sorted(int(r[0]) for r in rows)

        return self._run("allocate_ids", run)

    def open_positions(self, account: str | None = None) -> list[Position]:
        """Every non-terminal position (of ``account`` if given) with its orders, by id."""
        return self.positions(account, include_terminal=False)

    # -- reads for the CLI, the status view and tests

    def positions(
        self, account: str | None = None, include_terminal: bool = True
    ) -> list[Position]:
        """Positions (of ``account`` if given; only non-terminal ones unless
        ``include_terminal``) with their orders, ordered by id."""
        where: list[str] = []
        params: list[object] = []
        if account is not None:
            where.append("p.account = %s")
            params.append(account)
        if not include_terminal:
            where.append(f"p.status IN {_NON_TERMINAL}")
        sql = _POSITIONS_WITH_ORDERS
        if where:
            sql += "WHERE " + " AND ".join(where) + " "
        sql += "ORDER BY p.id, o.ord"

        def run(conn: Conn) -> list[Position]:
            return _group_positions(conn.execute(sql, params).fetchall())

        # open_positions() is the Store port's (startup recovery): the port's bound.
        return self._run("positions", run, bound=self._read_deadline if include_terminal else None)

    def journal(
        self, account: str, symbol: str, position_id: int | None = None
    ) -> list[JournalEntry]:
        """The journal of ``(account, symbol)`` (optionally of one position), in order."""
        sql = f"SELECT {_JOURNAL_COLS} FROM journal WHERE account = %s AND symbol = %s"
        params: list[object] = [account, symbol]
        if position_id is not None:
            sql += " AND position_id = %s"
            params.append(position_id)
        sql += " ORDER BY id"

        def run(conn: Conn) -> list[JournalEntry]:
            return [_journal_entry(row) for row in conn.execute(sql, params).fetchall()]

        return self._run("journal", run, bound=self._read_deadline)

    def controls(self) -> list[SymbolControl]:
        """Every symbol an operator paused or the restart policy quarantined, by key."""

        def run(conn: Conn) -> list[SymbolControl]:
            rows = conn.execute(_CONTROLS + " ORDER BY account, symbol").fetchall()
            return [
                SymbolControl(Key(a, s), bool(p), pa, pn, bool(q), qa, qn)
                for a, s, p, pa, pn, q, qa, qn in rows
            ]

        return self._run("controls", run)

    def recent_journal(self, limit: int = 20) -> list[JournalEntry]:
        """The last ``limit`` journal events of every symbol, newest first (the live view).
        Bounded like a port call (the page must not wait for a slow database)."""

        def run(conn: Conn) -> list[JournalEntry]:
            rows = conn.execute(
                f"SELECT {_JOURNAL_COLS} FROM journal ORDER BY id DESC LIMIT %s", (limit,)
            ).fetchall()
            return [_journal_entry(r) for r in rows]

        return self._run("recent journal", run)

    def recent_signals(self, limit: int = 20) -> list[SignalRecord]:
        """The last ``limit`` signals of every symbol, newest first (the live view)."""

        def run(conn: Conn) -> list[SignalRecord]:
            rows = conn.execute(
                f"SELECT {_SIGNAL_COLS} FROM signals ORDER BY id DESC LIMIT %s", (limit,)
            ).fetchall()
            return [codec.signal_from_row(r) for r in rows]

        return self._run("recent signals", run)

    def recorded_signal(self, account: str, signal_id: str) -> SignalRecord | None:
        """The final decision on ``signal_id`` in the account's signal history, or None."""

        def run(conn: Conn) -> SignalRecord | None:
            row = conn.execute(_RECORDED_SIGNAL, (account, signal_id)).fetchone()
            return None if row is None else codec.signal_from_row(row)

        return self._run("recorded signal", run)

    def signals(self, account: str | None = None, symbol: str | None = None) -> list[SignalRecord]:
        """The signal history (of ``account``, of ``symbol`` if given), in arrival order."""
        where: list[str] = []
        params: list[object] = []
        if account is not None:
            where.append("account = %s")
            params.append(account)
        if symbol is not None:
            where.append("symbol = %s")
            params.append(symbol)
        sql = f"SELECT {_SIGNAL_COLS} FROM signals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"

        def run(conn: Conn) -> list[SignalRecord]:
            return [codec.signal_from_row(r) for r in conn.execute(sql, params).fetchall()]

        return self._run("signals", run, bound=self._read_deadline)

    # -- internals

    def _configure(self, conn: Conn) -> None:
        """Session settings of a new pooled connection (on a pool thread), within the
        ``deadline``; on failure the connection is closed and the pool tries again."""
        try:
            with self._watchdog.watch(conn, time.monotonic() + self._deadline):
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
                    (f"{max(1000, int(self._deadline * 1000))}ms",),
                )
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _validate(c: Commit) -> None:
        pos = c.position
        if c.expected_version < 0:
            raise StoreRejected(f"commit for {c.key}: negative expected version")
        if pos is None:
            return
        if pos.key != c.key:
            raise StoreRejected(f"commit for {c.key} carries position {pos.id} of {pos.key}")
        if pos.version <= c.expected_version:
            raise StoreRejected(
                f"position {pos.id}: version {pos.version} does not follow expected version "
                f"{c.expected_version}"
            )

    @staticmethod
    def _fenced(conn: Conn, c: Commit, epoch: int | None) -> NoReturn:
        """The epoch check refused the commit (its transaction rolled back): say who owns
        the account now."""
        now = ""
        try:
            row = conn.execute(
                "SELECT epoch, host, pid FROM leases WHERE account = %s", (c.key.account,)
            ).fetchone()
        except psycopg.Error:
            row = None
        if row is not None:
            now = f"; the lease is at epoch {row[0]} (pid {row[2]} on {row[1]})"
        raise Fenced(
            f"commit for {c.key} refused: lease epoch {epoch} is not current{now}; nothing written"
        )

    @staticmethod
    def _stale(conn: Conn, c: Commit, pos: Position) -> NoReturn:
        """The guarded UPDATE matched no row (its transaction rolled back): say why."""
        row = conn.execute(
            "SELECT version, account, symbol FROM positions WHERE id = %s", (pos.id,)
        ).fetchone()
        if row is None:
            raise StaleVersion(
                f"position {pos.id} of {pos.key}: expected version {c.expected_version}, "
                "but the position is not in the database"
            )
        version, account, symbol = row
        if (account, symbol) != (pos.key.account, pos.key.symbol):
            raise StoreRejected(f"position {pos.id} belongs to {account}:{symbol}, not {pos.key}")
        raise StaleVersion(
            f"position {pos.id} of {pos.key}: expected version {c.expected_version}, found "
            f"version {version} (another writer got there first)"
        )

    def _changed_orders(self, c: Commit) -> list[tuple[int, OrderRecord]]:
        """``(index, order)`` to write: all of them, or, when this store wrote the position
        at the expected version, only those that changed since (the version check guarantees
        the database still holds what was written then)."""
        pos = c.position
        if pos is None:
            return []
        with self._written_lock:
            known = self._written.get(pos.id)
        if known is None or known[0] != c.expected_version or c.expected_version == 0:
            return list(enumerate(pos.orders))
        before = {o.client_id: (i, o) for i, o in enumerate(known[1])}
        return [(i, o) for i, o in enumerate(pos.orders) if before.get(o.client_id) != (i, o)]

    def _remember(self, pos: Position) -> None:
        with self._written_lock:
            if pos.status.terminal:
                self._written.pop(pos.id, None)
            else:
                self._written[pos.id] = (pos.version, pos.orders)

    def _forget(self, pos: Position | None) -> None:
        if pos is not None:
            with self._written_lock:
                self._written.pop(pos.id, None)

    def _unique_violation(
        self, conn: Conn, c: Commit, exc: psycopg.errors.UniqueViolation
    ) -> NoReturn:
        pos = c.position
        constraint = exc.diag.constraint_name
        if constraint == "positions_one_open" and pos is not None:
            holder = ""
            try:
                row = conn.execute(_OPEN_OF_KEY, (pos.key.account, pos.key.symbol)).fetchone()
                if row is not None:
                    holder = f" (position {row[0]}, {row[1]}, version {row[2]})"
            except psycopg.Error:
                pass
            raise StaleVersion(
                f"{pos.key} already has an open position{holder}: refusing position {pos.id} "
                f"as {pos.status.value} (I1, one open position per account and symbol)"
            ) from exc
        if constraint == "signals_once" and c.signal is not None:
            raise SignalSeen(
                f"signal {c.signal.signal_id!r} of {c.key.account} is in the signal history "
                f"already: not accepted again, position {pos.id if pos else '-'} not written"
            ) from exc
        if constraint == "positions_pkey" and pos is not None:
            raise StaleVersion(
                f"position {pos.id} of {pos.key} already exists: an insert (expected version 0) "
                "is stale"
            ) from exc
        raise StoreRejected(f"commit for {c.key}: unique constraint {constraint}: {exc}") from exc

    @property
    def degraded(self) -> bool:
        """True after a connection broke, until a call succeeds (waits are then short)."""
        return self._degraded

    def _bound(self) -> float:
        """The bound of a Store port call starting now."""
        return self._outage_timeout if self._degraded else self._deadline

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
            candidate = self._pool.getconn(timeout=max(wait, 0.001))
            if not _looks_dead(candidate):
                conn = candidate
                break
            candidate.close()
            self._pool.putconn(candidate)
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
            self._pool.putconn(conn)

    def _run(self, what: str, fn: Callable[[Conn], T], *, bound: float | None = None) -> T:
        return self._run_watched(what, lambda conn, _watch: fn(conn), bound=bound)

    def _run_watched(
        self, what: str, fn: Callable[[Conn, Watch], T], *, bound: float | None = None
    ) -> T:
        """``fn`` on a pooled connection, the whole call (checkout included) bounded by
        ``bound`` seconds (default: :meth:`_bound`); errors mapped by :meth:`_translate`."""
        if bound is None:
            bound = self._bound()
        until = time.monotonic() + bound
        with self._translate(what), self._connection(what, until, bound) as (conn, watch):
            result = fn(conn, watch)
        self._degraded = False
        return result

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Map driver errors onto the port's exceptions (see the module docstring)."""
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
