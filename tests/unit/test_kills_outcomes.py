"""Tests written to kill the surviving mutants of the core's handling of the exchange's
answers (``make mutate``): the outcome of a placement, a cancel or a lookup, and the order
sent again after one (``resend``).

Each test drives :func:`actors.transition.transition` with messages only and pins the whole
result (the state after, the commit with every journal event and its detail, every effect).
The docstrings say which behaviour each pins and why it matters.
"""

from __future__ import annotations

from dataclasses import replace

from actors.effects import CancelOrder, CancelTimer, PlaceOrder, RequestSync, StartTimer
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    OrderUpdate,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import (
    CloseReason,
    ExchangeStatus,
    OrderKind,
    OrderRecord,
    OrderState,
    Status,
)
from actors.state import Commit, JournalEvent, JournalKind, SymbolState, Transition
from testkit.world import priced
from tests.unit.kills import (
    KEY,
    NOW,
    POLICY,
    assert_whole,
    opened,
    protected,
    reply,
    step,
    update,
)


def order_of(st: SymbolState, cid: str) -> OrderRecord:
    assert st.position is not None
    order = st.position.order(cid)
    assert order is not None
    return order


def resent_whole(st: SymbolState, cid: str, now: float) -> tuple[Transition, OrderRecord]:
    """The retry timer of ``cid`` fires at ``now``: the transition, and the whole expected
    result of a resend (the order ``intended``, sent now, one more attempt, one
    ``order_resent`` event, one commit on top of the version the state holds)."""
    timer = TimerFired(KEY, TimerId(TimerKind.RETRY, cid))
    t = step(st, timer, now)
    pos = st.position
    assert pos is not None
    before = order_of(st, cid)
    again = replace(before, state=OrderState.INTENDED, attempts=before.attempts + 1, sent_at=now)
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


def throttled_then_resent(
    st: SymbolState, cid: str, kind: OrderKind, wait: float
) -> tuple[Transition, OrderRecord]:
    """The placement of ``cid`` refused at ``NOW + 1`` with a Retry-After of ``wait``: its
    retry timer starts for that long and nothing else is sent; when it fires the order is
    sent again whole (:func:`resent_whole`), the same order one attempt on, sent then."""
    first = order_of(st, cid)
    throttled = step(st, reply(cid, CallOp.PLACE, kind, CallResult.REJECTED, "429", wait), NOW + 1)
    assert throttled.effects == (StartTimer(KEY, TimerId(TimerKind.RETRY, cid), wait),)
    t, again = resent_whole(throttled.state, cid, NOW + 1 + wait)
    assert again == replace(first, attempts=2, sent_at=NOW + 1 + wait)
    return t, again


def test_a_close_sent_again_after_a_throttle_is_still_reduce_only() -> None:
    """A market close refused with a Retry-After waits that long and is then sent again
    under the same client id, and the order sent is **reduce-only** like the first one
    (``send_close``). Without the flag a close that races a stop's fill, a partial fill or
    a close already done on the exchange would open a position the other way, with no
    stop, at market. Pinned whole: the order, both flags, the attempt, the journal."""
    st = step(protected(), CloseRequest(KEY)).state
    t, again = throttled_then_resent(st, "ps1c1", OrderKind.CLOSE, 2.0)
    assert t.effects == (PlaceOrder(KEY, 1, again, reduce_only=True, close_position=False),)


def test_an_entry_sent_again_after_a_throttle_is_a_plain_order() -> None:
    """The entry refused with a Retry-After is sent again the same way once the wait is
    over: neither reduce-only (it opens the position) nor close-position (that is the
    stop's). The contrast to the close above: the flags follow the order's kind."""
    t, again = throttled_then_resent(opened(), "ps1e1", OrderKind.ENTRY, 5.0)
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
    failed = JournalEvent(
        1,
        JournalKind.FAILED,
        Status.PENDING_ENTRY,
        Status.FAILED,
        NOW + 2,
        {"reason": "entry_canceled"},
    )
    assert_whole(
        t,
        asked.state,
        answer,
        NOW + 2,
        status=Status.FAILED,
        fail_reason="entry_canceled",
        orders=(replace(entry, state=OrderState.CANCELED),),
        effects=(
            CancelTimer(KEY, TimerId(TimerKind.SL_DEADLINE)),
            CancelTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM)),
            CancelTimer(KEY, TimerId(TimerKind.CLOSE_RETRY)),
        ),
        events=(failed,),
    )


