"""The lease keeper (:class:`supervision.leases.Ownership`) on a real PostgreSQL: an owner that
cannot renew fences itself before its lease can expire, a standby takes over only after the
expiry, accounts spread by ``max_accounts``, entries open after the takeover's first sync, and
an installation alarm stops entries until an operator confirms.

The supervisor side is a recorder; the database side is real. Leases are short (1 s) and the
clock is the real monotonic one: waits poll conditions with deadlines.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors.messages import OrderUpdate, SyncObservation
from actors.model import ExchangeOrder, ExchangeStatus, Key
from actors.ports import StoreUnavailable
from actors.state import Installation
from infra.store.ownership import LeaseStore, ProcessIdentity
from supervision.leases import LeaseSettings, Ownership, Role
from testkit.waiting import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SETTINGS = LeaseSettings(lease_s=1.0, renew_s=0.1, fence_margin_s=0.3, timeout=0.5)
MINE = Installation(111111)


class Recorder:
    """The supervisor as the keeper sees it: records every call, with when it came."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []
        self.entries: dict[str, tuple[bool, str, bool]] = {}
        self.adoption: dict[str, bool] = {}
        self.stopped: Callable[[], bool] = lambda: True
        self._lock = threading.Lock()

    def _note(self, what: str, account: str) -> None:
        with self._lock:
            self.events.append((time.monotonic(), what, account))

    def activate(self, account: str) -> None:
        self._note("activate", account)

    def deactivate(self, account: str, reason: str) -> Callable[[], bool]:
        self._note(f"deactivate:{reason}", account)
        return lambda: self.stopped()  # noqa: PLW0108 - read when called: tests swap it

    def set_entries(self, account: str, is_open: bool, reason: str, hold: bool) -> None:
        self.entries[account] = (is_open, reason, hold)

    def set_adoption(self, account: str, allowed: bool) -> None:
        self.adoption[account] = allowed

    def request_sync(self, account: str) -> None:
        self._note("sync", account)

    def when(self, what: str, account: str) -> list[float]:
        with self._lock:
            return [t for t, w, a in self.events if w == what and a == account]


class Flaky(LeaseStore):
    """A lease store whose database can be cut off (a network partition of this process)."""

    cut = False

    def renew(self, held: Any) -> Any:
        if self.cut:
            raise StoreUnavailable("cut off (test)")
        return super().renew(held)

    def acquire(self, account: str) -> Any:
        if self.cut:
            raise StoreUnavailable("cut off (test)")
        return super().acquire(account)


@pytest.fixture
def keepers(pg_dsn: str) -> Iterator[Callable[..., tuple[Ownership, Recorder, Flaky]]]:
    made: list[tuple[Ownership, Flaky]] = []

    def make(
        name: str,
        accounts: list[str],
        settings: LeaseSettings = SETTINGS,
        installation: Installation | None = None,
    ) -> tuple[Ownership, Recorder, Flaky]:
        rec = Recorder()
        ident = ProcessIdentity(uuid.uuid4(), f"host-{name}", 50_000 + len(made), "")
        store = Flaky(pg_dsn, ident, lease_s=settings.lease_s, timeout=settings.timeout)
        own = Ownership(
            store,
            accounts,
            settings,
            activate=rec.activate,
            deactivate=rec.deactivate,
            set_entries=rec.set_entries,
            request_sync=rec.request_sync,
            set_adoption=rec.set_adoption,
            installation=installation,
        )
        made.append((own, store))
        return own, rec, store

    yield make
    for own, store in made:
        store.cut = False
        own.stop()
        store.close()


def _role(own: Ownership, account: str) -> Role:
    return next(v.role for v in own.view() if v.account == account)


def test_an_owner_cut_off_fences_itself_before_the_standby_may_take_over(
    keepers: Callable[..., tuple[Ownership, Recorder, Flaky]],
) -> None:
    a, arec, astore = keepers("a", ["acc1"])
    b, brec, _ = keepers("b", ["acc1"])
    a.start()
    b.start()
    assert a.token("acc1") == 1 and b.token("acc1") is None
    assert _role(a, "acc1") is Role.TAKING_OVER and _role(b, "acc1") is Role.STANDBY
    why = b.readiness()
    assert why is not None and "standby: owns no account; waits for acc1 (epoch 1" in why
    assert "host-a" in why
    assert a.readiness() is None
    poll(lambda: arec.when("sync", "acc1"), 5, "takeover sync requested")
    # Partition: a cannot reach the database any more, but runs on.
    valid_until = a._tokens["acc1"][1]
    astore.cut = True
    cut_at = time.monotonic()
    poll(lambda: a.token("acc1") is None, 5, "a fenced itself", interval=0.002)
    fenced_at = time.monotonic()
    assert fenced_at >= valid_until - 0.01, "fenced although still valid"
    assert fenced_at - cut_at <= SETTINGS.lease_s - SETTINGS.fence_margin_s + 0.05
    poll(lambda: arec.when("deactivate:ownership_lock_lost", "acc1"), 5, "a deactivated")
    poll(lambda: b.token("acc1") is not None, 10, "b took over", interval=0.002)
    taken_at = time.monotonic()
    assert b.token("acc1") == 2
    # b could take it only once the lease expired: a's last renewal + lease_s at the
    # earliest, i.e. at least fence_margin_s after a stopped acting.
    assert taken_at - fenced_at >= SETTINGS.fence_margin_s - 0.02
    assert taken_at - (valid_until - SETTINGS.lease_s + SETTINGS.fence_margin_s) >= SETTINGS.lease_s
    poll(lambda: brec.when("activate", "acc1"), 5, "b activated the account")
    assert _role(a, "acc1") is Role.FENCED and "lease not renewed" in a.readiness()  # type: ignore[operator]
    # The partition heals: a is a standby now (the lease is b's).
    astore.cut = False
    poll(lambda: _role(a, "acc1") is Role.FENCED and a._db_ok, 5, "a back")
    assert a.token("acc1") is None and b.token("acc1") == 2


