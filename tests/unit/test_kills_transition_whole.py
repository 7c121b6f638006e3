"""More tests written to kill mutants of the pure core (``make mutate``), after the
simulation's slice (``tests/dst/test_mutation_slice.py``) had pinned what its seeds reach:
the branches the seeds do not reach, each pinned whole (the state after, every journal event
with its detail, every effect). Driven through :func:`actors.transition.transition` with
messages, but :func:`actors.transition.difference_event`, whose branches no handler reaches
today, which is called directly. The docstrings say what each pins.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from actors.effects import (
    CancelOrder,
    CancelTimer,
    LookupOrder,
    PlaceOrder,
    RequestSync,
    StartTimer,
)
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    OpenSignal,
    OrderUpdate,
    Recover,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import (
    CloseReason,
    ExchangeStatus,
    MarketRules,
    OrderKind,
    OrderRecord,
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
    Position,
    SymbolState,
    Transition,
)
from actors.transition import (
    Context,
    check_entry,
    difference_event,
    durable_change,
    on_step,
    tick_band,
    to_tick,
    transition,
    validate_signal,
)
from testkit.world import priced, signal
from tests.unit.kills import KEY, NOW, POLICY, ctx, protected_stepwise


def _position() -> Position:
    entry = intended_order(1, OrderKind.ENTRY, 1, "buy", 1.0, NOW)
    stop = intended_order(1, OrderKind.STOP_LOSS, 1, "sell", 1.0, NOW)
    return Position(
        id=1,
        key=KEY,
        side=Side.LONG,
        status=Status.PENDING_SL,
        source="sniper",
        requested_qty=1.0,
        stop_price=90.0,
        created_at=NOW,
        updated_at=NOW,
        signal_id="s1",
        orders=(entry, stop),
    )


def test_the_difference_of_two_orders_changed_names_the_last_and_lists_both() -> None:
    before = _position()
    entry, stop = before.orders
    after = replace(
        before,
        status=Status.ACTIVE,
        orders=(
            replace(entry, state=OrderState.FILLED, filled_qty=1.0),
            replace(stop, state=OrderState.ACCEPTED),
        ),
    )
    assert difference_event(before, after, NOW + 1) == JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.PENDING_SL,
        Status.ACTIVE,
        NOW + 1,
        {"client_id": "ps1s1", "state": "accepted", "filled": 0.0, "orders": ["ps1e1", "ps1s1"]},
    )
    one = replace(after, orders=(entry, replace(stop, state=OrderState.ACCEPTED)))
    assert difference_event(before, one, NOW + 1).detail == {
        "client_id": "ps1s1",
        "state": "accepted",
        "filled": 0.0,
    }


def test_the_difference_of_fields_names_the_durable_fields_that_changed() -> None:
    """Not the version, the write time or the trailing high-water mark (not compared)."""
    before = _position()
    after = replace(
        before, sl_failures=2, stop_seq=1, version=7, updated_at=NOW + 5, best_price=101.0
    )
    assert difference_event(before, after, NOW + 2) == JournalEvent(
        1,
        JournalKind.POSITION_CHANGED,
        Status.PENDING_SL,
        Status.PENDING_SL,
        NOW + 2,
        {"fields": ["stop_seq", "sl_failures"]},
    )


def test_the_difference_from_nothing_is_the_whole_new_position() -> None:
    after = replace(_position(), orders=())
    event = difference_event(None, after, NOW)
    assert event == JournalEvent(
        1,
        JournalKind.POSITION_CHANGED,
        None,
        Status.PENDING_SL,
        NOW,
        {"fields": list(Position.__dataclass_fields__)},
    )
    with_orders = _position()
    assert difference_event(None, with_orders, NOW) == JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        None,
        Status.PENDING_SL,
        NOW,
        {"client_id": "ps1s1", "state": "intended", "filled": 0.0, "orders": ["ps1e1", "ps1s1"]},
    )


# -- a position closed on the sync's word, and the close a restart may have lost -----------------


def _flat_closed() -> Transition:
    """Flat on the exchange, the stop's lookup refused, the flat confirmed: closed
    ``closed_on_exchange``."""
    t = transition(protected_stepwise(), SyncObservation(KEY, None, (), NOW + 10), ctx(NOW + 10))
    refused = ExchangeOutcome(
        KEY, CallOp.LOOKUP, "ps1s1", OrderKind.STOP_LOSS, CallResult.UNKNOWN, "rate_limited"
    )
    st = transition(t.state, refused, ctx(NOW + 10.2)).state
    return transition(st, TimerFired(KEY, TimerId(TimerKind.FLAT_CONFIRM)), ctx(NOW + 12))


def test_a_close_on_the_syncs_word_is_pinned_whole() -> None:
    """The stop cancelled (its timers too), the position's timers cancelled, the next close
    id looked up (a close sent but lost with its commit); journaled: the cancel, then
    ``closed`` with reason ``closed_on_exchange`` via the sync (its flat, confirmed)."""
    t = _flat_closed()
    assert t.effects == (
        CancelTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1s1")),
        CancelTimer(KEY, TimerId(TimerKind.RETRY, "ps1s1")),
        CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, ""),
        CancelTimer(KEY, TimerId(TimerKind.SL_DEADLINE)),
        CancelTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM)),
        CancelTimer(KEY, TimerId(TimerKind.CLOSE_RETRY)),
        LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),
    )
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.CANCEL_REQUESTED,
            Status.CLOSED,
            Status.CLOSED,
            NOW + 12,
            {"client_id": "ps1s1", "why": ""},
        ),
        JournalEvent(
            1,
            JournalKind.CLOSED,
            Status.ACTIVE,
            Status.CLOSED,
            NOW + 12,
            {"reason": "closed_on_exchange", "via": "sync"},
        ),
    )
    pos = t.state.position
    assert pos is not None and pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE
    assert pos.closed_at == NOW + 12 and t.state.last_closed_at == NOW + 12


def _lookup(result: CallResult, update: OrderUpdate | None = None, **kw: Any) -> ExchangeOutcome:
    return ExchangeOutcome(
        KEY, CallOp.LOOKUP, "ps1c1", OrderKind.CLOSE, result, update=update, **kw
    )


def test_the_lost_close_found_filled_is_recorded_and_corrects_the_reason() -> None:
    st = _flat_closed().state
    before = st.position
    assert before is not None
    found = _lookup(
        CallResult.FOUND, OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 99.0, NOW, "x9")
    )
    t = transition(st, found, ctx(NOW + 13))
    assert t.effects == ()
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.CLOSE_REASON_CORRECTED,
            Status.CLOSED,
            Status.CLOSED,
            NOW + 13,
            {
                "client_id": "ps1c1",
                "was": "closed_on_exchange",
                "reason": "manual",
                "via": "lookup",
            },
        ),
    )
    close = OrderRecord(
        "ps1c1",
        OrderKind.CLOSE,
        "sell",
        1.0,
        OrderState.FILLED,
        filled_qty=1.0,
        avg_price=99.0,
        exchange_id="x9",
        sent_at=NOW + 13,
        attempts=1,
    )
    assert t.state.position == replace(
        before,
        orders=(*before.orders, close),
        close_seq=1,
        close_reason=CloseReason.MANUAL,
        updated_at=NOW + 13,
        version=before.version + 1,
    )


def test_answers_about_the_lost_close_that_record_nothing() -> None:
    """Not filled (resting, partly filled, filled nothing), no update, refused: nothing; a
    lookup refused for now: asked again after twice ``lookup_delay_s`` or the exchange's
    Retry-After, the longer; an answer that is not a lookup, or for a position whose close
    reason is known: nothing either."""
    st = _flat_closed().state

    def upd(status: ExchangeStatus, qty: float) -> OrderUpdate:
        return OrderUpdate(KEY, "ps1c1", status, qty, 99.0 if qty else None, NOW, "x9")

    for out in (
        _lookup(CallResult.FOUND, upd(ExchangeStatus.NEW, 0.0)),
        _lookup(CallResult.FOUND, upd(ExchangeStatus.PARTIALLY_FILLED, 0.5)),
        _lookup(CallResult.FOUND, upd(ExchangeStatus.FILLED, 0.0)),
        _lookup(CallResult.FOUND),
        _lookup(CallResult.REJECTED),
        _lookup(CallResult.NOT_FOUND),
        replace(_lookup(CallResult.FOUND, upd(ExchangeStatus.FILLED, 1.0)), op=CallOp.CANCEL),
    ):
        t = transition(st, out, ctx(NOW + 13))
        assert (t.effects, t.commit, t.state) == ((), None, st), out
    timer = TimerId(TimerKind.LOOKUP, "ps1c1")
    t = transition(st, _lookup(CallResult.UNKNOWN), ctx(NOW + 13))
    assert (t.effects, t.commit) == ((StartTimer(KEY, timer, 0.5),), None)
    t = transition(st, _lookup(CallResult.UNKNOWN, retry_after=3.0), ctx(NOW + 13))
    assert (t.effects, t.commit) == ((StartTimer(KEY, timer, 3.0),), None)
    filled = upd(ExchangeStatus.FILLED, 1.0)
    t = transition(st, _lookup(CallResult.UNKNOWN, filled), ctx(NOW + 13))
    assert (t.effects, t.commit) == ((StartTimer(KEY, timer, 0.5),), None)
    pos = st.position
    assert pos is not None
    known = replace(st, position=replace(pos, close_reason=CloseReason.STOP_LOSS))
    t = transition(known, _lookup(CallResult.FOUND, filled), ctx(NOW + 13))
    assert (t.effects, t.commit, t.state) == ((), None, known)


# -- the signal's own checks and the market's -------------------------------------------------


def test_each_invalid_field_of_a_signal_is_named() -> None:
    """:func:`validate_signal` names the first bad field, in the order of the signal; with a
    mark price it also checks the sides of the stop and take-profit."""
    good = signal(size=1.0, stop=90.0, tp=120.0, signal_id="v1")
    nan = float("nan")
    cases: list[tuple[dict[str, object], str | None]] = [
        ({}, None),
        ({"signal_id": ""}, "invalid:signal_id"),
        ({"source": ""}, "invalid:source"),
        ({"side": "long"}, "invalid:side"),
        ({"size": 0.0}, "invalid:size"),
        ({"stop_loss": nan}, "invalid:stop_loss"),
        ({"take_profit": -1.0}, "invalid:take_profit"),
        ({"trailing_distance": 0.0}, "invalid:trailing_distance"),
        ({"expires_at": nan}, "invalid:time"),
        ({"created_at": "now"}, "invalid:time"),
        ({"take_profit": 80.0}, "invalid:take_profit_side"),
    ]
    for change, why in cases:
        assert validate_signal(replace(good, **change), None, POLICY) == why, change  # type: ignore[arg-type]
    assert validate_signal(good, 100.0, POLICY) is None
    assert validate_signal(good, 90.0, POLICY) == "invalid:stop_loss_side"
    assert validate_signal(good, 120.0, POLICY) == "invalid:take_profit_side"
    short = signal(side=Side.SHORT, size=1.0, stop=110.0, tp=80.0, signal_id="v2")
    assert validate_signal(short, 100.0, POLICY) is None
    assert validate_signal(short, 110.0, POLICY) == "invalid:stop_loss_side"


def test_each_market_rule_an_entry_breaks_is_named() -> None:
    sig = signal(size=1.0, stop=90.0, tp=120.0, signal_id="m1")
    rules = MarketRules(
        tick_size=0.5,
        step_size=0.1,
        min_qty=0.1,
        max_qty=10.0,
        min_notional=5.0,
        min_price=50.0,
        max_price=200.0,
    )
    assert check_entry(sig, 100.0, rules, POLICY) is None
    cases: list[tuple[OpenSignal, MarketRules, str]] = [
        (replace(sig, stop_loss=90.0), replace(rules, min_price=95.0), "invalid:stop_price"),
        (replace(sig, stop_loss=90.0), replace(rules, max_price=80.0), "invalid:stop_price"),
        (replace(sig, stop_loss=99.9), rules, "invalid:stop_loss_side"),
        (replace(sig, take_profit=250.0), rules, "invalid:take_profit_price"),
        (replace(sig, size=0.15), rules, "invalid:size_step"),
        (replace(sig, size=0.1), replace(rules, min_qty=0.2), "invalid:min_qty"),
        (replace(sig, size=20.0), rules, "invalid:max_qty"),
        (replace(sig, size=0.1), replace(rules, min_notional=50.0), "invalid:min_notional"),
    ]
    for s, r, why in cases:
        assert check_entry(s, 100.0, r, POLICY) == why, (s, r)
    wide = replace(POLICY, max_stop_distance_pct=2.0)
    assert check_entry(replace(sig, stop_loss=0.2), 100.0, rules, wide) == "invalid:stop_price"
    capped = replace(POLICY, max_notional=50.0)
    assert check_entry(sig, 100.0, rules, capped) == "max_notional"
    assert check_entry(replace(sig, stop_loss=20.0), 100.0, MarketRules(), POLICY) == (
        "invalid:stop_distance"
    )
    far = replace(sig, trailing_distance=60.0)
    assert check_entry(far, 100.0, MarketRules(), POLICY) == "invalid:trailing_distance"


def test_a_nan_in_a_guarded_price_gives_an_empty_band() -> None:
    st = protected_stepwise()
    pos = st.position
    assert pos is not None
    unconfirmed = replace(pos, stop_price=float("nan"), orders=pos.orders[:1])
    assert tick_band(replace(st, position=unconfirmed), POLICY) == (math.inf, -math.inf)


def test_a_durable_change_is_any_field_but_version_write_time_and_high_water_mark() -> None:
    pos = _position()
    assert durable_change(pos, None) is False
    assert durable_change(None, pos) is True
    assert durable_change(pos, replace(pos, id=2)) is True
    assert durable_change(pos, replace(pos, version=9, updated_at=1.0, best_price=3.0)) is False
    assert durable_change(pos, replace(pos, sl_failures=1)) is True


def test_a_message_that_is_no_position_message_is_refused_loudly() -> None:
    with pytest.raises(TypeError, match="not a position message: str"):
        transition(SymbolState(KEY), "hello", ctx(NOW))  # type: ignore[arg-type]


# -- recovery (S5) -----------------------------------------------------------------------------


def test_a_recovered_position_with_no_stop_on_record_places_one() -> None:
    st = protected_stepwise()
    pos = st.position
    assert pos is not None
    t = transition(
        replace(st, position=replace(pos, orders=pos.orders[:1])), Recover(KEY), ctx(NOW + 5)
    )
    stop = OrderRecord(
        "ps1s2",
        OrderKind.STOP_LOSS,
        "sell",
        1.0,
        OrderState.INTENDED,
        90.0,
        sent_at=NOW + 5,
        attempts=1,
    )
    assert t.effects == (
        RequestSync(KEY, "recovery"),
        StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), 10.0),
        PlaceOrder(KEY, 1, stop, reduce_only=False, close_position=True),
    )
    assert t.commit is not None and t.commit.events == (
        JournalEvent(1, JournalKind.RECOVERING, Status.ACTIVE, Status.ACTIVE, NOW + 5, {}),
        JournalEvent(
            1,
            JournalKind.STOP_INTENT,
            Status.ACTIVE,
            Status.ACTIVE,
            NOW + 5,
            {"client_id": "ps1s2", "why": "recovery: no stop-loss on record"},
        ),
    )


def test_a_recovered_closed_position_with_a_late_entry_fill_asks_the_sync() -> None:
    """The entry filled beyond what the position held (its rest filled after the end): the
    sync is asked to adopt it; the stop pending cancel is cancelled again; nothing written."""
    st = _flat_closed().state
    pos = st.position
    assert pos is not None
    entry, stop = pos.orders
    late = replace(st, position=replace(pos, orders=(replace(entry, filled_qty=1.5), stop)))
    t = transition(late, Recover(KEY), ctx(NOW + 20))
    assert t.effects == (
        RequestSync(KEY, "recovery: late entry fill"),
        CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, "recovery"),
    )
    assert t.commit is None


def test_a_recovered_closed_position_with_a_stop_of_unknown_outcome_looks_it_up() -> None:
    st = _flat_closed().state
    pos = st.position
    assert pos is not None
    entry, stop = pos.orders
    unknown = replace(
        st, position=replace(pos, orders=(entry, replace(stop, state=OrderState.UNKNOWN)))
    )
    t = transition(unknown, Recover(KEY), ctx(NOW + 20))
    assert t.effects == (LookupOrder(KEY, "ps1s1", OrderKind.STOP_LOSS),)
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.RECOVERING,
            Status.CLOSED,
            Status.CLOSED,
            NOW + 20,
            {"client_id": "ps1s1"},
        ),
    )
    after = t.state.position
    assert after is not None and after.order("ps1s1") == replace(
        stop, state=OrderState.PENDING_CANCEL
    )


def test_reports_of_orders_not_ours_or_of_no_known_status_change_nothing() -> None:
    st = protected_stepwise()
    for upd in (
        OrderUpdate(KEY, "ps9e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW),
        replace(  # bad input: a status no exchange sends
            OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, NOW + 1),
            status="weird",  # type: ignore[arg-type]
        ),
    ):
        t = transition(st, upd, ctx(NOW + 1))
        assert (t.effects, t.commit) == ((), None), upd
    t = transition(
        SymbolState(KEY), OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 1.0, NOW), ctx(NOW)
    )
    assert (t.effects, t.commit, t.state) == ((), None, SymbolState(KEY))


# -- a reply after the position ended -------------------------------------------------------------


def _failed_before_the_fill() -> SymbolState:
    """An entry cancelled on a close request before anything filled: the position failed."""
    st = transition(priced(KEY, at=NOW), signal(size=1.0), ctx(NOW)).state
    st = transition(st, CloseRequest(KEY), ctx(NOW + 1)).state
    cancelled = ExchangeOutcome(KEY, CallOp.CANCEL, "ps1e1", OrderKind.ENTRY, CallResult.ACCEPTED)
    st = transition(st, cancelled, ctx(NOW + 2)).state
    pos = st.position
    assert pos is not None and pos.status is Status.FAILED
    return st


def test_a_late_placement_reply_that_filled_is_recorded_and_the_sync_asked() -> None:
    st = _failed_before_the_fill()
    filled = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)
    out = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1e1", OrderKind.ENTRY, CallResult.ACCEPTED, update=filled
    )
    t = transition(st, out, ctx(NOW + 3))
    assert t.effects == (RequestSync(KEY, "late entry fill"),)
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.LATE_ENTRY_FILL,
            Status.FAILED,
            Status.FAILED,
            NOW + 3,
            {"client_id": "ps1e1", "filled": 1.0, "qty": 0.0, "via": "reply"},
        ),
    )
    late = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)
    t = transition(st, late, ctx(NOW + 3))
    assert t.commit is not None and t.commit.events[0].detail["via"] == "stream"
    accepted = replace(out, update=None)
    t = transition(st, accepted, ctx(NOW + 3))
    assert (t.effects, t.commit, t.state) == ((), None, st)


def test_a_placement_accepted_without_a_report_is_a_resting_order() -> None:
    """ccxt may answer a placement without the order's status: accepted, nothing filled."""
    st = transition(priced(KEY, at=NOW), signal(size=1.0), ctx(NOW)).state
    before = st.position
    assert before is not None
    out = ExchangeOutcome(KEY, CallOp.PLACE, "ps1e1", OrderKind.ENTRY, CallResult.ACCEPTED)
    t = transition(st, out, ctx(NOW + 1))
    assert t.effects == ()
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.ENTRY_ACCEPTED,
            Status.PENDING_ENTRY,
            Status.ENTRY_PLACED,
            NOW + 1,
            {"via": "reply"},
        ),
    )
    assert t.state.position == replace(
        before,
        status=Status.ENTRY_PLACED,
        orders=(replace(before.orders[0], state=OrderState.ACCEPTED),),
        updated_at=NOW + 1,
        version=before.version + 1,
    )


