"""The signals held for an account that waits for its lease (supervision.held_signals): held
only while holding, offered oldest first, the ones older than hold_s dropped, bounded."""

from __future__ import annotations

from unittest import mock

from actors.messages import OpenSignal
from actors.model import Key, Side
from supervision.held_signals import HeldSignals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sig(n: int, account: str = "a") -> OpenSignal:
    return OpenSignal(Key(account, "BTCUSDT"), f"s{n}", "src", Side.LONG, 1.0, 90.0)


def test_held_only_while_holding_and_released_oldest_first() -> None:
    clock = Clock()
    held = HeldSignals(["a", "b"], hold_s=30.0, holding=False, clock=clock)
    assert not held.hold(_sig(0))
    held.set_holding("a", True)
    assert held.hold(_sig(1)) and held.hold(_sig(2))
    assert not held.hold(_sig(3, "b"))
    assert (held.count("a"), held.count("b"), held.total()) == (2, 0, 2)
    assert [s.signal_id for s in held.release("a")] == ["s1", "s2"]
    assert held.count("a") == 0 and held.release("a") == []


def test_signals_older_than_hold_s_are_dropped() -> None:
    clock = Clock()
    held = HeldSignals(["a"], hold_s=30.0, holding=True, clock=clock)
    held.hold(_sig(1))
    clock.now += 20.0
    held.hold(_sig(2))
    clock.now += 15.0  # s1 is 35 s old, s2 15 s
    assert [s.signal_id for s in held.release("a")] == ["s2"]


def test_at_most_max_held_signals_the_oldest_go_first() -> None:
    with mock.patch("supervision.held_signals.MAX_HELD_SIGNALS", 3):
        held = HeldSignals(["a"], hold_s=30.0, holding=True, clock=Clock())
        for n in range(5):
            held.hold(_sig(n))
        assert [s.signal_id for s in held.release("a")] == ["s2", "s3", "s4"]