def test_an_answer_for_no_position_or_an_order_it_does_not_know_changes_nothing() -> None:
    """An answer of the exchange that names no order of ours to act on: the symbol holds
    no position (an answer that outlived its position's memory), or the position does not
    know the client id and it is not the close a restart may have lost. Nothing changes,
    nothing is written, nothing is sent; the answer never raises."""
    empty = priced(KEY, at=NOW)
    for op in (CallOp.PLACE, CallOp.CANCEL, CallOp.LOOKUP):
        answer = reply("ps1e1", op, OrderKind.ENTRY, CallResult.ACCEPTED)
        assert step(empty, answer) == Transition(empty)
    st = protected()
    for cid, kind in (("ps1s7", OrderKind.STOP_LOSS), ("ps1c5", OrderKind.CLOSE)):
        for op in (CallOp.PLACE, CallOp.CANCEL, CallOp.LOOKUP):
            assert step(st, reply(cid, op, kind, CallResult.ACCEPTED)) == Transition(st)


def test_an_entry_that_lands_after_its_position_failed_not_found_is_cancelled() -> None:
    """A close asked while the entry is in flight; the cancel says "not found" and the
    lookup, past ``lookup_deadline_s``, knows nothing of it either: the position fails
    ``entry_not_found`` and a sync is asked. Then the placement's own answer comes back:
    accepted, with no order report (a slow gateway). The entry rests after all and nothing
    needs it: it is recorded ``accepted`` (an ``order_fact`` via the reply) and cancelled at
    once (``pending_cancel``, reason ``not needed``), or it would fill into a second
    position behind the supervisor's back. Its record gets no exchange time."""
    st = step(opened(), CloseRequest(KEY), NOW + 1).state
    not_open = reply("ps1e1", CallOp.CANCEL, OrderKind.ENTRY, CallResult.NOT_FOUND)
    st = step(st, not_open, NOW + 2).state
    lookup = reply("ps1e1", CallOp.LOOKUP, OrderKind.ENTRY, CallResult.NOT_FOUND)
    failed = step(st, lookup, NOW + 11)
    assert failed.effects[-1] == RequestSync(KEY, "entry not found")
    pos = failed.state.position
    assert pos is not None and pos.status is Status.FAILED
    assert pos.fail_reason == "entry_not_found"
    entry = order_of(failed.state, "ps1e1")
    assert entry.state is OrderState.NOT_FOUND and entry.event_time == 0.0

    answer = reply("ps1e1", CallOp.PLACE, OrderKind.ENTRY, CallResult.ACCEPTED)
    t = step(failed.state, answer, NOW + 12)
    cancelling = replace(entry, state=OrderState.PENDING_CANCEL)
    events = (
        JournalEvent(
            1,
            JournalKind.ORDER_FACT,
            Status.FAILED,
            Status.FAILED,
            NOW + 12,
            {"client_id": "ps1e1", "state": "accepted", "filled": 0.0, "via": "reply"},
        ),
        JournalEvent(
            1,
            JournalKind.CANCEL_REQUESTED,
            Status.FAILED,
            Status.FAILED,
            NOW + 12,
            {"client_id": "ps1e1", "why": "not needed"},
        ),
    )
    assert_whole(
        t,
        failed.state,
        answer,
        NOW + 12,
        orders=(cancelling,),
        effects=(CancelOrder(KEY, "ps1e1", OrderKind.ENTRY, "not needed"),),
        events=events,
    )


