"""Tests written to kill mutants of the pure core that survived the unit tests (``make mutate``).

Each test drives :func:`actors.transition.transition` with messages only (no private helper:
the core is being rewritten as tables and these tests must hold across it) and pins the
exact outcome a mutant would change: the state after, the commit (position, expected
version, journal events with their detail), the effects and the answers. The docstrings say
which behaviour, and so which family of mutants, each test is there for.
"""

from __future__ import annotations

from dataclasses import replace

from actors.effects import (
    CancelOrder,
    CancelTimer,
    Effect,
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
    MarketInfo,
    MarkPriceTick,
    Message,
    OrderUpdate,
    PauseRequest,
    Recover,
    Rejection,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
    UnquarantineRequest,
)
from actors.model import (
    CloseReason,
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    MarketRules,
    OrderKind,
    OrderRecord,
    OrderState,
    Side,
    Status,
)
from actors.state import (
    ControlChange,
    ControlOutcome,
    JournalEvent,
    JournalKind,
    Policy,
    Reentry,
    SignalOutcome,
    SymbolState,
    Transition,
)
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy()


def ctx(now: float = NOW, next_id: int | None = 1, policy: Policy = POLICY) -> Context:
    return Context(now, policy, next_id)


def step(st: SymbolState, msg: Message, now: float = NOW, **kw: object) -> Transition:
    """One transition, checked for what holds of every one: a commit names this message as
    its cause and this symbol, and the position it writes is the one the state keeps."""
    t = transition(st, msg, ctx(now, **kw))  # type: ignore[arg-type]
    if t.commit is not None:
        assert t.commit.cause is msg and t.commit.key == KEY
        if t.commit.position is not None:
            assert t.state.position == t.commit.position
    return t


def update(cid: str, status: str, filled: float = 0.0, avg: float | None = None) -> OrderUpdate:
    """An exchange report for one of our orders (status as the adapter normalises it)."""
    return OrderUpdate(KEY, cid, ExchangeStatus(status), filled, avg, NOW, cid)


def reply(
    cid: str,
    op: str,
    result: CallResult,
    reason: str = "",
    upd: OrderUpdate | None = None,
    retry_after: float | None = None,
    rejection: Rejection | None = None,
) -> ExchangeOutcome:
    """What the worker pool sends back for a call on ``cid`` (its kind from the id)."""
    kind = {"e": OrderKind.ENTRY, "s": OrderKind.STOP_LOSS, "c": OrderKind.CLOSE}[
        cid.rstrip("0123456789")[-1]
    ]
    return ExchangeOutcome(KEY, CallOp(op), cid, kind, result, reason, upd, retry_after, rejection)


def placed(effects: tuple[Effect, ...]) -> list[tuple[str, OrderKind, float]]:
    return [
        (e.order.client_id, e.order.kind, e.order.qty) for e in effects if isinstance(e, PlaceOrder)
    ]


def cancels(effects: tuple[Effect, ...]) -> list[str]:
    return [e.client_id for e in effects if isinstance(e, CancelOrder)]


def started(effects: tuple[Effect, ...]) -> list[tuple[str, float]]:
    """The timers started, by name and delay."""
    return [(str(e.name), e.delay) for e in effects if isinstance(e, StartTimer)]


def stopped_timers(effects: tuple[Effect, ...]) -> set[str]:
    return {str(e.name) for e in effects if isinstance(e, CancelTimer)}


def fire(name: str) -> TimerFired:
    """The timer named as text (``lookup:ps1e1``) comes due."""
    timer = TimerId.parse(name)
    assert timer is not None, name
    return TimerFired(KEY, timer)


def kinds(t: Transition) -> list[str]:
    return [str(e.kind) for e in t.commit.events] if t.commit is not None else []


def opened(size: float = 1.0) -> SymbolState:
    """A pending entry of 1.0 at mark 100, stop 90 (position id 1, entry ``ps1e1``)."""
    t = step(priced(KEY, at=NOW), signal(size=size, stop=90.0, signal_id="s1"))
    assert t.state.position is not None and t.state.position.status is Status.PENDING_ENTRY
    return t.state


def protected() -> SymbolState:
    """The entry filled at 100 and its stop ``ps1s1`` confirmed: an active position."""
    st = step(opened(), update("ps1e1", "filled", 1.0, 100.0)).state
    st = step(st, update("ps1s1", "new")).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    return st


# -- operators' pause, resume, unquarantine -------------------------------------------------


def test_pause_and_resume_write_the_flag_once_and_answer_what_changed() -> None:
    """A pause sets the flag in the state and writes it (ControlChange) with a ``paused``
    event that says who asked; a second pause changes nothing durable but is journaled and
    answered ``already_paused``; resume clears it and answers ``resumed``, a second resume
    ``not_paused``. Kills mutants of the pause branch: the flag, the outcome words, the
    changed test, the note's cut at 200 characters, the operator's detail."""
    st = priced(KEY, at=NOW)
    note = "n" * 300
    t = step(st, PauseRequest(KEY, True, "r1", "operator", note))
    assert t.state.paused is True
    assert t.control == ControlOutcome(KEY, "r1", "pause", "paused")
    assert t.commit is not None and t.commit.position is None and t.commit.expected_version == 0
    assert t.commit.control == ControlChange("paused", True, "n" * 200)
    (ev,) = t.commit.events
    assert (ev.kind, ev.position_id, ev.status_before, ev.status_after, ev.at) == (
        "paused",
        None,
        None,
        None,
        NOW,
    )
    assert dict(ev.detail) == {
        "by": "operator",
        "note": "n" * 200,
        "request_id": "r1",
        "changed": True,
    }
    again = step(t.state, PauseRequest(KEY, True, "r2", "operator"))
    assert again.state.paused is True
    assert again.control == ControlOutcome(KEY, "r2", "pause", "already_paused")
    assert again.commit is not None and again.commit.control is None
    assert [dict(e.detail)["changed"] for e in again.commit.events] == [False]
    resumed = step(t.state, PauseRequest(KEY, False, "", "operator", "ok"))
    assert resumed.state.paused is False
    assert resumed.control == ControlOutcome(KEY, "", "resume", "resumed")
    assert resumed.commit is not None
    assert resumed.commit.control == ControlChange("paused", False, "ok")
    assert kinds(resumed) == ["resumed"]
    assert dict(resumed.commit.events[0].detail) == {
        "by": "operator",
        "note": "ok",
        "changed": True,
    }
    not_paused = step(st, PauseRequest(KEY, False))
    assert not_paused.control == ControlOutcome(KEY, "", "resume", "not_paused")
    assert not_paused.commit is not None and not_paused.commit.control is None
    assert dict(not_paused.commit.events[0].detail) == {"changed": False}


def test_a_paused_symbol_refuses_signals_and_a_resumed_one_takes_them() -> None:
    """The pause is what the signal path reads: refused ``paused`` while set, accepted once
    resumed (a mutant that writes the flag wrongly fails one of the two)."""
    st = step(priced(KEY, at=NOW), PauseRequest(KEY, True)).state
    refused = step(st, signal(signal_id="p1"))
    assert refused.signal is not None and refused.signal.reason == "paused"
    assert refused.state.position is None
    st = step(st, PauseRequest(KEY, False)).state
    accepted = step(st, signal(signal_id="p2"))
    assert accepted.state.position is not None


def test_unquarantine_lifts_the_flag_and_says_whether_it_was_set() -> None:
    """Unquarantine clears the flag and always writes it cleared (ControlChange false, the
    note cut at 200); the answer and the event's ``changed`` say whether it was set."""
    st = replace(priced(KEY, at=NOW), quarantined=True)
    t = step(st, UnquarantineRequest(KEY, "u1", "operator", "x" * 250))
    assert t.state.quarantined is False
    assert t.control == ControlOutcome(KEY, "u1", "unquarantine", "unquarantined")
    assert t.commit is not None and t.commit.control == ControlChange(
        "quarantined", False, "x" * 200
    )
    assert kinds(t) == ["unquarantined"]
    assert dict(t.commit.events[0].detail)["changed"] is True
    again = step(t.state, UnquarantineRequest(KEY))
    assert again.control == ControlOutcome(KEY, "", "unquarantine", "not_quarantined")
    assert again.commit is not None
    assert again.commit.control == ControlChange("quarantined", False, "")
    assert dict(again.commit.events[0].detail) == {"changed": False}
    refused = step(st, signal(signal_id="q1"))
    assert refused.signal is not None and refused.signal.reason == "quarantined"
    assert step(t.state, signal(signal_id="q2")).state.position is not None


# -- an entry that fails --------------------------------------------------------------------


