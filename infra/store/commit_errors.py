"""Why a commit was refused, said as the port's exceptions.

Called by :meth:`infra.store.postgres.PostgresStore.commit` on the committing actor's thread:
:func:`check_commit` before the statement is sent; the others after the statement refused the
commit and its transaction was rolled back, on the same connection (one more short read to
name the current holder or version, whose own failure is ignored or translated by the
caller). Each raises; nothing was written in any case.
"""

from __future__ import annotations

from typing import NoReturn

import psycopg
import psycopg.errors

from actors.ports import Fenced, SignalSeen, StaleVersion
from actors.state import Commit, Position
from infra.store.codec import NON_TERMINAL_SQL
from infra.store.connections import Conn, StoreRejected

__all__ = [
    "check_commit",
    "order_of_another_position",
    "raise_fenced",
    "raise_stale",
    "raise_unique_violation",
]

_OPEN_OF_KEY = (
    "SELECT id, status, version FROM positions "
    f"WHERE account = %s AND symbol = %s AND status IN {NON_TERMINAL_SQL}"
)


def check_commit(c: Commit) -> None:
    """Raise :class:`StoreRejected` for a commit no database could accept (a negative
    expected version, a position of another key, a version that does not follow)."""
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


def raise_fenced(conn: Conn, c: Commit, epoch: int | None) -> NoReturn:
    """The epoch check refused the commit: say who owns the account now."""
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


def raise_stale(conn: Conn, c: Commit, pos: Position) -> NoReturn:
    """The guarded UPDATE matched no row: say why."""
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


def raise_unique_violation(conn: Conn, c: Commit, exc: psycopg.errors.UniqueViolation) -> NoReturn:
    """A unique constraint refused the commit: a second open position of the key (I1), a
    signal id decided already, an insert of an existing position, or another one."""
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


def order_of_another_position(exc: BaseException) -> bool:
    """True when the statement failed because an order's client id belongs to another
    position (the commit statement then writes a NULL ``position_id``)."""
    return (
        isinstance(exc, psycopg.errors.NotNullViolation)
        and exc.diag.table_name == "orders"
        and exc.diag.column_name == "position_id"
    )
