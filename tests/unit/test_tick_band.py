"""The tick band: mark prices strictly inside it change nothing durable, so the feed may park
them without waking the actor. Checked against the transition itself, and the slot's park and
wake rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.conflation import TickSlot
from actors.messages import MarkPriceTick
from actors.model import Key, OrderKind, OrderRecord, OrderState, Side, Status
from actors.state import Policy, Position, SymbolState
from actors.transition import Context, tick_band, transition

KEY = Key("main", "BTCUSDT")
POLICY = Policy()
prices = st.floats(min_value=1.0, max_value=100_000.0, allow_nan=False)


@st.composite
def states(draw: st.DrawFn) -> SymbolState:
    side = draw(st.sampled_from([Side.LONG, Side.SHORT]))
    entry = draw(prices)
    sign = 1.0 if side is Side.LONG else -1.0
    stop = entry * (1 - sign * draw(st.floats(0.001, 0.5)))
    tp = draw(st.none() | st.floats(0.001, 1.0).map(lambda f: entry * (1 + sign * f)))
    trailing = draw(st.none() | st.floats(0.0001, 0.2).map(lambda f: entry * f))
    confirmed = draw(st.booleans())
    stop_order = OrderRecord(
        "ps1s1",
        OrderKind.STOP_LOSS,
        side.exit_side,
        1.0,
        OrderState.ACCEPTED if confirmed else OrderState.INTENDED,
        trigger_price=stop,
    )
    pos = Position(
        id=1,
        key=KEY,
        side=side,
        status=draw(st.sampled_from([Status.PENDING_SL, Status.ACTIVE])),
        source="sniper",
        requested_qty=1.0,
        stop_price=stop,
        created_at=0.0,
        updated_at=0.0,
        qty=1.0,
        entry_price=entry,
        take_profit=tp,
        trailing_distance=trailing,
        orders=(stop_order,),
        best_price=draw(st.none() | st.just(entry)),
        stop_seq=1,
    )
    return SymbolState(KEY, position=pos, last_price=entry)


@settings(max_examples=1500, deadline=None)
@given(states(), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_a_tick_inside_the_band_changes_nothing_durable(
    state: SymbolState, a: float, b: float, c: float
) -> None:
    lo, hi = tick_band(state, POLICY)
    pos = state.position
    assert pos is not None and pos.entry_price is not None
    # a finite window to draw from: the band, or around the entry where it is open
    w_lo = lo if math.isfinite(lo) else pos.entry_price * 0.01
    w_hi = hi if math.isfinite(hi) else pos.entry_price * 10
    if not w_lo < w_hi:
        return  # an empty band: every tick wakes the actor
    low, price, high = sorted(w_lo + (w_hi - w_lo) * x for x in (a, b, c))
    if not (lo < low and high < hi):
        return
    tick = MarkPriceTick(KEY, price, 1.0, low, high)
    t = transition(state, tick, Context(10.0, POLICY, 99))
    assert t.commit is None and t.effects == (), (lo, hi, tick, t.effects)


def test_no_position_or_pending_entry_parks_everything_and_nan_parks_nothing() -> None:
    assert tick_band(SymbolState(KEY), POLICY) == (-math.inf, math.inf)
    pos = Position(1, KEY, Side.LONG, Status.ACTIVE, "s", 1.0, math.nan, 0.0, 0.0, qty=1.0)
    lo, hi = tick_band(SymbolState(KEY, position=pos), POLICY)
    assert not lo < hi


def _tick(price: float, t: float = 1.0, low: float | None = None) -> MarkPriceTick:
    return MarkPriceTick(KEY, price, t, low)


def test_slot_parks_inside_the_band_and_wakes_when_a_price_leaves_it() -> None:
    slot = TickSlot()
    assert slot.put(_tick(100.0)) is True  # no band yet: wake
    assert slot.take() is not None
    assert slot.set_band((90.0, 110.0)) is False
    assert slot.put(_tick(101.0, 2.0)) is False  # parked
    assert slot.put(_tick(102.0, 3.0)) is False  # still parked, merged
    assert slot.put(_tick(100.0, 4.0, low=89.0)) is True  # the merged low left the band
    assert slot.put(_tick(100.0, 5.0)) is False  # a wake-up is in flight: no second one
    t = slot.take()
    assert t is not None and t.price == 100.0 and t.lowest == 89.0 and t.highest == 102.0
    assert slot.take_parked() is None


def test_a_tightened_band_catches_a_tick_parked_under_the_old_one() -> None:
    slot = TickSlot()
    slot.set_band((90.0, 110.0))
    assert slot.put(_tick(95.0)) is False
    assert slot.set_band((96.0, 110.0)) is True  # the actor must take it now
    assert slot.take() is not None
    slot.set_band((90.0, 110.0))
    assert slot.put(_tick(95.0, 2.0)) is False
    parked = slot.take_parked()
    assert parked is not None and parked.price == 95.0
    assert slot.set_band(None) is False  # nothing left
    assert slot.put(_tick(95.0, 3.0)) is True  # no band: wake


@pytest.mark.timeout(30)
def test_ticks_inside_the_band_do_not_wake_the_actor_but_a_take_profit_does() -> None:
    from testkit.world import World, signal

    with World() as w:
        w.tell(signal(stop=90.0, tp=120.0))
        w.settle()
        st0 = w.state()
        assert st0.position is not None and st0.position.status is Status.ACTIVE
        key = st0.key
        w.sup.tell_tick(MarkPriceTick(key, 100.0, 1.0))  # the first tick teaches the slot
        w.settle()
        handled = w.metrics.handled_n
        for i in range(200):
            w.sup.tell_tick(MarkPriceTick(key, 100.0 + (i % 10), 2.0 + i))
        w.settle()
        # (settling inspects the actor, which applies the one parked tick)
        assert w.metrics.handled_n - handled <= 1, "ticks inside the band woke the actor"
        assert w.state().last_price == 109.0  # inspection applies the parked tick
        w.sup.tell_tick(MarkPriceTick(key, 121.0, 500.0))
        w.settle()
        pos = w.state().position
        assert pos is not None and pos.status is Status.CLOSED
