"""A frozen PostgreSQL (its processes stopped with SIGSTOP: alive, sockets open, answering
nothing) under a running store: every call gives up within its client-side bound, nothing
the store abandoned is written when the server runs again, and the same store works again
without a restart. Also the one case no client can rule out: a COMMIT sent and unanswered.

Each test freezes the private server of this process (:func:`testkit.pg.frozen` resumes it
whatever happens). Calls that may hang run on a helper thread (:class:`Bounded`), so a store
without its bound fails the test instead of hanging it with the server frozen.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest

from actors.model import Key, Status
from actors.ports import StaleVersion, StoreUnavailable
from infra.store import AccountLock, EmbeddedPostgres, PostgresStore
from testkit import pg
from testkit.waiting import poll
from tests.store.builders import KEY, advance, entry_commit, new_position

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BOUND = 2.0  # the store's default deadline
SLACK = 0.5  # scheduling on a shared 2-core machine
OTHER = Key("acc1", "ETHUSDT")


class Bounded:
    """``fn`` on a thread of its own; the test waits for it at most ``limit`` seconds."""

    def __init__(self, fn: Callable[[], object], limit: float) -> None:
        self.error: BaseException | None = None
        self.elapsed: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn,), name="bounded-call")
        self._t0 = time.monotonic()
        self._thread.start()
        self._done.wait(limit)

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.elapsed = time.monotonic() - self._t0
            self._done.set()

    @property
    def returned_in_time(self) -> bool:
        return self._done.is_set()

    def join(self) -> None:
        self._thread.join(timeout=30)


def _backend(err: BaseException | None) -> int | None:
    m = re.search(r"backend (\d+) abandoned", str(err))
    return int(m.group(1)) if m else None


def _rows(dsn: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def test_a_frozen_server_costs_each_call_its_bound_and_what_was_abandoned_is_never_written(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    server, dsn = pg_private
    store = PostgresStore(dsn, migrate_schema=False, pool_min=2, pool_max=4)
    calls: list[Bounded] = []
    try:
        pid, intent_id = store.allocate_ids(2)
        pos = new_position(pid)
        store.commit(entry_commit(pos))
        placed, c = advance(pos, status=Status.ENTRY_PLACED)
        store.commit(c)
        filled, c_fill = advance(placed, status=Status.PENDING_SL, qty=0.5, filled_at=9.0)
        intent = entry_commit(new_position(intent_id, OTHER))

        with pg.frozen(server):
            # An entry intent: refused within the bound, not after the freeze.
            first = Bounded(lambda: store.commit(intent), BOUND + SLACK)
            calls.append(first)
            assert first.returned_in_time, f"commit still blocked after {BOUND + SLACK}s"
            assert isinstance(first.error, StoreUnavailable), first.error
            assert first.elapsed is not None and first.elapsed >= BOUND * 0.9
            assert "within 2.00s" in str(first.error) and "abandoned" in str(first.error)
            assert store.degraded
            # Every other call says so too, within the bound (the outage bound now).
            for fn in (
                lambda: store.commit(c_fill),
                lambda: store.load(KEY),
                lambda: store.allocate_ids(8),
                store.open_positions,
                store.ping,  # the health probe: the full bound, also when degraded
            ):
                call = Bounded(fn, BOUND + SLACK)
                calls.append(call)
                assert call.returned_in_time, f"{fn} still blocked after {BOUND + SLACK}s"
                assert isinstance(call.error, StoreUnavailable), call.error
        for call in calls:
            call.join()

        # The abandoned sessions read the end of their stream when the server runs again and
        # end; once they are gone, whatever they could have committed would be visible.
        abandoned = {b for b in (_backend(c.error) for c in calls) if b is not None}
        assert _backend(first.error) in abandoned
        pg.wait_until(
            lambda: not abandoned & set(pg.backend_pids(dsn)),
            timeout=20,
            message="the abandoned backends to end",
        )
        # The entry intent never lands: no position, no signal record of it.
        assert _rows(dsn, "SELECT status FROM positions WHERE id = %s", intent_id) == []
        assert (
            _rows(dsn, "SELECT 1 FROM signals WHERE signal_id = %s", intent.signal.signal_id)  # type: ignore[union-attr]
            == []
        )

        # The same store works again, no restart; the fill abandoned during the freeze was not
        # written either, so writing it again is not stale.
        t0 = time.monotonic()
        pg.wait_until(lambda: _works(store), timeout=15, message="the store to recover")
        assert time.monotonic() - t0 < 5.0
        store.commit(c_fill)
        assert store.load(KEY).position == filled
        kinds = [e.event.kind for e in store.journal(KEY.account, KEY.symbol)]
        assert kinds == ["entry_intent", "step", "step"]
        store.commit(intent)  # the refused entry may be taken again later: nothing is in the way
        assert store.load(OTHER).position is not None
        assert not store.degraded
    finally:
        for call in calls:
            call.join()
        store.close()


def _works(store: PostgresStore) -> bool:
    try:
        store.ping()
    except StoreUnavailable:
        return False
    return True


# A COMMIT that does not come back within the bound: a deferred trigger holds the COMMIT of
# one position (by its signal id) on the server for longer than the store waits.
SLOW_COMMIT = """
CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.signal_id LIKE 'slow-commit%' THEN PERFORM pg_sleep(1.5); END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT ON positions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_slow_commit();
"""


def slow_commit(dsn: str) -> None:
    """Make the COMMIT of positions whose signal id starts with ``slow-commit`` take 1.5 s."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SLOW_COMMIT)


