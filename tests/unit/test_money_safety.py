"""The state machine's money-safety rules, message by message (pure transition).

Each test drives ``transition`` the way the actor does and names the invariant it proves:
I10 (checked before it leaves), I9 (nothing of ours left behind), I5 (every stop attempt
counts, with a deadline), I11 (told the truth), and the close reasons of a position the sync
finds flat. The end-to-end counterparts run against the sim in ``tests/exchange``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from actors.effects import CancelOrder, FetchMarket, LookupOrder, PlaceOrder, StartTimer
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    MarketInfo,
    MarkPriceTick,
    Message,
    OpenSignal,
    OrderUpdate,
    Rejection,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import (
    CloseReason,
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    MarketRules,
    OrderKind,
    OrderState,
    Side,
    Status,
)
from actors.state import Policy, Reentry, SignalOutcome, SymbolState, Transition
from actors.transition import Context, check_entry, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy(reentry=Reentry.ALLOW, max_notional=1_000.0)


def ctx(now: float = NOW, policy: Policy = POLICY, give_up: bool = False) -> Context:
    ids = iter(range(1, 100))
    return Context(now, policy, next(ids), give_up)


def step(st: SymbolState, msg: Message, now: float = NOW, **kw: object) -> Transition:
    return transition(st, msg, ctx(now, **kw))  # type: ignore[arg-type]


def placed(t: Transition) -> list[str]:
    return [e.order.client_id for e in t.effects if isinstance(e, PlaceOrder)]


def cancels(t: Transition) -> list[tuple[str, str]]:
    return [(e.client_id, e.why) for e in t.effects if isinstance(e, CancelOrder)]


def lookups(t: Transition) -> list[str]:
    return [e.client_id for e in t.effects if isinstance(e, LookupOrder)]


def timers(t: Transition) -> dict[str, float]:
    return {str(e.name): e.delay for e in t.effects if isinstance(e, StartTimer)}


def out(cid: str, kind: OrderKind, op: str, result: CallResult, **kw: object) -> ExchangeOutcome:
    return ExchangeOutcome(KEY, CallOp(op), cid, kind, result, **kw)  # type: ignore[arg-type]


def protected(stop: float = 90.0, **sig: object) -> SymbolState:
    """An active long of 1.0 at 100 with its stop ``ps1s1`` confirmed."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=stop, **sig)).state  # type: ignore[arg-type]
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0)).state
    st = step(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0)).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    return st


def closed_by_hand(st: SymbolState) -> SymbolState:
    st = step(st, CloseRequest(KEY, CloseReason.MANUAL, "operator")).state
    return step(st, OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 100.0, 3.0)).state


# --- I10: checked before it leaves -----------------------------------------------------------


def test_a_signal_without_a_fresh_mark_waits_for_one_request_shared_by_the_next() -> None:
    first = step(SymbolState(KEY), signal(signal_id="a"))
    assert first.deferred and first.commit is None and first.signal is None
    assert [type(e) for e in first.effects] == [FetchMarket]
    second = step(first.state, signal(signal_id="b"))
    assert second.deferred and second.effects == ()  # one request for the symbol


def test_a_mark_older_than_the_bound_is_not_a_reference() -> None:
    stale = priced(KEY, at=NOW - POLICY.max_mark_age_s - 0.1)
    assert step(stale, signal()).deferred
    fresh = step(stale, MarkPriceTick(KEY, 100.0, NOW, received_at=NOW)).state
    assert step(fresh, signal()).commit is not None


def test_the_price_fetched_over_rest_decides_as_the_stream_would() -> None:
    t = step(SymbolState(KEY), signal(size=20.0))  # 20 x 100 = 2,000 > max_notional 1,000
    st = step(t.state, MarketInfo(KEY, CallResult.FOUND, 100.0, MarketRules(), NOW)).state
    decided = step(st, signal(size=20.0))
    assert decided.signal is not None and decided.signal.reason == "max_notional"
    assert placed(decided) == []


