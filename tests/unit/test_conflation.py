"""Tick conflation: a slow actor sees the newest price and the extremes, never a backlog."""

from __future__ import annotations

import threading

import pytest

from actors.conflation import TickSlot
from actors.messages import MarkPriceTick
from actors.model import Key, OrderKind, Status
from tests.fakes.world import ACCOUNT, World, signal

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
