"""The timed store (:mod:`infra.store.timed`): the database's health follows the last call,
every commit is timed, and a sync observation's status changes count as discrepancies.
Pinned on the in-memory store (it was only exercised through the whole process)."""

from __future__ import annotations

import pytest

from actors.messages import SyncObservation
from actors.model import Key, Status
from actors.ports import StoreUnavailable
from actors.state import Commit, JournalEvent
from infra.store.timed import TimedStore
from testkit.store import InMemoryStore

KEY = Key("main", "BTCUSDT")


class Recorded:
    def __init__(self) -> None:
        self.commits: list[float] = []
        self.discrepancies: list[tuple[str, str]] = []

    def db_commit(self, seconds: float) -> None:
        self.commits.append(seconds)

    def sync_discrepancy(self, account: str, kind: str) -> None:
        self.discrepancies.append((account, kind))


def _sync_commit(*events: JournalEvent) -> Commit:
    cause = SyncObservation(KEY, None, (), observed_at=1.0)
    return Commit(KEY, cause, None, 0, events)


def test_health_is_down_from_a_failed_call_until_one_succeeds() -> None:
    inner = InMemoryStore()
    store = TimedStore(inner, Recorded())
    assert store.health() is None
    inner.fail_commits = 1
    with pytest.raises(StoreUnavailable):
        store.commit(_sync_commit())
    assert store.health() == "unavailable: injected: store unavailable"
    store.load(KEY)
    assert store.health() is None


def test_commits_are_timed_and_sync_status_changes_counted() -> None:
    metrics = Recorded()
    store = TimedStore(InMemoryStore(), metrics)
    changed = JournalEvent(1, "sync_closed", Status.ACTIVE, Status.CLOSED, 1.0)
    same = JournalEvent(1, "sync_seen", Status.ACTIVE, Status.ACTIVE, 1.0)
    store.commit(_sync_commit(changed, same))
    assert len(metrics.commits) == 1 and metrics.commits[0] >= 0.0
    assert metrics.discrepancies == [("main", "sync_closed")]


def test_other_attributes_pass_through() -> None:
    inner = InMemoryStore()
    assert TimedStore(inner).positions() == inner.positions()
