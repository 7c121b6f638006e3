"""The stop that covers a trailing move, pinned whole (``make mutate``): what happens when the
older confirmed stop goes while the newer one is in doubt (``_Step.cover_lost``), and what
a report about an older stop that no longer covers does (nothing but its record).

Driven through :func:`actors.transition.transition` with messages; each test asserts the
whole result (state, commit with every journal event and its detail, every effect).
"""

from __future__ import annotations

from dataclasses import replace

from actors.effects import CancelOrder, PlaceOrder, StartTimer
from actors.messages import (
    CallOp,
    CallResult,
    ExchangeOutcome,
    MarkPriceTick,
    OrderUpdate,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import CloseReason, ExchangeStatus, OrderKind, OrderState, Status
from actors.orders import intended_order
from actors.state import JournalEvent, JournalKind, SymbolState
from testkit.world import priced, signal
from tests.unit.kills import KEY, NOW, POLICY, assert_whole, step


def report(cid: str, status: ExchangeStatus, at: float) -> OrderUpdate:
    return OrderUpdate(KEY, cid, status, 0.0, None, at)


def trailing_move_in_doubt() -> SymbolState:
    """A long of 1 at 100, stop 90 trailing 5: ``ps1s1`` confirmed, the mark at 110 sent
    the move ``ps1s2`` (stop 105), whose placement timed out (``unknown``)."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, trailing=5.0), NOW).state
    timeout = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1s2", OrderKind.STOP_LOSS, CallResult.UNKNOWN, "timeout"
    )
    for msg, at in (
        (OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1), NOW + 1),
        (report("ps1s1", ExchangeStatus.NEW, NOW + 2), NOW + 2),
        (MarkPriceTick(KEY, 110.0, NOW + 3, received_at=NOW + 3), NOW + 3),
        (timeout, NOW + 4),
    ):
        st = step(st, msg, at).state
    pos = st.position
    assert pos is not None and pos.status is Status.ACTIVE and pos.sl_since is None
    assert [(o.client_id, o.state) for o in pos.orders[1:]] == [
        ("ps1s1", OrderState.ACCEPTED),
        ("ps1s2", OrderState.UNKNOWN),
    ]
    return st


def test_the_older_stop_cancelled_during_the_move_starts_the_spell_whole() -> None:
    """``ps1s1`` cancelled on the exchange while ``ps1s2`` is in doubt: the spell begins now
    (``sl_since``, the deadline timer), nothing is sent (the lookup of ``ps1s2`` decides),
    and the record says which order went (``order_fact``)."""
    st = trailing_move_in_doubt()
    pos = st.position
    assert pos is not None
    msg = report("ps1s1", ExchangeStatus.CANCELED, NOW + 5)
    t = step(st, msg, NOW + 5)
    entry, s1, s2 = pos.orders
    gone = replace(s1, state=OrderState.CANCELED, event_time=NOW + 5)
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.ACTIVE,
        Status.ACTIVE,
        NOW + 5,
        {"client_id": "ps1s1", "state": "canceled", "filled": 0.0, "via": "stream"},
    )
    assert_whole(
        t,
        st,
        msg,
        NOW + 5,
        effects=(StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), POLICY.sl_deadline_s),),
        events=(event,),
        orders=(entry, gone, s2),
        sl_since=NOW + 5,
    )


def test_the_older_stop_refused_at_trigger_during_the_move_closes_at_market_whole() -> None:
    """``ps1s1`` triggered and its market order was refused while ``ps1s2`` is in doubt:
    the price crossed the stop that protected, and nothing closed the position. Journaled
    ``stop_rejected_at_trigger`` (which order), then closed at market, reduce-only, with
    reason ``stop_loss`` and why."""
    st = trailing_move_in_doubt()
    pos = st.position
    assert pos is not None
    msg = report("ps1s1", ExchangeStatus.REJECTED, NOW + 5)
    t = step(st, msg, NOW + 5)
    entry, s1, s2 = pos.orders
    close = intended_order(1, OrderKind.CLOSE, 1, "sell", 1.0, NOW + 5)
    events = (
        JournalEvent(
            1,
            JournalKind.STOP_REJECTED_AT_TRIGGER,
            Status.ACTIVE,
            Status.ACTIVE,
            NOW + 5,
            {"client_id": "ps1s1"},
        ),
        JournalEvent(
            1,
            JournalKind.CLOSING,
            Status.ACTIVE,
            Status.CLOSING,
            NOW + 5,
            {"reason": "stop_loss", "why": "stop rejected at trigger"},
        ),
    )
    assert_whole(
        t,
        st,
        msg,
        NOW + 5,
        effects=(PlaceOrder(KEY, 1, close, reduce_only=True),),
        events=events,
        status=Status.CLOSING,
        close_reason=CloseReason.STOP_LOSS,
        close_seq=1,
        orders=(entry, replace(s1, state=OrderState.REJECTED, event_time=NOW + 5), s2, close),
    )


def test_a_refusal_of_an_older_stop_we_asked_to_cancel_closes_nothing() -> None:
    """The move's ``ps1s2`` confirmed, so the older ``ps1s1`` is asked to cancel; then
    ``ps1s2`` is cancelled on the exchange and ``ps1s3`` goes out in a spell. A report
    now refusing ``ps1s1`` (which no longer protected: it was pending its cancel) is its
    record only: no close at market, no second deadline, nothing sent."""
    st = trailing_move_in_doubt()
    for msg, at in (
        (report("ps1s2", ExchangeStatus.NEW, NOW + 5), NOW + 5),
        (report("ps1s2", ExchangeStatus.CANCELED, NOW + 6), NOW + 6),
    ):
        t = step(st, msg, at)
        st = t.state
    pos = st.position
    assert pos is not None and pos.status is Status.ACTIVE and pos.sl_since == NOW + 6
    assert [(o.client_id, o.state) for o in pos.orders[1:]] == [
        ("ps1s1", OrderState.PENDING_CANCEL),
        ("ps1s2", OrderState.CANCELED),
        ("ps1s3", OrderState.INTENDED),
    ]
    msg = report("ps1s1", ExchangeStatus.REJECTED, NOW + 7)
    t = step(st, msg, NOW + 7)
    entry, s1, s2, s3 = pos.orders
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.ACTIVE,
        Status.ACTIVE,
        NOW + 7,
        {"client_id": "ps1s1", "state": "rejected", "filled": 0.0, "via": "stream"},
    )
    assert_whole(
        t,
        st,
        msg,
        NOW + 7,
        effects=(),
        events=(event,),
        orders=(entry, replace(s1, state=OrderState.REJECTED, event_time=NOW + 7), s2, s3),
    )
    assert not any(isinstance(e, (PlaceOrder, CancelOrder)) for e in t.effects)


def test_a_resend_that_nothing_covers_begins_the_spell() -> None:
    """The older stop ``ps1s1`` of a trailing move is gone without a report of it (found
    ``not_found`` by a lookup), and the retry of the move's refused ``ps1s2`` comes due:
    this attempt is made with nothing resting, so it begins the unprotected spell (its
    deadline, its budget: one attempt spent), as every uncovered attempt does (I5). The
    state is built by hand: the lookup path to it runs through the sync."""
    st = trailing_move_in_doubt()
    pos = st.position
    assert pos is not None
    entry, s1, s2 = pos.orders
    lost = replace(
        pos,
        orders=(
            entry,
            replace(s1, state=OrderState.NOT_FOUND),
            replace(s2, state=OrderState.REJECTED),
        ),
    )
    st = replace(st, position=lost)
    msg = TimerFired(KEY, TimerId(TimerKind.RETRY, "ps1s2"))
    t = step(st, msg, NOW + 9)
    again = replace(s2, state=OrderState.INTENDED, attempts=2, sent_at=NOW + 9)
    event = JournalEvent(
        1,
        JournalKind.ORDER_RESENT,
        Status.ACTIVE,
        Status.ACTIVE,
        NOW + 9,
        {"client_id": "ps1s2", "attempt": 2},
    )
    assert_whole(
        t,
        st,
        msg,
        NOW + 9,
        effects=(
            StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), POLICY.sl_deadline_s),
            PlaceOrder(KEY, 1, again, close_position=True),
        ),
        events=(event,),
        orders=(entry, replace(s1, state=OrderState.NOT_FOUND), again),
        sl_since=NOW + 9,
        sl_failures=1,
    )


def test_a_spell_begins_with_a_fresh_budget_whatever_was_stored() -> None:
    """A position stored with failures counted but no spell running (as versions before
    the spell began at every uncovered attempt could write it) loses its stop: the spell
    that begins counts this placement as its first attempt, not the stored ones."""
    st = trailing_move_in_doubt()
    pos = st.position
    assert pos is not None
    entry, s1, _ = pos.orders
    stored = replace(pos, orders=(entry, s1), stop_seq=1, sl_failures=3)
    st = replace(st, position=stored)
    t = step(st, report("ps1s1", ExchangeStatus.CANCELED, NOW + 5), NOW + 5)
    after = t.state.position
    assert after is not None
    assert (after.sl_since, after.sl_failures, after.stop_seq) == (NOW + 5, 1, 2)
    assert StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), POLICY.sl_deadline_s) in t.effects
