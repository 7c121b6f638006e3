"""Tests written to kill the surviving mutants of the core's steps (``make mutate``): the
handlers, the ``_Step`` core (the journal of a pair in no table, the stop budget, closing)
and the pure helpers. Driven through :func:`actors.transition.transition` with messages;
the small pure helpers at their edges are called directly, as in
``tests/unit/test_kills_transition_whole.py``. Each test pins the whole result; the
docstrings say what and why.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from actors.effects import CancelOrder, CancelTimer, FetchMarket, PlaceOrder, StartTimer
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    MarketInfo,
    MarkPriceTick,
    OpenSignal,
    OrderUpdate,
    SyncObservation,
    TimerId,
    TimerKind,
)
from actors.model import (
    CloseReason,
    ExchangePosition,
    ExchangeStatus,
    MarketRules,
    OrderKind,
    OrderState,
    Side,
    Status,
)
from actors.orders import intended_order
from actors.state import (
    Commit,
    ControlOutcome,
    JournalEvent,
    JournalKind,
    Policy,
    Position,
    Reentry,
    SignalOutcome,
    SignalRecord,
    SymbolState,
    Transition,
)
from actors.transition import (
    Context,
    check_entry,
    leftovers,
    on_step,
    tick_band,
    transition,
    validate_signal,
)
from testkit.world import priced, signal
from tests.unit.kills import KEY, NOW, POLICY, assert_whole, step


def entry_placed() -> SymbolState:
    """A long of 1 at mark 100, stop 90, its entry ``ps1e1`` resting unfilled."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, signal_id="s1")).state
    return step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.NEW, 0.0, None, NOW), NOW + 1).state


# -- a pair in no table ----------------------------------------------------------------------------


def test_a_stop_confirmed_before_the_entry_filled_is_journalled_with_its_status() -> None:
    """``(entry_placed, stop_confirmed)`` is in no row of the position table (a stop goes out
    only once the entry filled; the state is built by hand). The report is recorded on the
    order, the status stays, and the journal says which pair it was and in which status the
    position was, before and after (the operator reads it to see what state the position was
    in when the core met something it has no rule for); nothing is sent."""
    st = entry_placed()
    pos = st.position
    assert pos is not None and pos.status is Status.ENTRY_PLACED
    stop = intended_order(1, OrderKind.STOP_LOSS, 1, "sell", 1.0, NOW, 90.0)
    st = replace(st, position=replace(pos, orders=(*pos.orders, stop), stop_seq=1))
    report = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 2, "x9")
    t = step(st, report, NOW + 2)
    before = st.position
    assert before is not None
    event = JournalEvent(
        1,
        JournalKind.ILLEGAL_TRANSITION,
        Status.ENTRY_PLACED,
        Status.ENTRY_PLACED,
        NOW + 2,
        {"state": "entry_placed", "trigger": "stop_confirmed"},
    )
    assert_whole(
        t,
        st,
        report,
        NOW + 2,
        orders=(
            before.orders[0],
            replace(stop, state=OrderState.ACCEPTED, exchange_id="x9", event_time=NOW + 2),
        ),
        effects=(),
        events=(event,),
    )


# -- the small pure helpers, at their edges --------------------------------------------------------


def test_a_quantity_off_its_step_by_exactly_the_tolerance_is_on_the_step() -> None:
    """The float tolerance of :func:`on_step` (1e-9 of the larger of the value and the step)
    is inclusive: a value off a whole multiple by exactly that much is on the step, one
    float further is not. Chosen where the difference and the bound are exact floats (a
    step of 1e9, whose 1e-9 is exactly 1.0)."""
    assert on_step(999_999_999.0, 1e9)
    assert not on_step(math.nextafter(999_999_999.0, 0.0), 1e9)
    assert on_step(499_999_999.5, 5e8)
    assert not on_step(math.nextafter(499_999_999.5, 0.0), 5e8)


# -- an entry's fill reported again after the end --------------------------------------------------