def test_a_close_in_doubt_when_the_stop_filled_is_recorded_not_found_and_not_retried() -> None:
    """Closing, the close's placement unanswered (timeout: ``unknown``), the stop fills:
    the position is closed ``stop_loss``. The close's lookup, past ``lookup_deadline_s``,
    knows nothing of it: it is recorded ``not_found`` (an ``order_fact``), and that is
    all. No close is sent again, no close retry is scheduled and no sync asked: the
    position is closed, and a close retry for it would be noise at best."""
    st = step(protected(), CloseRequest(KEY), NOW + 1).state
    unknown = reply("ps1c1", CallOp.PLACE, OrderKind.CLOSE, CallResult.UNKNOWN, "timeout")
    st = step(st, unknown, NOW + 2).state
    st = step(st, update("ps1s1", "filled", 1.0, 90.0), NOW + 3).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSED
    close = order_of(st, "ps1c1")
    assert close.state is OrderState.UNKNOWN
    answer = reply("ps1c1", CallOp.LOOKUP, OrderKind.CLOSE, CallResult.NOT_FOUND)
    t = step(st, answer, NOW + 13)
    gone = replace(close, state=OrderState.NOT_FOUND)
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.CLOSED,
        Status.CLOSED,
        NOW + 13,
        {"client_id": "ps1c1", "state": "not_found"},
    )
    assert_whole(
        t, st, answer, NOW + 13, orders=(*pos.orders[:2], gone), effects=(), events=(event,)
    )


def test_a_stop_that_lands_after_its_position_closed_is_cancelled() -> None:
    """The entry fills, its stop is on its way; the position is closed at once and the
    close fills: the stop is asked to cancel, the exchange says "not found" and its lookup
    too (it has not landed): ``not_found``. Then the stop's placement is answered accepted,
    with no order report: it rests after all, for a position that is gone. Recorded
    ``accepted`` (via the reply) and cancelled at once (``not needed``): a stray stop would
    close the next position of the symbol (I9). Its record gets no exchange time."""
    st = step(opened(), update("ps1e1", "filled", 1.0, 100.0)).state
    st = step(st, CloseRequest(KEY), NOW + 1).state
    st = step(st, update("ps1c1", "filled", 1.0, 101.0), NOW + 2).state
    for op in (CallOp.CANCEL, CallOp.LOOKUP):
        st = step(st, reply("ps1s1", op, OrderKind.STOP_LOSS, CallResult.NOT_FOUND), NOW + 3).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSED
    stop = order_of(st, "ps1s1")
    assert stop.state is OrderState.NOT_FOUND and stop.event_time == 0.0
    answer = reply("ps1s1", CallOp.PLACE, OrderKind.STOP_LOSS, CallResult.ACCEPTED)
    t = step(st, answer, NOW + 5)
    cancelling = replace(stop, state=OrderState.PENDING_CANCEL)
    orders = (pos.orders[0], cancelling, pos.orders[2])
    events = (
        JournalEvent(
            1,
            JournalKind.ORDER_FACT,
            Status.CLOSED,
            Status.CLOSED,
            NOW + 5,
            {"client_id": "ps1s1", "state": "accepted", "filled": 0.0, "via": "reply"},
        ),
        JournalEvent(
            1,
            JournalKind.CANCEL_REQUESTED,
            Status.CLOSED,
            Status.CLOSED,
            NOW + 5,
            {"client_id": "ps1s1", "why": "not needed"},
        ),
    )
    assert_whole(
        t,
        st,
        answer,
        NOW + 5,
        orders=orders,
        effects=(CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, "not needed"),),
        events=events,
    )


def test_a_lookup_that_finds_the_order_but_reports_no_status_is_asked_again() -> None:
    """The placement of the entry timed out (``unknown``); its lookup answers "found" but
    carries no order report (the adapter could not read the status). That tells nothing:
    the entry stays ``unknown`` and is looked up again after twice ``lookup_delay_s``;
    nothing is written."""
    st = opened()
    unknown = reply("ps1e1", CallOp.PLACE, OrderKind.ENTRY, CallResult.UNKNOWN, "timeout")
    st = step(st, unknown, NOW + 1).state
    assert order_of(st, "ps1e1").state is OrderState.UNKNOWN
    found = reply("ps1e1", CallOp.LOOKUP, OrderKind.ENTRY, CallResult.FOUND)
    again = StartTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1e1"), 2 * POLICY.lookup_delay_s)
    assert step(st, found, NOW + 2) == Transition(st, (again,))


