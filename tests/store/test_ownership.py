"""One owner per account (I7): the advisory lock, its refusal, its loss and re-acquisition."""

from __future__ import annotations

import threading

import psycopg
import pytest

from actors.ports import StoreUnavailable
from infra.store import AccountLock, AccountLocked, EmbeddedPostgres, account_lock_key
from testkit import pg

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Changes:
    """Records on_change calls (from the watchdog thread)."""

    def __init__(self) -> None:
        self.values: list[bool] = []
        self._lock = threading.Lock()

    def __call__(self, held: bool) -> None:
        with self._lock:
            self.values.append(held)

    def seen(self) -> list[bool]:
        with self._lock:
            return list(self.values)


def _lock_holders(dsn: str, account: str) -> list[int]:
    key = account_lock_key(account)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = %s AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (key & 0xFFFF_FFFF_FFFF_FFFF,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_a_second_owner_is_refused_with_a_clear_message(pg_dsn: str) -> None:
    first = AccountLock(pg_dsn, "main")
    try:
        assert first.acquire() is True
        assert first.held
        assert _lock_holders(pg_dsn, "main") == [first.backend_pid]
        second = AccountLock(pg_dsn, "main")
        try:
            with pytest.raises(AccountLocked) as info:
                second.acquire()
            msg = str(info.value)
            assert "account 'main' is already managed by another process" in msg
            assert first.application_name in msg
            assert "will not trade it" in msg
            assert info.value.account == "main"
            assert not second.held
        finally:
            second.release()
        # A different account is independent.
        with AccountLock(pg_dsn, "other") as other:
            assert other.held
    finally:
        first.release()
    assert not first.held
    assert _lock_holders(pg_dsn, "main") == []


def test_the_lock_is_free_again_after_release(pg_dsn: str) -> None:
    with AccountLock(pg_dsn, "main") as a:
        assert a.held
    assert not a.held
    with AccountLock(pg_dsn, "main") as b:
        assert b.held
    with pytest.raises(RuntimeError, match="released"):
        b.acquire()
    b.release()  # idempotent


def test_a_waiting_owner_gets_the_lock_when_the_first_lets_go(pg_dsn: str) -> None:
    first = AccountLock(pg_dsn, "main")
    first.acquire()
    waiter = AccountLock(pg_dsn, "main", wait=True, timeout=20, check_interval=0.05)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(waiter.acquire()), name="waiter")
    t.start()
    try:
        pg.wait_until(
            lambda: len(pg.backend_pids(pg_dsn, waiter.application_name)) > 0,
            message="the waiter to try",
        )
        assert result == []
        first.release()
        t.join(timeout=20)
        assert result == [True]
        assert waiter.held
    finally:
        t.join(timeout=20)
        first.release()
        waiter.release()


def test_a_waiting_owner_gives_up_after_its_timeout(pg_dsn: str) -> None:
    with AccountLock(pg_dsn, "main"):
        late = AccountLock(pg_dsn, "main", wait=True, timeout=0.3, check_interval=0.05)
        with pytest.raises(AccountLocked, match=r"after waiting 0\.\d s"):
            late.acquire()
        late.release()


def test_losing_the_lock_connection_flips_held_and_the_watchdog_takes_it_back(
    pg_dsn: str,
) -> None:
    changes = Changes()
    lock = AccountLock(
        pg_dsn, "main", check_interval=5.0, on_change=changes, backoff_min=0.05, backoff_max=0.2
    )
    try:
        lock.acquire()
        old_pid = lock.backend_pid
        assert old_pid is not None
        assert pg.terminate_backend(pg_dsn, old_pid)
        # Noticed at once (the socket turns readable), not after check_interval.
        pg.wait_until(lambda: False in changes.seen(), timeout=3, message="on_change(False)")
        pg.wait_until(lambda: lock.held, timeout=10, message="re-acquisition")
        # held flips before on_change(True) runs on the watchdog thread: wait for the call.
        pg.wait_until(lambda: len(changes.seen()) >= 2, timeout=3, message="on_change(True)")
        assert changes.seen() == [False, True]
        assert lock.backend_pid not in (None, old_pid)
        assert _lock_holders(pg_dsn, "main") == [lock.backend_pid]
    finally:
        lock.release()


def test_while_lost_another_process_may_take_over_and_the_watchdog_waits(pg_dsn: str) -> None:
    changes = Changes()
    lock = AccountLock(pg_dsn, "main", on_change=changes, backoff_min=0.05, backoff_max=0.1)
    usurper: AccountLock | None = None
    try:
        lock.acquire()
        pid = lock.backend_pid
        assert pid is not None
        # Someone grabs the lock the moment ours is gone.
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            pg.wait_until(lambda: not lock.held, message="loss")
            usurper = AccountLock(pg_dsn, "main", wait=True, timeout=10, check_interval=0.02)
            usurper.acquire()
        # The watchdog keeps trying but cannot take it while the usurper lives.
        pg.wait_until(lambda: lock.retries >= 3, message="failed retries")
        assert not lock.held
        usurper.release()
        pg.wait_until(lambda: lock.held, timeout=10, message="re-acquisition")
        # held flips before on_change(True) runs on the watchdog thread: wait for the call.
        pg.wait_until(lambda: len(changes.seen()) >= 2, timeout=3, message="on_change(True)")
        assert changes.seen() == [False, True]
    finally:
        lock.release()
        if usurper is not None:
            usurper.release()


def test_acquire_with_the_server_down_is_unavailable(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    server, dsn = pg_private
    server.stop()
    lock = AccountLock(dsn, "main")
    with pytest.raises(StoreUnavailable, match="ownership lock"):
        lock.acquire()
    lock.release()


def test_the_lock_survives_a_server_restart_by_reacquiring(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    server, dsn = pg_private
    changes = Changes()
    lock = AccountLock(dsn, "main", on_change=changes, backoff_min=0.05, backoff_max=0.2)
    try:
        lock.acquire()
        server.stop()
        pg.wait_until(lambda: not lock.held, timeout=5, message="loss on shutdown")
        server.start()
        pg.wait_until(lambda: lock.held, timeout=15, message="re-acquisition after restart")
        pg.wait_until(lambda: len(changes.seen()) >= 2, timeout=3, message="on_change(True)")
        assert changes.seen() == [False, True]
    finally:
        lock.release()