def stopped_out() -> SymbolState:
    """A long of 1 (entry ``ps1e1`` filled at 100) closed by its stop ``ps1s1`` at 90."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, signal_id="s1")).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)
    st = step(st, fill, NOW + 1).state
    stop = OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, NOW + 2)
    return step(st, stop, NOW + 2).state


def test_an_entry_fill_off_by_float_noise_after_the_end_is_no_late_fill() -> None:
    """The entry's fill reported again after its position closed, its quantity off by float
    noise (1.000000000001 for 1: a cumulative quantity summed from parts) is the fill the
    position held, not a rest that filled on: the report is recorded on the order and
    nothing else happens (no ``late_entry_fill``, no sync asked, no leftover holding the
    next entry back, :func:`leftovers`; and the close time stays the stop's: a report
    after the end does not restart the re-entry cooldown)."""
    st = stopped_out()
    before = st.position
    assert before is not None and before.status is Status.CLOSED and leftovers(st) == ()
    report = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0 + 1e-12, 100.0, NOW + 3)
    t = step(st, report, NOW + 3)
    entry = replace(before.orders[0], filled_qty=1.0 + 1e-12, event_time=NOW + 3)
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.CLOSED,
        Status.CLOSED,
        NOW + 3,
        {"client_id": "ps1e1", "state": "filled", "filled": 1.0 + 1e-12, "via": "stream"},
    )
    assert_whole(
        t, st, report, NOW + 3, orders=(entry, *before.orders[1:]), effects=(), events=(event,)
    )
    assert leftovers(t.state) == ()


# -- the tick band ---------------------------------------------------------------------------------


def test_a_protected_status_holding_nothing_parks_every_tick_as_the_handler_ignores_them() -> None:
    """:func:`tick_band` mirrors :func:`_on_tick`: for a position that holds no quantity
    (``pending_sl`` with ``qty`` 0, built by hand: no handler writes it) the handler
    ignores every tick, even one through the unconfirmed stop, so the band is everything
    and the feed never wakes the actor for it."""
    st = entry_placed()
    pos = st.position
    assert pos is not None and pos.qty == 0.0
    st = replace(st, position=replace(pos, status=Status.PENDING_SL))
    assert tick_band(st, POLICY) == (-math.inf, math.inf)
    tick = MarkPriceTick(KEY, 80.0, NOW + 2, received_at=NOW + 2)
    assert step(st, tick, NOW + 2) == Transition(
        replace(st, last_price=80.0, last_price_at=NOW + 2)
    )


# -- the market's answer ---------------------------------------------------------------------------


def test_a_market_answer_clears_an_earlier_failure_so_a_signal_asks_again_at_once() -> None:
    """A failed FetchMarket makes a signal without a mark wait ``_MARKET_RETRY_S`` (0.5 s)
    before asking again. An answer that did come back (here a late one, with rules but no
    usable price) ends that: the failure and the request are forgotten, and the next signal
    without a mark asks at once instead of waiting out the failure's pause."""
    st = SymbolState(KEY)
    asked = step(st, signal(signal_id="m1"))
    failed = step(asked.state, MarketInfo(KEY, CallResult.UNKNOWN, reason="503"), NOW)
    assert failed == Transition(replace(asked.state, market_requested=False, market_failed_at=NOW))
    rules = MarketRules(tick_size=0.1)
    info = MarketInfo(KEY, CallResult.FOUND, None, rules, at=NOW + 0.1)
    answered = step(failed.state, info, NOW + 0.1)
    assert answered == Transition(replace(st, market=rules))
    again = step(answered.state, signal(signal_id="m1"), NOW + 0.2)
    assert again == Transition(
        replace(answered.state, market_requested=True), (FetchMarket(KEY),), deferred=True
    )


# -- the end of a position -------------------------------------------------------------------------


