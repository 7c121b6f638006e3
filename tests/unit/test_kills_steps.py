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

from actors.messages import Message, OrderUpdate
from actors.model import ExchangeStatus, Key, OrderKind, OrderState, Status
from actors.orders import intended_order
from actors.state import (
    Commit,
    JournalEvent,
    JournalKind,
    Policy,
    SymbolState,
    Transition,
)
from actors.transition import Context, on_step, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy()


def step(st: SymbolState, msg: Message, now: float = NOW) -> Transition:
    return transition(st, msg, Context(now, POLICY, 1))


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
    written = replace(
        before,
        orders=(
            before.orders[0],
            replace(stop, state=OrderState.ACCEPTED, exchange_id="x9", event_time=NOW + 2),
        ),
        version=before.version + 1,
        updated_at=NOW + 2,
    )
    event = JournalEvent(
        1,
        JournalKind.ILLEGAL_TRANSITION,
        Status.ENTRY_PLACED,
        Status.ENTRY_PLACED,
        NOW + 2,
        {"state": "entry_placed", "trigger": "stop_confirmed"},
    )
    assert t == Transition(
        replace(st, position=written),
        (),
        Commit(KEY, report, written, before.version, (event,)),
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
