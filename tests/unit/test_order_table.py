"""Every row of the order-state table, driven by the message that fires it.

Parametrised over :data:`actors.lifecycle.ORDER_TABLE`: each event has a builder that puts
one of our orders in the row's state and returns the message of the event; the order's
state after the transition is the row's. A new event without a builder fails (``KeyError``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from actors.lifecycle import ORDER_TABLE, OrderEvent
from actors.messages import (
    CallOp,
    CallResult,
    ExchangeOutcome,
    Message,
    OrderUpdate,
    Recover,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import ExchangeStatus, Key, OrderKind, OrderState, Status
from actors.state import Policy, Reentry, SymbolState
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy(reentry=Reentry.ALLOW, max_notional=1_000.0)


def run(st: SymbolState, *msgs: Message) -> SymbolState:
    for m in msgs:
        st = transition(st, m, Context(NOW, POLICY, 1)).state
    return st


def pending_entry() -> SymbolState:
    return run(priced(KEY, at=NOW), signal(size=1.0, stop=90.0))


def pending_sl() -> SymbolState:
    return run(pending_entry(), OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0))


def active() -> SymbolState:
    return run(pending_sl(), OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0))


def with_order(st: SymbolState, cid: str, state: OrderState, **pos: object) -> SymbolState:
    p = st.position
    assert p is not None
    orders = tuple(replace(o, state=state) if o.client_id == cid else o for o in p.orders)
    return replace(st, position=replace(p, orders=orders, **pos))  # type: ignore[arg-type]


def closed_with_stop(state: OrderState) -> SymbolState:
    return with_order(active(), "ps1s1", state, status=Status.CLOSED)


_REPORT = {
    OrderEvent.REPORTED_NEW: ("new", 0.0),
    OrderEvent.REPORTED_PARTIAL: ("partially_filled", 0.5),
    OrderEvent.REPORTED_FILLED: ("filled", 1.0),
    OrderEvent.REPORTED_CANCELED: ("canceled", 0.0),
    OrderEvent.REPORTED_REJECTED: ("rejected", 0.0),
}


def _report(event: OrderEvent) -> Callable[[OrderState], tuple[SymbolState, str, Message]]:
    status, qty = _REPORT[event]

    def build(s: OrderState) -> tuple[SymbolState, str, Message]:
        upd = OrderUpdate(KEY, "ps1e1", ExchangeStatus(status), qty, 100.0 if qty else None, 2.0)
        return with_order(pending_entry(), "ps1e1", s), "ps1e1", upd

    return build


def _outcome(op: str, cid: str, kind: OrderKind, result: CallResult, **kw: object) -> Message:
    return ExchangeOutcome(KEY, CallOp(op), cid, kind, result, **kw)  # type: ignore[arg-type]


def _lookup_not_found(s: OrderState) -> tuple[SymbolState, str, Message]:
    if s is OrderState.PENDING_CANCEL:
        st = with_order(active(), "ps1s1", s)
        cid, kind = "ps1s1", OrderKind.STOP_LOSS
    elif s is OrderState.ACCEPTED:
        st, cid, kind = active(), "ps1s1", OrderKind.STOP_LOSS
    else:  # past the lookup deadline: the entry never landed
        p = pending_entry().position
        assert p is not None
        entry = replace(p.orders[0], state=s, sent_at=NOW - 100.0)
        st = replace(pending_entry(), position=replace(p, orders=(entry,)))
        cid, kind = "ps1e1", OrderKind.ENTRY
    return st, cid, _outcome("lookup", cid, kind, CallResult.NOT_FOUND)


def _resend(s: OrderState) -> tuple[SymbolState, str, Message]:
    st = with_order(pending_sl(), "ps1s1", s)
    if s is OrderState.REJECTED:
        return st, "ps1s1", TimerFired(KEY, TimerId(TimerKind.RETRY, "ps1s1"))
    return st, "ps1s1", _outcome("lookup", "ps1s1", OrderKind.STOP_LOSS, CallResult.NOT_FOUND)


BUILDERS: dict[OrderEvent, Callable[[OrderState], tuple[SymbolState, str, Message]]] = {
    **{e: _report(e) for e in _REPORT},
    OrderEvent.CANCEL_REQUESTED: lambda s: (closed_with_stop(s), "ps1s1", Recover(KEY)),
    OrderEvent.PLACE_UNKNOWN: lambda s: (
        with_order(pending_entry(), "ps1e1", s),
        "ps1e1",
        _outcome("place", "ps1e1", OrderKind.ENTRY, CallResult.UNKNOWN),
    ),
    OrderEvent.RECOVERED: lambda s: (
        with_order(pending_entry(), "ps1e1", s),
        "ps1e1",
        Recover(KEY),
    ),
    OrderEvent.PLACE_REJECTED: lambda s: (
        closed_with_stop(s),
        "ps1s1",
        _outcome("place", "ps1s1", OrderKind.STOP_LOSS, CallResult.REJECTED, reason="margin"),
    ),
    OrderEvent.PLACE_THROTTLED: lambda s: (
        with_order(pending_entry(), "ps1e1", s),
        "ps1e1",
        _outcome("place", "ps1e1", OrderKind.ENTRY, CallResult.REJECTED, retry_after=1.0),
    ),
    OrderEvent.LOOKUP_NOT_FOUND: _lookup_not_found,
    OrderEvent.RESEND: _resend,
}


_O = OrderState
_SETTLED = (_O.FILLED, _O.CANCELED, _O.REJECTED)
_REPORTED_AS = {
    OrderEvent.REPORTED_NEW: _O.ACCEPTED,
    OrderEvent.REPORTED_PARTIAL: _O.PARTIALLY_FILLED,
    OrderEvent.REPORTED_FILLED: _O.FILLED,
    OrderEvent.REPORTED_CANCELED: _O.CANCELED,
    OrderEvent.REPORTED_REJECTED: _O.REJECTED,
}
_OURS = {
    OrderEvent.CANCEL_REQUESTED: _O.PENDING_CANCEL,
    OrderEvent.PLACE_UNKNOWN: _O.UNKNOWN,
    OrderEvent.RECOVERED: _O.UNKNOWN,
    OrderEvent.PLACE_REJECTED: _O.REJECTED,
    OrderEvent.PLACE_THROTTLED: _O.INTENDED,
    OrderEvent.LOOKUP_NOT_FOUND: _O.NOT_FOUND,
    OrderEvent.RESEND: _O.INTENDED,
}
#: Which states each event may come in (the rows), written apart from the table.
ROWS: dict[OrderEvent, tuple[OrderState, ...]] = {
    **{e: tuple(OrderState) for e in _REPORTED_AS},
    OrderEvent.CANCEL_REQUESTED: (_O.INTENDED, _O.UNKNOWN, _O.ACCEPTED, _O.PARTIALLY_FILLED),
    OrderEvent.PLACE_UNKNOWN: (_O.INTENDED,),
    OrderEvent.RECOVERED: (_O.INTENDED,),
    OrderEvent.PLACE_REJECTED: (
        _O.INTENDED,
        _O.UNKNOWN,
        _O.ACCEPTED,
        _O.PARTIALLY_FILLED,
        _O.PENDING_CANCEL,
        _O.NOT_FOUND,
    ),
    OrderEvent.PLACE_THROTTLED: (_O.INTENDED, _O.UNKNOWN),
    OrderEvent.LOOKUP_NOT_FOUND: (_O.INTENDED, _O.UNKNOWN, _O.ACCEPTED, _O.PENDING_CANCEL),
    OrderEvent.RESEND: (_O.INTENDED, _O.UNKNOWN, _O.REJECTED),
}


def expected(before: OrderState, event: OrderEvent) -> OrderState:
    """The rules the table encodes, stated apart from it: a settled order stays settled (a
    later report may raise its fill only), one we asked to cancel stays pending while it
    rests, otherwise a report says what the order is; our own events set their state."""
    if event in _REPORTED_AS:
        if before in _SETTLED:
            return before
        resting = event in (OrderEvent.REPORTED_NEW, OrderEvent.REPORTED_PARTIAL)
        if before is _O.PENDING_CANCEL and resting:
            return before
        return _REPORTED_AS[event]
    return _OURS[event]


def test_the_rows_are_the_table() -> None:
    assert set(ORDER_TABLE) == {(s, e) for e, states in ROWS.items() for s in states}


@pytest.mark.parametrize(
    ("before", "event"), list(ORDER_TABLE), ids=[f"{s}-{e}" for s, e in ORDER_TABLE]
)
def test_each_row_of_the_order_table(before: OrderState, event: OrderEvent) -> None:
    st, cid, msg = BUILDERS[event](before)
    pos = st.position
    assert pos is not None and pos.order(cid) is not None
    assert pos.order(cid).state is before  # type: ignore[union-attr]
    t = transition(st, msg, Context(NOW, POLICY, 1))
    after = t.state.position.order(cid) if t.state.position is not None else None
    assert after is not None
    assert after.state is expected(before, event) is ORDER_TABLE[(before, event)]
    events = t.commit.events if t.commit is not None else ()
    assert "illegal_transition" not in [e.kind for e in events]


def test_statuses_stored_before_the_enum_decode() -> None:
    """Rows written when ``OrderUpdate.status`` was the exchange's lower-case word decode
    into the enum (any case, the British spelling too); an unknown word is ``None`` for the
    adapters, never a status."""
    from infra.store.codec import decode_message, encode_message

    for word, status in [
        ("new", ExchangeStatus.NEW),
        ("expired", ExchangeStatus.EXPIRED),
        ("cancelled", ExchangeStatus.CANCELED),
        ("FILLED", ExchangeStatus.FILLED),
        ("finished", ExchangeStatus.FINISHED),
    ]:
        upd = OrderUpdate(KEY, "ps1e1", status, 0.0, None, 1.0)
        name, data = encode_message(upd)
        data["status"] = word
        assert decode_message(name, data) == upd
    assert ExchangeStatus.parse("new_insurance") is None
    assert ExchangeStatus.parse(None) is None


def test_timer_ids_are_stored_as_the_text_they_were() -> None:
    """A TimerFired cause is stored as its old text (``lookup:ps1e1``), so rows written
    before the id had a type decode, and new rows read the same."""
    from infra.store.codec import CodecError, decode_message, encode_message

    fired = TimerFired(KEY, TimerId(TimerKind.LOOKUP, "ps1e1"))
    name, data = encode_message(fired)
    assert data["name"] == "lookup:ps1e1"
    assert decode_message(name, data) == fired
    assert decode_message(name, {**data, "name": "close_retry"}) == TimerFired(
        KEY, TimerId(TimerKind.CLOSE_RETRY)
    )
    with pytest.raises(CodecError):
        decode_message(name, {**data, "name": "no_such_timer"})