def test_a_fence_from_an_actor_closes_the_gate_at_once_and_waits_for_the_actors(
    keepers: Callable[..., tuple[Ownership, Recorder, Flaky]],
) -> None:
    a, arec, _ = keepers("a", ["acc1"])
    a.start()
    assert a.token("acc1") == 1
    arec.stopped = lambda: False  # its actors are still stopping
    a.fence("acc1", "commit refused: epoch 1 is not current")
    assert a.token("acc1") is None  # at once, before the keeper's round
    poll(lambda: arec.when("deactivate:ownership_lock_lost", "acc1"), 5, "deactivated")
    rounds = a._rounds
    poll(lambda: a._rounds >= rounds + 3, 5, "rounds go on")
    assert a.token("acc1") is None, "taken again while its actors still ran"
    arec.stopped = lambda: True
    poll(lambda: a.token("acc1") == 2, 5, "taken again (its own lease), new epoch")
    assert [v.takeovers for v in a.view()] == [2]


def test_accounts_spread_by_max_accounts_and_a_released_one_is_taken_at_once(
    keepers: Callable[..., tuple[Ownership, Recorder, Flaky]],
) -> None:
    accounts = ["acc1", "acc2", "acc3"]
    two = LeaseSettings(lease_s=30.0, renew_s=0.1, fence_margin_s=1.0, max_accounts=2)
    a, _, _ = keepers("a", accounts, two)
    b, _, _ = keepers("b", accounts, two)
    a.start()
    b.start()
    assert a.owned() == ["acc1", "acc2"] and b.owned() == ["acc3"]
    assert b.waiting() == ["acc1", "acc2"]
    a.stop(release=lambda account: True)
    poll(lambda: len(b.owned()) == 2, 5, "b took a released account at once (30 s lease)")
    assert b.owned() == ["acc1", "acc3"]
    poll(lambda: "no room here" in b.view()[1].note, 5, "acc2 waits: no room")
    assert b.view()[1].role is Role.STANDBY


def test_wait_false_leaves_an_owned_account_out_for_good(
    keepers: Callable[..., tuple[Ownership, Recorder, Flaky]],
) -> None:
    a, _, _ = keepers("a", ["acc1"])
    once = LeaseSettings(lease_s=1.0, renew_s=0.1, fence_margin_s=0.3, timeout=0.5, wait=False)
    b, brec, _ = keepers("b", ["acc1"], once)
    a.start()
    b.start()
    assert _role(b, "acc1") is Role.LEFT_OUT
    assert brec.entries["acc1"] == (False, "not_owner", False)
    assert "already managed by another process" in b.view()[0].note
    a.stop(release=lambda account: True)
    rounds = b._rounds
    poll(lambda: b._rounds >= rounds + 3, 5, "b's rounds go on")
    assert b.owned() == []


def test_entries_open_after_the_takeovers_first_sync(
    keepers: Callable[..., tuple[Ownership, Recorder, Flaky]],
) -> None:
    a, arec, _ = keepers("a", ["acc1"])
    a.start()
    assert arec.entries["acc1"] == (False, "not_owner", True)  # held until the check
    a.synced("acc1")
    poll(lambda: arec.entries["acc1"][0], 5, "entries open")
    assert _role(a, "acc1") is Role.OWNER