def test_without_a_price_in_time_the_signal_is_refused_transiently_and_not_remembered() -> None:
    t = step(SymbolState(KEY), signal(signal_id="x"), give_up=True)
    assert t.signal is not None
    assert (t.signal.reason, t.signal.retry) == ("no_mark_price", True)
    assert t.state.decided == ()  # the same id may be decided anew later
    st = replace(priced(KEY, at=NOW), market_requested=False)
    assert step(st, signal(signal_id="x")).commit is not None


def test_a_failed_mark_request_is_not_repeated_at_once() -> None:
    t = step(SymbolState(KEY), signal())
    st = step(t.state, MarketInfo(KEY, CallResult.UNKNOWN, reason="unavailable")).state
    assert step(st, signal()).effects == ()
    assert [type(e) for e in step(st, signal(), NOW + 1).effects] == [FetchMarket]


RULES = MarketRules(
    tick_size=0.5, step_size=0.01, min_qty=0.01, max_qty=5.0, min_notional=5.0, max_price=1e6
)


@pytest.mark.parametrize(
    ("sig", "reason"),
    [
        (signal(size=0.015), "invalid:size_step"),
        (signal(size=6.0), "invalid:max_qty"),
        (signal(size=0.03), "invalid:min_notional"),  # 3 USDT at 100
        (signal(stop=40.0), "invalid:stop_distance"),  # 60 % below the mark
        (signal(side=Side.SHORT, stop=1.7e308), "invalid:stop_distance"),
        (signal(stop=101.0), "invalid:stop_loss_side"),
        (signal(stop=99.9), "invalid:stop_loss_side"),  # 100.0 on the tick: not below
        (signal(tp=99.0), "invalid:take_profit_side"),
        (signal(trailing=60.0), "invalid:trailing_distance"),
        (signal(size=2.0), None),
    ],
)
def test_the_market_rules(sig: OpenSignal, reason: str | None) -> None:
    assert check_entry(sig, 100.0, RULES, Policy(max_stop_distance_pct=0.5)) == reason


def test_the_stop_and_take_profit_are_recorded_on_the_tick() -> None:
    st = priced(KEY, at=NOW, rules=RULES)
    t = step(st, signal(size=1.0, stop=90.2, tp=110.3))
    assert t.state.position is not None
    assert (t.state.position.stop_price, t.state.position.take_profit) == (90.0, 110.5)


# --- I5: every stop attempt counts, with a deadline ------------------------------------------


def test_unknown_stops_that_lookups_do_not_find_are_counted_then_closed_at_market() -> None:
    st = step(priced(KEY, at=NOW), signal(size=1.0)).state
    t = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0))
    assert placed(t) == ["ps1s1"] and "sl_deadline" in timers(t)
    st = t.state
    sends = 1
    for _ in range(10):
        st = step(st, out("ps1s1", OrderKind.STOP_LOSS, "place", CallResult.UNKNOWN)).state
        t = step(st, out("ps1s1", OrderKind.STOP_LOSS, "lookup", CallResult.NOT_FOUND))
        st = t.state
        sends += len([c for c in placed(t) if c == "ps1s1"])
        if placed(t) == ["ps1c1"]:
            break
    assert sends == POLICY.sl_max_attempts
    assert st.position is not None and st.position.status is Status.CLOSING
    assert st.position.close_reason is CloseReason.EMERGENCY


def test_a_stop_refused_before_it_left_counts_too() -> None:
    st = step(priced(KEY, at=NOW), signal(size=1.0)).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0)).state
    for _ in range(POLICY.sl_max_attempts):
        r = out("ps1s1", OrderKind.STOP_LOSS, "place", CallResult.REJECTED, reason="local:X")
        st = step(st, r).state
        st = step(st, TimerFired(KEY, TimerId(TimerKind.RETRY, "ps1s1"))).state
    assert st.position is not None and st.position.status is Status.CLOSING


def test_the_deadline_closes_a_position_whose_stop_is_still_not_confirmed() -> None:
    st = step(priced(KEY, at=NOW), signal(size=1.0)).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0)).state
    st = step(st, out("ps1s1", OrderKind.STOP_LOSS, "place", CallResult.UNKNOWN)).state
    t = step(st, TimerFired(KEY, TimerId(TimerKind.SL_DEADLINE)), NOW + POLICY.sl_deadline_s)
    assert placed(t) == ["ps1c1"]
    assert t.state.position is not None and t.state.position.close_reason is CloseReason.EMERGENCY