def test_a_rejected_entry_fails_the_position_and_cancels_its_timers() -> None:
    """The exchange refuses the entry: the position ends ``failed`` with the reason, in one
    commit on top of the intent (expected version 1), and the position's timers are
    cancelled; nothing is left to cancel on the exchange.
    The symbol takes a new signal at once (a failed entry is no open position)."""
    st = opened()
    t = step(st, reply("ps1e1", "place", CallResult.REJECTED, "insufficient_funds"), now=NOW + 1)
    pos = t.state.position
    assert pos is not None and pos.status is Status.FAILED
    assert pos.qty == 0 and pos.closed_at is None
    assert pos.fail_reason == "rejected:insufficient_funds"
    assert t.commit is not None and t.commit.expected_version == 1
    assert t.commit.position is not None and t.commit.position.version == 2
    assert t.commit.position.updated_at == NOW + 1
    assert "failed" in kinds(t)
    assert cancels(t.effects) == []
    timers = stopped_timers(t.effects)
    assert timers == {"sl_deadline", "flat_confirm", "close_retry"}  # the entry is done
    assert not t.state.bought and t.state.last_closed_at is None
    again = step(t.state, signal(signal_id="s2"), now=NOW + 2, next_id=2)
    assert again.state.position is not None and again.state.position.id == 2


def test_an_entry_canceled_before_any_fill_fails_with_its_state_as_reason() -> None:
    """A cancel of an unfilled entry (reported by the stream) fails the position with the
    reason ``entry_canceled``; a cancel of a partly filled one does not fail it."""
    st = opened()
    t = step(st, update("ps1e1", "canceled"))
    pos = t.state.position
    assert pos is not None and pos.status is Status.FAILED
    assert pos.fail_reason == "entry_canceled"
    part = step(st, update("ps1e1", "partially_filled", 0.5, 100.0)).state
    t = step(part, update("ps1e1", "canceled", 0.5, 100.0))
    assert t.state.position is not None and t.state.position.status is Status.PENDING_SL
    assert t.state.position.qty == 0.5


# -- closing ---------------------------------------------------------------------------------


def test_an_operator_close_of_an_active_position_sends_one_reduce_only_close() -> None:
    """A close request on an active position: status ``closing`` with the reason, one
    reduce-only close of the whole quantity, the stop stays (cancelled once closed), and the
    operator is answered ``closing`` with the position id; the journal says who asked."""
    st = protected()
    t = step(st, CloseRequest(KEY, CloseReason.MANUAL, "c1", "operator", "why"))
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSING
    assert pos.close_reason is CloseReason.MANUAL
    assert placed(t.effects) == [("ps1c1", OrderKind.CLOSE, 1.0)]
    assert all(e.reduce_only for e in t.effects if isinstance(e, PlaceOrder))
    assert cancels(t.effects) == []
    assert t.control == ControlOutcome(KEY, "c1", "close", "closing", True, 1)
    assert kinds(t) == ["closing"]
    assert t.commit is not None
    detail = dict(t.commit.events[0].detail)
    assert (detail["by"], detail["note"], detail["request_id"]) == ("operator", "why", "c1")
    done = step(t.state, update("ps1c1", "filled", 1.0, 101.0))
    closed = done.state.position
    assert closed is not None and closed.status is Status.CLOSED and closed.closed_at == NOW
    assert cancels(done.effects) == ["ps1s1"]
    assert done.state.last_closed_at == NOW


def test_a_close_request_with_nothing_to_close_is_journaled_for_an_operator_only() -> None:
    """No open position: a close from code changes nothing and writes nothing; an operator's
    is journaled ``close_requested`` with the result and answered ``no_position``; on a
    position already closing it is answered ``already_closing`` with its id."""
    st = priced(KEY, at=NOW)
    quiet = step(st, CloseRequest(KEY))
    assert quiet.commit is None and quiet.control is None and quiet.effects == ()
    t = step(st, CloseRequest(KEY, CloseReason.MANUAL, "c2", "operator"))
    assert t.control == ControlOutcome(KEY, "c2", "close", "no_position", True, None)
    assert kinds(t) == ["close_requested"]
    assert t.commit is not None and dict(t.commit.events[0].detail)["result"] == "no_position"
    closing = step(protected(), CloseRequest(KEY)).state
    again = step(closing, CloseRequest(KEY, CloseReason.MANUAL, "c3", "operator"))
    assert again.control == ControlOutcome(KEY, "c3", "close", "already_closing", True, 1)
    assert again.effects == ()
    assert again.commit is not None and again.commit.position is None


def test_a_close_before_the_entry_filled_cancels_the_entry_then_closes_the_fill() -> None:
    """Closing an unfilled entry cancels it (answered ``entry_cancel_requested``); if it
    fills all the same, the position is protected and closed at once (stop, then close)."""
    st = opened()
    t = step(st, CloseRequest(KEY, CloseReason.MANUAL, "c4", "operator"))
    assert cancels(t.effects) == ["ps1e1"]
    assert t.control == ControlOutcome(KEY, "c4", "close", "entry_cancel_requested", True, 1)
    pos = t.state.position
    assert pos is not None and pos.close_reason is CloseReason.MANUAL
    assert pos.status is Status.PENDING_ENTRY
    filled = step(t.state, update("ps1e1", "filled", 1.0, 100.0))
    assert placed(filled.effects) == [
        ("ps1s1", OrderKind.STOP_LOSS, 1.0),
        ("ps1c1", OrderKind.CLOSE, 1.0),
    ]
    assert filled.state.position is not None
    assert filled.state.position.status is Status.CLOSING


def test_a_refused_close_is_retried_after_a_delay_that_doubles() -> None:
    """A close the exchange cancels or rejects is sent again after ``close_retry_delay_s``
    doubling with each close sent, capped at ``close_retry_max_delay_s``; from
    ``close_max_attempts`` closes on, the retry is journaled ``close_failing``. Pins the delay
    formula, the cap and the threshold; the retry timer sends the next close."""
    policy = Policy(close_retry_delay_s=1.0, close_retry_max_delay_s=3.0, close_max_attempts=2)
    st = transition(protected(), CloseRequest(KEY), ctx(policy=policy)).state
    seen = []
    for n in range(1, 5):
        t = transition(st, update(f"ps1c{n}", "rejected"), ctx(policy=policy))
        assert started(t.effects) == [("close_retry", [1.0, 2.0, 3.0, 3.0][n - 1])]
        seen.append(kinds(t)[-1])
        assert t.commit is not None
        assert dict(t.commit.events[-1].detail)["attempts"] == n
        t = transition(t.state, fire("close_retry"), ctx(policy=policy))
        assert placed(t.effects) == [(f"ps1c{n + 1}", OrderKind.CLOSE, 1.0)]
        assert kinds(t) == ["close_retry"]
        st = t.state
    assert seen == ["close_retry_scheduled", "close_failing", "close_failing", "close_failing"]


# -- orders of unknown outcome, looked up by their id ------------------------------------------


def lookups(effects: tuple[Effect, ...]) -> list[tuple[str, OrderKind]]:
    return [(e.client_id, e.kind) for e in effects if isinstance(e, LookupOrder)]


def order_of(st: SymbolState, cid: str) -> OrderRecord:
    assert st.position is not None
    o = st.position.order(cid)
    assert o is not None, cid
    return o


def unknown_entry() -> SymbolState:
    """The entry's placement timed out: its outcome is unknown (order state ``unknown``)."""
    t = step(opened(), reply("ps1e1", "place", CallResult.UNKNOWN, "timeout"))
    assert started(t.effects) == [("lookup:ps1e1", POLICY.lookup_delay_s)]
    assert kinds(t) == ["order_unknown"]
    assert t.commit is not None and dict(t.commit.events[0].detail) == {
        "client_id": "ps1e1",
        "why": "timeout",
    }
    assert order_of(t.state, "ps1e1").state is OrderState.UNKNOWN
    return t.state


def test_an_unknown_entry_is_looked_up_until_its_deadline_then_failed_not_found() -> None:
    """The lookup timer asks the exchange by id; "not found" before ``lookup_deadline_s``
    (counted from when it was sent) asks again after ``lookup_delay_s`` and changes nothing
    durable; at the deadline the entry is ``not_found`` and the position fails with
    ``entry_not_found``, asking for a sync (it may still appear on the exchange)."""
    st = unknown_entry()
    t = step(st, fire("lookup:ps1e1"))
    assert lookups(t.effects) == [("ps1e1", OrderKind.ENTRY)] and t.commit is None
    deadline = NOW + POLICY.lookup_deadline_s
    early = step(st, reply("ps1e1", "lookup", CallResult.NOT_FOUND), now=deadline - 0.01)
    assert started(early.effects) == [("lookup:ps1e1", POLICY.lookup_delay_s)]
    assert early.commit is None
    late = step(st, reply("ps1e1", "lookup", CallResult.NOT_FOUND), now=deadline)
    pos = late.state.position
    assert pos is not None and pos.status is Status.FAILED
    assert pos.fail_reason == "entry_not_found"
    assert order_of(late.state, "ps1e1").state is OrderState.NOT_FOUND
    assert [e.reason for e in late.effects if isinstance(e, RequestSync)] == ["entry not found"]
    assert started(late.effects) == []


