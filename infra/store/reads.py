"""The read queries of the operator's commands, the live view and the tests: who owns each
account, and the history of positions, journal, signals and controls.

Two kinds, one home:

* **Ownership** (:func:`account_owners`, :func:`installation_view`; the CLI's ``status``): an
  account is owned by the process holding its lease (:mod:`infra.store.ownership`, I7): the
  ``leases`` row names the owning process (host, pid), the lease epoch, since when this epoch
  runs and when it expires (the database's clock). The owner's lease connection is found in
  ``pg_stat_activity`` by its name (``position-supervisor:lease:<host>:<pid>``; a process whose
  DSN names an ``application_name`` uses ``<that name>:lease``, and its backend is then not
  shown). The processes waiting for the account come from their heartbeats
  (``supervisor_processes``); the installation id and its alarms from ``installation`` and
  ``installation_alerts``. Each call opens one short connection, on the CLI's main thread.
* **History** (:class:`StoreReads`, the read methods of
  :class:`~infra.store.postgres.PostgresStore`: positions, journal, signals, controls): on the
  store's pool, bounded like every store call (:mod:`infra.store.connections`); the long
  histories get the store's ``read_deadline``. Called by the CLI, the live view's thread and
  tests.

Reads only: no lock taken, nothing changed. Raise :class:`~actors.ports.StoreUnavailable` when
the server cannot be reached (the history reads as :meth:`Connections.translate
<infra.store.connections.Connections.translate>` says).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from actors.messages import Message
from actors.model import Key
from actors.ports import StoreUnavailable
from actors.state import JournalEvent, Position, SignalRecord
from infra.store import codec
from infra.store.connections import Conn, Connections

__all__ = [
    "POSITIONS_WITH_ORDERS",
    "SIGNAL_COLS",
    "AccountOwner",
    "InstallationView",
    "JournalEntry",
    "StoreReads",
    "SymbolControl",
    "account_owners",
    "group_positions",
    "installation_view",
]

#: A process whose heartbeat is older than this is not listed as waiting.
STALE_PROCESS_S = 60.0

_OWNER_SQL = (
    "SELECT l.owner IS NOT NULL AND l.expires_at > now(), l.host, l.pid, l.epoch, "
    "extract(epoch FROM l.since)::float8, "
    "extract(epoch FROM l.expires_at - now())::float8, "
    "(SELECT a.pid FROM pg_stat_activity a "
    " WHERE a.application_name = 'position-supervisor:lease:' || l.host || ':' || l.pid "
    " AND a.datname = current_database() LIMIT 1), "
    "(SELECT coalesce(a.client_addr::text, 'local') FROM pg_stat_activity a "
    " WHERE a.application_name = 'position-supervisor:lease:' || l.host || ':' || l.pid "
    " AND a.datname = current_database() LIMIT 1), "
    "(SELECT array_agg('pid ' || p.pid || ' on ' || p.host ORDER BY p.started_at) "
    " FROM supervisor_processes p WHERE l.account = ANY(p.waits) AND p.stopped_at IS NULL "
    " AND p.seen_at > now() - make_interval(secs => %s)) "
    "FROM leases l WHERE l.account = %s"
)


@dataclass(frozen=True, slots=True)
class AccountOwner:
    """Who holds an account's lease. ``owned`` False: nobody now (never taken, given up, or
    expired: no supervisor manages it).

    ``host``/``pid``: the owning supervisor process (the last one, when not owned);
    ``epoch``: the lease's fencing token; ``since``: when that epoch began (epoch seconds);
    ``expires_in``: seconds until the lease expires (negative: expired that long ago);
    ``backend_pid``/``client``: the PostgreSQL backend and client address of the owner's
    lease connection, when it can be found; ``waiting``: the processes waiting for it.
    """

    account: str
    owned: bool
    host: str | None = None
    pid: int | None = None
    backend_pid: int | None = None
    application: str | None = None
    client: str | None = None
    since: float | None = None
    epoch: int | None = None
    expires_in: float | None = None
    waiting: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstallationView:
    """This database's installation id and the alarms of other installations seen on its
    accounts that no operator confirmed: ``(account, installation, client id, symbol)``."""

    id: int
    alarms: tuple[tuple[str, int, str, str], ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"{self.id:06d}"


def _connect(dsn: str, timeout_s: int) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=timeout_s,
        application_name="position-supervisor-cli",
    )


def account_owners(dsn: str, accounts: Iterable[str], timeout_s: int = 5) -> list[AccountOwner]:
    """The owner of each of ``accounts`` (in the order given), read from the server."""
    out: list[AccountOwner] = []
    try:
        with _connect(dsn, timeout_s) as conn:
            for account in accounts:
                row = conn.execute(_OWNER_SQL, (STALE_PROCESS_S, account)).fetchone()
                if row is None:
                    out.append(AccountOwner(account, owned=False))
                    continue
                owned, host, pid, epoch, since, left, backend, client, waiting = row
                out.append(
                    AccountOwner(
                        account,
                        owned=bool(owned),
                        host=str(host) if host is not None else None,
                        pid=int(str(pid)) if pid is not None else None,
                        backend_pid=int(str(backend)) if backend is not None else None,
                        application=(f"position-supervisor:lease:{host}:{pid}" if host else None),
                        client=str(client) if client is not None else None,
                        since=float(str(since)) if since is not None else None,
                        epoch=int(str(epoch)),
                        expires_in=float(str(left)) if left is not None else None,
                        waiting=tuple(str(w) for w in waiting or ()),  # type: ignore[attr-defined]
                    )
                )
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot read the account leases: {exc}") from exc
    return out


def installation_view(dsn: str, accounts: Iterable[str], timeout_s: int = 5) -> InstallationView:
    """The installation id and the unconfirmed alarms of ``accounts``."""
    try:
        with _connect(dsn, timeout_s) as conn:
            row = conn.execute("SELECT id FROM installation").fetchone()
            alarms = conn.execute(
                "SELECT account, installation, client_id, symbol FROM installation_alerts "
                "WHERE confirmed_at IS NULL AND account = ANY(%s) ORDER BY seen_at, account",
                (list(accounts),),
            ).fetchall()
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot read the installation: {exc}") from exc
    if row is None:
        raise StoreUnavailable("the installation table is empty (migration 3 not applied?)")
    return InstallationView(
        int(str(row[0])),
        tuple((str(a), int(str(i)), str(c), str(s)) for a, i, c, s in alarms),
    )


# --- history, on the store's pool ---------------------------------------------------------

_P_COLS = ", ".join(f"p.{c}" for c in codec.POSITION_COLUMNS)
_O_COLS = ", ".join(f"o.{c}" for c in codec.ORDER_COLUMNS)
_NP = len(codec.POSITION_COLUMNS)

POSITIONS_WITH_ORDERS = (
    f"SELECT {_P_COLS}, {_O_COLS} FROM positions p LEFT JOIN orders o ON o.position_id = p.id "
)
"""Positions joined with their orders; the caller adds ``WHERE`` and ``ORDER BY p.id, o.ord``
(rows for :func:`group_positions`)."""

SIGNAL_COLS = "account, symbol, signal_id, source, outcome, reason, at, position_id"
"""The columns of ``signals`` that :func:`infra.store.codec.signal_from_row` reads."""

_CONTROLS = (
    "SELECT account, symbol, paused, paused_at, paused_note, quarantined, quarantined_at, "
    "quarantined_note FROM symbol_controls WHERE paused OR quarantined"
)
_JOURNAL_COLS = (
    "id, account, symbol, position_id, kind, status_before, status_after, at, "
    "detail, cause_type, cause, extract(epoch FROM recorded_at)::float8"
)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One row of the journal as :meth:`StoreReads.journal` returns it."""

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
    """A symbol's stored control flags (:meth:`StoreReads.controls`): an operator's pause
    and a quarantine after repeated crashes, each with when (epoch seconds) and why."""

    key: Key
    paused: bool
    paused_at: float | None
    paused_note: str
    quarantined: bool
    quarantined_at: float | None
    quarantined_note: str