def test_an_order_loaded_without_a_send_time_counts_its_lookup_deadline_from_now() -> None:
    """An order whose record has no send time (``sent_at`` is a nullable column) and that
    the lookup does not find: the deadline for giving it up runs from the answer, so it is
    looked up again after ``lookup_delay_s``, not declared not found (nor does the answer
    raise)."""
    st = opened()
    unknown = reply("ps1e1", CallOp.PLACE, OrderKind.ENTRY, CallResult.UNKNOWN, "timeout")
    st = step(st, unknown, NOW + 1).state
    pos = st.position
    assert pos is not None
    loaded = replace(st, position=replace(pos, orders=(replace(pos.orders[0], sent_at=None),)))
    missing = reply("ps1e1", CallOp.LOOKUP, OrderKind.ENTRY, CallResult.NOT_FOUND)
    again = StartTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1e1"), POLICY.lookup_delay_s)
    assert step(loaded, missing, NOW + 100) == Transition(loaded, (again,))


def test_the_answer_to_a_close_placed_before_the_stop_closed_the_position_is_ignored() -> None:
    """Closing, the close's placement not answered yet, the stop fills: closed
    ``stop_loss``, the reason is sure. The close's answer comes later: accepted, unknown or
    refused (reduce-only with nothing left), none of them changes anything, nothing is
    written or sent: the close is no protective order to cancel or look up, and the
    position's end is known."""
    st = step(protected(), CloseRequest(KEY), NOW + 1).state
    st = step(st, update("ps1s1", "filled", 1.0, 90.0), NOW + 3).state
    pos = st.position
    assert pos is not None and pos.close_reason is CloseReason.STOP_LOSS
    assert order_of(st, "ps1c1").state is OrderState.INTENDED
    for result in (CallResult.ACCEPTED, CallResult.UNKNOWN, CallResult.REJECTED):
        answer = reply("ps1c1", CallOp.PLACE, OrderKind.CLOSE, result, "reduce_only")
        assert step(st, answer, NOW + 4) == Transition(st)


def test_a_close_filled_after_the_sync_closed_its_position_corrects_the_reason() -> None:
    """A close asked with the reason ``closed_on_exchange``; before its placement is
    answered the sync shows the symbol flat and, ``flat_confirm_s`` later, the position is
    closed on the sync's word (its close's lookup asked). The placement's answer then
    reports the close filled: the fill is recorded on the close (price, exchange id, time)
    and the reason corrected to ``manual`` via the reply, in one commit, nothing sent. The
    same answer without an order report tells nothing and changes nothing."""
    st = step(protected(), CloseRequest(KEY, CloseReason.CLOSED_ON_EXCHANGE), NOW + 1).state
    st = step(st, SyncObservation(KEY, None, (), NOW + 2), NOW + 2).state
    st = step(st, TimerFired(KEY, TimerId(TimerKind.FLAT_CONFIRM)), NOW + 5).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSED
    assert pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE
    close = order_of(st, "ps1c1")
    assert close.state is OrderState.INTENDED
    bare = reply("ps1c1", CallOp.PLACE, OrderKind.CLOSE, CallResult.ACCEPTED)
    assert step(st, bare, NOW + 6) == Transition(st)

    report = OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 99.0, NOW + 1.5, "x9")
    answer = replace(bare, update=report)
    t = step(st, answer, NOW + 6)
    filled = replace(
        close,
        state=OrderState.FILLED,
        filled_qty=1.0,
        avg_price=99.0,
        exchange_id="x9",
        event_time=NOW + 1.5,
    )
    corrected = JournalEvent(
        1,
        JournalKind.CLOSE_REASON_CORRECTED,
        Status.CLOSED,
        Status.CLOSED,
        NOW + 6,
        {"client_id": "ps1c1", "was": "closed_on_exchange", "reason": "manual", "via": "reply"},
    )
    assert_whole(
        t,
        st,
        answer,
        NOW + 6,
        orders=(*pos.orders[:2], filled),
        close_reason=CloseReason.MANUAL,
        effects=(),
        events=(corrected,),
    )