def test_the_end_of_a_position_forgets_the_syncs_flat_view_and_its_stop_lookup() -> None:
    """An active position whose stop the sync looked up (not in the open orders' list) and
    then saw flat (its orders looked up, the flat confirmation timed): its stop's fill ends
    it. Both sync marks belong to that position and are cleared with it: a flat view left
    behind would blind the next position's local stop guard and tick band (a mark through
    its stop would be ignored), a lookup mark would let an older lookup's "not found"
    re-place its stop. Pinned whole: the closed position, the timers cancelled, the event."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, signal_id="s1")).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)).state
    st = step(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 2)).state
    open_ = SyncObservation(KEY, ExchangePosition(Side.LONG, 1.0, 100.0), (), NOW + 10)
    st = step(st, open_, NOW + 10).state
    st = step(st, SyncObservation(KEY, None, (), NOW + 20), NOW + 20).state
    assert (st.stop_lookup_at, st.flat_seen_at) == (NOW + 10, NOW + 20)
    before = st.position
    assert before is not None and before.status is Status.ACTIVE
    fill = OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, NOW + 21)
    t = step(st, fill, NOW + 21)
    entry, stop = before.orders
    event = JournalEvent(
        1,
        JournalKind.CLOSED,
        Status.ACTIVE,
        Status.CLOSED,
        NOW + 21,
        {"reason": "stop_loss", "via": "stream"},
    )
    assert_whole(
        t,
        st,
        fill,
        NOW + 21,
        status=Status.CLOSED,
        close_reason=CloseReason.STOP_LOSS,
        closed_at=NOW + 21,
        orders=(
            entry,
            replace(
                stop, state=OrderState.FILLED, filled_qty=1.0, avg_price=90.0, event_time=NOW + 21
            ),
        ),
        effects=tuple(
            CancelTimer(KEY, TimerId(kind))
            for kind in (TimerKind.SL_DEADLINE, TimerKind.FLAT_CONFIRM, TimerKind.CLOSE_RETRY)
        ),
        events=(event,),
        state_changes={"last_closed_at": NOW + 21, "flat_seen_at": None, "stop_lookup_at": None},
    )


# -- a close before anything filled ----------------------------------------------------------------


def test_an_operators_close_before_the_fill_journals_who_asked_and_cancels_the_entry() -> None:
    """An operator's close (``by``, ``note``, ``request_id``) of a position whose entry rests
    unfilled: the entry's cancel goes out, the position keeps waiting with the close reason
    set (a fill meanwhile is protected, then closed), and the journal says who asked, why,
    and under which request id, as for a close of a filled position."""
    st = entry_placed()
    before = st.position
    assert before is not None
    req = CloseRequest(KEY, CloseReason.MANUAL, "r-7", "operator", "flatten before the news")
    t = step(st, req, NOW + 2)
    event = JournalEvent(
        1,
        JournalKind.CLOSE_REQUESTED_UNFILLED,
        Status.ENTRY_PLACED,
        Status.ENTRY_PLACED,
        NOW + 2,
        {
            "reason": "manual",
            "why": "r-7",
            "by": "operator",
            "note": "flatten before the news",
            "request_id": "r-7",
        },
    )
    assert_whole(
        t,
        st,
        req,
        NOW + 2,
        close_reason=CloseReason.MANUAL,
        effects=(CancelOrder(KEY, "ps1e1", OrderKind.ENTRY),),
        events=(event,),
        control=ControlOutcome(KEY, "r-7", "close", "entry_cancel_requested", True, 1),
    )


def test_a_close_after_the_entry_was_reported_done_without_a_fill_cancels_nothing() -> None:
    """The exchange reported the entry ``filled`` with no quantity (a report whose quantity
    did not parse is read as 0): the entry is done on our record, the position holds
    nothing. A close request then only records the close reason: no cancel is sent for an
    order the exchange says is done (a cancel of it would only be refused)."""
    st = entry_placed()
    report = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, math.nan, None, NOW + 2)
    st = step(st, report, NOW + 2).state
    before = st.position
    assert before is not None and before.status is Status.ENTRY_PLACED and before.qty == 0.0
    assert before.orders[0].state is OrderState.FILLED
    req = CloseRequest(KEY)
    t = step(st, req, NOW + 3)
    event = JournalEvent(
        1,
        JournalKind.CLOSE_REQUESTED_UNFILLED,
        Status.ENTRY_PLACED,
        Status.ENTRY_PLACED,
        NOW + 3,
        {"reason": "manual", "why": "close request"},
    )
    assert_whole(t, st, req, NOW + 3, close_reason=CloseReason.MANUAL, effects=(), events=(event,))


# -- the stop-loss budget of one unprotected spell -------------------------------------------------


def filled() -> SymbolState:
    """A long of 1 whose entry filled at 100: its first stop ``ps1s1`` went out (a spell
    began at ``NOW + 1``, one attempt spent)."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, signal_id="s1")).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)
    return step(st, fill, NOW + 1).state


def test_a_stop_canceled_before_it_was_confirmed_is_placed_again_until_the_budget_ends() -> None:
    """A stop the exchange cancels before it was ever confirmed leaves the position
    unprotected within the same spell: the next stop goes out at once, one more attempt
    spent (the spell's start kept). When the attempts are spent (``sl_max_attempts``, 3)
    no further stop goes out: the position is closed at market (the emergency close)."""
    st = filled()
    before = st.position
    assert before is not None and (before.sl_since, before.sl_failures) == (NOW + 1, 1)
    gone = OrderUpdate(KEY, "ps1s1", ExchangeStatus.CANCELED, 0.0, None, NOW + 2)
    t = step(st, gone, NOW + 2)
    entry, s1 = before.orders
    s2 = intended_order(1, OrderKind.STOP_LOSS, 2, "sell", 1.0, NOW + 2, 90.0)
    event = JournalEvent(
        1,
        JournalKind.STOP_INTENT,
        Status.PENDING_SL,
        Status.PENDING_SL,
        NOW + 2,
        {"client_id": "ps1s2", "why": "stop canceled on exchange"},
    )
    assert_whole(
        t,
        st,
        gone,
        NOW + 2,
        orders=(entry, replace(s1, state=OrderState.CANCELED, event_time=NOW + 2), s2),
        stop_seq=2,
        sl_failures=2,
        effects=(PlaceOrder(KEY, 1, s2, close_position=True),),
        events=(event,),
    )
    st = t.state
    gone = OrderUpdate(KEY, "ps1s2", ExchangeStatus.CANCELED, 0.0, None, NOW + 3)
    st = step(st, gone, NOW + 3).state
    before = st.position
    assert before is not None and (before.stop_seq, before.sl_failures) == (3, 3)
    gone = OrderUpdate(KEY, "ps1s3", ExchangeStatus.CANCELED, 0.0, None, NOW + 4)
    t = step(st, gone, NOW + 4)
    close = intended_order(1, OrderKind.CLOSE, 1, "sell", 1.0, NOW + 4)
    events = (
        JournalEvent(
            1,
            JournalKind.STOP_FAILED,
            Status.PENDING_SL,
            Status.PENDING_SL,
            NOW + 4,
            {"why": "3 attempts", "failures": 3},
        ),
        JournalEvent(
            1,
            JournalKind.CLOSING,
            Status.PENDING_SL,
            Status.CLOSING,
            NOW + 4,
            {"reason": "emergency", "why": "stop-loss not placed: 3 attempts"},
        ),
    )
    assert_whole(
        t,
        st,
        gone,
        NOW + 4,
        status=Status.CLOSING,
        close_reason=CloseReason.EMERGENCY,
        orders=(
            *before.orders[:3],
            replace(before.orders[3], state=OrderState.CANCELED, event_time=NOW + 4),
            close,
        ),
        close_seq=1,
        effects=(PlaceOrder(KEY, 1, close, reduce_only=True),),
        events=events,
    )


