"""A recovery starts its actors in waves: a thousand loads at once exhausted the store's pool
(loads and commits timed out and the account's recovery failed, found by the cold-start
benchmark). At most ``RECOVERY_WAVE`` actors load at the same time."""

from __future__ import annotations

import threading

import pytest

from actors.model import Key, Side, Status
from actors.ports import Snapshot
from actors.state import Commit, Position
from supervision.recovery import RECOVERY_WAVE
from testkit.store import InMemoryStore
from testkit.world import ACCOUNT, World

pytestmark = pytest.mark.timeout(60)


class SlowLoads(InMemoryStore):
    """Counts how many loads run at once. Each load holds until a whole wave is loading (or
    half a second has passed: the last, smaller wave), so the peak is the number the
    recovery lets in at once, whatever the threads' timing: a wave exactly, not fewer by a
    slow start, not more."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.peak = 0
        self._count = threading.Condition()

    def load(self, key: Key) -> Snapshot:
        with self._count:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self._count.notify_all()
            self._count.wait_for(lambda: self.now >= RECOVERY_WAVE, timeout=0.5)
        try:
            return super().load(key)
        finally:
            with self._count:
                self.now -= 1


def test_a_recovery_loads_at_most_a_wave_of_actors_at_once() -> None:
    store = SlowLoads()
    n = 2 * RECOVERY_WAVE + 3
    for i in range(1, n + 1):
        key = Key(ACCOUNT, f"S{i:03d}USDT")
        pos = Position(
            i, key, Side.LONG, Status.ACTIVE, "sniper", 1.0, 90.0, 0.0, 0.0, qty=1.0, version=1
        )
        store.commit(Commit(key, None, pos, 0, ()))  # type: ignore[arg-type]
    with World(store=store) as w:
        keys = w.sup.recover()
        assert len(keys) == n
        assert store.peak == RECOVERY_WAVE
