"""Position ids: one pool per supervisor, fetched from the store in blocks, taken without a
lock from many actor threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from actors.ids import IdPool
from actors.ports import StoreUnavailable
from testkit.store import InMemoryStore
from testkit.world import World, signal

pytestmark = pytest.mark.timeout(30)


class CountingStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.allocations = 0

    def allocate_ids(self, n: int) -> Sequence[int]:
        self.allocations += 1
        return super().allocate_ids(n)


def test_many_threads_get_unique_ids_from_few_round_trips() -> None:
    store = CountingStore()
    pool = IdPool(store, block=16)
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        mine = [pool() for _ in range(100)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 800 and len(set(got)) == 800
    # concurrent refills may each add a block; never one round trip per id
    assert 50 <= store.allocations <= 50 + 8


def test_a_store_outage_reaches_the_caller_and_the_pool_recovers() -> None:
    store = CountingStore()
    pool = IdPool(store, block=4)
    store.down = True
    with pytest.raises(StoreUnavailable):
        pool()
    store.down = False
    assert pool() >= 1


def test_the_first_signals_of_many_symbols_share_one_allocation() -> None:
    """Every actor used to fetch a block of its own: the first signal of each symbol waited
    for a database round trip before its intent could be written."""
    store = CountingStore()
    with World(store=store, prices={f"S{i:02d}USDT": 100.0 for i in range(20)}) as w:
        for i in range(20):
            w.tell(signal(f"S{i:02d}USDT"))
        w.settle()
        assert len(w.positions()) == 20
    assert store.allocations == 1