# -- which resting orders the position still needs -------------------------------------------------


def test_a_replaced_stop_that_lands_after_all_is_cancelled_again() -> None:
    """A trailing move: the new stop ``ps1s2`` rests, so the old ``ps1s1`` is cancelled; the
    exchange says it is not open, and its lookup finds nothing (``not_found``: a placement
    still in flight may yet land). Then it is reported resting after all: a newer stop
    rests, so nothing needs it, and it is cancelled at once, or it would stay behind to
    close (or reverse) a later position (I9)."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, trailing=5.0, signal_id="s1")).state
    for msg, at in (
        (OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1), NOW + 1),
        (OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 2), NOW + 2),
        (MarkPriceTick(KEY, 110.0, NOW + 3, received_at=NOW + 3), NOW + 3),
        (OrderUpdate(KEY, "ps1s2", ExchangeStatus.NEW, 0.0, None, NOW + 4), NOW + 4),
        (_answer(CallOp.CANCEL, "ps1s1"), NOW + 5),
        (_answer(CallOp.LOOKUP, "ps1s1"), NOW + 6),
    ):
        st = step(st, msg, at).state
    before = st.position
    assert before is not None and before.status is Status.ACTIVE
    assert [(o.client_id, o.state) for o in before.orders[1:]] == [
        ("ps1s1", OrderState.NOT_FOUND),
        ("ps1s2", OrderState.ACCEPTED),
    ]
    late = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 7, "x1")
    t = step(st, late, NOW + 7)
    entry, s1, s2 = before.orders
    s1 = replace(s1, state=OrderState.PENDING_CANCEL, exchange_id="x1", event_time=NOW + 7)
    events = (
        JournalEvent(
            1,
            JournalKind.ORDER_FACT,
            Status.ACTIVE,
            Status.ACTIVE,
            NOW + 7,
            {"client_id": "ps1s1", "state": "accepted", "filled": 0.0, "via": "stream"},
        ),
        JournalEvent(
            1,
            JournalKind.CANCEL_REQUESTED,
            Status.ACTIVE,
            Status.ACTIVE,
            NOW + 7,
            {"client_id": "ps1s1", "why": "not needed"},
        ),
    )
    assert_whole(
        t,
        st,
        late,
        NOW + 7,
        orders=(entry, s1, s2),
        effects=(CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, "not needed"),),
        events=events,
    )


def _answer(op: CallOp, cid: str) -> ExchangeOutcome:
    """The exchange's "not found" to a call on the stop ``cid``."""
    return ExchangeOutcome(KEY, op, cid, OrderKind.STOP_LOSS, CallResult.NOT_FOUND)