def test_a_close_the_exchange_keeps_refusing_is_retried_for_ever_with_backoff() -> None:
    st = step(protected(), CloseRequest(KEY, CloseReason.MANUAL, "operator")).state
    delays = []
    failing = []
    for n in range(1, 10):
        cid = f"ps1c{n}"
        t = step(st, out(cid, OrderKind.CLOSE, "place", CallResult.REJECTED, reason="refused"))
        delays.append(timers(t)["close_retry"])
        assert t.commit is not None
        failing.append(any(ev.kind == "close_failing" for ev in t.commit.events))
        st = step(t.state, TimerFired(KEY, TimerId(TimerKind.CLOSE_RETRY))).state
        assert st.position is not None and st.position.close_seq == n + 1
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == POLICY.close_retry_max_delay_s
    assert failing.index(True) == POLICY.close_max_attempts - 1


# --- I9: nothing of ours left behind --------------------------------------------------------


def test_a_closed_positions_stop_is_pending_until_the_exchange_confirms_the_cancel() -> None:
    t = step(protected(), CloseRequest(KEY, CloseReason.MANUAL, "operator"))
    t = step(t.state, OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 100.0, 3.0))
    assert cancels(t) == [("ps1s1", "")]
    stop = t.state.position.order("ps1s1")  # type: ignore[union-attr]
    assert stop is not None and stop.state is OrderState.PENDING_CANCEL
    # a 429 on the cancel: asked again after the exchange's Retry-After
    limited = out("ps1s1", OrderKind.STOP_LOSS, "cancel", CallResult.UNKNOWN, retry_after=3.0)
    t = step(t.state, limited)
    assert timers(t) == {"cancel:ps1s1": 3.0}
    assert cancels(step(t.state, TimerFired(KEY, TimerId(TimerKind.CANCEL, "ps1s1")))) == [
        ("ps1s1", "retry")
    ]
    done = step(t.state, out("ps1s1", OrderKind.STOP_LOSS, "cancel", CallResult.ACCEPTED))
    stop = done.state.position.order("ps1s1")  # type: ignore[union-attr]
    assert stop is not None and stop.state is OrderState.CANCELED and done.commit is not None


def test_the_cancel_of_an_entry_the_operator_closed_is_asked_again_after_no_answer() -> None:
    """A close before the entry filled asks the exchange to cancel the entry. A 429 (or a
    5xx) on that cancel must not lose it: the entry would keep resting, to fill later into a
    position the operator closed (fees and slippage on an unwanted trade, and the symbol
    taking no new signal meanwhile). The cancel is asked again after the Retry-After, again
    on each no-answer, and the entry ends cancelled once the exchange confirms."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0)).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.NEW, 0.0, None, 1.0)).state
    t = step(st, CloseRequest(KEY, CloseReason.MANUAL, "operator"), NOW + 1)
    assert cancels(t) == [("ps1e1", "")]
    limited = out("ps1e1", OrderKind.ENTRY, "cancel", CallResult.UNKNOWN, retry_after=2.0)
    t = step(t.state, limited, NOW + 2)
    assert timers(t) == {"cancel:ps1e1": 2.0}
    again = step(t.state, TimerFired(KEY, TimerId(TimerKind.CANCEL, "ps1e1")), NOW + 4)
    assert cancels(again) == [("ps1e1", "retry")]
    unanswered = out("ps1e1", OrderKind.ENTRY, "cancel", CallResult.UNKNOWN)
    assert timers(step(again.state, unanswered, NOW + 5)) == {
        "cancel:ps1e1": POLICY.cancel_retry_delay_s
    }
    done = step(again.state, out("ps1e1", OrderKind.ENTRY, "cancel", CallResult.ACCEPTED))
    pos = done.state.position
    assert pos is not None and pos.status is Status.FAILED
    assert pos.order("ps1e1").state is OrderState.CANCELED  # type: ignore[union-attr]


def test_the_cancel_of_a_partly_filled_entrys_rest_is_asked_again_after_no_answer() -> None:
    """Closing a position whose entry filled in part cancels the entry's rest; lost to a
    429, the rest would keep filling and each fill would need another market close. Asked
    again like any cancel, and no longer once the entry is done."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0)).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.4, 100.0, 1.0)).state
    t = step(st, CloseRequest(KEY, CloseReason.MANUAL, "operator"), NOW + 1)
    assert cancels(t) == [("ps1e1", "")]
    limited = out("ps1e1", OrderKind.ENTRY, "cancel", CallResult.UNKNOWN, retry_after=3.0)
    t = step(t.state, limited, NOW + 2)
    assert timers(t) == {"cancel:ps1e1": 3.0}
    fired = TimerFired(KEY, TimerId(TimerKind.CANCEL, "ps1e1"))
    assert cancels(step(t.state, fired, NOW + 5)) == [("ps1e1", "retry")]
    gone = step(t.state, OrderUpdate(KEY, "ps1e1", ExchangeStatus.CANCELED, 0.4, 100.0, 4.0))
    assert cancels(step(gone.state, fired, NOW + 5)) == []


