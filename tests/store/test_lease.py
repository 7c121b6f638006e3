"""Leases with fencing tokens on a real PostgreSQL (I7): who may take an account, when, and
that a commit carrying a stale epoch writes nothing.

Every lease test uses its own database (``pg_dsn``); the database's clock decides expiry, so
short leases (0.3–0.6 s) are waited out by polling, never by sleeping a guessed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from actors.model import Key, Status
from actors.ports import Fenced, StoreUnavailable
from actors.state import INSTALLATION_MODULUS, Installation
from infra.store import EmbeddedPostgres, PostgresStore
from infra.store.migrations import new_installation
from infra.store.ownership import (
    Grant,
    LeaseInfo,
    LeaseStore,
    ProcessIdentity,
    process_gone,
)
from testkit import pg
from testkit.waiting import poll
from tests.store.builders import advance, entry_commit, new_position, refusal_commit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]


def _identity(name: str) -> ProcessIdentity:
    """Another process, as far as the lease table can tell (its token names no process)."""
    return ProcessIdentity(uuid.uuid4(), f"host-{name}", 40_000 + len(name), "")


@pytest.fixture
def leases(pg_dsn: str) -> Iterator[tuple[LeaseStore, LeaseStore]]:
    a = LeaseStore(pg_dsn, _identity("a"), lease_s=0.6)
    b = LeaseStore(pg_dsn, _identity("b"), lease_s=0.6)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _wait_grant(ls: LeaseStore, account: str, timeout: float = 5.0) -> tuple[Grant, float]:
    """Poll ``acquire`` until granted; returns the grant and when it came (monotonic)."""
    seen: list[Grant | LeaseInfo] = []

    def granted() -> Grant | None:
        seen[:] = [ls.acquire(account)]
        return seen[0] if isinstance(seen[0], Grant) else None

    try:
        return poll(granted, timeout, "granted", 0.02), time.monotonic()
    except AssertionError:
        last = seen[0]
        detail = last.describe() if isinstance(last, LeaseInfo) else last
        raise AssertionError(f"not granted in {timeout}s: {detail}") from None


def test_a_held_lease_is_refused_until_it_expires_then_taken_with_the_next_epoch(
    leases: tuple[LeaseStore, LeaseStore],
) -> None:
    a, b = leases
    first = a.acquire("acc1")
    assert isinstance(first, Grant) and (first.epoch, first.how) == (1, "free")
    held = b.acquire("acc1")
    assert isinstance(held, LeaseInfo) and not held.expired
    assert (held.epoch, held.owner, held.host) == (1, a.identity.id, "host-a")
    assert "epoch 1, pid" in held.describe() and "expires in" in held.describe()
    # A renewal keeps it: still refused after more than one lease length of renewals.
    until = time.monotonic() + 1.0
    last_renewal = time.monotonic()
    while time.monotonic() < until:
        last_renewal, renewed = a.renew({"acc1": 1})
        assert renewed == {"acc1"}
        assert isinstance(b.acquire("acc1"), LeaseInfo)
        threading.Event().wait(0.1)
    # Not renewed: it expires on the database's clock; the other takes it, epoch + 1.
    grant, at = _wait_grant(b, "acc1")
    assert (grant.epoch, grant.how) == (2, "expired")
    assert at - last_renewal >= 0.6 - 0.02, "taken before the lease could expire"
    assert grant.previous is not None and grant.previous.owner == a.identity.id
    # The first owner's renewal now fails: its epoch moved on.
    assert a.renew({"acc1": 1})[1] == set()
    history = a.epochs("acc1")
    assert [(h["epoch"], h["host"], h["how"]) for h in history] == [
        (1, "host-a", "free"),
        (2, "host-b", "expired"),
    ]
    assert history[0]["released_at"] is not None
    assert history[0]["released_at"] <= history[1]["acquired_at"]


def test_release_hands_over_at_once_and_own_lease_is_retaken_with_a_new_epoch(
    leases: tuple[LeaseStore, LeaseStore],
) -> None:
    a, b = leases
    a.lease_s = b.lease_s = 30.0
    g1 = a.acquire("acc1")
    assert isinstance(g1, Grant)
    assert isinstance(b.acquire("acc1"), LeaseInfo)
    assert a.release("acc1", g1.epoch) is True
    assert a.release("acc1", g1.epoch) is False  # not ours any more
    g2 = b.acquire("acc1")
    assert isinstance(g2, Grant) and (g2.epoch, g2.how) == (2, "free")
    g3 = b.acquire("acc1")  # a process that fenced itself takes its own lease back
    assert isinstance(g3, Grant) and (g3.epoch, g3.how) == (3, "own")
    assert b.renew({"acc1": 2})[1] == set() and b.renew({"acc1": 3})[1] == {"acc1"}


def test_an_owner_that_died_on_this_host_is_replaced_before_its_lease_expires(
    pg_dsn: str,
) -> None:
    """The same-host fast path: a SIGKILLed owner (its pid and start time gone) gives its
    accounts up at once; a live owner (this process) never does."""
    code = (
        "import sys; from infra.store.ownership import LeaseStore, Grant;"
        "ls = LeaseStore(sys.argv[1], lease_s=60.0);"
        "g = ls.acquire('acc1'); print('granted' if isinstance(g, Grant) else 'held', flush=True);"
        "sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, pg_dsn],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "granted"
        me = LeaseStore(pg_dsn, lease_s=60.0)
        try:
            held = me.acquire("acc1")
            assert isinstance(held, LeaseInfo) and held.pid == proc.pid
            assert held.remaining_s > 50 and not process_gone(held.process)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert process_gone(held.process)
            grant = me.acquire("acc1")
            assert isinstance(grant, Grant) and (grant.epoch, grant.how) == (2, "owner_dead")
            # This process is alive: nobody may take its lease that way.
            assert me.identity.token and not process_gone(me.identity.token)
            other = LeaseStore(pg_dsn, _identity("c"), lease_s=60.0)
            try:
                assert isinstance(other.acquire("acc1"), LeaseInfo)
            finally:
                other.close()
        finally:
            me.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stdin is not None:
            proc.stdin.close()


def test_process_gone_says_no_when_it_cannot_know() -> None:
    mine = ProcessIdentity.current().token
    assert mine and not process_gone(mine)
    boot, ns, pid, start = mine.split("|")
    assert not process_gone(f"another-boot|{ns}|{pid}|{start}")
    assert not process_gone(f"{boot}|pid:[1]|{pid}|{start}")  # another PID namespace
    assert not process_gone("") and not process_gone("garbage")
    assert process_gone(f"{boot}|{ns}|{pid}|{int(start) + 1}")  # this pid, not that process


def test_a_commit_with_a_stale_epoch_writes_nothing(pg_dsn: str) -> None:
    a = LeaseStore(pg_dsn, _identity("a"), lease_s=30.0)
    b = LeaseStore(pg_dsn, _identity("b"), lease_s=30.0)
    epochs: dict[str, int] = {}
    store = PostgresStore(pg_dsn, migrate_schema=False, epochs=epochs.get)
    plain = PostgresStore(pg_dsn, migrate_schema=False)
    try:
        pos = new_position(store.allocate_ids(1)[0])
        with pytest.raises(Fenced, match="does not hold the lease"):
            store.commit(entry_commit(pos))  # no lease here: refused before it is sent
        g1 = a.acquire(pos.key.account)
        assert isinstance(g1, Grant)
        epochs[pos.key.account] = g1.epoch
        store.commit(entry_commit(pos))
        p2, c2 = advance(pos, status=Status.ENTRY_PLACED)
        store.commit(c2)
        # Another process takes the account over (its owner released it: an expiry or a
        # dead owner is the same for the epoch).
        assert a.release(pos.key.account, g1.epoch)
        g2 = b.acquire(pos.key.account)
        assert isinstance(g2, Grant) and g2.epoch == 2
        before = plain.journal(pos.key.account, pos.key.symbol)
        p3, c3 = advance(p2, status=Status.PENDING_SL, qty=0.5)
        with pytest.raises(Fenced, match="epoch 1 is not current; the lease is at epoch 2"):
            store.commit(c3)
        other = new_position(store.allocate_ids(1)[0], Key(pos.key.account, "ETHUSDT"))
        with pytest.raises(Fenced):
            store.commit(entry_commit(other))  # an insert too
        with pytest.raises(Fenced):
            store.commit(refusal_commit(pos.key, "sig-x", 1_700_000_100.0))  # events only
        assert plain.positions() == [p2]
        assert plain.journal(pos.key.account, pos.key.symbol) == before
        assert [s.signal_id for s in plain.signals(pos.key.account)] == [pos.signal_id]
        # The new owner's epoch is current: its writes go through.
        epochs[pos.key.account] = g2.epoch
        store.commit(c3)
        assert plain.positions() == [p3]
    finally:
        store.close()
        plain.close()
        a.close()
        b.close()


def test_a_takeover_waits_for_a_commit_in_flight_and_a_renewal_does_not(
    pg_dsn: str,
) -> None:
    """The epoch check holds the lease row FOR KEY SHARE until the commit ends: a takeover
    cannot slip between a commit's check and its COMMIT; a renewal is not held up by it."""
    a = LeaseStore(pg_dsn, _identity("a"), lease_s=0.3)
    b = LeaseStore(pg_dsn, _identity("b"), lease_s=30.0, timeout=1.0)
    try:
        g = a.acquire("acc1")
        assert isinstance(g, Grant)
        with psycopg.connect(pg_dsn) as conn:  # a commit in flight: checked, not committed
            conn.execute(
                "SELECT 1 FROM leases WHERE account = 'acc1' AND epoch = %s FOR KEY SHARE",
                (g.epoch,),
            )
            assert a.renew({"acc1": g.epoch})[1] == {"acc1"}  # not blocked
            poll(lambda: a.leases(["acc1"])["acc1"].expired, 5.0, "lease expired", 0.05)
            with pytest.raises(StoreUnavailable, match="locked"):
                b.acquire("acc1")  # expired, but a commit of epoch 1 is in flight
            conn.rollback()
        taken = b.acquire("acc1")
        assert isinstance(taken, Grant) and taken.epoch == 2
    finally:
        a.close()
        b.close()