def test_the_old_stop_vanishing_during_a_trailing_move_starts_the_timed_spell() -> None:
    """A trailing move ``ps1s2`` is in doubt (its placement unanswered) when the older stop
    ``ps1s1``, the one that protected meanwhile, is cancelled on the exchange: nothing
    rests any more, so an unprotected spell begins there and then, with its deadline (I5),
    whatever the lookup of ``ps1s2`` takes. The lookup finds no ``ps1s2``: it is sent
    again, one attempt of that spell. When the exchange then cancels ``ps1s2`` too, a stop
    goes out at once within the same spell (its budget goes on, no second deadline)."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, trailing=5.0, signal_id="s1")).state
    unknown = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1s2", OrderKind.STOP_LOSS, CallResult.UNKNOWN, "timeout"
    )
    for msg, at in (
        (OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1), NOW + 1),
        (OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 2), NOW + 2),
        (MarkPriceTick(KEY, 110.0, NOW + 3, received_at=NOW + 3), NOW + 3),
        (unknown, NOW + 4),
    ):
        st = step(st, msg, at).state
    vanished = OrderUpdate(KEY, "ps1s1", ExchangeStatus.CANCELED, 0.0, None, NOW + 5)
    t = step(st, vanished, NOW + 5)
    assert t.effects == (StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), POLICY.sl_deadline_s),)
    assert t.commit is not None and t.state.position is not None
    assert (t.state.position.sl_since, t.state.position.sl_failures) == (NOW + 5, 0)
    st = step(t.state, _answer(CallOp.LOOKUP, "ps1s2"), NOW + 6).state
    before = st.position
    assert before is not None and before.status is Status.ACTIVE
    assert (before.sl_since, before.sl_failures, before.stop_seq) == (NOW + 5, 1, 2)
    gone = OrderUpdate(KEY, "ps1s2", ExchangeStatus.CANCELED, 0.0, None, NOW + 7)
    t = step(st, gone, NOW + 7)
    entry, s1, s2 = before.orders
    s3 = intended_order(1, OrderKind.STOP_LOSS, 3, "sell", 1.0, NOW + 7, 105.0)
    event = JournalEvent(
        1,
        JournalKind.STOP_INTENT,
        Status.ACTIVE,
        Status.ACTIVE,
        NOW + 7,
        {"client_id": "ps1s3", "why": "stop canceled on exchange"},
    )
    assert_whole(
        t,
        st,
        gone,
        NOW + 7,
        orders=(entry, s1, replace(s2, state=OrderState.CANCELED, event_time=NOW + 7), s3),
        stop_seq=3,
        sl_since=NOW + 5,
        sl_failures=2,
        effects=(PlaceOrder(KEY, 1, s3, close_position=True),),
        events=(event,),
    )


def test_the_old_stop_refused_at_trigger_during_a_trailing_move_closes_at_market() -> None:
    """The older stop ``ps1s1`` protected while the trailing move ``ps1s2`` is in doubt;
    it triggers and its market order is refused: the price crossed it and nothing closed
    the position. Closed at market at once (reason stop_loss), as for the newest stop."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, trailing=5.0, signal_id="s1")).state
    unknown = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1s2", OrderKind.STOP_LOSS, CallResult.UNKNOWN, "timeout"
    )
    for msg, at in (
        (OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1), NOW + 1),
        (OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 2), NOW + 2),
        (MarkPriceTick(KEY, 110.0, NOW + 3, received_at=NOW + 3), NOW + 3),
        (unknown, NOW + 4),
    ):
        st = step(st, msg, at).state
    refused = OrderUpdate(KEY, "ps1s1", ExchangeStatus.REJECTED, 0.0, None, NOW + 5)
    t = step(st, refused, NOW + 5)
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSING
    assert pos.close_reason is CloseReason.STOP_LOSS
    assert t.commit is not None
    assert [e.kind for e in t.commit.events] == [
        JournalKind.STOP_REJECTED_AT_TRIGGER,
        JournalKind.CLOSING,
    ]
    closes = [e for e in t.effects if isinstance(e, PlaceOrder)]
    assert [(c.order.kind, c.reduce_only) for c in closes] == [(OrderKind.CLOSE, True)]


# -- refusals of a signal --------------------------------------------------------------------------


def closed_with_a_stop_resting() -> SymbolState:
    """Closed by an operator's close at ``NOW + 3``; the cancel of its stop ``ps1s1`` is
    not confirmed yet (a leftover: no new entry may go out, I9)."""
    st = filled()
    for msg, at in (
        (OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 2), NOW + 2),
        (CloseRequest(KEY), NOW + 2),
        (OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 101.0, NOW + 3), NOW + 3),
    ):
        st = step(st, msg, at).state
    assert st.position is not None and st.position.status is Status.CLOSED
    assert [o.client_id for o in leftovers(st)] == ["ps1s1"]
    return st


def test_each_refusal_of_a_signal_is_written_with_its_outcome_and_reason() -> None:
    """A refused signal is one commit holding only its record (no position, nothing
    expected of a position's version, no journal event): outcome ``rejected`` for a paused
    symbol, for ``reentry = never`` after a position, and for the orders of the last
    position still pending at the shell's last offer (``give_up``). A final refusal is
    remembered (a replay of the id gets it), a transient one (``paused``, orders pending)
    is not: the same id may succeed later."""
    at = NOW + 100

    def refused(
        st: SymbolState, reason: str, policy: Policy = POLICY, *, give_up: bool = False
    ) -> None:
        sig = signal(size=1.0, stop=90.0, signal_id="r1")
        st = replace(st, last_price_at=at)
        t = transition(st, sig, Context(at, policy, 2, give_up=give_up))
        rec = SignalRecord(KEY, "r1", "sniper", SignalOutcome.REJECTED, reason, at)
        after = st if rec.retry else replace(st, decided=(*st.decided, rec))
        assert t == Transition(after, commit=Commit(KEY, sig, None, 0, (), rec), signal=rec)
        assert rec.retry is (reason != "never_again")

    refused(replace(priced(KEY, at=NOW), paused=True), "paused")
    never = replace(POLICY, reentry=Reentry.NEVER)
    refused(replace(priced(KEY, at=NOW), bought=True), "never_again", never)
    refused(closed_with_a_stop_resting(), "previous_orders_pending", give_up=True)