def test_a_lookup_that_finds_the_entry_filled_protects_it() -> None:
    """Found filled: the fill is applied as from the stream (``via`` lookup) and the first
    stop goes out; the order keeps the exchange's id and fill."""
    st = unknown_entry()
    found = reply("ps1e1", "lookup", CallResult.FOUND, upd=update("ps1e1", "filled", 1.0, 101.0))
    t = step(st, found)
    pos = t.state.position
    assert pos is not None and pos.status is Status.PENDING_SL
    assert (pos.qty, pos.entry_price) == (1.0, 101.0)
    assert placed(t.effects) == [("ps1s1", OrderKind.STOP_LOSS, 1.0)]
    assert kinds(t) == ["entry_fill", "stop_intent"]
    assert t.commit is not None and dict(t.commit.events[0].detail)["via"] == "lookup"
    entry = order_of(t.state, "ps1e1")
    assert (entry.state, entry.filled_qty, entry.avg_price) == (OrderState.FILLED, 1.0, 101.0)


def test_a_failed_lookup_asks_again_later_while_the_answer_matters() -> None:
    """The lookup itself failed (network): asked again after twice ``lookup_delay_s``, or the
    exchange's Retry-After if longer; for an accepted entry (the answer no longer matters)
    nothing is asked."""
    st = unknown_entry()
    t = step(st, reply("ps1e1", "lookup", CallResult.UNKNOWN, "503"))
    assert started(t.effects) == [("lookup:ps1e1", 2 * POLICY.lookup_delay_s)]
    t = step(st, reply("ps1e1", "lookup", CallResult.UNKNOWN, "429", retry_after=7.0))
    assert started(t.effects) == [("lookup:ps1e1", 7.0)]
    accepted = step(opened(), update("ps1e1", "new")).state
    assert order_of(accepted, "ps1e1").state is OrderState.ACCEPTED
    t = step(accepted, reply("ps1e1", "lookup", CallResult.UNKNOWN, "503"))
    assert t.effects == () and t.commit is None


def pending_stop() -> SymbolState:
    """The entry filled: stop ``ps1s1`` intended, not confirmed (status ``pending_sl``)."""
    t = step(opened(), update("ps1e1", "filled", 1.0, 100.0))
    assert placed(t.effects) == [("ps1s1", OrderKind.STOP_LOSS, 1.0)]
    assert started(t.effects) == [("sl_deadline", POLICY.sl_deadline_s)]
    pos = t.state.position
    assert pos is not None and (pos.sl_failures, pos.sl_since) == (1, NOW)
    return t.state


def test_a_stop_not_found_is_sent_again_at_once_with_the_same_id() -> None:
    """A stop of unknown outcome that the lookup does not find is re-sent at once under the
    same id (a stop that did land refuses the duplicate id): one more attempt counted on the
    order and on the position's spell, journaled ``order_resent``."""
    st = step(pending_stop(), reply("ps1s1", "place", CallResult.UNKNOWN, "timeout")).state
    t = step(st, reply("ps1s1", "lookup", CallResult.NOT_FOUND), now=NOW + 1)
    assert placed(t.effects) == [("ps1s1", OrderKind.STOP_LOSS, 1.0)]
    (p,) = [e for e in t.effects if isinstance(e, PlaceOrder)]
    assert p.close_position and not p.reduce_only
    assert order_of(t.state, "ps1s1").attempts == 2
    assert t.state.position is not None and t.state.position.sl_failures == 2
    assert kinds(t) == ["order_resent"]
    assert t.commit is not None and dict(t.commit.events[0].detail) == {
        "client_id": "ps1s1",
        "attempt": 2,
    }


def test_a_resting_stop_the_exchange_no_longer_knows_is_replaced() -> None:
    """A confirmed stop that the sync's lookup (asked since its confirmation:
    ``stop_lookup_at``) finds gone is recorded ``not_found`` and a new stop (``ps1s2``) goes
    out for the whole position: protection again. The same answer to a lookup nobody asked
    since the confirmation (a stale one, dst seed 188) changes nothing."""
    st = replace(protected(), stop_lookup_at=NOW)
    t = step(st, reply("ps1s1", "lookup", CallResult.NOT_FOUND))
    assert order_of(t.state, "ps1s1").state is OrderState.NOT_FOUND
    assert placed(t.effects) == [("ps1s2", OrderKind.STOP_LOSS, 1.0)]
    assert "stop_intent" in kinds(t)
    stale = step(protected(), reply("ps1s1", "lookup", CallResult.NOT_FOUND))
    assert order_of(stale.state, "ps1s1").state is OrderState.ACCEPTED
    assert stale.effects == () and stale.commit is None


def test_a_stop_refused_is_retried_after_the_delay_and_would_trigger_closes() -> None:
    """A stop placement refused: one attempt spent, retried after ``sl_retry_delay_s`` (or the
    exchange's longer Retry-After), journaled ``stop_rejected`` with the failures so far; the
    retry timer re-sends the same id. Refused as "would trigger" (the price is already past
    it): closed at market at once (``emergency``)."""
    st = pending_stop()
    t = step(st, reply("ps1s1", "place", CallResult.REJECTED, "margin"))
    assert order_of(t.state, "ps1s1").state is OrderState.REJECTED
    assert started(t.effects) == [("retry:ps1s1", POLICY.sl_retry_delay_s)]
    assert kinds(t) == ["stop_rejected"]
    assert t.commit is not None
    assert dict(t.commit.events[0].detail) == {"why": "margin", "failures": 1}
    slow = step(st, reply("ps1s1", "place", CallResult.REJECTED, "429", retry_after=3.0))
    assert started(slow.effects) == [("retry:ps1s1", 3.0)]
    again = step(t.state, fire("retry:ps1s1"))
    assert placed(again.effects) == [("ps1s1", OrderKind.STOP_LOSS, 1.0)]
    assert order_of(again.state, "ps1s1").state is OrderState.INTENDED
    crossed = step(
        st,
        reply("ps1s1", "place", CallResult.REJECTED, "-2021", rejection=Rejection.WOULD_TRIGGER),
    )
    pos = crossed.state.position
    assert pos is not None and pos.status is Status.CLOSING
    assert pos.close_reason is CloseReason.EMERGENCY
    assert placed(crossed.effects) == [("ps1c1", OrderKind.CLOSE, 1.0)]
    assert kinds(crossed)[:2] == ["stop_failed", "closing"]


def test_the_stop_budget_ends_in_an_emergency_close() -> None:
    """``sl_max_attempts`` stop attempts refused in one unprotected spell: the next retry is
    not sent; the position is closed at market (``stop_failed`` then ``closing``,
    reason ``emergency``)."""
    policy = Policy(sl_max_attempts=2)
    st = transition(opened(), update("ps1e1", "filled", 1.0, 100.0), ctx(policy=policy)).state
    for _ in range(2):
        st = transition(
            st, reply("ps1s1", "place", CallResult.REJECTED, "margin"), ctx(policy=policy)
        ).state
        t = transition(st, fire("retry:ps1s1"), ctx(policy=policy))
        st = t.state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSING
    assert pos.close_reason is CloseReason.EMERGENCY
    assert placed(t.effects) == [("ps1c1", OrderKind.CLOSE, 1.0)]
    assert kinds(t)[:2] == ["stop_failed", "closing"]
    assert t.commit is not None
    assert dict(t.commit.events[0].detail) == {"why": "2 attempts", "failures": 2}


def test_the_stop_deadline_ends_in_an_emergency_close() -> None:
    """No stop confirmed within ``sl_deadline_s`` of the first attempt: when the deadline
    timer fires the position is closed at market; a confirmed stop makes the timer a no-op."""
    st = pending_stop()
    late = NOW + POLICY.sl_deadline_s
    t = step(st, fire("sl_deadline"), now=late)
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSING
    assert pos.close_reason is CloseReason.EMERGENCY
    assert t.commit is not None
    assert dict(t.commit.events[0].detail) == {
        "why": f"not confirmed within {POLICY.sl_deadline_s:g}s",
        "failures": 1,
    }
    early = step(st, fire("sl_deadline"), now=late - 0.01)
    assert early.commit is None and early.effects == ()
    confirmed = step(protected(), fire("sl_deadline"), now=late + 5)
    assert confirmed.commit is None and confirmed.effects == ()


# -- signals: the refusals and the wait for a price ----------------------------------------


