"""The rest of a partly filled entry when its position ends (found by the simulation, seeds
125 and 1266 of ``python -m testkit.dst``).

A position ended (its stop filled, a close sized before the entry's last part, a flat sync
after a hand trade) while its entry was still working: the entry was not cancelled, a new
signal did not wait for it, and a fill of it that came after the end was dropped, so the next
signal's entry opened a second position on the exchange before a sync could adopt the rest.
Driven by messages through :func:`actors.transition.transition`.
"""

from __future__ import annotations

from dataclasses import replace

from actors.effects import CancelOrder, CancelTimer, RequestSync
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    OrderUpdate,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import (
    CloseReason,
    ExchangePosition,
    ExchangeStatus,
    Key,
    OrderKind,
    OrderState,
    Side,
    Status,
)
from actors.state import JournalKind, Policy, Reentry, SymbolState
from actors.transition import Context, leftovers, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
POLICY = Policy(reentry=Reentry.ALLOW)


def _ctx(now: float, next_id: int = 1) -> Context:
    return Context(now, POLICY, next_id)


def _fresh(st: SymbolState, now: float) -> SymbolState:
    """The mark price seen just now (so that a signal is decided at once)."""
    return replace(st, last_price=100.0, last_price_at=now)


def _partly_filled_and_protected() -> SymbolState:
    st = transition(priced(KEY, at=1000.0), signal(size=2.0), _ctx(1000.0)).state
    part = OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 1.0, 100.0, 1000.1)
    st = transition(st, part, _ctx(1000.1)).state
    stop = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 1000.2)
    st = transition(st, stop, _ctx(1000.2)).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    assert st.position.qty == 1.0
    return st


def _entry_state(st: SymbolState) -> OrderState:
    assert st.position is not None
    entry = st.position.order("ps1e1")
    assert entry is not None
    return entry.state


def test_a_stop_filled_cancels_the_working_entry_and_a_new_entry_waits_for_it() -> None:
    st = _partly_filled_and_protected()
    filled = OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, 1001.0)
    t = transition(st, filled, _ctx(1001.0))
    assert t.state.position is not None and t.state.position.status is Status.CLOSED
    cancels = [(e.client_id, e.kind) for e in t.effects if isinstance(e, CancelOrder)]
    assert ("ps1e1", OrderKind.ENTRY) in cancels
    assert _entry_state(t.state) is OrderState.PENDING_CANCEL
    assert t.commit is not None and t.commit.position is not None
    assert [o.client_id for o in leftovers(t.state)] == ["ps1e1"]
    # the next signal waits while the entry may still fill
    nxt = transition(_fresh(t.state, 1002.0), signal(size=2.0), _ctx(1002.0, 2))
    assert nxt.deferred and nxt.commit is None
    # the exchange confirms the cancel, nothing more filled: the next entry may go
    gone = OrderUpdate(KEY, "ps1e1", ExchangeStatus.CANCELED, 1.0, 100.0, 1002.5)
    st = transition(t.state, gone, _ctx(1002.5)).state
    assert _entry_state(st) is OrderState.CANCELED and leftovers(st) == ()
    nxt = transition(_fresh(st, 1003.0), signal(size=2.0), _ctx(1003.0, 2))
    assert not nxt.deferred and nxt.state.open_position is not None


def _closed_by_a_close_sized_before_the_last_part() -> SymbolState:
    """Seed 1266: closed at market for the first part; the entry's cancel is not confirmed."""
    st = _partly_filled_and_protected()
    st = transition(st, CloseRequest(KEY, CloseReason.EMERGENCY), _ctx(1001.0)).state
    done = OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 99.0, 1001.5)
    st = transition(st, done, _ctx(1001.5)).state
    assert st.position is not None and st.position.status is Status.CLOSED
    gone = OrderUpdate(KEY, "ps1s1", ExchangeStatus.CANCELED, 0.0, None, 1001.6)
    return transition(st, gone, _ctx(1001.6)).state


def test_an_entry_fill_after_its_position_closed_is_recorded_and_adopted_by_the_sync() -> None:
    st = _closed_by_a_close_sized_before_the_last_part()
    # the cancel missed the entry; a lookup finds its rest filled after the close
    found = ExchangeOutcome(
        KEY,
        CallOp.LOOKUP,
        "ps1e1",
        OrderKind.ENTRY,
        CallResult.FOUND,
        update=OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 2.0, 100.0, 1001.8),
    )
    t = transition(st, found, _ctx(1002.0))
    assert t.commit is not None
    assert JournalKind.LATE_ENTRY_FILL in [e.kind for e in t.commit.events]
    assert any(isinstance(e, RequestSync) for e in t.effects)
    st = t.state
    assert [o.client_id for o in leftovers(st)] == ["ps1e1"]
    # no new entry before a sync has seen that rest
    nxt = transition(_fresh(st, 1002.2), signal(size=2.0), _ctx(1002.2, 2))
    assert nxt.deferred and nxt.commit is None
    # the sync sees it open: adopted and protected
    obs = SyncObservation(KEY, ExchangePosition(Side.LONG, 1.0, 100.0), (), 1002.5)
    t = transition(st, obs, _ctx(1002.5, 7))
    pos = t.state.open_position
    assert pos is not None and pos.id == 7 and pos.qty == 1.0
    assert pos.latest(OrderKind.STOP_LOSS) is not None


def test_an_entry_fill_after_the_close_seen_gone_by_the_sync_lets_entries_go_again() -> None:
    st = _closed_by_a_close_sized_before_the_last_part()
    late = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 2.0, 100.0, 1001.8)
    t = transition(st, late, _ctx(1002.0))
    assert t.commit is not None and any(isinstance(e, RequestSync) for e in t.effects)
    st = t.state
    # a sync observed before we learnt of the fill proves nothing
    older = SyncObservation(KEY, None, (), 1001.9)
    assert leftovers(transition(st, older, _ctx(1002.1)).state) != ()
    # one observed after shows nothing open: the rest is gone (closed by hand)
    obs = SyncObservation(KEY, None, (), 1003.0)
    t = transition(st, obs, _ctx(1003.0))
    assert t.commit is not None and leftovers(t.state) == ()
    nxt = transition(_fresh(t.state, 1004.0), signal(size=2.0), _ctx(1004.0, 2))
    assert not nxt.deferred and nxt.state.open_position is not None


def test_an_entry_fill_after_the_sync_saw_the_position_flat_keeps_it_open() -> None:
    """Seed 125: a hand trade flattened the first part; the entry filled on; the flat view
    (older than that fill) closed the position all the same, leaving the rest open."""
    st = _partly_filled_and_protected()
    flat = SyncObservation(KEY, None, (), 1002.0)
    st = transition(st, flat, _ctx(1002.0)).state
    assert st.flat_seen_at is not None
    late = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 2.0, 100.0, 1002.5)
    t = transition(st, late, _ctx(1002.6))
    assert t.state.flat_seen_at is None
    assert CancelTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM)) in t.effects
    t = transition(t.state, TimerFired(KEY, TimerId(TimerKind.FLAT_CONFIRM)), _ctx(1004.0))
    assert t.state.open_position is not None
    # the next sync decides on a fresh view: the rest is open, the position keeps it
    obs = SyncObservation(KEY, ExchangePosition(Side.LONG, 1.0, 100.0), (), 1004.5)
    t = transition(t.state, obs, _ctx(1004.5))
    pos = t.state.open_position
    assert pos is not None and pos.qty == 1.0