def group_positions(rows: Sequence[Sequence[Any]]) -> list[Position]:
    """Positions from rows of :data:`POSITIONS_WITH_ORDERS` ordered by position id, then ord."""
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


class StoreReads:
    """The history reads of a store (the base of :class:`~infra.store.postgres.PostgresStore`),
    on its :class:`~infra.store.connections.Connections`. ``read_deadline`` bounds the reads
    that may return a long history; the others get the port's bound. Thread-safe."""

    def __init__(self, db: Connections, read_deadline: float) -> None:
        self._db = db
        self._read_deadline = read_deadline

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
            where.append(f"p.status IN {codec.NON_TERMINAL_SQL}")
        sql = POSITIONS_WITH_ORDERS
        if where:
            sql += "WHERE " + " AND ".join(where) + " "
        sql += "ORDER BY p.id, o.ord"

        def run(conn: Conn) -> list[Position]:
            return group_positions(conn.execute(sql, params).fetchall())

        # open_positions() is the Store port's (startup recovery): the port's bound.
        return self._db.run(
            "positions", run, bound=self._read_deadline if include_terminal else None
        )

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

        return self._db.run("journal", run, bound=self._read_deadline)

    def controls(self) -> list[SymbolControl]:
        """Every symbol an operator paused or the restart policy quarantined, by key."""

        def run(conn: Conn) -> list[SymbolControl]:
            rows = conn.execute(_CONTROLS + " ORDER BY account, symbol").fetchall()
            return [
                SymbolControl(Key(a, s), bool(p), pa, pn, bool(q), qa, qn)
                for a, s, p, pa, pn, q, qa, qn in rows
            ]

        return self._db.run("controls", run)

    def recent_journal(self, limit: int = 20) -> list[JournalEntry]:
        """The last ``limit`` journal events of every symbol, newest first (the live view).
        Bounded like a port call (the page must not wait for a slow database)."""

        def run(conn: Conn) -> list[JournalEntry]:
            rows = conn.execute(
                f"SELECT {_JOURNAL_COLS} FROM journal ORDER BY id DESC LIMIT %s", (limit,)
            ).fetchall()
            return [_journal_entry(r) for r in rows]

        return self._db.run("recent journal", run)

    def recent_signals(self, limit: int = 20) -> list[SignalRecord]:
        """The last ``limit`` signals of every symbol, newest first (the live view)."""

        def run(conn: Conn) -> list[SignalRecord]:
            rows = conn.execute(
                f"SELECT {SIGNAL_COLS} FROM signals ORDER BY id DESC LIMIT %s", (limit,)
            ).fetchall()
            return [codec.signal_from_row(r) for r in rows]

        return self._db.run("recent signals", run)

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
        sql = f"SELECT {SIGNAL_COLS} FROM signals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"

        def run(conn: Conn) -> list[SignalRecord]:
            return [codec.signal_from_row(r) for r in conn.execute(sql, params).fetchall()]

        return self._db.run("signals", run, bound=self._read_deadline)