def test_a_signal_without_a_fresh_mark_asks_for_one_once_and_waits() -> None:
    """No mark price (or one older than ``max_mark_age_s``): the signal is deferred with one
    FetchMarket; while it is requested, or within ``_MARKET_RETRY_S`` (0.5 s) of a failed
    request, it waits without asking again; the shell's last offer (``give_up``) refuses it
    ``no_mark_price``; the answer (MarketInfo) sets the mark and rules and it is decided."""
    st = SymbolState(KEY)
    t = step(st, signal(signal_id="m1"))
    assert t.deferred and [type(e).__name__ for e in t.effects] == ["FetchMarket"]
    assert t.state.market_requested and t.commit is None and t.signal is None
    waiting = step(t.state, signal(signal_id="m1"))
    assert waiting.deferred and waiting.effects == ()
    failed = step(t.state, MarketInfo(KEY, CallResult.UNKNOWN, reason="503"), now=NOW)
    assert failed.state.market_failed_at == NOW and not failed.state.market_requested
    assert step(failed.state, signal(signal_id="m1"), now=NOW + 0.49).effects == ()
    asked = step(failed.state, signal(signal_id="m1"), now=NOW + 0.5)
    assert [type(e).__name__ for e in asked.effects] == ["FetchMarket"]
    refused = transition(t.state, signal(signal_id="m1"), Context(NOW, POLICY, 1, give_up=True))
    assert refused.signal is not None and refused.signal.reason == "no_mark_price"
    info = MarketInfo(KEY, CallResult.FOUND, 100.0, MarketRules(), at=NOW)
    known = step(t.state, info)
    assert (known.state.last_price, known.state.last_price_at) == (100.0, NOW)
    assert known.state.market == MarketRules() and not known.state.market_requested
    assert step(known.state, signal(signal_id="m1")).state.position is not None
    stale = replace(known.state, last_price_at=NOW - POLICY.max_mark_age_s - 0.01)
    assert step(stale, signal(signal_id="m2")).deferred
    edge = replace(known.state, last_price_at=NOW - POLICY.max_mark_age_s)
    assert step(edge, signal(signal_id="m3")).state.position is not None


def test_an_older_market_answer_keeps_the_newer_mark() -> None:
    """A MarketInfo older than the mark we hold keeps our mark (and still brings the rules);
    a non-positive or missing price is ignored; rules missing mean "no rules"."""
    st = priced(KEY, price=100.0, at=NOW)
    older = step(st, MarketInfo(KEY, CallResult.FOUND, 90.0, MarketRules(tick_size=0.1), NOW - 1))
    assert older.state.last_price == 100.0 and older.state.market == MarketRules(tick_size=0.1)
    same = step(st, MarketInfo(KEY, CallResult.FOUND, 95.0, None, NOW))
    assert same.state.last_price == 95.0 and same.state.market == MarketRules()
    bad = step(st, MarketInfo(KEY, CallResult.FOUND, -1.0, None, NOW + 1))
    assert bad.state.last_price == 100.0 and bad.state.last_price_at == NOW


def closed_clean() -> SymbolState:
    """Closed by an operator's close at ``NOW``, its stop's cancel confirmed."""
    st = step(step(protected(), CloseRequest(KEY)).state, update("ps1c1", "filled", 1.0)).state
    st = step(st, update("ps1s1", "canceled")).state
    assert st.position is not None and st.position.status is Status.CLOSED
    assert order_of(st, "ps1s1").state is OrderState.CANCELED
    return st


def marked(st: SymbolState, at: float, price: float = 100.0) -> SymbolState:
    """``st`` after a mark price tick received at ``at``."""
    return step(st, MarkPriceTick(KEY, price, at, received_at=at), now=at).state


def test_reentry_rules_refuse_with_their_own_outcome() -> None:
    """After a close: ``cooldown`` refuses until ``cooldown_s`` has passed since the close
    (outcome COOLDOWN), ``never`` refuses any entry once one was bought, ``allow`` takes it.
    A signal while a position is open is a DUPLICATE naming that position."""
    st = closed_clean()
    assert st.last_closed_at == NOW and st.bought
    cool = Policy(reentry=Reentry.COOLDOWN, cooldown_s=60.0)
    early = transition(marked(st, NOW + 59.9), signal(signal_id="r1"), ctx(NOW + 59.9, 2, cool))
    assert early.signal is not None
    assert (early.signal.outcome, early.signal.reason) == (SignalOutcome.COOLDOWN, "cooldown")
    later = transition(marked(st, NOW + 60), signal(signal_id="r2"), ctx(NOW + 60.0, 2, cool))
    assert later.state.position is not None and later.state.position.id == 2
    never_again = Policy(reentry=Reentry.NEVER)
    never = transition(
        marked(st, NOW + 999), signal(signal_id="r3"), ctx(NOW + 999, 2, never_again)
    )
    assert never.signal is not None and never.signal.reason == "never_again"
    dup = step(protected(), signal(signal_id="r4"))
    assert dup.signal is not None
    assert (dup.signal.outcome, dup.signal.reason, dup.signal.position_id) == (
        SignalOutcome.DUPLICATE,
        "position_open",
        1,
    )


def test_an_accepted_signal_is_one_commit_with_its_intent_and_its_record() -> None:
    """Accepted: a new row (expected version 0, version 1) in ``pending_entry`` with the
    signal's figures, the stop and take-profit on the market's tick, one ``entry_intent``
    event, the accepted record, and one entry order sent; a replay of the same id answers
    the recorded decision and changes nothing. Without a pre-allocated id it is refused
    ``store_unavailable``."""
    rules = MarketRules(tick_size=0.5)
    st = priced(KEY, at=NOW, rules=rules)
    sig = signal(size=2.0, stop=90.2, tp=120.4, trailing=3.0, signal_id="a1", source="whale")
    t = step(st, sig, next_id=7)
    pos = t.state.position
    assert pos is not None and t.commit is not None and t.signal is not None
    assert (pos.id, pos.status, pos.source, pos.signal_id) == (
        7,
        Status.PENDING_ENTRY,
        "whale",
        "a1",
    )
    assert (pos.requested_qty, pos.stop_price, pos.take_profit, pos.trailing_distance) == (
        2.0,
        90.0,
        120.5,
        3.0,
    )
    assert (pos.created_at, pos.updated_at, pos.version) == (NOW, NOW, 1)
    assert t.commit.expected_version == 0 and t.commit.position == pos
    assert kinds(t) == ["entry_intent"]
    assert t.commit.signal == t.signal
    assert (t.signal.outcome, t.signal.position_id, t.signal.reason) == (
        SignalOutcome.ACCEPTED,
        7,
        "",
    )
    assert placed(t.effects) == [("ps7e1", OrderKind.ENTRY, 2.0)]
    replay = step(t.state, sig, now=NOW + 5, next_id=8)
    assert replay.signal is not None and replay.signal.replay
    assert replay.state == t.state and replay.commit is None and replay.effects == ()
    none = step(st, signal(signal_id="a2"), next_id=None)
    assert none.signal is not None and none.signal.reason == "store_unavailable"
    assert none.state.position is None


def test_refusals_are_remembered_but_transient_ones_are_not() -> None:
    """A final refusal is remembered (a replay gets the same answer); a transient one
    (``store_unavailable``, may succeed later) is not, so the same id is decided afresh."""
    st = priced(KEY, at=NOW)
    bad = step(st, signal(size=-1.0, signal_id="f1"))
    assert bad.signal is not None and bad.signal.reason == "invalid:size"
    assert bad.state.decision("f1") is not None
    assert bad.commit is not None and bad.commit.position is None and bad.commit.events == ()
    gone = step(st, signal(signal_id="f2"), next_id=None)
    assert gone.signal is not None and gone.signal.retry
    assert gone.state.decision("f2") is None
    assert step(gone.state, signal(signal_id="f2")).state.position is not None


# -- the sync: adoption, flat, quantities ------------------------------------------------------


def obs(
    xp: ExchangePosition | None,
    *orders: ExchangeOrder,
    at: float = NOW + 1,
    adoptable: bool = True,
) -> SyncObservation:
    return SyncObservation(KEY, xp, tuple(orders), at, adoptable)


def test_a_position_nobody_here_opened_is_adopted_and_protected() -> None:
    """The exchange shows a long of 2 at 50 the database does not know: a new row (source
    ``sync``, ``pending_sl``) with the default stop (2 % under the entry), ``adopted`` then
    ``stop_intent``, and the stop sent; a short gets its stop above. Without an id (store
    down) or while adoption is stopped on the account, nothing happens."""
    st = SymbolState(KEY)
    t = step(st, obs(ExchangePosition(Side.LONG, 2.0, 50.0)), next_id=5)
    pos = t.state.position
    assert pos is not None and t.commit is not None
    assert (pos.id, pos.source, pos.status, pos.qty, pos.requested_qty) == (
        5,
        "sync",
        Status.PENDING_SL,
        2.0,
        2.0,
    )
    assert pos.entry_price == 50.0 and abs(pos.stop_price - 49.0) < 1e-9
    assert (pos.created_at, pos.filled_at) == (NOW, NOW)
    assert t.commit.expected_version == 0
    assert kinds(t) == ["adopted", "stop_intent"]
    assert dict(t.commit.events[0].detail) == {"qty": 2.0, "entry_price": 50.0}
    assert placed(t.effects) == [("ps5s1", OrderKind.STOP_LOSS, 2.0)]
    short = step(st, obs(ExchangePosition(Side.SHORT, 1.0, 50.0)), next_id=6).state.position
    assert short is not None and abs(short.stop_price - 51.0) < 1e-9
    assert step(st, obs(ExchangePosition(Side.LONG, 2.0, 50.0)), next_id=None).commit is None
    stopped = step(st, obs(ExchangePosition(Side.LONG, 2.0, 50.0), adoptable=False), next_id=5)
    assert stopped.commit is None and stopped.state.position is None