def test_an_entry_not_found_never_fails_a_position_that_holds_part_of_its_size() -> None:
    """The entry filled half (``pending_sl``, its stop on the way); its record is in doubt
    (``unknown``, as a restart may load it) and the lookup, past ``lookup_deadline_s``,
    does not find it. The half that filled is real: the position is not failed, no sync
    is asked; only the entry's record says ``not_found`` (written as the difference)."""
    st = step(opened(), update("ps1e1", "partially_filled", 0.5, 100.0)).state
    pos = st.position
    assert pos is not None and pos.status is Status.PENDING_SL and pos.qty == 0.5
    entry, stop = pos.orders
    doubt = replace(pos, orders=(replace(entry, state=OrderState.UNKNOWN), stop))
    loaded = replace(st, position=doubt)
    missing = reply("ps1e1", CallOp.LOOKUP, OrderKind.ENTRY, CallResult.NOT_FOUND)
    t = step(loaded, missing, NOW + 11)
    gone = replace(entry, state=OrderState.NOT_FOUND)
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.PENDING_SL,
        Status.PENDING_SL,
        NOW + 11,
        {"client_id": "ps1e1", "state": "not_found", "filled": 0.5},
    )
    assert_whole(t, st, missing, NOW + 11, orders=(gone, stop), effects=(), events=(event,))


def test_a_stop_sent_again_and_refused_as_a_duplicate_keeps_the_one_that_rests() -> None:
    """The stop's placement timed out and its lookup did not find it: it is sent again at
    once under the same client id. The first one had landed after all: the stream confirms
    it (``active``). The second placement is then refused (a duplicate id): the stop rests
    and protects, so the refusal changes nothing. Not recorded ``rejected``, no attempt
    spent, no retry, nothing written or sent."""
    st = step(opened(), update("ps1e1", "filled", 1.0, 100.0)).state
    unknown = reply("ps1s1", CallOp.PLACE, OrderKind.STOP_LOSS, CallResult.UNKNOWN, "timeout")
    st = step(st, unknown, NOW + 1).state
    missing = reply("ps1s1", CallOp.LOOKUP, OrderKind.STOP_LOSS, CallResult.NOT_FOUND)
    resent = step(st, missing, NOW + 2)
    assert [type(e) for e in resent.effects] == [PlaceOrder]
    st = step(resent.state, update("ps1s1", "new"), NOW + 3).state
    pos = st.position
    assert pos is not None and pos.status is Status.ACTIVE
    assert order_of(st, "ps1s1").state is OrderState.ACCEPTED
    refused = reply("ps1s1", CallOp.PLACE, OrderKind.STOP_LOSS, CallResult.REJECTED, "duplicate")
    assert step(st, refused, NOW + 4) == Transition(st)


def test_an_entry_sent_again_after_a_long_throttle_gets_its_full_lookup_deadline() -> None:
    """The entry is refused with a Retry-After of 30 s and sent again then; that placement
    times out (``unknown``) and its first lookup, 0.3 s after it left, does not find it:
    an order in flight. It is looked up again after ``lookup_delay_s``, and the position
    keeps waiting for it: the ``lookup_deadline_s`` for giving an order up runs from when
    it was last sent (``sent_at``, recorded by the resend), not from the first attempt.
    Counted from the first attempt, the entry was given up at once (``failed``,
    ``entry_not_found``) and, when it filled a moment later, came back as a late fill that
    the sync adopts with the default stop instead of the signal's."""
    st = opened()
    throttled = reply("ps1e1", CallOp.PLACE, OrderKind.ENTRY, CallResult.REJECTED, "429", 30.0)
    st = step(st, throttled, NOW + 0.1).state
    resent = step(st, TimerFired(KEY, TimerId(TimerKind.RETRY, "ps1e1")), NOW + 30.1)
    sent = order_of(resent.state, "ps1e1")
    assert sent.sent_at == NOW + 30.1 and sent.attempts == 2
    assert resent.effects == (PlaceOrder(KEY, 1, sent),)
    timeout = reply("ps1e1", CallOp.PLACE, OrderKind.ENTRY, CallResult.UNKNOWN, "timeout")
    st = step(resent.state, timeout, NOW + 30.2).state
    missing = reply("ps1e1", CallOp.LOOKUP, OrderKind.ENTRY, CallResult.NOT_FOUND)
    again = StartTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1e1"), POLICY.lookup_delay_s)
    assert step(st, missing, NOW + 30.4) == Transition(st, (again,))
