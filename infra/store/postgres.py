"""The PostgreSQL implementation of :class:`actors.ports.Store` (psycopg 3 + psycopg-pool).

One :class:`PostgresStore` per process, shared by every position actor: each method borrows a
connection from a :class:`psycopg_pool.ConnectionPool`, so many actor threads call it at once.
This module holds the port (``load``, ``commit``, ``allocate_ids``, ``open_positions``,
``recorded_signal``) and the store's lifecycle; the pool, its health and the translation of
driver errors are :mod:`infra.store.connections`; the commit statement and its values
:mod:`infra.store.commit_sql`; the explanations of a refused commit
:mod:`infra.store.commit_errors`; the history reads (positions, journal, signals, controls)
:class:`infra.store.reads.StoreReads`, which :class:`PostgresStore` extends. Slightly over
400 lines, most of them this failure contract.

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
* :class:`~actors.ports.SignalSeen`: the commit accepts, or finally refuses, a signal whose
  id the account's signal history holds a final decision on already (the ``signals_once``
  constraint; for a refusal, the ``signal_ids`` row it could not bind). Nothing was written:
  the caller answers with the recorded decision.
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

import threading
from collections.abc import Callable, Sequence

import psycopg
import psycopg.errors
from psycopg.rows import TupleRow

from actors.model import Key, OrderRecord
from actors.ports import Fenced, SignalSeen, Snapshot, StoreError, StoreUnavailable
from actors.state import Commit, Position, SignalRecord
from infra.store import codec, commit_sql
from infra.store.commit_errors import (
    check_commit,
    order_of_another_position,
    raise_fenced,
    raise_stale,
    raise_unique_violation,
)
from infra.store.connections import Conn, Connections, StoreRejected, rollback
from infra.store.deadline import Watch
from infra.store.migrations import migrate
from infra.store.reads import (
    POSITIONS_WITH_ORDERS,
    SIGNAL_COLS,
    JournalEntry,
    StoreReads,
    SymbolControl,
    group_positions,
)

# JournalEntry, SymbolControl and StoreRejected are the types of this store's answers and
# refusals; they are named here too, where their users import the store.
__all__ = ["JournalEntry", "PostgresStore", "StoreRejected", "SymbolControl"]


_LATEST_OF_KEY = (
    POSITIONS_WITH_ORDERS + "WHERE p.id = (SELECT id FROM positions "
    "WHERE account = %s AND symbol = %s "
    f"ORDER BY status IN {codec.NON_TERMINAL_SQL} DESC, id DESC LIMIT 1) "
    "ORDER BY o.ord"
)
_KEY_FACTS = (
    "SELECT max(closed_at) FILTER (WHERE status = 'closed'), "
    "coalesce(bool_or(qty > 0 OR filled_at IS NOT NULL), false) "
    "FROM positions WHERE account = %s AND symbol = %s"
)
_RECENT_SIGNALS = (
    f"SELECT {SIGNAL_COLS} FROM (SELECT id, {SIGNAL_COLS} FROM signals "
    "WHERE account = %s AND symbol = %s AND NOT retry ORDER BY id DESC LIMIT %s) r ORDER BY id"
)
_RECORDED_SIGNAL = (
    f"SELECT {SIGNAL_COLS} FROM signals WHERE account = %s AND signal_id = %s AND NOT retry"
)
_CONTROLS_OF_KEY = (
    "SELECT paused, quarantined FROM symbol_controls WHERE account = %s AND symbol = %s"
)
_READ_ONLY = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


class PostgresStore(StoreReads):
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
        self._recent = recent_signals
        self._epochs = epochs
        # Orders as this store last wrote them, per non-terminal position: (version, orders).
        self._written: dict[int, tuple[int, tuple[OrderRecord, ...]]] = {}
        self._written_lock = threading.Lock()
        if migrate_schema:
            migrate(dsn)
        super().__init__(
            Connections(
                dsn,
                pool_min=pool_min,
                pool_max=pool_max,
                deadline=deadline,
                timeout=timeout,
                outage_timeout=outage_timeout,
                reconnect_timeout=reconnect_timeout,
                statement_timeout=statement_timeout,
                name=name,
            ),
            read_deadline,
        )

    # -- lifecycle

    def fence_with(self, epochs: Callable[[str], int | None]) -> None:
        """Fence every later commit with ``epochs(account)`` (I7): the lease epoch this
        process holds for the account, or ``None`` when it may not write it (the commit is
        then refused with :class:`Fenced` without being sent). Called once at start, before
        any actor commits; ``epochs`` is called on actor threads and must not block."""
        self._epochs = epochs

    @property
    def written_positions(self) -> int:
        """How many non-terminal positions the store remembers the written orders of (its
        per-key memory, reported by the supervisor's ``structure_sizes``). Any thread."""
        with self._written_lock:
            return len(self._written)

    def close(self, timeout: float = 5.0) -> None:
        """Close every connection and stop the pool's and the watchdog's threads; a call still
        in flight is abandoned (it raises :class:`StoreUnavailable`). Idempotent. Later calls
        raise :class:`StoreUnavailable`."""
        self._db.close(timeout)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """Round trip to the server within the full ``deadline`` (also while degraded: this
        is the health probe); raises :class:`StoreUnavailable` when it is not reachable."""
        self._db.run("ping", lambda conn: conn.execute("SELECT 1"), bound=self._db.deadline)

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
                found = group_positions(
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

        return self._db.run(f"load {key}", run)

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
            check_commit(commit)
            changed = self._changed_orders(commit)
            n_orders = len(changed)
            values = commit_sql.commit_values(commit, changed)
            values["epoch"] = epoch
            params = stmt.params(values)
        except (TypeError, ValueError, AttributeError) as exc:
            raise StoreRejected(f"commit for {commit.key}: cannot encode: {exc}") from exc

        bound = self._db.bound()

        def run(conn: Conn, watch: Watch) -> None:
            cur = psycopg.RawCursor(conn)
            try:
                cur.execute("BEGIN")
                row = cur.execute(stmt.query, params).fetchone()
            except BaseException as exc:
                self._forget(pos)
                rollback(conn)
                if pos is not None and isinstance(exc, psycopg.errors.UniqueViolation):
                    raise_unique_violation(conn, commit, exc)
                if pos is not None and order_of_another_position(exc):
                    raise StoreRejected(
                        f"position {pos.id}: an order client id of it belongs to another "
                        "position; nothing written"
                    ) from exc
                raise
            written, orders, current = row if row is not None else (0, 0, True)
            if not current:
                self._forget(pos)
                rollback(conn)
                raise_fenced(conn, commit, epoch)
            sig = commit.signal
            if stmt is commit_sql.EVENTS_ONLY and sig is not None and not sig.retry and not orders:
                # A final refusal of an id decided already (a replay older than the actor's
                # memory): the caller answers with the recorded decision (I11), not this one.
                rollback(conn)
                raise SignalSeen(
                    f"signal {sig.signal_id!r} of {commit.key.account} is in the signal "
                    "history already: answered with its recorded outcome"
                )
            if pos is not None and not written:
                self._forget(pos)
                rollback(conn)
                raise_stale(conn, commit, pos)
            if pos is not None and orders != n_orders:  # cannot happen: a conflict aborts
                self._forget(pos)
                rollback(conn)
                raise StoreError(f"position {pos.id}: {orders} of {n_orders} orders written")
            try:
                self._commit_transaction(cur, watch, what, bound)
            except BaseException:
                self._forget(pos)
                raise
            if pos is not None:
                self._remember(pos)

        self._db.run_watched(what, run, bound=bound)

    def _commit_transaction(
        self, cur: psycopg.RawCursor[TupleRow], watch: Watch, what: str, bound: float
    ) -> None:
        """Send ``COMMIT`` when enough of the bound is left to hear its answer; else close
        the connection, so that the server rolls the transaction back (the caller gets
        :class:`StoreUnavailable`, and nothing is written)."""
        left = watch.remaining()
        if left < bound / 4:
            cur.connection.close()
            self._db.mark_degraded()
            raise StoreUnavailable(
                f"{what}: the database took {bound - left:.2f}s of the {bound:.2f}s bound to "
                "answer the statement; not committed (the transaction is rolled back)"
            )
        watch.note = "its COMMIT was sent: outcome unknown (it is written if the server got it)"
        cur.execute("COMMIT")

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

        return self._db.run("allocate_ids", run)

    def open_positions(self, account: str | None = None) -> list[Position]:
        """Every non-terminal position (of ``account`` if given) with its orders, by id."""
        return self.positions(account, include_terminal=False)

    def recorded_signal(self, account: str, signal_id: str) -> SignalRecord | None:
        """The final decision on ``signal_id`` in the account's signal history, or None."""

        def run(conn: Conn) -> SignalRecord | None:
            row = conn.execute(_RECORDED_SIGNAL, (account, signal_id)).fetchone()
            return None if row is None else codec.signal_from_row(row)

        return self._db.run("recorded signal", run)

    # -- internals

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

    @property
    def degraded(self) -> bool:
        """True after a connection broke, until a call succeeds (waits are then short)."""
        return self._db.degraded