def test_renewal_against_a_frozen_database_fails_within_its_bound(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    server, dsn = pg_private
    ls = LeaseStore(dsn, lease_s=5.0, timeout=0.5)
    try:
        g = ls.acquire("acc1")
        assert isinstance(g, Grant)
        with pg.frozen(server):
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"no answer .* within 0\.50s"):
                ls.renew({"acc1": g.epoch})
            assert time.monotonic() - t0 < 1.5
        # The next call reconnects by itself.
        assert ls.renew({"acc1": g.epoch})[1] == {"acc1"}
    finally:
        ls.close()


def test_the_installation_id_ends_every_position_id(pg_dsn: str) -> None:
    ls = LeaseStore(pg_dsn)
    store = PostgresStore(pg_dsn, migrate_schema=False)
    try:
        inst = ls.installation()
        ids = store.allocate_ids(3)
        assert all(i % INSTALLATION_MODULUS == inst.id for i in ids)
        assert all(inst.owns(f"ps{i}s1") for i in ids)
        fresh = new_installation(pg_dsn)
        again = ls.installation()
        assert again.id == fresh and again.legacy_below > max(ids)
        later = store.allocate_ids(2)
        assert all(i % INSTALLATION_MODULUS == fresh for i in later)
        # The ids allocated before now count as legacy: still ours.
        assert all(again.owns(f"ps{i}s1") for i in ids)
        if fresh != inst.id:
            assert inst.foreign(f"ps{later[0]}s1") == fresh
    finally:
        store.close()
        ls.close()