def _ended_while_a_stop_was_placed() -> SymbolState:
    """Closed on the sync's word while a newer stop (``ps1s2``) was being placed."""
    st = _flat_closed().state
    pos = st.position
    assert pos is not None
    entry, stop = pos.orders
    newer = replace(stop, client_id="ps1s2", state=OrderState.INTENDED)
    return replace(st, position=replace(pos, orders=(entry, stop, newer)))


def _stop_reply(result: CallResult) -> ExchangeOutcome:
    return ExchangeOutcome(KEY, CallOp.PLACE, "ps1s2", OrderKind.STOP_LOSS, result, "x")


def test_a_stop_that_landed_after_its_position_ended_is_cancelled() -> None:
    st = _ended_while_a_stop_was_placed()
    t = transition(st, _stop_reply(CallResult.ACCEPTED), ctx(NOW + 13))
    assert t.effects == (CancelOrder(KEY, "ps1s2", OrderKind.STOP_LOSS, "not needed"),)

    def ev(detail: dict[str, object], kind: JournalKind = JournalKind.ORDER_FACT) -> JournalEvent:
        return JournalEvent(1, kind, Status.CLOSED, Status.CLOSED, NOW + 13, detail)

    assert t.commit is not None and t.commit.events == (
        ev({"client_id": "ps1s2", "state": "accepted", "filled": 0.0, "via": "reply"}),
        ev({"client_id": "ps1s2", "why": "not needed"}, JournalKind.CANCEL_REQUESTED),
    )
    pos = t.state.position
    assert pos is not None
    assert [(o.client_id, o.state, o.event_time) for o in pos.orders] == [
        ("ps1e1", OrderState.FILLED, NOW + 0.1),
        ("ps1s1", OrderState.PENDING_CANCEL, NOW + 0.2),
        ("ps1s2", OrderState.PENDING_CANCEL, NOW + 0.2),
    ]
    t = transition(st, _stop_reply(CallResult.UNKNOWN), ctx(NOW + 13))
    assert (t.effects, t.commit) == (
        (StartTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1s2"), 0.25),),
        None,
    )
    t = transition(st, _stop_reply(CallResult.REJECTED), ctx(NOW + 13))
    assert t.effects == ()
    assert t.commit is not None and t.commit.events == (
        ev({"client_id": "ps1s2", "state": "rejected"}),
    )
    pos, was = t.state.position, st.position
    assert pos is not None and was is not None
    assert pos.order("ps1s2") == replace(was.orders[2], state=OrderState.REJECTED)


# -- an operator's close request -----------------------------------------------------------------


def test_an_operators_close_requests_are_journaled_and_answered_whole() -> None:
    """A close: ``closing`` with who asked, the note and the request id (its ``why``), and
    the answer ``closing``. Another while it closes: nothing changes but the journal (``close
    requested``, ``already_closing``, at the position's status, written with no position and
    expected version 0) and the answer. With no position: the same, ``no_position``. One
    that names nobody (code's): no journal, no answer."""
    t = transition(
        protected_stepwise(),
        CloseRequest(KEY, CloseReason.MANUAL, "r1", "op", "why not"),
        ctx(NOW + 5),
    )
    assert t.control == ControlOutcome(KEY, "r1", "close", "closing", True, 1)
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.CLOSING,
            Status.ACTIVE,
            Status.CLOSING,
            NOW + 5,
            {"reason": "manual", "why": "r1", "by": "op", "note": "why not", "request_id": "r1"},
        ),
    )
    closing = t.state
    again = CloseRequest(KEY, CloseReason.MANUAL, "r2", "op", "again")
    t = transition(closing, again, ctx(NOW + 6))
    assert t == Transition(
        closing,
        commit=Commit(
            KEY,
            again,
            None,
            0,
            (
                JournalEvent(
                    1,
                    JournalKind.CLOSE_REQUESTED,
                    Status.CLOSING,
                    Status.CLOSING,
                    NOW + 6,
                    {"by": "op", "note": "again", "request_id": "r2", "result": "already_closing"},
                ),
            ),
        ),
        control=ControlOutcome(KEY, "r2", "close", "already_closing", True, 1),
    )
    nothing = CloseRequest(KEY, CloseReason.MANUAL, "r3", "op", "")
    t = transition(SymbolState(KEY), nothing, ctx(NOW + 6))
    assert t == Transition(
        SymbolState(KEY),
        commit=Commit(
            KEY,
            nothing,
            None,
            0,
            (
                JournalEvent(
                    None,
                    JournalKind.CLOSE_REQUESTED,
                    None,
                    None,
                    NOW + 6,
                    {"by": "op", "note": "", "request_id": "r3", "result": "no_position"},
                ),
            ),
        ),
        control=ControlOutcome(KEY, "r3", "close", "no_position", True, None),
    )
    assert transition(closing, CloseRequest(KEY), ctx(NOW + 6)) == Transition(closing)
    t = transition(protected_stepwise(), CloseRequest(KEY), ctx(NOW + 5))
    assert t.control is None and t.commit is not None
    assert t.commit.events[0].detail == {"reason": "manual", "why": "close request"}