def test_a_cancel_answered_not_found_is_looked_up_before_the_stop_counts_as_gone() -> None:
    st = closed_by_hand(protected())
    t = step(st, out("ps1s1", OrderKind.STOP_LOSS, "cancel", CallResult.NOT_FOUND))
    assert lookups(t) == ["ps1s1"]
    still = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 4.0)
    resting = step(
        t.state, out("ps1s1", OrderKind.STOP_LOSS, "lookup", CallResult.FOUND, update=still)
    )
    assert cancels(resting) == [("ps1s1", "still resting")]


def test_a_new_entry_waits_until_the_earlier_stop_is_confirmed_gone() -> None:
    st = closed_by_hand(protected())
    waits = step(st, signal(signal_id="next"))
    assert waits.deferred and placed(waits) == []
    refused = step(st, signal(signal_id="next"), give_up=True)
    assert refused.signal is not None
    assert (refused.signal.reason, refused.signal.retry) == ("previous_orders_pending", True)
    gone = step(st, out("ps1s1", OrderKind.STOP_LOSS, "cancel", CallResult.ACCEPTED)).state
    opened = transition(gone, signal(signal_id="next"), Context(NOW, POLICY, 2))
    assert opened.state.position is not None and opened.state.position.id != 1
    assert placed(opened) == [f"ps{opened.state.position.id}e1"]


def test_a_stop_that_lands_after_its_position_closed_is_cancelled() -> None:
    """The stop was still being placed when the position closed: the cancel sent at the
    close finds nothing, the lookup finds nothing either; then the placement lands."""
    st = step(priced(KEY, at=NOW), signal(size=1.0)).state
    st = step(
        st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0)
    ).state  # ps1s1 sent
    st = step(st, CloseRequest(KEY, CloseReason.MANUAL, "operator")).state
    t = step(st, OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 100.0, 3.0))
    assert t.state.position is not None and t.state.position.status is Status.CLOSED
    assert [c for c, _ in cancels(t)] == ["ps1s1"]
    st = step(t.state, out("ps1s1", OrderKind.STOP_LOSS, "cancel", CallResult.NOT_FOUND)).state
    late = NOW + POLICY.lookup_deadline_s + 1
    st = step(st, out("ps1s1", OrderKind.STOP_LOSS, "lookup", CallResult.NOT_FOUND), late).state
    assert st.position.order("ps1s1").state is OrderState.NOT_FOUND  # type: ignore[union-attr]
    landed = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 4.0)
    t = step(st, out("ps1s1", OrderKind.STOP_LOSS, "place", CallResult.ACCEPTED, update=landed))
    assert [c for c, _ in cancels(t)] == ["ps1s1"]


