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

from actors.messages import MarkPriceTick, Message, OrderUpdate
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
from actors.transition import Context, leftovers, on_step, tick_band, transition
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
    nothing else happens (no ``late_entry_fill``, no sync asked, and no leftover holding the
    next entry back, :func:`leftovers`)."""
    st = stopped_out()
    before = st.position
    assert before is not None and before.status is Status.CLOSED and leftovers(st) == ()
    report = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0 + 1e-12, 100.0, NOW + 3)
    t = step(st, report, NOW + 3)
    entry = replace(before.orders[0], filled_qty=1.0 + 1e-12, event_time=NOW + 3)
    written = replace(
        before,
        orders=(entry, *before.orders[1:]),
        version=before.version + 1,
        updated_at=NOW + 3,
    )
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.CLOSED,
        Status.CLOSED,
        NOW + 3,
        {"client_id": "ps1e1", "state": "filled", "filled": 1.0 + 1e-12, "via": "stream"},
    )
    assert t == Transition(
        replace(st, position=written),
        (),
        Commit(KEY, report, written, before.version, (event,)),
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