# -- what the market takes, at its edges -----------------------------------------------------------


def test_the_market_checks_of_an_entry_at_their_exact_edges() -> None:
    """:func:`check_entry` at each bound, exactly on it and just past it: the stop's and the
    trailing distance's sanity bound (half the mark by default) and the market's price
    bounds are inclusive, and so are the quantity bounds (with their 1e-9 tolerance) and
    the notional bounds; a stop or take-profit is checked at the price it would be placed
    at (rounded to the tick: one that rounds to 0 or past a bound is refused, one that
    rounds onto a bound is taken); prices under 1 are prices like others; a step of 0 is
    no step."""
    long_ = signal(size=1.0, stop=90.0, signal_id="c1")
    short = signal(side=Side.SHORT, size=1.0, stop=110.0, signal_id="c2")
    none = MarketRules()

    def check(sig: OpenSignal, rules: MarketRules = none, **changes: object) -> str | None:
        return check_entry(replace(sig, **changes), 100.0, rules, POLICY)  # type: ignore[arg-type]

    # The stop's distance from the mark and the trailing distance: at most half the mark.
    assert check(long_, stop_loss=50.0) is None
    assert check(long_, stop_loss=49.0) == "invalid:stop_distance"
    assert check(long_, trailing_distance=50.0) is None
    assert check(long_, trailing_distance=50.5) == "invalid:trailing_distance"
    # The market's price bounds, for the stop and the take-profit.
    bounds = MarketRules(min_price=90.0, max_price=110.0)
    assert check(long_, bounds) is None
    assert check(long_, bounds, stop_loss=89.5) == "invalid:stop_price"
    assert check(short, bounds) is None
    assert check(short, bounds, stop_loss=110.5) == "invalid:stop_price"
    assert check(long_, bounds, take_profit=110.0) is None
    assert check(long_, bounds, take_profit=110.5) == "invalid:take_profit_price"
    assert check(short, bounds, take_profit=90.0) is None
    assert check(short, bounds, take_profit=89.5) == "invalid:take_profit_price"
    # Rounded to the tick first: onto a bound is taken, to 0 is refused.
    ticked = MarketRules(tick_size=10.0, max_price=200.0)
    assert check(long_, ticked, take_profit=204.0) is None
    assert check(long_, ticked, take_profit=206.0) == "invalid:take_profit_price"
    assert check(short, MarketRules(tick_size=10.0), take_profit=4.0) == (
        "invalid:take_profit_price"
    )
    assert check(long_, MarketRules(tick_size=10.0), stop_loss=54.0) is None
    assert check_entry(replace(long_, stop_loss=0.4), 0.5, MarketRules(tick_size=1.0), POLICY) == (
        "invalid:stop_price"
    )
    # Prices under 1.
    cheap = replace(long_, stop_loss=0.9, take_profit=1.05)
    assert check_entry(cheap, 1.0, none, POLICY) is None
    cheap_short = replace(short, stop_loss=1.1, take_profit=0.95)
    assert check_entry(cheap_short, 1.0, none, POLICY) is None
    # A step of 0 is no step.
    assert check(long_, MarketRules(step_size=0.0), size=0.123) is None
    # The quantity bounds, with their relative tolerance, inclusive.
    low = 2.0 * (1 - 1e-9)
    assert check(long_, MarketRules(min_qty=2.0), size=low) is None
    assert check(long_, MarketRules(min_qty=2.0), size=math.nextafter(low, 0.0)) == (
        "invalid:min_qty"
    )
    high = 2.0 * (1 + 1e-9)
    assert check(long_, MarketRules(max_qty=2.0), size=2.0) is None
    assert check(long_, MarketRules(max_qty=2.0), size=high) is None
    assert check(long_, MarketRules(max_qty=2.0), size=math.nextafter(high, 3.0)) == (
        "invalid:max_qty"
    )
    # The notional bounds (size times the mark), inclusive.
    assert check(long_, MarketRules(min_notional=100.0)) is None
    assert check(long_, MarketRules(min_notional=100.5)) == "invalid:min_notional"
    capped = replace(POLICY, max_notional=100.0)
    assert check_entry(long_, 100.0, none, capped) is None
    assert check_entry(long_, 100.5, none, capped) == "max_notional"


