"""Tests written to kill the surviving mutants of the core's handling of the exchange's
answers (``make mutate``): the outcome of a placement, a cancel or a lookup, and the order
sent again after one (``resend``).

Each test drives :func:`actors.transition.transition` with messages only and pins the whole
result (the state after, the commit with every journal event and its detail, every effect).
The docstrings say which behaviour each pins and why it matters.
"""

from __future__ import annotations

from dataclasses import replace

from actors.effects import CancelOrder, CancelTimer, PlaceOrder, StartTimer
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    Message,
    OrderUpdate,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import ExchangeStatus, Key, OrderKind, OrderRecord, OrderState, Status
from actors.state import Commit, JournalEvent, JournalKind, Policy, SymbolState, Transition
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy()


def step(st: SymbolState, msg: Message, now: float = NOW) -> Transition:
    return transition(st, msg, Context(now, POLICY, 1))


def update(cid: str, status: str, filled: float = 0.0, avg: float | None = None) -> OrderUpdate:
    """An exchange report for one of our orders (status as the adapter normalises it)."""
    return OrderUpdate(KEY, cid, ExchangeStatus(status), filled, avg, NOW, cid)


def reply(
    cid: str,
    op: CallOp,
    kind: OrderKind,
    result: CallResult,
    reason: str = "",
    retry_after: float | None = None,
) -> ExchangeOutcome:
    """What the worker pool sends back for a call on ``cid``."""
    return ExchangeOutcome(KEY, op, cid, kind, result, reason, None, retry_after, None)


def opened() -> SymbolState:
    """A pending entry of 1.0 at mark 100, stop 90 (position id 1, entry ``ps1e1``)."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, signal_id="s1")).state
    assert st.position is not None and st.position.status is Status.PENDING_ENTRY
    return st


def protected() -> SymbolState:
    """The entry filled at 100 and its stop ``ps1s1`` confirmed: an active position."""
    st = step(opened(), update("ps1e1", "filled", 1.0, 100.0)).state
    st = step(st, update("ps1s1", "new")).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    return st


def order_of(st: SymbolState, cid: str) -> OrderRecord:
    assert st.position is not None
    order = st.position.order(cid)
    assert order is not None
    return order


def resent_whole(st: SymbolState, cid: str, now: float) -> tuple[Transition, OrderRecord]:
    """The retry timer of ``cid`` fires at ``now``: the transition, and the whole expected
    result of a resend (the order ``intended`` with one more attempt, one ``order_resent``
    event, one commit on top of the version the state holds)."""
    timer = TimerFired(KEY, TimerId(TimerKind.RETRY, cid))
    t = step(st, timer, now)
    pos = st.position
    assert pos is not None
    before = order_of(st, cid)
    again = replace(before, state=OrderState.INTENDED, attempts=before.attempts + 1)
    orders = tuple(again if o.client_id == cid else o for o in pos.orders)
    written = replace(pos, orders=orders, version=pos.version + 1, updated_at=now)
    event = JournalEvent(
        pos.id,
        JournalKind.ORDER_RESENT,
        pos.status,
        pos.status,
        now,
        {"client_id": cid, "attempt": before.attempts + 1},
    )
    assert t.state == replace(st, position=written)
    assert t.commit == Commit(KEY, timer, written, pos.version, (event,))
    return t, again


def test_a_close_sent_again_after_a_throttle_is_still_reduce_only() -> None:
    """A market close refused with a Retry-After waits that long and is then sent again
    under the same client id, and the order sent is **reduce-only** like the first one
    (``send_close``). Without the flag a close that races a stop's fill, a partial fill or
    a close already done on the exchange would open a position the other way, with no
    stop, at market. Pinned whole: the order, both flags, the attempt, the journal."""
    st = step(protected(), CloseRequest(KEY)).state
    first = order_of(st, "ps1c1")
    throttled = step(
        st,
        reply("ps1c1", CallOp.PLACE, OrderKind.CLOSE, CallResult.REJECTED, "429", 2.0),
        NOW + 1,
    )
    assert throttled.effects == (StartTimer(KEY, TimerId(TimerKind.RETRY, "ps1c1"), 2.0),)
    t, again = resent_whole(throttled.state, "ps1c1", NOW + 3)
    assert again == replace(first, attempts=2)
    assert t.effects == (PlaceOrder(KEY, 1, again, reduce_only=True, close_position=False),)


def test_an_entry_sent_again_after_a_throttle_is_a_plain_order() -> None:
    """The entry refused with a Retry-After is sent again the same way once the wait is
    over: neither reduce-only (it opens the position) nor close-position (that is the
    stop's). The contrast to the close above: the flags follow the order's kind."""
    st = opened()
    first = order_of(st, "ps1e1")
    throttled = step(
        st,
        reply("ps1e1", CallOp.PLACE, OrderKind.ENTRY, CallResult.REJECTED, "429", 5.0),
        NOW + 1,
    )
    assert throttled.effects == (StartTimer(KEY, TimerId(TimerKind.RETRY, "ps1e1"), 5.0),)
    t, again = resent_whole(throttled.state, "ps1e1", NOW + 6)
    assert again == replace(first, attempts=2)
    assert t.effects == (PlaceOrder(KEY, 1, again, reduce_only=False, close_position=False),)


def test_an_entry_cancel_confirmed_without_a_report_fails_the_position_as_it_was() -> None:
    """A close asked before anything filled cancels the entry; the exchange confirms the
    cancel with no order report. The position fails ``entry_canceled`` in one commit and its
    timers are stopped; the entry's record says ``canceled`` and nothing else about it
    changes: no fill, no exchange id, and no exchange time (its ``event_time`` stays the
    last one the exchange reported, here none: the cancel's answer carries no time)."""
    st = opened()
    asked = step(st, CloseRequest(KEY), NOW + 1)
    assert asked.effects == (CancelOrder(KEY, "ps1e1", OrderKind.ENTRY),)
    answer = reply("ps1e1", CallOp.CANCEL, OrderKind.ENTRY, CallResult.ACCEPTED)
    t = step(asked.state, answer, NOW + 2)
    pos = asked.state.position
    assert pos is not None
    entry = order_of(st, "ps1e1")
    assert entry.event_time == 0.0
    written = replace(
        pos,
        status=Status.FAILED,
        fail_reason="entry_canceled",
        orders=(replace(entry, state=OrderState.CANCELED),),
        version=pos.version + 1,
        updated_at=NOW + 2,
    )
    assert t.state == replace(asked.state, position=written)
    assert t.effects == (
        CancelTimer(KEY, TimerId(TimerKind.SL_DEADLINE)),
        CancelTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM)),
        CancelTimer(KEY, TimerId(TimerKind.CLOSE_RETRY)),
    )
    failed = JournalEvent(
        1,
        JournalKind.FAILED,
        Status.PENDING_ENTRY,
        Status.FAILED,
        NOW + 2,
        {"reason": "entry_canceled"},
    )
    assert t.commit == Commit(KEY, answer, written, pos.version, (failed,))
