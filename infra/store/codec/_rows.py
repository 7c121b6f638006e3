"""Rows: the actor value types as the columns of ``positions``, ``orders``, ``signals`` and
``journal``, and back.

:func:`position_params` / :func:`order_params` / :func:`signal_params` turn a
:class:`~actors.state.Position`, an :class:`~actors.model.OrderRecord` and a
:class:`~actors.state.SignalRecord` into parameter tuples in column order
(:data:`POSITION_COLUMNS`, :data:`ORDER_COLUMNS`); the ``*_from_row`` functions turn the
columns back. The round trip is exact: floats are stored as ``double precision``, enums as
their string value. Pure functions, no I/O, safe from any thread; encoders raise
:class:`TypeError` for a value they cannot represent.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping, Sequence
from typing import Any

from actors.model import (
    NON_TERMINAL,
    CloseReason,
    Key,
    OrderKind,
    OrderRecord,
    OrderState,
    Side,
    Status,
)
from actors.state import JournalEvent, JournalKind, Position, SignalOutcome, SignalRecord

__all__ = [
    "NON_TERMINAL_SQL",
    "ORDER_COLUMNS",
    "POSITION_COLUMNS",
    "POSITION_COLUMN_TYPES",
    "event_from_row",
    "order_from_row",
    "order_params",
    "position_from_row",
    "position_params",
    "signal_from_row",
    "signal_params",
]

NON_TERMINAL_SQL = "(" + ", ".join(f"'{s.value}'" for s in NON_TERMINAL) + ")"
"""The non-terminal statuses as an SQL list, for ``status IN ...``."""

POSITION_COLUMN_TYPES: Mapping[str, str] = types.MappingProxyType(
    {
        "id": "bigint",
        "account": "text",
        "symbol": "text",
        "side": "text",
        "status": "text",
        "source": "text",
        "signal_id": "text",
        "requested_qty": "double precision",
        "qty": "double precision",
        "stop_price": "double precision",
        "entry_price": "double precision",
        "take_profit": "double precision",
        "trailing_distance": "double precision",
        "best_price": "double precision",
        "close_reason": "text",
        "fail_reason": "text",
        "created_at": "double precision",
        "updated_at": "double precision",
        "filled_at": "double precision",
        "protected_at": "double precision",
        "closed_at": "double precision",
        "stop_seq": "integer",
        "close_seq": "integer",
        "sl_failures": "integer",
        "sl_since": "double precision",
        "version": "bigint",
    }
)
"""The columns of ``positions`` in the order the store reads and writes them, with their SQL
types (the commit statement casts its parameters to them)."""

POSITION_COLUMNS: tuple[str, ...] = tuple(POSITION_COLUMN_TYPES)
"""Column order of ``positions`` as read and written by the store."""

ORDER_COLUMNS: tuple[str, ...] = (
    "client_id",
    "position_id",
    "ord",
    "kind",
    "side",
    "qty",
    "state",
    "trigger_price",
    "filled_qty",
    "avg_price",
    "exchange_id",
    "event_time",
    "sent_at",
    "attempts",
)
"""Column order of ``orders``; ``ord`` is the order's index in ``Position.orders``."""


def _enum_value(x: object) -> str:
    """The string stored for an enum field (plain strings pass through unchanged)."""
    if isinstance(x, enum.Enum):
        return str(x.value)
    if isinstance(x, str):
        return x
    raise TypeError(f"expected an enum or a string, got {type(x).__name__}")


def _opt_enum_value(x: object) -> str | None:
    return None if x is None else _enum_value(x)


def position_params(p: Position) -> tuple[object, ...]:
    """Parameters for :data:`POSITION_COLUMNS`, in that order."""
    return (
        p.id,
        p.key.account,
        p.key.symbol,
        _enum_value(p.side),
        _enum_value(p.status),
        p.source,
        p.signal_id,
        p.requested_qty,
        p.qty,
        p.stop_price,
        p.entry_price,
        p.take_profit,
        p.trailing_distance,
        p.best_price,
        _opt_enum_value(p.close_reason),
        p.fail_reason,
        p.created_at,
        p.updated_at,
        p.filled_at,
        p.protected_at,
        p.closed_at,
        p.stop_seq,
        p.close_seq,
        p.sl_failures,
        p.sl_since,
        p.version,
    )