def test_installation_rule_on_client_ids() -> None:
    inst = Installation(123456, legacy_below=5_000)
    assert inst.label == "123456"
    assert inst.owns("ps1123456e1") and inst.foreign("ps1123456e1") is None
    assert inst.foreign("ps2654321s3") == 654321 and not inst.owns("ps2654321s3")
    assert inst.owns("ps17s1")  # legacy: allocated before the installation had an id
    assert inst.foreign("x-123") is None and not inst.owns("x-123")  # other software
    assert inst.foreign("ps7000s1") == 7000
    with pytest.raises(ValueError):
        Installation(1_000_000)


def test_alerts_are_recorded_once_and_confirmed(pg_dsn: str) -> None:
    ls = LeaseStore(pg_dsn)
    try:
        assert ls.record_alert("acc1", 654321, "ps1654321s1", "BTCUSDT") is True
        assert ls.record_alert("acc1", 654321, "ps2654321s1", "ETHUSDT") is False
        assert ls.record_alert("acc2", 111111, "ps1111111e1", "BTCUSDT") is True
        open_ = [a for a in ls.alerts(["acc1"]) if a.confirmed_at is None]
        assert [(a.label, a.client_id, a.symbol) for a in open_] == [
            ("654321", "ps1654321s1", "BTCUSDT")
        ]
        done = ls.confirm("acc1", "ops@desk")
        assert [a.confirmed_by for a in done] == ["ops@desk"]
        assert ls.confirm("acc1", "ops@desk") == []
        assert {(a.account, a.confirmed_at is None) for a in ls.alerts()} == {
            ("acc1", False),
            ("acc2", True),
        }
    finally:
        ls.close()


def test_heartbeats_say_what_each_process_owns_and_waits_for(pg_dsn: str) -> None:
    a = LeaseStore(pg_dsn, _identity("a"))
    try:
        a.heartbeat(["acc1"], ["acc2"], 2)
        row = next(r for r in a.processes() if r.id == a.identity.id)
        assert (row.host, row.owns, row.waits, row.max_accounts) == (
            "host-a",
            ("acc1",),
            ("acc2",),
            2,
        )
        assert row.stopped_at is None and row.age_s < 5
        a.stopped()
        row = next(r for r in a.processes() if r.id == a.identity.id)
        assert row.stopped_at is not None and row.owns == () and row.waits == ()
    finally:
        a.close()