def test_a_stale_view_of_a_position_we_closed_adopts_nothing() -> None:
    """After our close, a view fetched before the close still shows the position: ignored;
    a view fetched after it is a position nobody here knows: adopted."""
    st = closed_clean()
    xp = ExchangePosition(Side.LONG, 1.0, 100.0)
    assert step(st, obs(xp, at=NOW), next_id=2).commit is None
    assert step(st, obs(xp, at=NOW + 0.01), next_id=2).state.position is not None


def test_a_flat_exchange_closes_the_position_after_its_orders_are_looked_up() -> None:
    """Our filled position, the exchange flat: the stop and closes still working are looked
    up and a ``flat_confirm`` timer started (the close reason must be the truth); when it
    fires still flat, the position is closed ``closed_on_exchange`` (or with its own close
    reason if it was closing). A view showing it open again clears the flat mark."""
    st = protected()
    t = step(st, obs(None))
    assert lookups(t.effects) == [("ps1s1", OrderKind.STOP_LOSS)]
    assert started(t.effects) == [("flat_confirm", POLICY.flat_confirm_s)]
    assert t.state.flat_seen_at == NOW and t.commit is None
    again = step(t.state, obs(None, at=NOW + 2))
    assert again.effects == ()
    done = step(t.state, fire("flat_confirm"), now=NOW + 2)
    pos = done.state.position
    assert pos is not None and pos.status is Status.CLOSED
    assert pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE
    assert cancels(done.effects) == ["ps1s1"]
    back = step(t.state, obs(ExchangePosition(Side.LONG, 1.0, 100.0), at=NOW + 2))
    assert back.state.flat_seen_at is None
    assert "flat_confirm" in stopped_timers(back.effects)
    assert step(back.state, fire("flat_confirm"), now=NOW + 3).commit is None


def test_a_flat_exchange_with_nothing_working_closes_at_once() -> None:
    """Flat, and no stop or close of ours still working (the stop is done): closed at once."""
    st = protected()
    pos = st.position
    assert pos is not None
    done_stop = replace(pos.orders[1], state=OrderState.CANCELED)
    st = replace(st, position=replace(pos, orders=(pos.orders[0], done_stop)))
    t = step(st, obs(None))
    closed = t.state.position
    assert closed is not None and closed.status is Status.CLOSED
    assert closed.close_reason is CloseReason.CLOSED_ON_EXCHANGE


def test_the_sync_reconciles_a_quantity_it_sees_first() -> None:
    """The entry's fill seen by the sync first (S3): applied as the entry's fill, never a
    second row; a partial one as partially filled. On a held position a different quantity
    is taken from the exchange (``qty_from_sync``), and a still-working entry is looked up."""
    st = opened()
    t = step(st, obs(ExchangePosition(Side.LONG, 1.0, 100.0)))
    pos = t.state.position
    assert pos is not None and pos.id == 1 and pos.status is Status.PENDING_SL and pos.qty == 1.0
    assert order_of(t.state, "ps1e1").state is OrderState.FILLED
    part = step(st, obs(ExchangePosition(Side.LONG, 0.4, 100.0)))
    assert order_of(part.state, "ps1e1").state is OrderState.PARTIALLY_FILLED
    other_side = step(st, obs(ExchangePosition(Side.SHORT, 1.0, 100.0)))
    assert other_side.commit is None
    held = step(opened(), update("ps1e1", "partially_filled", 0.5, 100.0)).state
    held = step(held, update("ps1s1", "new")).state
    more = step(held, obs(ExchangePosition(Side.LONG, 0.8, 100.0)))
    assert more.state.position is not None and more.state.position.qty == 0.8
    assert "qty_from_sync" in kinds(more)
    assert lookups(more.effects) == [("ps1e1", OrderKind.ENTRY)]
    assert step(held, obs(ExchangePosition(Side.LONG, 0.5, 100.0))).commit is None


def test_a_stop_missing_from_the_list_is_looked_up_after_its_grace() -> None:
    """An active position whose confirmed stop is not in the open-order list: looked up by
    id once ``stop_grace_s`` has passed since it was sent, and not again within the grace;
    a stop of unknown outcome found in the list is taken as resting."""
    st = protected()
    grace = POLICY.stop_grace_s
    early = step(st, obs(ExchangePosition(Side.LONG, 1.0, 100.0), at=NOW + grace))
    assert lookups(early.effects) == []
    t = step(st, obs(ExchangePosition(Side.LONG, 1.0, 100.0), at=NOW + grace + 0.1), now=NOW + 6)
    assert lookups(t.effects) == [("ps1s1", OrderKind.STOP_LOSS)]
    assert t.state.stop_lookup_at == NOW + 6
    again = step(t.state, obs(ExchangePosition(Side.LONG, 1.0, 100.0), at=NOW + 7), now=NOW + 7)
    assert lookups(again.effects) == []
    later = step(t.state, obs(ExchangePosition(Side.LONG, 1.0, 100.0), at=NOW + 12), now=NOW + 11)
    assert lookups(later.effects) == [("ps1s1", OrderKind.STOP_LOSS)]
    unknown = step(pending_stop(), reply("ps1s1", "place", CallResult.UNKNOWN, "t")).state
    rest = ExchangeOrder("ps1s1", "sell", 1.0, True, 90.0)
    seen = step(unknown, obs(ExchangePosition(Side.LONG, 1.0, 100.0), rest))
    assert order_of(seen.state, "ps1s1").state is OrderState.ACCEPTED
    assert seen.state.position is not None and seen.state.position.status is Status.ACTIVE


def test_orphans_of_ours_are_cancelled_once_per_window() -> None:
    """A resting order with our prefix that no open position needs is cancelled directly,
    and not again within the 10 s window; others' orders are left alone."""
    st = SymbolState(KEY)
    orphan = ExchangeOrder("ps9s1", "sell", 1.0, True, 90.0)
    theirs = ExchangeOrder("web_123", "sell", 1.0, True, 90.0)
    t = step(st, obs(None, orphan, theirs))
    assert [(e.client_id, e.kind) for e in t.effects if isinstance(e, CancelOrder)] == [
        ("ps9s1", OrderKind.STOP_LOSS)
    ]
    assert cancels(step(t.state, obs(None, orphan), now=NOW + 9.9).effects) == []
    assert cancels(step(t.state, obs(None, orphan), now=NOW + 10).effects) == ["ps9s1"]
    close = ExchangeOrder("ps9c1", "sell", 1.0, False)
    assert [e.kind for e in step(st, obs(None, close)).effects if isinstance(e, CancelOrder)] == [
        OrderKind.CLOSE
    ]


# -- ticks: the local stop guard, take-profit, trailing -----------------------------------


def tick(price: float, low: float | None = None, high: float | None = None) -> MarkPriceTick:
    return MarkPriceTick(KEY, price, NOW, low, high, NOW)


def test_the_local_stop_guard_closes_before_the_stop_is_confirmed_only() -> None:
    """Stop not confirmed yet and the mark at or past the stop price (the tick's low for a
    long): closed at market, reason ``stop_loss``; a tick a hair above does nothing durable;
    once the stop rests the exchange's stop does the job and the tick changes nothing."""
    st = pending_stop()
    t = step(st, tick(90.0))
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSING
    assert pos.close_reason is CloseReason.STOP_LOSS
    assert placed(t.effects) == [("ps1c1", OrderKind.CLOSE, 1.0)]
    assert t.commit is not None and dict(t.commit.events[0].detail)["why"] == "local_stop_guard"
    low = step(st, tick(95.0, low=89.0, high=96.0))
    assert low.state.position is not None and low.state.position.status is Status.CLOSING
    above = step(st, tick(90.01))
    assert above.commit is None and above.state.last_price == 90.01
    assert step(protected(), tick(80.0)).commit is None


def test_a_short_guard_and_take_profit_look_at_the_other_side() -> None:
    """For a short the guard looks at the tick's high, the take-profit at its low."""
    sig = signal(side=Side.SHORT, stop=110.0, tp=80.0, signal_id="sh")
    st = step(priced(KEY, at=NOW), sig).state
    st = step(st, update("ps1e1", "filled", 1.0, 100.0)).state
    guard = step(st, tick(100.0, low=99.0, high=110.0))
    assert guard.state.position is not None
    assert guard.state.position.close_reason is CloseReason.STOP_LOSS
    assert step(st, tick(109.99)).commit is None
    st = step(st, update("ps1s1", "new")).state
    tp = step(st, tick(100.0, low=80.0, high=101.0))
    assert tp.state.position is not None
    assert tp.state.position.close_reason is CloseReason.TAKE_PROFIT
    assert step(st, tick(80.01)).commit is None


