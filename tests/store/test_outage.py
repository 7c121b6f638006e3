"""The database goes away under a running store and comes back: StoreUnavailable, then the
same store object works again, and nothing committed before the outage is lost."""

from __future__ import annotations

import time

import pytest

from actors.model import Status
from actors.ports import StoreUnavailable
from infra.store import EmbeddedPostgres, PostgresStore
from testkit import pg
from tests.store.builders import KEY, advance, entry_commit, new_position, refusal_commit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _timed(fn: object) -> tuple[float, BaseException | None]:
    assert callable(fn)
    t0 = time.monotonic()
    try:
        fn()
    except StoreUnavailable as exc:
        return time.monotonic() - t0, exc
    return time.monotonic() - t0, None


def test_store_unavailable_while_the_server_is_down_and_back_after(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    server, dsn = pg_private
    store = PostgresStore(dsn, migrate_schema=False, pool_min=2, pool_max=4, timeout=1.0)
    try:
        (pid,) = store.allocate_ids(1)
        pos = new_position(pid)
        store.commit(entry_commit(pos))
        placed, c = advance(pos, status=Status.ENTRY_PLACED)
        store.commit(c)

        server.stop(mode="fast")
        filled, c_fill = advance(placed, status=Status.PENDING_SL, qty=0.5, filled_at=9.0)
        elapsed, err = _timed(lambda: store.commit(c_fill))
        assert isinstance(err, StoreUnavailable), err
        assert elapsed < 3.0
        assert store.degraded
        # Every call says so, and quickly once the outage is known.
        for call in (
            lambda: store.load(KEY),
            lambda: store.allocate_ids(8),
            store.open_positions,
            lambda: store.commit(c_fill),
        ):
            elapsed, err = _timed(call)
            assert isinstance(err, StoreUnavailable), err
            assert elapsed < 1.0

        server.start()
        t0 = time.monotonic()
        pg.wait_until(lambda: _commits(store, c_fill), timeout=15, message="the store to recover")
        recovery = time.monotonic() - t0
        assert recovery < 5.0
        assert not store.degraded
        # Nothing committed before the outage was lost, and the retried write landed once.
        snap = store.load(KEY)
        assert snap.position == filled
        kinds = [e.event.kind for e in store.journal(KEY.account, KEY.symbol)]
        assert kinds == ["entry_intent", "step", "step"]
        store.commit(refusal_commit(KEY, "after", 20.0))
    finally:
        store.close()


def _commits(store: PostgresStore, c: object) -> bool:
    from actors.state import Commit

    assert isinstance(c, Commit)
    try:
        store.commit(c)
    except StoreUnavailable:
        return False
    return True


def test_a_store_started_while_the_server_is_down_works_once_it_is_up(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    server, dsn = pg_private
    server.stop()
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        PostgresStore(dsn)  # migrations need the server
    store = PostgresStore(dsn, migrate_schema=False, timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            store.load(KEY)
        server.start()
        pg.wait_until(lambda: _loads(store), timeout=15, message="the store to connect")
    finally:
        store.close()


def _loads(store: PostgresStore) -> bool:
    try:
        store.load(KEY)
    except StoreUnavailable:
        return False
    return True


def test_a_terminated_pooled_connection_costs_no_failure(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    _, dsn = pg_private
    with PostgresStore(dsn, migrate_schema=False, pool_min=1, pool_max=2) as store:
        store.ping()
        pids = pg.backend_pids(dsn, "position-supervisor")
        assert pids
        for pid in pids:
            assert pg.terminate_backend(dsn, pid)
        pg.wait_until(lambda: not set(pids) & set(pg.backend_pids(dsn)), message="backends gone")
        store.ping()  # the dead idle connection is noticed locally and replaced
        assert store.load(KEY).position is None


def test_connections_on_high_descriptors_are_not_mistaken_for_dead(pg_dsn: str) -> None:
    """select() cannot watch descriptors >= 1024; the health check must not depend on it."""
    import os
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"RLIMIT_NOFILE {soft} too low to open a descriptor above 1024")
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with PostgresStore(pg_dsn, migrate_schema=False, pool_min=1, pool_max=1) as store:
            store.ping()
            first = pg.backend_pids(pg_dsn, "position-supervisor")
            for _ in range(3):
                store.ping()
            assert pg.backend_pids(pg_dsn, "position-supervisor") == first  # none discarded
    finally:
        for fd in fillers:
            os.close(fd)