# -- timers ----------------------------------------------------------------------------------------


def _fire(st: SymbolState, kind: TimerKind, cid: str | None = None) -> Transition:
    return transition(st, TimerFired(KEY, TimerId(kind, cid)), ctx(NOW + 14))


def test_timers_of_a_position_closed_on_the_syncs_word() -> None:
    """A retry or a flat confirmation after the end: nothing. A lookup timer for the close a
    restart may have lost, or for a close of ours not settled: looked up (an accepted close
    only through this rule); for a settled close or an id not ours: nothing. The stop
    pending cancel: looked up again, its cancel sent again."""
    st = _flat_closed().state
    pos = st.position
    assert pos is not None
    nothing = ((), None)

    def effects(t: Transition) -> tuple[object, ...]:
        assert t.commit is None
        return t.effects

    assert (_fire(st, TimerKind.RETRY, "ps1s1").effects, None) == nothing
    flat = replace(st, flat_seen_at=NOW + 13)
    assert effects(_fire(flat, TimerKind.FLAT_CONFIRM)) == ()
    assert effects(_fire(st, TimerKind.LOOKUP, "ps1c1")) == (
        LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),
    )
    close = OrderRecord("ps1c1", OrderKind.CLOSE, "sell", 1.0, OrderState.ACCEPTED, attempts=1)
    sent = replace(st, position=replace(pos, orders=(*pos.orders, close), close_seq=1))
    assert effects(_fire(sent, TimerKind.LOOKUP, "ps1c1")) == (
        LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),
    )
    done = replace(close, state=OrderState.CANCELED)
    settled = replace(st, position=replace(pos, orders=(*pos.orders, done), close_seq=1))
    assert effects(_fire(settled, TimerKind.LOOKUP, "ps1c1")) == ()
    assert effects(_fire(st, TimerKind.LOOKUP, "ps1c7")) == ()
    assert effects(_fire(st, TimerKind.LOOKUP, "ps1s1")) == (
        LookupOrder(KEY, "ps1s1", OrderKind.STOP_LOSS),
    )
    assert effects(_fire(st, TimerKind.CANCEL, "ps1s1")) == (
        CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, "retry"),
    )