def test_a_take_profit_closes_at_its_price() -> None:
    """A long with take-profit 120: a tick reaching 120 (its high) closes, reason
    ``take_profit``; 119.99 does not."""
    st = step(priced(KEY, at=NOW), signal(stop=90.0, tp=120.0, signal_id="tp")).state
    st = step(step(st, update("ps1e1", "filled", 1.0, 100.0)).state, update("ps1s1", "new")).state
    assert step(st, tick(119.99)).commit is None
    t = step(st, tick(110.0, low=109.0, high=120.0))
    assert t.state.position is not None
    assert t.state.position.close_reason is CloseReason.TAKE_PROFIT
    assert t.commit is not None and dict(t.commit.events[0].detail)["why"] == "take_profit"


def trailing(distance: float = 5.0) -> SymbolState:
    st = step(priced(KEY, at=NOW), signal(stop=90.0, trailing=distance, signal_id="tr")).state
    st = step(st, update("ps1e1", "filled", 1.0, 100.0)).state
    return step(st, update("ps1s1", "new")).state


def test_a_trailing_stop_moves_by_whole_steps_and_remembers_the_best_price() -> None:
    """Trailing distance 5 (step: half of it, 2.5, above 0.05 % of the stop): the best price
    is remembered in memory (no commit) until the ideal stop is more than a step above the
    placed one; then a new stop goes out at best - distance, ``best_price`` set. Active only:
    while the stop is unconfirmed nothing moves."""
    st = trailing()
    t = step(st, tick(97.4))
    assert t.commit is None and t.state.position is not None
    assert t.state.position.best_price == 97.4 and t.state.position.stop_price == 90.0
    t = step(st, tick(97.5))  # ideal 92.5: exactly one step, not more
    assert t.commit is None
    t = step(st, tick(98.0))
    pos = t.state.position
    assert pos is not None and (pos.stop_price, pos.best_price) == (93.0, 98.0)
    assert placed(t.effects) == [("ps1s2", OrderKind.STOP_LOSS, 1.0)]
    assert t.commit is not None and dict(t.commit.events[-1].detail) == {
        "client_id": "ps1s2",
        "why": "trailing to 93",
    }
    best = step(st, tick(97.4)).state
    worse = step(best, tick(97.0))
    assert worse.state.position is not None and worse.state.position.best_price == 97.4
    confirmed = step(t.state, update("ps1s2", "new"))
    assert cancels(confirmed.effects) == ["ps1s1"]
    assert order_of(confirmed.state, "ps1s1").state is OrderState.PENDING_CANCEL


def test_a_trailing_move_is_not_an_unprotected_spell() -> None:
    """While the older confirmed stop rests, a trailing move spends no stop attempt and
    starts no deadline; a refused move is retried later, the delay doubling per attempt."""
    t = step(trailing(), tick(98.0))
    pos = t.state.position
    assert pos is not None and pos.sl_failures == 0 and pos.sl_since is None
    assert started(t.effects) == []
    refused = step(t.state, reply("ps1s2", "place", CallResult.REJECTED, "busy"))
    assert started(refused.effects) == [("retry:ps1s2", 2 * POLICY.sl_retry_delay_s)]
    assert refused.state.position is not None and refused.state.position.status is Status.ACTIVE


# -- what the exchange reports, in any order ------------------------------------------------


def test_reports_keep_the_largest_fill_and_the_latest_time() -> None:
    """Fills are cumulative: an older report with a smaller fill changes nothing; a report
    of a done order is only taken for a larger fill; the exchange id is kept once known; a
    non-finite fill or time is ignored."""
    st = step(
        opened(), OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.6, 100.0, 5.0, "X1")
    ).state
    o = order_of(st, "ps1e1")
    assert (o.filled_qty, o.exchange_id, o.event_time) == (0.6, "X1", 5.0)
    older = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.3, 99.0, 4.0, ""))
    o = order_of(older.state, "ps1e1")
    assert (o.filled_qty, o.avg_price, o.exchange_id, o.event_time) == (0.6, 100.0, "X1", 5.0)
    nan = step(
        st,
        OrderUpdate(
            KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, float("nan"), None, float("inf")
        ),
    )
    o = order_of(nan.state, "ps1e1")
    assert (o.filled_qty, o.event_time) == (0.6, 5.0)
    done = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 101.0, 7.0)).state
    dup = step(done, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 101.0, 8.0))
    assert dup.commit is None and dup.effects == ()


def test_a_fill_after_acceptance_moves_the_entry_status_once() -> None:
    """``new`` for the entry: ``entry_placed`` (``entry_accepted``); again: nothing; the
    accepted entry then filling: ``pending_sl`` with the fill time and price."""
    t = step(opened(), update("ps1e1", "new"))
    assert t.state.position is not None and t.state.position.status is Status.ENTRY_PLACED
    assert kinds(t) == ["entry_accepted"]
    assert step(t.state, update("ps1e1", "new")).commit is None
    f = step(t.state, update("ps1e1", "filled", 1.0, 100.5), now=NOW + 3)
    pos = f.state.position
    assert pos is not None and pos.status is Status.PENDING_SL
    assert (pos.qty, pos.entry_price, pos.filled_at) == (1.0, 100.5, NOW + 3)
    assert f.state.bought


def test_a_stop_that_triggers_closes_the_position_with_its_reason() -> None:
    """The stop fills: closed, reason ``stop_loss``, ``closed_at`` now, the symbol's last
    close time set; a stop that vanished (cancelled on the exchange) is replaced; a stop that
    rested and is rejected at trigger closes at market."""
    st = protected()
    t = step(st, update("ps1s1", "filled", 1.0, 90.0), now=NOW + 4)
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSED
    assert (pos.close_reason, pos.closed_at) == (CloseReason.STOP_LOSS, NOW + 4)
    assert t.state.last_closed_at == NOW + 4
    gone = step(st, update("ps1s1", "canceled"))
    assert placed(gone.effects) == [("ps1s2", OrderKind.STOP_LOSS, 1.0)]
    refused = step(st, update("ps1s1", "rejected"))
    assert refused.state.position is not None
    assert refused.state.position.status is Status.CLOSING
    assert "stop_rejected_at_trigger" in kinds(refused)
    assert placed(refused.effects) == [("ps1c1", OrderKind.CLOSE, 1.0)]


def test_cancel_answers_confirm_retry_or_look_up() -> None:
    """After a close, the stop is ``pending_cancel``: the exchange confirming the cancel
    makes it ``canceled``; "not found" looks it up; no answer asks again after the
    exchange's Retry-After or ``cancel_retry_delay_s``, and the timer re-sends the cancel."""
    closed = step(step(protected(), CloseRequest(KEY)).state, update("ps1c1", "filled", 1.0)).state
    assert order_of(closed, "ps1s1").state is OrderState.PENDING_CANCEL
    ok = step(closed, reply("ps1s1", "cancel", CallResult.ACCEPTED))
    assert order_of(ok.state, "ps1s1").state is OrderState.CANCELED
    nf = step(closed, reply("ps1s1", "cancel", CallResult.NOT_FOUND))
    assert lookups(nf.effects) == [("ps1s1", OrderKind.STOP_LOSS)]
    busy = step(closed, reply("ps1s1", "cancel", CallResult.UNKNOWN, "429", retry_after=4.0))
    assert started(busy.effects) == [("cancel:ps1s1", 4.0)]
    slow = step(closed, reply("ps1s1", "cancel", CallResult.UNKNOWN, "503"))
    assert started(slow.effects) == [("cancel:ps1s1", POLICY.cancel_retry_delay_s)]
    again = step(closed, fire("cancel:ps1s1"))
    assert cancels(again.effects) == ["ps1s1"]
    never = step(closed, reply("ps1s1", "lookup", CallResult.NOT_FOUND))
    assert order_of(never.state, "ps1s1").state is OrderState.NOT_FOUND


# -- recovery after a restart -------------------------------------------------------------------


def test_recovery_looks_up_what_may_have_left_and_rearms_the_deadline() -> None:
    """A position loaded in ``pending_sl`` with its stop intended: a sync is asked, the stop
    (sent or not, we cannot tell) becomes ``unknown`` and is looked up, the journal says
    ``recovering``, and the stop deadline runs for what is left of it."""
    st = pending_stop()
    t = step(st, Recover(KEY), now=NOW + 4)
    assert [e.reason for e in t.effects if isinstance(e, RequestSync)] == ["recovery"]
    assert lookups(t.effects) == [("ps1s1", OrderKind.STOP_LOSS)]
    assert order_of(t.state, "ps1s1").state is OrderState.UNKNOWN
    assert order_of(t.state, "ps1s1").sent_at == NOW + 4
    assert started(t.effects) == [("sl_deadline", POLICY.sl_deadline_s - 4)]
    assert kinds(t) == ["recovering"]
    late = step(st, Recover(KEY), now=NOW + 60)
    assert started(late.effects) == [("sl_deadline", 0.0)]


