"""An in-memory :class:`actors.ports.Store` for unit tests of actors only.

It keeps the same contract as the PostgreSQL store: one commit is all or nothing, the expected
version is checked, and at most one non-terminal position per key exists (I1, the partial
unique index); an accepted signal's id must be new to the account's signal history
(``SignalSeen``); refusals that allow a retry leave the id free. Knobs: ``down`` (every
call raises StoreUnavailable), ``fail_commits`` (the
next N commits raise StoreUnavailable), ``crash_when`` (a predicate on the commit: raise
RuntimeError, i.e. crash injection).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from actors.model import Key
from actors.ports import Snapshot, StoreUnavailable
from actors.state import Commit, JournalEvent, Position, SignalRecord
from testkit.store_contract import check_commit, record_signal, snapshot

__all__ = ["InMemoryStore"]


@dataclass
class _Tables:
    positions: dict[int, Position] = field(default_factory=dict)
    journal: list[tuple[Key, JournalEvent, str]] = field(default_factory=list)
    signals: list[SignalRecord] = field(default_factory=list)
    final: dict[tuple[str, str], SignalRecord] = field(default_factory=dict)


class InMemoryStore:
    def __init__(self) -> None:
        self._t = _Tables()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.down = False
        self.fail_commits = 0
        self.crash_when: Callable[[Commit], bool] | None = None
        self.commits = 0

    # -- port

    def load(self, key: Key) -> Snapshot:
        with self._lock:
            self._check()
            return snapshot(key, self._t.positions, self._t.signals)

    def commit(self, commit: Commit) -> None:
        with self._lock:
            self._check()
            if self.fail_commits > 0:
                self.fail_commits -= 1
                raise StoreUnavailable("injected: store unavailable")
            if self.crash_when is not None and self.crash_when(commit):
                raise RuntimeError("injected crash in commit")
            check_commit(commit, self._t.positions, self._t.final)
            pos = commit.position
            if pos is not None:
                self._t.positions[pos.id] = pos
            for ev in commit.events:
                self._t.journal.append((commit.key, ev, type(commit.cause).__name__))
            if commit.signal is not None:
                record_signal(commit.signal, self._t.signals, self._t.final)
            self.commits += 1

    def allocate_ids(self, n: int) -> Sequence[int]:
        with self._lock:
            self._check()
            return [next(self._ids) for _ in range(n)]

    def open_positions(self, account: str | None = None) -> list[Position]:
        with self._lock:
            self._check()
            return [
                p
                for p in self._t.positions.values()
                if not p.status.terminal and (account is None or p.key.account == account)
            ]

    def recorded_signal(self, account: str, signal_id: str) -> SignalRecord | None:
        with self._lock:
            self._check()
            return self._t.final.get((account, signal_id))

    # -- inspection for tests

    def positions(self, key: Key | None = None) -> list[Position]:
        with self._lock:
            return sorted(
                (p for p in self._t.positions.values() if key is None or p.key == key),
                key=lambda p: p.id,
            )

    def signals(self, key: Key | None = None) -> list[SignalRecord]:
        with self._lock:
            return [r for r in self._t.signals if key is None or r.key == key]

    def journal(self, key: Key | None = None) -> list[JournalEvent]:
        with self._lock:
            return [ev for k, ev, _ in self._t.journal if key is None or k == key]

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("injected: database down")
