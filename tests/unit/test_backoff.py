"""The restart policy's delays come from :class:`infra.backoff.Backoff` (the feeds' rule), with
the edge cases the restart policy reaches: repeat 0 and a zero minimum."""

from __future__ import annotations

import pytest

from infra.backoff import Backoff
from supervision.restart import RestartPolicy, RestartTracker


def test_backoff_grows_caps_and_jitters() -> None:
    b = Backoff(min_s=0.1, max_s=2.0, jitter=0.5)
    assert [b.delay(n, 0.0) for n in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert b.delay(3, 0.999) == pytest.approx(0.8 * 1.4995)
    assert b.delay(10_000, 0.5) == pytest.approx(2.5)
    assert b.delay(-1, 0.0) == pytest.approx(0.05)  # the restart policy's repeat 0
    assert Backoff(min_s=0.0).delay(5, 0.9) == 0.0  # a restart policy's "at once"
    with pytest.raises(ValueError):
        Backoff(min_s=-0.1)
    with pytest.raises(ValueError):
        Backoff(min_s=2.0, max_s=1.0)
    with pytest.raises(ValueError):
        Backoff(jitter=-0.1)


class _Fixed:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_restart_delays_are_the_backoff_rule() -> None:
    policy = RestartPolicy(min_backoff_s=0.1, max_backoff_s=1.0, jitter=0.5)
    rule = Backoff(min_s=0.1, max_s=1.0, jitter=0.5)
    for repeat in range(1, 12):
        assert policy.backoff(repeat, 0.3) == rule.delay(repeat - 1, 0.3)
    assert policy.backoff(5, 0.999) == pytest.approx(1.0 * 1.4995)


def test_a_quarantined_key_crashing_after_a_quiet_window_waits_half_the_minimum() -> None:
    policy = RestartPolicy(max_restarts=1, window_s=10.0, min_backoff_s=0.2, max_backoff_s=5.0)
    t = RestartTracker(policy, _Fixed(0.0))  # type: ignore[arg-type]
    t.on_crash(0.0)
    assert t.on_crash(1.0).quarantine  # two crashes in the window: quarantined
    later = t.on_crash(100.0)  # alone in its window, still quarantined: repeat 0
    assert later.quarantine and later.delay == pytest.approx(0.1)


def test_a_zero_minimum_restarts_at_once() -> None:
    policy = RestartPolicy(min_backoff_s=0.0, max_backoff_s=0.0, jitter=0.2)
    t = RestartTracker(policy, _Fixed(0.9))  # type: ignore[arg-type]
    assert [t.on_crash(float(i)).delay for i in range(4)] == [0.0, 0.0, 0.0, 0.0]