def test_a_commit_whose_COMMIT_goes_unanswered_is_reported_as_of_unknown_outcome(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    """The limit of any client: the COMMIT left, its answer did not come within the bound.
    The caller hears StoreUnavailable in time, told that the outcome is unknown; the write
    does land (so a retry is stale: the actor then reloads), which is what the actor's
    recovery resolves (tests/store/test_hang_supervisor.py)."""
    _, dsn = pg_private
    slow_commit(dsn)
    store = PostgresStore(dsn, migrate_schema=False, deadline=0.5)
    try:
        (pid,) = store.allocate_ids(1)
        pos = replace(new_position(pid), signal_id="slow-commit-1")
        c = entry_commit(pos)
        call = Bounded(lambda: store.commit(c), 0.5 + SLACK)
        call.join()
        assert call.returned_in_time and isinstance(call.error, StoreUnavailable), call.error
        assert "outcome unknown" in str(call.error)
        pg.wait_until(
            lambda: (
                _rows(dsn, "SELECT status FROM positions WHERE id = %s", pid)
                == [("pending_entry",)]
            ),
            timeout=10,
            message="the unanswered COMMIT to land",
        )
        pg.wait_until(lambda: _works(store), timeout=10, message="the store to recover")
        with pytest.raises(StaleVersion):
            store.commit(c)
    finally:
        store.close()


def test_a_statement_answered_too_close_to_the_bound_is_not_committed(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    """A statement that used more than three quarters of the bound: the COMMIT is not sent
    (its answer could not come in time), the transaction is rolled back."""
    _, dsn = pg_private
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_sleep(0.8); RETURN NEW; END $$; "
            "CREATE TRIGGER test_slow_insert BEFORE INSERT ON positions "
            "FOR EACH ROW EXECUTE FUNCTION test_slow_insert()"
        )
    store = PostgresStore(dsn, migrate_schema=False, deadline=1.0)
    try:
        (pid,) = store.allocate_ids(1)
        with pytest.raises(StoreUnavailable, match="not committed"):
            store.commit(entry_commit(new_position(pid)))
        pg.wait_until(lambda: _works(store), timeout=10, message="the store to recover")
        assert store.load(KEY).position is None
        assert _rows(dsn, "SELECT 1 FROM positions WHERE id = %s", pid) == []
    finally:
        store.close()


def test_tcp_connections_get_keepalives_and_a_user_timeout(pg_dsn: str) -> None:
    """Over TCP a dead peer must be noticed on idle pooled connections too; libpq ignores
    these on the Unix socket of the embedded server, but they are set for every connection."""
    with PostgresStore(pg_dsn, migrate_schema=False, pool_min=1, pool_max=1) as store:
        store.ping()
        with store._db.pool.connection(timeout=5) as conn:
            params = conn.info.get_parameters()
    assert params.get("keepalives_idle") == "5"
    assert params.get("tcp_user_timeout") == "10000"
    assert params.get("connect_timeout") == "2"


def test_the_account_lock_counts_a_frozen_server_as_lost_in_time_then_takes_it_again(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    """The lock's check cannot wait on a server that does not answer (over TCP the server
    may have ended the session meanwhile and another process taken the lock): past
    ``check_timeout`` the lock is counted as lost (entries stop); it is taken again once the
    server runs, and releasing it never waits on the server."""
    server, dsn = pg_private
    changes: list[bool] = []
    lock = AccountLock(
        dsn,
        "main",
        check_interval=0.2,
        check_timeout=1.0,
        on_change=changes.append,
        backoff_min=0.1,
        backoff_max=0.5,
        connect_timeout=2,
    )
    try:
        assert lock.acquire()
        with pg.frozen(server):
            poll(lambda: not lock.held, 0.2 + 1.0 + SLACK, "the lock counted as lost, frozen")
            assert changes == [False]
        # (held is set before on_change is called: wait for the call, not just the flag)
        poll(lambda: lock.held and changes == [False, True], 20, "taken again after the thaw")
        with pg.frozen(server):
            t0 = time.monotonic()
            lock.release()
            assert time.monotonic() - t0 < 1.0 + 2 + SLACK  # a check, a connect attempt
    finally:
        lock.release()
