"""Many actor threads share one store; two stores (two processes) race for one symbol."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from actors.model import Key, Status
from actors.ports import StaleVersion
from infra.store import PostgresStore
from tests.store.builders import advance, entry_commit, new_position, refusal_commit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _run_threads(n: int, target: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"actor-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_many_threads_commit_to_different_keys_at_once(pg_dsn: str) -> None:
    n_keys, rounds = 24, 5
    with PostgresStore(pg_dsn, migrate_schema=False, pool_max=6) as store:

        def life(i: int) -> None:
            key = Key("acc", f"SYM{i}USDT")
            for r in range(rounds):
                (pid,) = store.allocate_ids(1)
                pos = new_position(pid, key)
                store.commit(entry_commit(pos))
                pos, c = advance(pos, status=Status.ENTRY_PLACED)
                store.commit(c)
                pos, c = advance(pos, status=Status.ACTIVE, qty=0.5, filled_at=2.0)
                store.commit(c)
                store.commit(refusal_commit(key, f"dup-{i}-{r}", 3.0))
                pos, c = advance(pos, status=Status.CLOSED, closed_at=100.0 + r)
                store.commit(c)
                assert store.load(key).position == pos

        assert _run_threads(n_keys, life) == []
        everything = store.positions()
        assert len(everything) == n_keys * rounds
        assert len({p.id for p in everything}) == n_keys * rounds
        assert all(p.status is Status.CLOSED and p.version == 4 for p in everything)
        for i in range(n_keys):
            key = Key("acc", f"SYM{i}USDT")
            snap = store.load(key)
            assert snap.last_closed_at == 100.0 + rounds - 1
            assert len(snap.decided) == 2 * rounds
            assert len(store.journal(key.account, key.symbol)) == 5 * rounds
        assert store.open_positions() == []


def test_two_stores_racing_to_open_one_symbol_make_one_position(pg_dsn: str) -> None:
    key = Key("acc", "BTCUSDT")
    s1 = PostgresStore(pg_dsn, migrate_schema=False, pool_max=4)
    s2 = PostgresStore(pg_dsn, migrate_schema=False, pool_max=4)
    won: list[int] = []
    stale: list[str] = []
    lock = threading.Lock()
    try:

        def open_one(i: int) -> None:
            store = s1 if i % 2 else s2
            (pid,) = store.allocate_ids(1)
            try:
                store.commit(entry_commit(new_position(pid, key)))
            except StaleVersion as exc:
                with lock:
                    stale.append(str(exc))
            else:
                with lock:
                    won.append(pid)

        assert _run_threads(16, open_one) == []
        assert len(won) == 1
        assert len(stale) == 15
        assert all("already has an open position" in m for m in stale)
        assert [p.id for p in s1.open_positions()] == won
        assert [r.position_id for r in s2.signals()] == won
    finally:
        s1.close()
        s2.close()


def test_two_writers_of_one_position_one_wins_per_version(pg_dsn: str) -> None:
    key = Key("acc", "ETHUSDT")
    with PostgresStore(pg_dsn, migrate_schema=False, pool_max=8) as store:
        (pid,) = store.allocate_ids(1)
        pos = new_position(pid, key)
        store.commit(entry_commit(pos))
        wins: list[int] = []
        lock = threading.Lock()

        def write(i: int) -> None:
            _, c = advance(pos, status=Status.ENTRY_PLACED, kind=f"writer-{i}")
            try:
                store.commit(c)
            except StaleVersion:
                return
            with lock:
                wins.append(i)

        assert _run_threads(8, write) == []
        assert len(wins) == 1
        kinds = [e.event.kind for e in store.journal(key.account, key.symbol)]
        assert kinds == ["entry_intent", f"writer-{wins[0]}"]


def test_allocated_ids_are_unique_across_threads_and_stores(pg_dsn: str) -> None:
    stores = [PostgresStore(pg_dsn, migrate_schema=False, pool_max=4) for _ in range(2)]
    got: list[int] = []
    lock = threading.Lock()
    try:

        def take(i: int) -> None:
            mine: list[int] = []
            for _ in range(25):
                mine.extend(stores[i % 2].allocate_ids(8))
            with lock:
                got.extend(mine)

        assert _run_threads(12, take) == []
    finally:
        for s in stores:
            s.close()
    assert len(got) == 12 * 25 * 8
    assert len(set(got)) == len(got)
