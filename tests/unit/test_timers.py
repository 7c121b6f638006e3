"""Keyed timers stay bounded for weeks: the table holds only timers that will still fire.

Timer names carry client order ids (``lookup:ps17e1``, ``retry:ps17s2``), so every lookup or
retry uses a name once. A timer table that remembered every name ever cancelled grew by one
entry per lookup for the life of the process (issue 14, item 1).
"""

from __future__ import annotations

import tracemalloc

import pytest

from actors.messages import Message, TimerFired, TimerId, TimerKind
from actors.model import Key
from supervision.timers import ManualClock, TimerService

pytestmark = pytest.mark.timeout(60)

KEY = Key("main", "BTCUSDT")


def _service() -> tuple[ManualClock, TimerService, list[TimerFired]]:
    clock = ManualClock()
    fired: list[TimerFired] = []

    def deliver(msg: Message) -> None:
        assert isinstance(msg, TimerFired)
        fired.append(msg)

    timers = TimerService(clock.now, deliver)
    clock.on_advance(timers.fire_due)
    return clock, timers, fired


def _allocated_by_timers(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes held by allocations made in supervision/timers.py."""
    only = snapshot.filter_traces([tracemalloc.Filter(True, "*supervision/timers.py")])
    return sum(s.size for s in only.statistics("filename"))


def _empty(timers: TimerService) -> dict[str, int]:
    sizes = timers.sizes()
    return {"timers": sizes["timers"], "timer_keys": sizes["timer_keys"]}


def test_start_then_cancel_leaves_no_entry_behind() -> None:
    _, timers, fired = _service()
    names = [TimerId(TimerKind.LOOKUP, f"ps{i}e1") for i in range(11_000)]
    for name in names[:1_000]:  # warm-up: the structures reach their working size
        timers.start(KEY, name, 5.0)
        timers.cancel(KEY, name)
    tracemalloc.start()
    try:
        before = _allocated_by_timers(tracemalloc.take_snapshot())
        for name in names[1_000:]:
            timers.start(KEY, name, 5.0)
            timers.cancel(KEY, name)
        grown = _allocated_by_timers(tracemalloc.take_snapshot()) - before
    finally:
        tracemalloc.stop()
    # 10,000 names that each left a table entry held well over 1 MB here.
    assert grown < 64 * 1024, f"10,000 start-then-cancel calls kept {grown} bytes"
    assert _empty(timers) == {"timers": 0, "timer_keys": 0}
    assert timers.sizes()["timer_heap"] <= TimerService.COMPACT_SLACK
    assert timers.pending() == 0
    assert not fired


def test_fired_timers_leave_nothing_and_fire_once() -> None:
    clock, timers, fired = _service()
    keys = [Key("main", f"S{i}USDT") for i in range(500)]
    for i, k in enumerate(keys):
        timers.start(k, TimerId(TimerKind.RETRY, f"ps{i}s1"), 1.0 + (i % 7))
    assert timers.sizes() == {"timers": 500, "timer_keys": 500, "timer_heap": 500}
    clock.advance(10.0)
    assert len(fired) == 500
    assert timers.sizes() == {"timers": 0, "timer_keys": 0, "timer_heap": 0}
    clock.advance(10.0)
    assert len(fired) == 500


def test_a_timer_superseded_many_times_is_one_entry_and_fires_once() -> None:
    clock, timers, fired = _service()
    for i in range(10_000):
        timers.start(KEY, TimerId(TimerKind.CLOSE_RETRY), 1.0 + i * 1e-4)
    sizes = timers.sizes()
    assert (sizes["timers"], sizes["timer_keys"]) == (1, 1)
    assert sizes["timer_heap"] <= 2 + TimerService.COMPACT_SLACK + 1
    clock.advance(5.0)
    assert fired == [TimerFired(KEY, TimerId(TimerKind.CLOSE_RETRY))]
    assert timers.sizes()["timers"] == 0


def test_cancel_key_drops_every_timer_of_that_key_only() -> None:
    clock, timers, fired = _service()
    other = Key("main", "ETHUSDT")
    for i in range(50):
        timers.start(KEY, TimerId(TimerKind.LOOKUP, f"ps{i}e1"), 1.0)
    timers.start(other, TimerId(TimerKind.FLAT_CONFIRM), 1.0)
    assert timers.cancel_key(KEY) == 50
    assert timers.cancel_key(KEY) == 0
    assert timers.sizes()["timers"] == 1
    clock.advance(2.0)
    assert fired == [TimerFired(other, TimerId(TimerKind.FLAT_CONFIRM))]
    assert _empty(timers) == {"timers": 0, "timer_keys": 0}


def test_compaction_keeps_due_order_and_the_live_timers() -> None:
    clock, timers, fired = _service()
    for i in range(400):
        timers.start(
            KEY, TimerId(TimerKind.LOOKUP, f"t{i}"), 400 - i
        )  # due in reverse order of start
    for i in range(0, 400, 2):
        # enough dead entries to rebuild the heap
        timers.cancel(KEY, TimerId(TimerKind.LOOKUP, f"t{i}"))
    assert timers.sizes()["timer_heap"] <= 2 * 200 + TimerService.COMPACT_SLACK
    assert timers.pending() == 200
    assert (
        timers.pending(TimerId(TimerKind.LOOKUP, "t1")) == 1
        and timers.pending(TimerId(TimerKind.LOOKUP, "t0")) == 0
    )
    clock.advance(500.0)
    assert [t.name.client_id for t in fired] == [f"t{i}" for i in range(399, 0, -2)]