def test_the_sync_cancels_resting_orders_of_ours_that_nothing_needs() -> None:
    st = protected()
    obs = SyncObservation(
        KEY,
        ExchangePosition(Side.LONG, 1.0, 100.0),
        (
            ExchangeOrder("ps1s1", "sell", 1.0, True, 90.0),  # the live stop: kept
            ExchangeOrder("ps77s3", "sell", 1.0, True, 80.0),  # of a position we never knew
            ExchangeOrder("manual-1", "sell", 1.0, True, 70.0),  # not ours: never touched
        ),
        NOW + 1,
    )
    t = step(st, obs, NOW + 1)
    assert cancels(t) == [("ps77s3", "orphan")]
    assert cancels(step(t.state, obs, NOW + 2)) == []  # not again while the list lags
    assert cancels(step(t.state, obs, NOW + 20)) == [("ps77s3", "orphan")]


# --- stops the exchange's lists do not show yet ----------------------------------------------


def test_a_stop_missing_from_a_lagging_list_is_looked_up_never_replaced_on_sight() -> None:
    st = protected()
    xp = ExchangePosition(Side.LONG, 1.0, 100.0)
    early = step(st, SyncObservation(KEY, xp, (), NOW + 1), NOW + 1)
    assert placed(early) == [] and lookups(early) == []
    late_at = NOW + POLICY.stop_grace_s + 1
    late = step(st, SyncObservation(KEY, xp, (), late_at), late_at)
    assert placed(late) == [] and lookups(late) == ["ps1s1"]
    again = step(late.state, SyncObservation(KEY, xp, (), late_at + 1), late_at + 1)
    assert lookups(again) == []  # one lookup per grace period
    still = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, late_at)
    found = out("ps1s1", OrderKind.STOP_LOSS, "lookup", CallResult.FOUND, update=still)
    assert placed(step(late.state, found, late_at)) == []
    gone = out("ps1s1", OrderKind.STOP_LOSS, "lookup", CallResult.NOT_FOUND)
    assert placed(step(late.state, gone, late_at)) == ["ps1s2"]


# --- close reasons ---------------------------------------------------------------------------


def test_a_position_the_sync_finds_flat_is_closed_by_the_order_that_closed_it() -> None:
    st = protected()
    t = step(st, SyncObservation(KEY, None, (), NOW + 1), NOW + 1)
    assert t.commit is None and lookups(t) == ["ps1s1"] and "flat_confirm" in timers(t)
    assert placed(step(t.state, MarkPriceTick(KEY, 50.0, NOW + 1), NOW + 1)) == []
    filled = OrderUpdate(KEY, "ps1s1", ExchangeStatus.FINISHED, 1.0, 89.5, NOW + 1)
    closed = step(
        t.state, out("ps1s1", OrderKind.STOP_LOSS, "lookup", CallResult.FOUND, update=filled)
    )
    assert closed.state.position is not None
    assert closed.state.position.close_reason is CloseReason.STOP_LOSS
    nothing = step(t.state, TimerFired(KEY, TimerId(TimerKind.FLAT_CONFIRM)), NOW + 3)
    assert nothing.state.position is not None
    assert nothing.state.position.close_reason is CloseReason.CLOSED_ON_EXCHANGE


# --- I11: told the truth ---------------------------------------------------------------------


def test_a_replay_is_answered_with_the_recorded_decision_whatever_its_age() -> None:
    first = step(priced(KEY, at=NOW), signal(signal_id="s1", size=1.0))
    assert first.signal is not None and first.signal.outcome is SignalOutcome.ACCEPTED
    old = replace(signal(signal_id="s1", size=1.0), created_at=NOW - 3600)
    again = step(first.state, old, NOW + 1, policy=replace(POLICY, max_signal_age_s=30.0))
    assert again.commit is None and again.signal is not None
    assert (again.signal.outcome, again.signal.replay, again.signal.position_id) == (
        SignalOutcome.ACCEPTED,
        True,
        1,
    )