# -- ticks -----------------------------------------------------------------------------------------


def active_trailing(side: Side, stop: float, distance: float) -> SymbolState:
    """A position of 1 opened at 100 with a trailing distance, its stop ``ps1s1``
    confirmed (``active``), no best mark remembered yet."""
    sig = signal(side=side, size=1.0, stop=stop, trailing=distance, signal_id="t1")
    st = step(priced(KEY, at=NOW), sig).state
    for msg, at in (
        (OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1), NOW + 1),
        (OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 2), NOW + 2),
    ):
        st = step(st, msg, at).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    assert st.position.best_price is None
    return st


def test_a_short_trailing_stop_moves_only_beyond_one_whole_step() -> None:
    """A short with its stop at 110 and a trailing distance of 4 (a step of 2, half the
    distance): a low of 104 puts the ideal stop at 108, exactly one step below the placed
    one, which is not yet a move (the stop moves by more than a step, as on the long
    side): the low is remembered in memory only, nothing is written or sent."""
    st = active_trailing(Side.SHORT, 110.0, 4.0)
    pos = st.position
    assert pos is not None
    tick = MarkPriceTick(KEY, 104.0, NOW + 3, received_at=NOW + 3)
    t = step(st, tick, NOW + 3)
    assert t == Transition(
        replace(
            st, position=replace(pos, best_price=104.0), last_price=104.0, last_price_at=NOW + 3
        )
    )


def test_a_closing_position_follows_no_mark_at_all() -> None:
    """Once closing (an operator's close in flight), a trailing position's ticks change
    nothing but the last mark: no best price is remembered, no guard or stop move is
    looked at (its stop stays until the close fills)."""
    st = active_trailing(Side.LONG, 90.0, 5.0)
    st = step(st, CloseRequest(KEY), NOW + 3).state
    assert st.position is not None and st.position.status is Status.CLOSING
    tick = MarkPriceTick(KEY, 120.0, NOW + 4, received_at=NOW + 4)
    t = step(st, tick, NOW + 4)
    assert t == Transition(replace(st, last_price=120.0, last_price_at=NOW + 4))


# -- an accepted signal, and a signal on its own ---------------------------------------------------


def test_an_accepted_short_without_a_take_profit_is_written_and_sent_whole() -> None:
    """Accepted on a market with a tick: one new row (expected version 0) in
    ``pending_entry``, its stop on the tick, no take-profit (none asked: nothing to round),
    one ``entry_intent`` event, the accepted record remembered, and its entry order sent
    for that position (the worker reports its outcome against the position's id)."""
    st = priced(KEY, at=NOW, rules=MarketRules(tick_size=0.5))
    sig = signal(side=Side.SHORT, size=1.0, stop=110.3, signal_id="a1")
    t = transition(st, sig, Context(NOW, POLICY, 7))
    entry = intended_order(7, OrderKind.ENTRY, 1, "sell", 1.0, NOW)
    pos = Position(
        id=7,
        key=KEY,
        side=Side.SHORT,
        status=Status.PENDING_ENTRY,
        source="sniper",
        requested_qty=1.0,
        stop_price=110.5,
        created_at=NOW,
        updated_at=NOW,
        signal_id="a1",
        orders=(entry,),
        version=1,
    )
    rec = SignalRecord(KEY, "a1", "sniper", SignalOutcome.ACCEPTED, "", NOW, 7)
    event = JournalEvent(7, JournalKind.ENTRY_INTENT, None, Status.PENDING_ENTRY, NOW, {})
    assert t == Transition(
        replace(st, position=pos, decided=(rec,)),
        (PlaceOrder(KEY, 7, entry),),
        Commit(KEY, sig, pos, 0, (event,), rec),
        rec,
    )


def test_a_take_profit_at_the_stop_is_on_the_wrong_side_even_without_a_mark() -> None:
    """On its own (the feed's check, with no mark price), a signal whose take-profit equals
    its stop is refused ``invalid:take_profit_side`` on either side: it must lie beyond the
    stop in the winning direction, strictly."""
    for side in (Side.LONG, Side.SHORT):
        sig = signal(side=side, size=1.0, stop=100.0, tp=100.0, signal_id="v1")
        assert validate_signal(sig, None, POLICY) == "invalid:take_profit_side"
    assert validate_signal(signal(size=1.0, stop=100.0, tp=100.5), None, POLICY) is None


