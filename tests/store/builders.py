"""Values for store tests: positions, orders and commits as the state machine makes them."""

from __future__ import annotations

from dataclasses import replace

from actors.messages import Message, OpenSignal, OrderUpdate
from actors.model import ExchangeStatus, Key, OrderKind, OrderRecord, OrderState, Side, Status
from actors.state import (
    Commit,
    JournalEvent,
    Position,
    SignalOutcome,
    SignalRecord,
    client_order_id,
)

__all__ = ["KEY", "advance", "entry_commit", "new_position", "refusal_commit"]

KEY = Key("acc1", "BTCUSDT")


def new_position(pid: int, key: Key = KEY, *, at: float = 1_700_000_000.25) -> Position:
    """A ``pending_entry`` position with its intended entry order (version 1)."""
    entry = OrderRecord(
        client_id=client_order_id(pid, OrderKind.ENTRY, 1),
        kind=OrderKind.ENTRY,
        side="buy",
        qty=0.5,
        state=OrderState.INTENDED,
        sent_at=at,
        attempts=1,
    )
    return Position(
        id=pid,
        key=key,
        side=Side.LONG,
        status=Status.PENDING_ENTRY,
        source="sniper",
        signal_id=f"sig-{pid}",
        requested_qty=0.5,
        stop_price=61_234.5,
        take_profit=70_000.125,
        trailing_distance=150.0,
        created_at=at,
        updated_at=at,
        orders=(entry,),
        version=1,
    )


def entry_commit(pos: Position) -> Commit:
    """The commit of an accepted signal: the new position, its event, its signal record."""
    sig = OpenSignal(
        pos.key,
        pos.signal_id or "sig",
        pos.source,
        pos.side,
        pos.requested_qty,
        pos.stop_price,
        take_profit=pos.take_profit,
        created_at=pos.created_at,
    )
    rec = SignalRecord(
        pos.key,
        sig.signal_id,
        sig.source,
        SignalOutcome.ACCEPTED,
        "",
        pos.created_at,
        pos.id,
    )
    event = JournalEvent(pos.id, "entry_intent", None, pos.status, pos.created_at, {})
    return Commit(pos.key, sig, pos, 0, (event,), rec)


def advance(
    pos: Position,
    *,
    status: Status | None = None,
    cause: Message | None = None,
    kind: str = "step",
    steps: int = 1,
    **changes: object,
) -> tuple[Position, Commit]:
    """The next version of ``pos`` (``steps`` versions later, as merged commits do) and the
    commit that writes it."""
    before = pos.status
    new = replace(pos, **changes)  # type: ignore[arg-type]
    if status is not None:
        new = replace(new, status=status)
    new = replace(new, version=pos.version + steps, updated_at=pos.updated_at + 1.0)
    msg = cause or OrderUpdate(
        pos.key, f"ps{pos.id}e1", ExchangeStatus.NEW, 0.0, None, new.updated_at
    )
    event = JournalEvent(pos.id, kind, before, new.status, new.updated_at, {"via": "test"})
    return new, Commit(pos.key, msg, new, pos.version, (event,))


def refusal_commit(key: Key, signal_id: str, at: float, reason: str = "cooldown") -> Commit:
    """A refused signal: no position, one event, one signal record."""
    sig = OpenSignal(key, signal_id, "whale", Side.LONG, 1.0, 1.0)
    rec = SignalRecord(key, signal_id, "whale", SignalOutcome.COOLDOWN, reason, at)
    event = JournalEvent(None, "signal_refused", None, None, at, {"reason": reason})
    return Commit(key, sig, None, 0, (event,), rec)