def test_the_sync_observes_a_symbol_where_only_a_leftover_of_ours_rests() -> None:
    """No position and no actor on the symbol (passivated): the sync still reports it, so an
    actor starts and cancels the leftover; other software's orders bring no actor."""
    from actors.ports import AccountView
    from supervision.sync import observations

    view = AccountView(
        "main",
        {},
        {
            "BTCUSDT": (ExchangeOrder("ps9s2", "sell", 1.0, True, 80.0),),
            "ETHUSDT": (ExchangeOrder("their-own", "sell", 1.0, True, 80.0),),
        },
        NOW,
    )
    assert [o.key.symbol for o in observations(view, [])] == ["BTCUSDT"]


def test_trailing_moves_held_back_by_the_exchange_never_close_a_protected_position() -> None:
    """Found by the trailing benchmark: under the exchange's order limits every move counted
    as an attempt of an unprotected spell, and the fourth unconfirmed move closed the position
    at market although its previous stop rested. A move spends nothing while one rests."""
    st = protected(stop=90.0, trailing=5.0)  # ps1s1 at 90 confirmed
    for n, price in enumerate((110.0, 120.0, 130.0, 140.0, 150.0), start=2):
        t = step(st, MarkPriceTick(KEY, price, NOW + n))
        assert placed(t) == [f"ps1s{n}"], placed(t)  # a move, never a close
        limited = out(f"ps1s{n}", OrderKind.STOP_LOSS, "place", CallResult.REJECTED)
        st = step(t.state, replace(limited, reason="rate_limited", retry_after=1.0)).state
    late = step(st, TimerFired(KEY, TimerId(TimerKind.SL_DEADLINE)), NOW + 60)
    assert late.state.position is not None and late.state.position.status is Status.ACTIVE
    assert placed(late) == []


def test_a_trailing_stop_moves_by_half_its_distance_not_every_tick() -> None:
    st = protected(stop=90.0, trailing=5.0)  # ideal = best - 5; moves once 2.5 ahead of 90
    assert placed(step(st, MarkPriceTick(KEY, 97.0, NOW + 1))) == []  # ideal 92: 2 ahead
    assert placed(step(st, MarkPriceTick(KEY, 97.6, NOW + 1))) == ["ps1s2"]  # 2.6 ahead


def test_the_stop_that_protects_during_a_trailing_move_is_neither_swept_nor_a_spell() -> None:
    """Found by the trailing benchmark: while a move's new stop waited for the exchange's
    limits, the sync's sweep cancelled the confirmed older stop (it was not the newest) and the
    move had started an unprotected spell: the position went naked, then closed at market."""
    st = protected(stop=90.0, trailing=5.0)
    t = step(st, MarkPriceTick(KEY, 110.0, NOW + 1))
    assert placed(t) == ["ps1s2"]
    assert t.state.position is not None and t.state.position.sl_since is None
    obs = SyncObservation(
        KEY,
        ExchangePosition(Side.LONG, 1.0, 100.0),
        (ExchangeOrder("ps1s1", "sell", 1.0, True, 90.0),),  # s2 not listed yet
        NOW + 2,
    )
    assert cancels(step(t.state, obs, NOW + 2)) == []
    confirmed = step(t.state, OrderUpdate(KEY, "ps1s2", ExchangeStatus.NEW, 0.0, None, NOW + 3))
    assert cancels(confirmed) == [("ps1s1", "replaced")]  # now it goes


# --- the refusal the core branches on is the adapter's classification, not a substring -------


def test_a_stop_the_adapter_classifies_would_trigger_closes_at_market() -> None:
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0)).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0)).state
    refused = out(
        "ps1s1",
        OrderKind.STOP_LOSS,
        "place",
        CallResult.REJECTED,
        reason="exchange said so",
        rejection=Rejection.WOULD_TRIGGER,
    )
    t = step(st, refused)
    assert t.state.position is not None and t.state.position.status is Status.CLOSING
    assert placed(t) == ["ps1c1"]
    # The same words in the reason text without the classification: an ordinary refusal,
    # retried after a delay.
    text_only = out(
        "ps1s1", OrderKind.STOP_LOSS, "place", CallResult.REJECTED, reason="would_trigger"
    )
    t = step(st, text_only)
    assert t.state.position is not None and t.state.position.status is Status.PENDING_SL
    assert "retry:ps1s1" in timers(t)
