"""A position closed ``closed_on_exchange`` although its own order closed it (found by the
simulation, seed 15 of ``python -m testkit.dst``, 22 seeds of 2,000).

The sync saw the position flat; every lookup of its orders was refused (429) until
``flat_confirm_s`` passed, so it was closed on the sync's word alone, and the lookup (or
stream event) that found its stop filled afterwards did not correct the reason. In seed 15 the
close order itself was lost with its unwritten commit (a restart during a store outage), so
the position did not even know its id. Driven by messages through
:func:`actors.transition.transition`.
"""

from __future__ import annotations

from actors.effects import CancelOrder, LookupOrder, StartTimer
from actors.messages import (
    CallOp,
    CallResult,
    ExchangeOutcome,
    OrderUpdate,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import CloseReason, ExchangeStatus, Key, OrderKind, OrderState, Status
from actors.state import JournalKind, Policy, SymbolState, Transition
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
POLICY = Policy()


def _ctx(now: float) -> Context:
    return Context(now, POLICY, 1)


def _protected() -> SymbolState:
    st = transition(priced(KEY, at=1000.0), signal(size=1.0), _ctx(1000.0)).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1000.1)
    st = transition(st, fill, _ctx(1000.1)).state
    stop = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 1000.2)
    st = transition(st, stop, _ctx(1000.2)).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    return st


def _closed_on_the_syncs_word(st: SymbolState) -> Transition:
    """Flat on the exchange; the lookups of its orders refused until the flat is confirmed."""
    t = transition(st, SyncObservation(KEY, None, (), 1010.0), _ctx(1010.0))
    assert [e.client_id for e in t.effects if isinstance(e, LookupOrder)] == ["ps1s1"]
    refused = ExchangeOutcome(
        KEY,
        CallOp.LOOKUP,
        "ps1s1",
        OrderKind.STOP_LOSS,
        CallResult.UNKNOWN,
        "rate_limited",
        retry_after=5.0,
    )
    st = transition(t.state, refused, _ctx(1010.2)).state
    t = transition(st, TimerFired(KEY, TimerId(TimerKind.FLAT_CONFIRM)), _ctx(1012.0))
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSED
    assert pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE
    return t


def _corrected(t: Transition, reason: CloseReason) -> None:
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSED and pos.close_reason is reason
    assert t.commit is not None and t.commit.position is not None
    assert t.commit.position.close_reason is reason
    assert JournalKind.CLOSE_REASON_CORRECTED in [e.kind for e in t.commit.events]


def test_a_lookup_after_the_flat_close_that_finds_the_stop_filled_corrects_the_reason() -> None:
    t = _closed_on_the_syncs_word(_protected())
    # the stop is still asked after (its cancel, pending until the exchange answers)
    assert "ps1s1" in [e.client_id for e in t.effects if isinstance(e, CancelOrder)]
    st = t.state
    gone = ExchangeOutcome(KEY, CallOp.CANCEL, "ps1s1", OrderKind.STOP_LOSS, CallResult.NOT_FOUND)
    t = transition(st, gone, _ctx(1012.5))
    assert [e.client_id for e in t.effects if isinstance(e, LookupOrder)] == ["ps1s1"]
    found = ExchangeOutcome(
        KEY,
        CallOp.LOOKUP,
        "ps1s1",
        OrderKind.STOP_LOSS,
        CallResult.FOUND,
        update=OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, 1009.0),
    )
    t = transition(t.state, found, _ctx(1013.0))
    _corrected(t, CloseReason.STOP_LOSS)


def test_a_late_stream_event_of_the_stop_filled_corrects_the_reason() -> None:
    st = _closed_on_the_syncs_word(_protected()).state
    late = OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, 1009.0)
    _corrected(transition(st, late, _ctx(1013.0)), CloseReason.STOP_LOSS)


def test_the_close_a_restart_lost_is_looked_up_and_corrects_the_reason() -> None:
    t = _closed_on_the_syncs_word(_protected())
    lookups = [e.client_id for e in t.effects if isinstance(e, LookupOrder)]
    assert "ps1c1" in lookups  # the next close id: sent, its commit lost
    refused = ExchangeOutcome(
        KEY, CallOp.LOOKUP, "ps1c1", OrderKind.CLOSE, CallResult.UNKNOWN, retry_after=1.0
    )
    t = transition(t.state, refused, _ctx(1012.2))
    assert any(
        isinstance(e, StartTimer) and e.name == TimerId(TimerKind.LOOKUP, "ps1c1")
        for e in t.effects
    )
    t = transition(t.state, TimerFired(KEY, TimerId(TimerKind.LOOKUP, "ps1c1")), _ctx(1013.2))
    assert [e.client_id for e in t.effects if isinstance(e, LookupOrder)] == ["ps1c1"]
    found = ExchangeOutcome(
        KEY,
        CallOp.LOOKUP,
        "ps1c1",
        OrderKind.CLOSE,
        CallResult.FOUND,
        update=OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 99.0, 1008.0),
    )
    t = transition(t.state, found, _ctx(1013.5))
    _corrected(t, CloseReason.MANUAL)
    pos = t.state.position
    assert pos is not None
    close = pos.order("ps1c1")
    assert close is not None and close.state is OrderState.FILLED and close.filled_qty == 1.0


def test_a_lookup_that_finds_nothing_of_ours_filled_keeps_closed_on_exchange() -> None:
    st = _closed_on_the_syncs_word(_protected()).state
    canceled = OrderUpdate(KEY, "ps1s1", ExchangeStatus.CANCELED, 0.0, None, 1012.5)
    t = transition(st, canceled, _ctx(1012.5))
    nothing = ExchangeOutcome(KEY, CallOp.LOOKUP, "ps1c1", OrderKind.CLOSE, CallResult.NOT_FOUND)
    t = transition(t.state, nothing, _ctx(1013.0))
    pos = t.state.position
    assert pos is not None and pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE


def test_a_refused_lookup_of_the_stop_after_the_flat_close_is_asked_again() -> None:
    """Seeds 1705 and 1945: the stop's cancel said "not found", its lookup was refused, and
    the lookup timer did not ask again for an order pending cancel."""
    st = _closed_on_the_syncs_word(_protected()).state
    gone = ExchangeOutcome(KEY, CallOp.CANCEL, "ps1s1", OrderKind.STOP_LOSS, CallResult.NOT_FOUND)
    st = transition(st, gone, _ctx(1012.5)).state
    refused = ExchangeOutcome(
        KEY, CallOp.LOOKUP, "ps1s1", OrderKind.STOP_LOSS, CallResult.UNKNOWN, retry_after=1.0
    )
    t = transition(st, refused, _ctx(1012.7))
    assert any(
        isinstance(e, StartTimer) and e.name == TimerId(TimerKind.LOOKUP, "ps1s1")
        for e in t.effects
    )
    t = transition(t.state, TimerFired(KEY, TimerId(TimerKind.LOOKUP, "ps1s1")), _ctx(1013.7))
    assert [e.client_id for e in t.effects if isinstance(e, LookupOrder)] == ["ps1s1"]
    found = ExchangeOutcome(
        KEY,
        CallOp.LOOKUP,
        "ps1s1",
        OrderKind.STOP_LOSS,
        CallResult.FOUND,
        update=OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, 1009.0),
    )
    _corrected(transition(t.state, found, _ctx(1014.0)), CloseReason.STOP_LOSS)