def test_recovery_of_a_closed_position_cancels_its_leftover_stops() -> None:
    """A closed position whose stop is still resting (cancel not confirmed): cancelled
    again; a symbol with no position has nothing to recover."""
    closed = step(step(protected(), CloseRequest(KEY)).state, update("ps1c1", "filled", 1.0)).state
    t = step(closed, Recover(KEY))
    assert cancels(t.effects) == ["ps1s1"]
    assert step(SymbolState(KEY), Recover(KEY)).effects == ()


# -- whole transitions pinned: every effect and every journal event --------------------------


def ev(
    kind: JournalKind, before: Status, after: Status, at: float = NOW, **detail: object
) -> JournalEvent:
    return JournalEvent(1, kind, before, after, at, detail)


def with_order(st: SymbolState, cid: str, state: OrderState) -> SymbolState:
    """``st`` with the record of ``cid`` in ``state`` (as a restart may load it)."""
    pos = st.position
    assert pos is not None
    orders = tuple(replace(o, state=state) if o.client_id == cid else o for o in pos.orders)
    return replace(st, position=replace(pos, orders=orders))


def test_a_throttled_close_waits_for_the_exchange_and_a_refused_one_is_retried() -> None:
    """A close refused with a Retry-After (attempts left): retried under the same id after
    exactly that delay, journaled ``order_throttled`` with the reason, nothing else. Refused
    for good: ``close_rejected``, then the retry of the close with its delay, a sync asked."""

    st = step(protected(), CloseRequest(KEY)).state
    t = step(st, reply("ps1c1", "place", CallResult.REJECTED, "429", retry_after=2.0))
    assert t.effects == (StartTimer(KEY, TimerId(TimerKind.RETRY, "ps1c1"), 2.0),)
    assert t.commit is not None and t.commit.events == (
        ev(
            JournalKind.ORDER_THROTTLED,
            Status.CLOSING,
            Status.CLOSING,
            client_id="ps1c1",
            why="429",
        ),
    )
    assert order_of(t.state, "ps1c1").state is OrderState.INTENDED
    t = step(st, reply("ps1c1", "place", CallResult.REJECTED, "margin"))
    assert t.effects == (
        StartTimer(KEY, TimerId(TimerKind.CLOSE_RETRY), 1.0),
        RequestSync(KEY, "close rejected: margin"),
    )
    assert t.commit is not None and t.commit.events == (
        ev(JournalKind.CLOSE_REJECTED, Status.CLOSING, Status.CLOSING, why="margin"),
        ev(
            JournalKind.CLOSE_RETRY_SCHEDULED,
            Status.CLOSING,
            Status.CLOSING,
            why="close rejected: margin",
            attempts=1,
            delay=1.0,
        ),
    )
    assert order_of(t.state, "ps1c1").state is OrderState.REJECTED
    spent = replace(order_of(st, "ps1c1"), attempts=POLICY.place_max_attempts)
    assert st.position is not None
    last = replace(st, position=replace(st.position, orders=(*st.position.orders[:-1], spent)))
    t = step(last, reply("ps1c1", "place", CallResult.REJECTED, "429", retry_after=2.0))
    assert t.commit is not None
    assert t.commit.events[0].kind == JournalKind.CLOSE_REJECTED  # attempts spent: no wait


def test_recovery_of_a_closed_position_resolves_each_leftover_stop() -> None:
    """Closed, its stop on record: intended (may never have left) is looked up and marked
    ``pending_cancel`` (``recovering`` with its id); accepted (resting) is cancelled with
    the reason ``recovery``."""
    closed = step(step(protected(), CloseRequest(KEY)).state, update("ps1c1", "filled", 1.0)).state
    t = step(with_order(closed, "ps1s1", OrderState.INTENDED), Recover(KEY))
    assert t.effects == (LookupOrder(KEY, "ps1s1", OrderKind.STOP_LOSS),)
    assert t.commit is not None and t.commit.events == (
        ev(JournalKind.RECOVERING, Status.CLOSED, Status.CLOSED, client_id="ps1s1"),
    )
    assert order_of(t.state, "ps1s1").state is OrderState.PENDING_CANCEL
    t = step(with_order(closed, "ps1s1", OrderState.ACCEPTED), Recover(KEY))
    assert t.effects == (CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, "recovery"),)
    assert t.commit is not None and t.commit.events == (
        ev(
            JournalKind.CANCEL_REQUESTED,
            Status.CLOSED,
            Status.CLOSED,
            client_id="ps1s1",
            why="recovery",
        ),
    )


def test_recovery_of_an_open_position_asks_what_it_cannot_know() -> None:
    """An accepted entry is looked up (it may have filled meanwhile); a stop waiting for its
    cancel is cancelled again; each after a sync is asked and ``recovering`` journaled."""
    accepted = step(opened(), update("ps1e1", "new")).state
    t = step(accepted, Recover(KEY), now=NOW + 1)
    assert t.effects == (RequestSync(KEY, "recovery"), LookupOrder(KEY, "ps1e1", OrderKind.ENTRY))
    assert t.commit is not None and t.commit.events == (
        ev(JournalKind.RECOVERING, Status.ENTRY_PLACED, Status.ENTRY_PLACED, NOW + 1),
    )
    moved = step(step(trailing(), tick(98.0)).state, update("ps1s2", "new")).state
    t = step(moved, Recover(KEY), now=NOW + 1)
    assert t.effects == (
        RequestSync(KEY, "recovery"),
        CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, "recovery"),
    )


def test_recovery_resends_what_waited_on_a_timer_that_died() -> None:
    """A refused stop waiting for its retry: the retry timer is cancelled and the stop sent
    again at once (attempt 2), the deadline re-armed for what is left of it. A closing
    position with no close working: the close is sent again (``close_retry``, reason
    ``recovery``), its retry timer cancelled."""
    refused = step(pending_stop(), reply("ps1s1", "place", CallResult.REJECTED, "margin")).state
    t = step(refused, Recover(KEY), now=NOW + 1)
    stop = replace(
        order_of(refused, "ps1s1"), state=OrderState.INTENDED, sent_at=NOW + 1, attempts=2
    )
    assert t.effects == (
        RequestSync(KEY, "recovery"),
        StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), POLICY.sl_deadline_s - 1),
        CancelTimer(KEY, TimerId(TimerKind.RETRY, "ps1s1")),
        PlaceOrder(KEY, 1, stop, close_position=True),
    )
    assert t.commit is not None and t.commit.events == (
        ev(JournalKind.RECOVERING, Status.PENDING_SL, Status.PENDING_SL, NOW + 1),
        ev(
            JournalKind.ORDER_RESENT,
            Status.PENDING_SL,
            Status.PENDING_SL,
            NOW + 1,
            client_id="ps1s1",
            attempt=2,
        ),
    )
    closing = step(
        step(protected(), CloseRequest(KEY)).state,
        reply("ps1c1", "place", CallResult.REJECTED, "m"),
    ).state
    t = step(closing, Recover(KEY), now=NOW + 1)
    close = replace(order_of(t.state, "ps1c2"), state=OrderState.INTENDED)
    assert (close.kind, close.qty, close.sent_at, close.attempts) == (
        OrderKind.CLOSE,
        1.0,
        NOW + 1,
        1,
    )
    assert t.effects == (
        RequestSync(KEY, "recovery"),
        CancelTimer(KEY, TimerId(TimerKind.CLOSE_RETRY)),
        PlaceOrder(KEY, 1, close, reduce_only=True),
    )
    assert t.commit is not None and t.commit.events == (
        ev(JournalKind.RECOVERING, Status.CLOSING, Status.CLOSING, NOW + 1),
        ev(JournalKind.CLOSE_RETRY, Status.CLOSING, Status.CLOSING, NOW + 1, why="recovery"),
    )


def test_a_change_no_handler_names_is_journaled_as_its_difference() -> None:
    """A refused entry of a partly filled position changes the entry's record only: the
    commit carries an ``order_fact`` derived from the difference, with the order's id, its
    new state and fill, between the same statuses, at the message's time."""
    st = step(opened(), update("ps1e1", "partially_filled", 0.5, 100.0)).state
    st = with_order(st, "ps1e1", OrderState.UNKNOWN)
    t = step(st, reply("ps1e1", "place", CallResult.REJECTED, "margin"), now=NOW + 2)
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.ORDER_FACT,
            Status.PENDING_SL,
            Status.PENDING_SL,
            NOW + 2,
            {"client_id": "ps1e1", "state": "rejected", "filled": 0.5},
        ),
    )
    assert t.commit.expected_version == 2 and t.commit.position is not None
    assert t.commit.position.version == 3


def with_attempts(st: SymbolState, cid: str, attempts: int) -> SymbolState:
    pos = st.position
    assert pos is not None
    orders = tuple(replace(o, attempts=attempts) if o.client_id == cid else o for o in pos.orders)
    return replace(st, position=replace(pos, orders=orders))


