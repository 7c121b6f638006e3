"""Tests of the checks of an open signal (:func:`actors.transition._on_signal`,
:func:`validate_signal`, :func:`check_entry`), written while the surviving mutants of those
checks (``make mutate``) were worked through. Driven through
:func:`actors.transition.transition` with messages and pinned whole (the state after, the
commit, the effects, the answer). The docstrings say what each pins.
"""

from __future__ import annotations

from dataclasses import replace

from actors.effects import PlaceOrder
from actors.model import MarketRules, OrderKind, Side, Status
from actors.orders import intended_order
from actors.state import (
    Commit,
    JournalEvent,
    JournalKind,
    Position,
    SignalOutcome,
    SignalRecord,
    Transition,
)
from actors.transition import Context, check_entry, transition
from testkit.world import priced, signal
from tests.unit.kills import KEY, NOW, POLICY

TICK = MarketRules(tick_size=1.0)


def test_a_take_profit_that_rounds_past_the_mark_is_refused() -> None:
    """The take-profit is recorded on the tick, and it is the recorded one that a mark
    price hits; so it must still lie on the winning side of the mark once rounded, as the
    stop must on the losing side. A long's take-profit of 100.4 with the mark at 100.3 and
    a tick of 1 would be recorded at 100.0, under the mark: the first tick after the fill
    would close the new position at market as ``take_profit``, at a loss (fees, spread)
    the signal never asked for. It is refused ``invalid:take_profit_side`` before anything
    is written (a final refusal, remembered), for a long and a short alike."""
    for side, mark, stop, tp, sid in (
        (Side.LONG, 100.3, 90.0, 100.4, "t1"),
        (Side.LONG, 100.0, 90.0, 100.4, "t2"),  # rounds onto the mark: hit at once too
        (Side.SHORT, 99.7, 110.0, 99.6, "t3"),
    ):
        sig = signal(side=side, size=1.0, stop=stop, tp=tp, signal_id=sid)
        assert check_entry(sig, mark, TICK, POLICY) == "invalid:take_profit_side", sid
        st = priced(KEY, price=mark, at=NOW, rules=TICK)
        t = transition(st, sig, Context(NOW, POLICY, 1))
        reason = "invalid:take_profit_side"
        rec = SignalRecord(KEY, sid, "sniper", SignalOutcome.REJECTED, reason, NOW)
        assert not rec.retry
        assert t == Transition(
            replace(st, decided=(rec,)),
            commit=Commit(KEY, sig, None, 0, (), rec),
            signal=rec,
        ), sid


def test_a_take_profit_that_rounds_away_from_the_mark_is_taken_on_the_tick() -> None:
    """A take-profit more than half a tick beyond the mark is taken and recorded on the
    tick (100.6 with the mark at 100.3 and a tick of 1: 101.0), with the stop on the tick
    too: the position, its entry intent and its entry order, whole."""
    st = priced(KEY, price=100.3, at=NOW, rules=TICK)
    sig = signal(size=1.0, stop=90.2, tp=100.6, signal_id="t4")
    assert check_entry(sig, 100.3, TICK, POLICY) is None
    t = transition(st, sig, Context(NOW, POLICY, 3))
    entry = intended_order(3, OrderKind.ENTRY, 1, "buy", 1.0, NOW)
    pos = Position(
        id=3,
        key=KEY,
        side=Side.LONG,
        status=Status.PENDING_ENTRY,
        source="sniper",
        requested_qty=1.0,
        stop_price=90.0,
        created_at=NOW,
        updated_at=NOW,
        signal_id="t4",
        take_profit=101.0,
        orders=(entry,),
        version=1,
    )
    rec = SignalRecord(KEY, "t4", "sniper", SignalOutcome.ACCEPTED, "", NOW, 3)
    event = JournalEvent(3, JournalKind.ENTRY_INTENT, None, Status.PENDING_ENTRY, NOW, {})
    assert t == Transition(
        replace(st, position=pos, decided=(rec,)),
        (PlaceOrder(KEY, 3, entry),),
        Commit(KEY, sig, pos, 0, (event,), rec),
        rec,
    )