def test_a_trailing_stop_catches_up_with_the_best_mark_seen_before_it_was_confirmed() -> None:
    """A long at 100, stop 90, trailing 5: the mark reached 110 while its stop was not
    confirmed yet (``pending_sl``: nothing moves then, the high is remembered). Once the
    stop rests, the stop follows that high: the tick band wakes the actor on any tick, and
    the first tick, even one lower than the high, moves the stop to 105 (110 - 5). Before,
    the stop stayed at 90 until the mark made a new high, so a fall from 110 was stopped
    15 lower than the trailing distance promises."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, trailing=5.0, signal_id="t1")).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)
    st = step(st, fill, NOW + 1).state
    st = step(st, MarkPriceTick(KEY, 110.0, NOW + 2, received_at=NOW + 2), NOW + 2).state
    st = step(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 3), NOW + 3).state
    before = st.position
    assert before is not None and before.status is Status.ACTIVE
    assert (before.stop_price, before.best_price) == (90.0, 110.0)
    assert tick_band(st, POLICY) == (math.inf, -math.inf)
    tick = MarkPriceTick(KEY, 108.0, NOW + 4, received_at=NOW + 4)
    t = step(st, tick, NOW + 4)
    s2 = intended_order(1, OrderKind.STOP_LOSS, 2, "sell", 1.0, NOW + 4, 105.0)
    event = JournalEvent(
        1,
        JournalKind.STOP_INTENT,
        Status.ACTIVE,
        Status.ACTIVE,
        NOW + 4,
        {"client_id": "ps1s2", "why": "trailing to 105"},
    )
    assert_whole(
        t,
        st,
        tick,
        NOW + 4,
        stop_price=105.0,
        best_price=110.0,
        orders=(*before.orders, s2),
        stop_seq=2,
        effects=(PlaceOrder(KEY, 1, s2, close_position=True),),
        events=(event,),
        state_changes={"last_price": 108.0, "last_price_at": NOW + 4},
    )
    assert tick_band(t.state, POLICY)[1] == pytest.approx(105.0 + 2.5 + 5.0)


def test_a_short_trailing_stop_catches_up_with_the_low_seen_before_it_was_confirmed() -> None:
    """The short side of the catch-up: a short at 100, stop 110, trailing 5, whose mark fell
    to 90 before its stop rested. Once it rests any tick wakes the actor, and the first one
    (92, above the low) moves the stop to 95 (90 + 5); after the move the band is the next
    step's again (a low under 95 - 2.5 - 5 wakes it)."""
    sig = signal(side=Side.SHORT, size=1.0, stop=110.0, trailing=5.0, signal_id="t2")
    st = step(priced(KEY, at=NOW), sig).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)
    st = step(st, fill, NOW + 1).state
    st = step(st, MarkPriceTick(KEY, 90.0, NOW + 2, received_at=NOW + 2), NOW + 2).state
    assert tick_band(st, POLICY)[0] == -math.inf  # pending_sl: nothing moves yet
    st = step(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 3), NOW + 3).state
    assert tick_band(st, POLICY) == (math.inf, -math.inf)
    t = step(st, MarkPriceTick(KEY, 92.0, NOW + 4, received_at=NOW + 4), NOW + 4)
    pos = t.state.position
    assert pos is not None and (pos.stop_price, pos.best_price, pos.stop_seq) == (95.0, 90.0, 2)
    s2 = intended_order(1, OrderKind.STOP_LOSS, 2, "buy", 1.0, NOW + 4, 95.0)
    assert t.effects == (PlaceOrder(KEY, 1, s2, close_position=True),)
    assert tick_band(t.state, POLICY)[0] == pytest.approx(95.0 - 2.5 - 5.0)


def test_a_best_mark_exactly_one_step_ahead_is_no_move_due() -> None:
    """The catch-up's edge, on both sides: a best mark that puts the ideal stop exactly one
    step (2.5) beyond the placed one moves nothing (a move needs more than a step), so the
    band stays the next step's, and a tick short of the best changes nothing."""
    for side, stop, extreme, quiet_at in (
        (Side.LONG, 90.0, 97.5, 96.0),
        (Side.SHORT, 110.0, 102.5, 104.0),
    ):
        sig = signal(side=side, size=1.0, stop=stop, trailing=5.0, signal_id="t3")
        st = step(priced(KEY, at=NOW), sig).state
        fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)
        st = step(st, fill, NOW + 1).state
        st = step(st, MarkPriceTick(KEY, extreme, NOW + 2, received_at=NOW + 2), NOW + 2).state
        rests = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 3)
        st = step(st, rests, NOW + 3).state
        lo, hi = tick_band(st, POLICY)
        if side is Side.LONG:
            assert lo == -math.inf and hi == pytest.approx(extreme)
        else:
            assert lo == pytest.approx(extreme) and hi == math.inf
        quiet = MarkPriceTick(KEY, quiet_at, NOW + 4, received_at=NOW + 4)
        assert step(st, quiet, NOW + 4) == Transition(
            replace(st, last_price=quiet_at, last_price_at=NOW + 4)
        )