def test_a_retry_timer_of_a_stop_that_landed_after_the_end_sends_nothing() -> None:
    st = _ended_while_a_stop_was_placed()
    t = _fire(st, TimerKind.RETRY, "ps1s2")
    assert (t.effects, t.commit, t.state) == ((), None, st)
    active = protected_stepwise()
    for kind in (TimerKind.RETRY, TimerKind.CANCEL, TimerKind.LOOKUP):
        t = _fire(active, kind, "ps1s1")
        assert (t.effects, t.commit, t.state) == ((), None, active), kind


def _trailing_move(state: OrderState, attempts: int) -> SymbolState:
    """The confirmed stop ``ps1s1`` rests; its trailing successor ``ps1s2`` (at 95) is not
    placed yet, after ``attempts`` placements."""
    st = protected_stepwise()
    pos = st.position
    assert pos is not None
    newer = replace(
        pos.orders[1], client_id="ps1s2", state=state, trigger_price=95.0, attempts=attempts
    )
    return replace(
        st, position=replace(pos, orders=(*pos.orders, newer), stop_seq=2, stop_price=95.0)
    )


def test_a_trailing_move_covered_by_an_older_stop_is_retried_then_given_up() -> None:
    """Its retries spend no attempt of an unprotected spell (``sl_failures`` stays 0), but
    its own placements are bounded: at ``sl_max_attempts`` it is given up and cancelled."""

    def ev(kind: JournalKind, **detail: object) -> JournalEvent:
        return JournalEvent(1, kind, Status.ACTIVE, Status.ACTIVE, NOW + 14, detail)

    t = _fire(_trailing_move(OrderState.REJECTED, 1), TimerKind.RETRY, "ps1s2")
    moved = _trailing_move(OrderState.INTENDED, 2).position.orders[2]  # type: ignore[union-attr]
    sent = replace(moved, sent_at=NOW + 14)
    assert t.effects == (PlaceOrder(KEY, 1, sent, reduce_only=False, close_position=True),)
    assert t.commit is not None
    assert t.commit.events == (ev(JournalKind.ORDER_RESENT, client_id="ps1s2", attempt=2),)
    assert t.state.position is not None and t.state.position.sl_failures == 0
    t = _fire(_trailing_move(OrderState.INTENDED, 3), TimerKind.RETRY, "ps1s2")
    why = "given up: an older stop protects"
    assert t.effects == (CancelOrder(KEY, "ps1s2", OrderKind.STOP_LOSS, why),)
    assert t.commit is not None and t.commit.events == (
        ev(JournalKind.STOP_FAILED, client_id="ps1s2", why="3 attempts while covered", failures=0),
        ev(JournalKind.CANCEL_REQUESTED, client_id="ps1s2", why=why),
    )
    pos = t.state.position
    assert pos is not None and pos.order("ps1s2") is not None
    assert pos.order("ps1s2").state is OrderState.PENDING_CANCEL  # type: ignore[union-attr]