def test_an_installation_alarm_stops_entries_until_an_operator_confirms(
    keepers: Callable[..., tuple[Ownership, Recorder, Flaky]],
) -> None:
    key = Key("acc1", "BTCUSDT")
    a, arec, astore = keepers("a", ["acc1"], installation=MINE)
    a.start()
    a.synced("acc1")
    poll(lambda: arec.entries["acc1"][0], 5, "entries open")
    guard = a.guard
    assert guard is not None
    guard.inspect(
        OrderUpdate(key, "ps3111111s1", ExchangeStatus.NEW, 0.0, None, 1.0)
    )  # ours: nothing
    guard.inspect(SyncObservation(key, None, (ExchangeOrder("x-1", "buy", 1.0, False),), 1.0))
    assert arec.entries["acc1"][0] and guard.check("acc1") is None
    guard.inspect(OrderUpdate(key, "ps5222222e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0))
    assert arec.entries["acc1"] == (False, "foreign_installation", False)
    assert arec.adoption["acc1"] is False
    why = guard.check("acc1")
    assert why is not None and "installation 222222 (ps5222222e1 on BTCUSDT)" in why
    assert "confirm-installation --account acc1" in why
    poll(lambda: astore.alerts(["acc1"]), 5, "alarm recorded")
    # A restarted process finds the account already carrying the other installation's mark.
    a.stop(release=lambda account: True)
    c, crec, _ = keepers("c", ["acc1"], installation=MINE)
    c.start()
    assert crec.entries["acc1"][:2] == (False, "foreign_installation")
    c.synced("acc1")
    rounds = c._rounds
    poll(lambda: c._rounds >= rounds + 2, 5, "rounds")
    assert crec.entries["acc1"][0] is False, "entries opened over an unconfirmed alarm"
    assert [x.client_id for x in astore.confirm("acc1", "ops@desk")] == ["ps5222222e1"]
    poll(lambda: crec.entries["acc1"][0], 5, "entries open after the confirmation")
    assert crec.adoption["acc1"] is True and c.guard is not None
    assert c.guard.check("acc1") is None
    # Confirmed: that installation's orders do not raise it again.
    c.guard.inspect(OrderUpdate(key, "ps6222222s1", ExchangeStatus.NEW, 0.0, None, 1.0))
    assert crec.entries["acc1"][0]


def test_a_stop_that_may_leave_calls_behind_keeps_the_lease_to_expire(
    keepers: Callable[..., tuple[Ownership, Recorder, Flaky]],
) -> None:
    long = LeaseSettings(lease_s=30.0, renew_s=0.1, fence_margin_s=1.0)
    a, _, astore = keepers("a", ["acc1"], long)
    b, _, _ = keepers("b", ["acc1"], long)
    a.start()
    b.start()
    a.stop(release=lambda account: False)
    rounds = b._rounds
    poll(lambda: b._rounds >= rounds + 3, 5, "b's rounds go on")
    assert b.owned() == [], "taken although the lease was not given up"
    row = next(r for r in astore.processes() if r.id == astore.identity.id)
    assert row.stopped_at is not None


def test_the_gate_closes_at_the_end_of_the_validity_without_waiting_for_a_round(
    pg_dsn: str,
) -> None:
    """The token reads the clock itself: once the validity is over nothing may leave, also
    while the keeper's thread is held up (here: no round is due for seconds)."""
    offset = [0.0]
    slow = LeaseSettings(lease_s=30.0, renew_s=10.0, fence_margin_s=2.0)
    rec = Recorder()
    store = LeaseStore(pg_dsn, lease_s=slow.lease_s)
    own = Ownership(
        store,
        ["acc1"],
        slow,
        activate=rec.activate,
        deactivate=rec.deactivate,
        set_entries=rec.set_entries,
        request_sync=rec.request_sync,
        clock=lambda: time.monotonic() + offset[0],
    )
    try:
        own.start()
        epoch, valid_until = own._tokens["acc1"]
        assert valid_until - time.monotonic() > 27.0  # lease - margin from the renewal
        offset[0] = valid_until - time.monotonic() - 0.5
        assert own.token("acc1") == epoch
        left = own.seconds_left("acc1")  # what the exchange adapter asks as it stamps
        assert left is not None and 0.4 < left <= 0.5
        offset[0] = valid_until - time.monotonic() + 0.001
        assert own.token("acc1") is None
        left = own.seconds_left("acc1")
        assert left is not None and left <= 0
        assert own.seconds_left("acc2") is None  # not an account it holds
        assert rec.when("deactivate:ownership_lock_lost", "acc1") == []  # no round ran yet
    finally:
        own.stop()
        store.close()


def test_the_keeper_makes_the_months_partitions_ahead_once_an_hour(
    keepers: Callable[..., tuple[Ownership, Recorder, Flaky]], pg_dsn: str
) -> None:
    """A process running for months writes into monthly partitions made ahead of time (not
    into the default one): the keeper makes missing ones on its first round, then hourly."""
    import datetime as dt

    import psycopg

    month = dt.datetime.now(dt.UTC).strftime("%Y_%m")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE journal_{month}")
    own, _, store = keepers("a", ["acc1"])
    calls: list[int] = []
    ensure = store.ensure_partitions

    def counted() -> int:
        calls.append(ensure())
        return calls[-1]

    store.ensure_partitions = counted  # type: ignore[method-assign]
    own.start()
    poll(lambda: own._rounds >= 4, 10.0, "four keeper rounds")
    assert calls == [1]  # the missing month made once; the next call is an hour away
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"journal_{month}",)
        ).fetchone() == (True,)