def test_stop_refusals_pinned_whole() -> None:
    """A refused stop: its retry timer after ``sl_retry_delay_s`` and ``stop_rejected`` with
    the reason and the spell's failures, nothing else. Refused as would-trigger:
    ``stop_failed`` then ``closing`` (emergency, the reason quoted), one close. An older
    stop refused after a newer one went out: an ``order_fact`` only. A refused trailing move
    (an older stop rests): retried after the delay doubled per attempt, at most 2^6 times."""
    t = step(pending_stop(), reply("ps1s1", "place", CallResult.REJECTED, "margin"))
    assert t.effects == (StartTimer(KEY, TimerId(TimerKind.RETRY, "ps1s1"), 0.2),)
    assert t.commit is not None and t.commit.events == (
        ev(
            JournalKind.STOP_REJECTED,
            Status.PENDING_SL,
            Status.PENDING_SL,
            why="margin",
            failures=1,
        ),
    )
    crossed = reply(
        "ps1s1", "place", CallResult.REJECTED, "-2021", rejection=Rejection.WOULD_TRIGGER
    )
    t = step(pending_stop(), crossed)
    assert placed(t.effects) == [("ps1c1", OrderKind.CLOSE, 1.0)] and len(t.effects) == 1
    assert t.commit is not None and t.commit.events == (
        ev(JournalKind.STOP_FAILED, Status.PENDING_SL, Status.PENDING_SL, why="-2021", failures=1),
        ev(
            JournalKind.CLOSING,
            Status.PENDING_SL,
            Status.CLOSING,
            reason="emergency",
            why="stop-loss not placed: -2021",
        ),
    )
    moved = step(trailing(), tick(98.0)).state
    old = step(
        with_order(moved, "ps1s1", OrderState.UNKNOWN),
        reply("ps1s1", "place", CallResult.REJECTED, "x"),
    )
    assert old.effects == ()
    assert old.commit is not None and old.commit.events == (
        ev(
            JournalKind.ORDER_FACT,
            Status.ACTIVE,
            Status.ACTIVE,
            client_id="ps1s1",
            state="rejected",
        ),
    )
    for attempts, delay in ((3, 0.2 * 2**3), (7, 0.2 * 2**6)):
        t = step(
            with_attempts(moved, "ps1s2", attempts),
            reply("ps1s2", "place", CallResult.REJECTED, "busy"),
        )
        assert t.effects == (StartTimer(KEY, TimerId(TimerKind.RETRY, "ps1s2"), delay),)
        assert t.commit is not None and t.commit.events == (
            ev(JournalKind.STOP_REJECTED, Status.ACTIVE, Status.ACTIVE, why="busy", failures=0),
        )


def test_a_tick_keeps_when_it_was_received() -> None:
    """The mark's time is when its frame arrived (``received_at``), or now without one."""
    t = step(protected(), MarkPriceTick(KEY, 101.0, NOW, None, None, NOW - 1), now=NOW)
    assert (t.state.last_price, t.state.last_price_at) == (101.0, NOW - 1)
    t = step(protected(), MarkPriceTick(KEY, 102.0, NOW, None, None, 0.0), now=NOW + 3)
    assert (t.state.last_price, t.state.last_price_at) == (102.0, NOW + 3)


def test_a_short_trailing_stop_follows_the_price_down() -> None:
    """A short at 100, stop 110, trailing 5 (step 2.5): a low of 104 is remembered (ideal
    109 is not a step below 110); a low of 102 moves the stop to 107 (``ps1s2``)."""
    sig = signal(side=Side.SHORT, stop=110.0, trailing=5.0, signal_id="st")
    st = step(priced(KEY, at=NOW), sig).state
    st = step(step(st, update("ps1e1", "filled", 1.0, 100.0)).state, update("ps1s1", "new")).state
    t = step(st, tick(104.0))
    assert t.commit is None and t.state.position is not None
    assert t.state.position.best_price == 104.0
    t = step(t.state, tick(102.0))
    pos = t.state.position
    assert pos is not None and (pos.stop_price, pos.best_price) == (107.0, 102.0)
    (p,) = [e for e in t.effects if isinstance(e, PlaceOrder)]
    assert (p.order.client_id, p.order.side, p.order.trigger_price) == ("ps1s2", "buy", 107.0)


def test_lookups_that_find_nothing_pinned_whole() -> None:
    """A resting stop the exchange no longer knows (the sync's lookup): ``not_found`` and a
    new stop at once (``stop_intent``, why "stop missing on exchange"), starting an
    unprotected spell. A stop of a closed position that was never confirmed and is not
    found past the deadline: an ``order_fact`` only; before the deadline, asked again."""
    t = step(
        replace(protected(), stop_lookup_at=NOW), reply("ps1s1", "lookup", CallResult.NOT_FOUND)
    )
    stop = order_of(t.state, "ps1s2")
    assert t.effects == (
        StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), POLICY.sl_deadline_s),  # a new spell
        PlaceOrder(KEY, 1, stop, close_position=True),
    )
    assert t.commit is not None and [e.kind for e in t.commit.events][-1] == JournalKind.STOP_INTENT
    assert dict(t.commit.events[-1].detail) == {
        "client_id": "ps1s2",
        "why": "stop missing on exchange",
    }
    closed = step(step(protected(), CloseRequest(KEY)).state, update("ps1c1", "filled", 1.0)).state
    st = with_order(closed, "ps1s1", OrderState.UNKNOWN)
    late = NOW + POLICY.lookup_deadline_s + 1
    t = step(st, reply("ps1s1", "lookup", CallResult.NOT_FOUND), now=late)
    assert t.effects == ()
    assert t.commit is not None and t.commit.events == (
        ev(
            JournalKind.ORDER_FACT,
            Status.CLOSED,
            Status.CLOSED,
            late,
            client_id="ps1s1",
            state="not_found",
        ),
    )
    early = step(st, reply("ps1s1", "lookup", CallResult.NOT_FOUND), now=NOW + 1)
    assert early.effects == (
        StartTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1s1"), POLICY.lookup_delay_s),
    )


def test_close_retries_and_cancel_answers_pinned_whole() -> None:
    """A close the exchange rejected: the retry timer and a sync for this symbol, the
    ``close_retry_scheduled`` event with why, attempts and delay. A confirmed cancel of the
    stop after the close: an ``order_fact`` via ``cancel``; a cancel without an answer:
    asked again for this symbol after the delay."""
    st = step(protected(), CloseRequest(KEY)).state
    t = step(st, update("ps1c1", "rejected"))
    assert t.effects == (
        StartTimer(KEY, TimerId(TimerKind.CLOSE_RETRY), POLICY.close_retry_delay_s),
        RequestSync(KEY, "close order rejected"),
    )
    assert t.commit is not None and t.commit.events[-1] == ev(
        JournalKind.CLOSE_RETRY_SCHEDULED,
        Status.CLOSING,
        Status.CLOSING,
        why="close order rejected",
        attempts=1,
        delay=POLICY.close_retry_delay_s,
    )
    closed = step(st, update("ps1c1", "filled", 1.0)).state
    t = step(closed, reply("ps1s1", "cancel", CallResult.ACCEPTED))
    assert t.effects == ()
    assert t.commit is not None and t.commit.events == (
        ev(
            JournalKind.ORDER_FACT,
            Status.CLOSED,
            Status.CLOSED,
            client_id="ps1s1",
            state="canceled",
            filled=0.0,
            via="cancel",
        ),
    )
    t = step(closed, reply("ps1s1", "cancel", CallResult.UNKNOWN, "503"))
    assert t.effects == (StartTimer(KEY, TimerId(TimerKind.CANCEL, "ps1s1"), 1.0),)


def test_the_sync_pinned_whole() -> None:
    """The sync sees our entry filled first: ``entry_fill`` via ``sync`` at the exchange's
    entry price, then the stop. A view fetched at the fill time or before is stale for a
    held position (nothing happens); one fetched after shows it flat and the stop is looked
    up. A view with a zero quantity is no position to adopt."""
    t = step(opened(), obs(ExchangePosition(Side.LONG, 1.0, 101.5)))
    assert t.commit is not None
    fill = t.commit.events[0]
    assert (fill.kind, fill.status_before, fill.status_after) == (
        JournalKind.ENTRY_FILL,
        Status.PENDING_ENTRY,
        Status.PENDING_SL,
    )
    assert dict(fill.detail) == {"qty": 1.0, "price": 101.5, "via": "sync"}
    held = protected()
    assert step(held, obs(None, at=NOW)).effects == ()
    assert lookups(step(held, obs(None, at=NOW + 0.001)).effects) == [
        ("ps1s1", OrderKind.STOP_LOSS)
    ]
    none = step(SymbolState(KEY), obs(ExchangePosition(Side.LONG, 0.0, 100.0)), next_id=3)
    assert none.commit is None and none.state.position is None