def order_params(position_id: int, ord_: int, o: OrderRecord) -> tuple[object, ...]:
    """Parameters for :data:`ORDER_COLUMNS`, in that order."""
    return (
        o.client_id,
        position_id,
        ord_,
        _enum_value(o.kind),
        o.side,
        o.qty,
        _enum_value(o.state),
        o.trigger_price,
        o.filled_qty,
        o.avg_price,
        o.exchange_id,
        o.event_time,
        o.sent_at,
        o.attempts,
    )


def order_from_row(row: Sequence[Any]) -> OrderRecord:
    """An order from a row in :data:`ORDER_COLUMNS` order."""
    (
        client_id,
        _position_id,
        _ord,
        kind,
        side,
        qty,
        state,
        trigger_price,
        filled_qty,
        avg_price,
        exchange_id,
        event_time,
        sent_at,
        attempts,
    ) = row
    return OrderRecord(
        client_id=client_id,
        kind=OrderKind(kind),
        side=side,
        qty=qty,
        state=OrderState(state),
        trigger_price=trigger_price,
        filled_qty=filled_qty,
        avg_price=avg_price,
        exchange_id=exchange_id,
        event_time=event_time,
        sent_at=sent_at,
        attempts=attempts,
    )


def position_from_row(row: Sequence[Any], orders: Sequence[OrderRecord] = ()) -> Position:
    """A position from a row in :data:`POSITION_COLUMNS` order, with its orders."""
    (
        id_,
        account,
        symbol,
        side,
        status,
        source,
        signal_id,
        requested_qty,
        qty,
        stop_price,
        entry_price,
        take_profit,
        trailing_distance,
        best_price,
        close_reason,
        fail_reason,
        created_at,
        updated_at,
        filled_at,
        protected_at,
        closed_at,
        stop_seq,
        close_seq,
        sl_failures,
        sl_since,
        version,
    ) = row
    return Position(
        id=id_,
        key=Key(account, symbol),
        side=Side(side),
        status=Status(status),
        source=source,
        requested_qty=requested_qty,
        stop_price=stop_price,
        created_at=created_at,
        updated_at=updated_at,
        signal_id=signal_id,
        qty=qty,
        entry_price=entry_price,
        take_profit=take_profit,
        trailing_distance=trailing_distance,
        orders=tuple(orders),
        close_reason=None if close_reason is None else CloseReason(close_reason),
        fail_reason=fail_reason,
        filled_at=filled_at,
        protected_at=protected_at,
        closed_at=closed_at,
        best_price=best_price,
        stop_seq=stop_seq,
        close_seq=close_seq,
        sl_failures=sl_failures,
        sl_since=sl_since,
        version=version,
    )


def signal_params(r: SignalRecord) -> tuple[object, ...]:
    """Parameters for ``signals (account, symbol, signal_id, source, outcome, reason, at,
    position_id)``."""
    return (
        r.key.account,
        r.key.symbol,
        r.signal_id,
        r.source,
        _enum_value(r.outcome),
        r.reason,
        r.at,
        r.position_id,
    )


def signal_from_row(row: Sequence[Any]) -> SignalRecord:
    """A signal record from a row in :func:`signal_params` order."""
    account, symbol, signal_id, source, outcome, reason, at, position_id = row
    return SignalRecord(
        key=Key(account, symbol),
        signal_id=signal_id,
        source=source,
        outcome=SignalOutcome(outcome),
        reason=reason,
        at=at,
        position_id=position_id,
    )


_JOURNAL_KINDS = frozenset(k.value for k in JournalKind)


def event_from_row(
    position_id: int | None,
    kind: str,
    status_before: str | None,
    status_after: str | None,
    at: float,
    detail: Mapping[str, object],
) -> JournalEvent:
    """A journal event from its columns (``detail`` as loaded from ``jsonb``)."""
    return JournalEvent(
        position_id=position_id,
        kind=JournalKind(kind) if kind in _JOURNAL_KINDS else kind,
        status_before=None if status_before is None else Status(status_before),
        status_after=None if status_after is None else Status(status_after),
        at=at,
        detail=dict(detail),
    )