def test_a_covered_trailing_stop_refused_to_the_last_attempt_is_given_up_without_a_cancel() -> None:
    """Its last placement was refused: it rests nowhere, so giving it up asks no cancel (a
    cancel of a refused order is no pair of the order table: it was journalled as an
    illegal transition)."""
    t = _fire(_trailing_move(OrderState.REJECTED, 3), TimerKind.RETRY, "ps1s2")
    assert t.effects == ()
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.STOP_FAILED,
            Status.ACTIVE,
            Status.ACTIVE,
            NOW + 14,
            {"client_id": "ps1s2", "why": "3 attempts while covered", "failures": 0},
        ),
    )
    pos = t.state.position
    assert pos is not None and pos.order("ps1s2").state is OrderState.REJECTED  # type: ignore[union-attr]


# -- the small pure helpers, at their edges --------------------------------------------------------


def test_quantity_steps_and_price_ticks_at_their_edges() -> None:
    """One step is a whole multiple; float noise is tolerated relative to the value (a large
    quantity whose multiple is off by 1.5e-11); a value under one step is not."""
    assert on_step(0.1, 0.1) and on_step(0.7, 0.1) and on_step(123456.7, 0.1)
    assert not on_step(0.05, 0.1) and not on_step(0.35, 0.1)
    assert to_tick(0.3, 0.1) == 0.3  # not 0.30000000000000004
    assert to_tick(100.07, 0.05) == 100.05
    assert to_tick(5.0, 0.0) == 5.0 and to_tick(5.0, None) == 5.0
    assert math.isnan(to_tick(float("nan"), 0.1))


