"""Tick conflation: a slow actor sees the newest price and the extremes, never a backlog."""

from __future__ import annotations

import threading

import pytest

from actors.conflation import TickSlot
from actors.messages import MarkPriceTick
from actors.model import Key, OrderKind, Status
from testkit.world import ACCOUNT, CountingMetrics, World, signal

pytestmark = pytest.mark.timeout(30)
KEY = Key(ACCOUNT, "BTCUSDT")


def test_slot_keeps_newest_and_extremes() -> None:
    slot = TickSlot()
    assert slot.put(MarkPriceTick(KEY, 100.0, 1.0))
    assert not slot.put(MarkPriceTick(KEY, 80.0, 2.0))
    assert not slot.put(MarkPriceTick(KEY, 120.0, 3.0))
    assert not slot.put(MarkPriceTick(KEY, 101.0, 4.0))
    assert not slot.put(MarkPriceTick(KEY, 999.0, 0.5))  # older event: extremes only
    t = slot.take()
    assert t is not None and (t.price, t.lowest, t.highest) == (101.0, 80.0, 999.0)
    assert slot.take() is None
    assert slot.conflated == 4


def test_burst_behind_a_busy_actor_is_one_message_and_guard_sees_the_low() -> None:
    with World() as w:
        w.exchange.stream = False
        held = threading.Event()
        w.exchange.hold[OrderKind.STOP_LOSS] = held  # stop not confirmed: the guard is on
        w.tell(signal(stop=95.0))
        w.wait_for(lambda: w.exchange.calls_waiting == 1)
        w.settle(calls=False)
        before = w.metrics.handled_n
        for i in range(1000):
            price = 94.0 if i == 500 else 100.0 + (i % 7) * 0.1
            w.sup.tell_tick(MarkPriceTick(KEY, price, float(i)))
        w.settle(calls=False)
        handled = w.metrics.handled_n - before
        assert handled < 1000  # conflated: far fewer wake-ups than ticks
        pos = w.state().position
        assert pos is not None  # the 94 low was not lost to conflation: the guard fired
        assert pos.status in (Status.CLOSING, Status.CLOSED)
        held.set()
        w.settle()


# --- tick latency: measured from the frame that woke the actor (issue 14, item 4) ---------


def test_a_wake_up_carries_the_arrival_of_the_frame_that_left_the_band() -> None:
    slot = TickSlot()
    slot.set_band((90.0, 110.0))
    assert not slot.put(MarkPriceTick(KEY, 100.0, 1.0, received_at=1.0))  # parked
    assert not slot.put(MarkPriceTick(KEY, 101.0, 2.0, received_at=2.0))  # parked
    assert slot.put(MarkPriceTick(KEY, 120.0, 3.0, received_at=3.0))  # leaves: wake-up
    assert not slot.put(MarkPriceTick(KEY, 121.0, 4.0, received_at=4.0))  # merged into it
    t = slot.take()
    assert t is not None and slot.woken
    assert (t.price, t.lowest, t.highest) == (121.0, 100.0, 121.0)
    assert t.received_at == 3.0  # the waking frame, not a parked one nor the newest


def test_a_late_frame_that_leaves_the_band_is_timed_from_its_own_arrival() -> None:
    """A frame with an older event time that arrives after a parked tick: the parked tick's
    price stays the newest, but the wake-up is timed from the late frame's arrival."""
    slot = TickSlot()
    slot.set_band((90.0, 110.0))
    assert not slot.put(MarkPriceTick(KEY, 100.0, 10.0, received_at=1.0))  # parked
    assert slot.put(MarkPriceTick(KEY, 85.0, 9.0, received_at=4.0))  # older event, low
    t = slot.take()
    assert t is not None and slot.woken
    assert (t.price, t.lowest) == (100.0, 85.0)
    assert t.received_at == 4.0


def test_parked_and_released_ticks_are_not_wake_ups() -> None:
    slot = TickSlot()
    slot.set_band((90.0, 110.0))
    assert not slot.put(MarkPriceTick(KEY, 100.0, 1.0, received_at=1.0))
    t = slot.take_parked()
    assert t is not None and not slot.woken and t.received_at == 1.0
    assert not slot.put(MarkPriceTick(KEY, 105.0, 2.0, received_at=2.0))
    assert slot.set_band((90.0, 104.0))  # the actor's band narrowed under the parked tick
    t = slot.take()
    assert t is not None and not slot.woken and t.received_at == 2.0
    assert slot.put(MarkPriceTick(KEY, 200.0, 3.0, received_at=3.0))
    assert slot.take() is not None and slot.woken
    assert slot.take() is None and not slot.woken


class LatencyMetrics(CountingMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.tick_latencies: list[float] = []

    def tick_decision(self, seconds: float) -> None:
        self.tick_latencies.append(seconds)


def _world_with_latencies() -> tuple[World, LatencyMetrics]:
    w = World()
    m = LatencyMetrics()
    w.metrics = m
    w.sup.metrics = m
    return w, m


def test_tick_latency_is_not_observed_for_parked_ticks_applied_later() -> None:
    """A tick parked inside the band decides nothing; applied before the next message
    (here, seconds later) it must not count as a tick that waited seconds for a decision."""
    w, m = _world_with_latencies()
    with w:
        w.tell(signal(stop=90.0, tp=120.0))
        w.settle()
        now = w.clock.now()
        w.sup.tell_tick(MarkPriceTick(KEY, 100.0, 1.0, received_at=now))  # teaches the slot
        w.settle()
        m.tick_latencies.clear()
        now = w.clock.now()
        w.sup.tell_tick(MarkPriceTick(KEY, 105.0, 2.0, received_at=now))  # parked
        w.clock.advance(5.0)
        w.sync()  # the sync's observation: the parked tick is applied first
        assert w.state().last_price == 105.0
        assert m.tick_latencies == []
        # A tick that leaves the band (take-profit) is observed, from its own arrival.
        now = w.clock.now()
        w.sup.tell_tick(MarkPriceTick(KEY, 121.0, 3.0, received_at=now))
        w.settle()
        pos = w.state().position
        assert pos is not None and pos.status is Status.CLOSED
        assert m.tick_latencies == [0.0]


def test_tick_latency_of_a_wake_up_is_timed_from_the_frame_that_left_the_band() -> None:
    w, m = _world_with_latencies()
    with w:
        w.tell(signal(stop=90.0, tp=120.0))
        w.settle()
        now = w.clock.now()
        w.sup.tell_tick(MarkPriceTick(KEY, 100.0, 1.0, received_at=now))
        w.settle()
        m.tick_latencies.clear()
        w.sup.tell_tick(MarkPriceTick(KEY, 105.0, 10.0, received_at=w.clock.now()))  # parked
        w.clock.advance(3.0)
        # A late frame (older event time) whose price crosses the take-profit arrives now.
        w.sup.tell_tick(MarkPriceTick(KEY, 121.0, 9.0, received_at=w.clock.now()))
        w.settle()
        pos = w.state().position
        assert pos is not None and pos.status is Status.CLOSED
        assert m.tick_latencies == [0.0]  # not 3 s: the parked tick's arrival is not the start
