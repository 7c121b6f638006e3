"""What the simulation found in the shell, pinned on the production adapter too (the pykka
``PositionActor`` in a ``World``), with the defect re-introduced to show the test fails."""

from __future__ import annotations

import pytest

from actors.messages import MarkPriceTick
from actors.model import Key
from testkit.world import World, signal
from tests.dst.defects import DEFECTS


def _tick_stashed_during_a_restart() -> tuple[float | None, int]:
    """The store is down when the actor loads (it waits, stashing), a mark price arrives
    meanwhile (a ``TicksReady`` in the stash), the store comes back and the restart hands the
    stash over. Returns the actor's last price and its dead letters."""
    key = Key("main", "BTCUSDT")
    with World() as w:
        w.store.down = True
        w.tell(signal())  # starts the actor: its load fails, it waits for the store
        w.settle()
        now = w.clock.now()
        w.sup.tell_tick(MarkPriceTick(key, 101.0, now, received_at=now))
        w.settle()
        w.store.down = False
        w.advance(1.0)  # the restart timer: reload, then the stash
        return w.state().last_price, sum(w.metrics.dead.values())


def test_a_tick_stashed_during_a_restart_is_applied_after_it() -> None:
    assert _tick_stashed_during_a_restart() == (101.0, 0)


def test_without_the_fix_the_stashed_tick_crashes_the_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    DEFECTS["restart"].apply(monkeypatch)
    price, dead = _tick_stashed_during_a_restart()
    assert price is None and dead == 1  # crashed, retried once, crashed: dead-lettered