def test_ids_and_sources_are_short_printable_text() -> None:
    good = signal(size=1.0, stop=90.0, signal_id="v1")
    for sid, why in (
        ("x" * 64, None),
        ("x" * 65, "invalid:signal_id"),
        ("", "invalid:signal_id"),
        ("a\nb", "invalid:signal_id"),
        (123, "invalid:signal_id"),
    ):
        assert validate_signal(replace(good, signal_id=sid), None, POLICY) == why, sid  # type: ignore[arg-type]


def test_a_take_profit_at_the_mark_is_on_the_wrong_side() -> None:
    sig = signal(size=1.0, stop=90.0, tp=100.0, signal_id="t1")
    assert validate_signal(sig, 100.0, POLICY) == "invalid:take_profit_side"
    short = signal(side=Side.SHORT, size=1.0, stop=110.0, tp=100.0, signal_id="t2")
    assert validate_signal(short, 100.0, POLICY) == "invalid:take_profit_side"


def test_with_no_signal_memory_nothing_is_remembered() -> None:
    policy = replace(POLICY, recent_signal_memory=0)
    t = transition(priced(KEY, at=NOW), signal(size=1.0), Context(NOW, policy, 1))
    assert t.signal is not None and t.state.decided == ()
    t = transition(priced(KEY, at=NOW), signal(size=1.0), ctx(NOW))
    assert t.state.decided == (t.signal,)
