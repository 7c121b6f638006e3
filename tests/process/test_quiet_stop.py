"""A clean stop with mark prices parked in the actors' tick slots writes no dead-letter
warning (a parked tick is not a message anybody waits for). Other dead letters keep their
WARNING.
"""

from __future__ import annotations

import logging

import pytest

from actors.messages import MarkPriceTick
from actors.model import Key
from testkit.world import ACCOUNT, signal
from tests.process.harness import MetricsWorld

pytestmark = pytest.mark.timeout(60)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def test_parked_ticks_at_stop_are_counted_not_warned(caplog: pytest.LogCaptureFixture) -> None:
    w = MetricsWorld(dict.fromkeys(SYMBOLS, 100.0))
    stopped = False
    try:
        for sym in SYMBOLS:
            w.tell(signal(sym, "sniper"))
        w.settle()
        for sym in SYMBOLS:
            st = w.state(sym)
            assert st.position is not None and st.position.stop_confirmed
        # The first tick teaches each actor its slot; the next one stays inside its band and
        # is parked on the feed's side, not delivered (no settle after it: asking an actor
        # for its state would apply it).
        for sym in SYMBOLS:
            w.sup.tell_tick(MarkPriceTick(Key(ACCOUNT, sym), 100.0, w.clock.now()))
        w.settle()
        for sym in SYMBOLS:
            w.sup.tell_tick(MarkPriceTick(Key(ACCOUNT, sym), 100.01, w.clock.now()))
        caplog.set_level(logging.DEBUG, logger="supervision.supervisor")
        assert w.sup.stop(grace_s=5.0)
        stopped = True
    finally:
        if not stopped:
            w.sup.stop(grace_s=5.0)

    # A parked tick is handed back to nobody at a clean stop: no dead-letter warning.
    letters = [r for r in caplog.records if r.getMessage().startswith("dead letter TicksReady")]
    assert all(r.levelno <= logging.DEBUG for r in letters), [r.getMessage() for r in letters]
    # Anything else refused while stopping still warns.
    w.sup.tell(signal("BTCUSDT", "late"))
    late = [r for r in caplog.records if "dead letter OpenSignal" in r.getMessage()]
    assert late and late[-1].levelno == logging.WARNING
