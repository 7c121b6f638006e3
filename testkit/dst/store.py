"""The simulated store of the deterministic simulation, behind :class:`actors.ports.Store`.

The contracts of infra's ``PostgresStore``: a commit is all or nothing; the expected version
is checked (:class:`~actors.ports.StaleVersion`); at most one non-terminal position per key
(the partial unique index); an accepted signal's id must be new to the account's history
(:class:`~actors.ports.SignalSeen`) while a transient refusal leaves it free; the journal is
append-only. Faults: a commit that raises :class:`InjectedCrash` (at ``crash_rate``); an
*outage* (every call raises :class:`~actors.ports.StoreUnavailable` at once); a *freeze* (the
server stops answering: a call waits, the simulated clock moving on, until the client-side
bound ``bound_s`` and then raises ``StoreUnavailable``; a bound of ``None`` waits until the
freeze ends, as a client without a deadline did, issue 10 item B6).

Who calls: the simulated actors and recovery, on the simulation's one thread. Iteration is
over dicts in insertion order and lists only, so a seed replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from actors.model import Key
from actors.ports import Snapshot, StoreUnavailable
from actors.state import Commit, JournalEvent, Position, SignalRecord
from testkit.store_contract import check_commit, record_signal, snapshot

__all__ = ["InjectedCrash", "ProcessKilled", "SimStore"]


class ProcessKilled(BaseException):
    """The process dies right after a commit is written, before the actor performs its
    effects (``kill_after_commit``): no ``except Exception`` of the shell stops it, the
    simulation catches it and kills the process."""


class InjectedCrash(RuntimeError):
    """A commit that raised something the store never should (a defect's stand-in): the
    actor's crash path (restart in place, stash, retry once) is exercised."""


class SimStore:
    """The store (module docstring). ``now``/``stall``: the simulated clock and the way a
    blocked call lets simulated time pass."""

    def __init__(self, now: Callable[[], float], stall: Callable[[float], None]) -> None:
        self._now = now
        self._stall = stall
        self.positions: dict[int, Position] = {}
        self.journal: list[tuple[Key, JournalEvent]] = []
        self.signals: list[SignalRecord] = []
        self.final: dict[tuple[str, str], SignalRecord] = {}
        self.flags: dict[tuple[Key, str], bool] = {}
        self._next_id = 1
        self.down = False
        self.frozen_until: float | None = None
        self.bound_s: float | None = 2.0
        self.commits = 0
        self.crash_rate = 0.0
        self.kill_after_commit = False
        self.rng: random.Random | None = None

    # -- the port --------------------------------------------------------------------------

    def load(self, key: Key) -> Snapshot:
        self._check()
        return snapshot(
            key,
            self.positions,
            self.signals,
            paused=self.flags.get((key, "paused"), False),
            quarantined=self.flags.get((key, "quarantined"), False),
        )

    def commit(self, commit: Commit) -> None:
        self._check()
        if self.crash_rate and self.rng is not None and self.rng.random() < self.crash_rate:
            raise InjectedCrash("simulated: the commit raised")
        check_commit(commit, self.positions, self.final)
        pos = commit.position
        if pos is not None:
            self.positions[pos.id] = pos
        for ev in commit.events:
            self.journal.append((commit.key, ev))
        if commit.control is not None:
            self.flags[(commit.key, commit.control.flag)] = commit.control.value
        if commit.signal is not None:
            record_signal(commit.signal, self.signals, self.final)
        self.commits += 1
        if self.kill_after_commit:
            self.kill_after_commit = False
            raise ProcessKilled("simulated: killed after a commit, before its effects")

    def allocate_ids(self, n: int) -> Sequence[int]:
        self._check()
        first = self._next_id
        self._next_id += n
        return list(range(first, first + n))

    def open_positions(self, account: str | None = None) -> list[Position]:
        self._check()
        return [
            p
            for p in self.positions.values()
            if not p.status.terminal and (account is None or p.key.account == account)
        ]

    def recorded_signal(self, account: str, signal_id: str) -> SignalRecord | None:
        self._check()
        return self.final.get((account, signal_id))

    # -- reading (the invariants) -----------------------------------------------------------

    def open_position(self, key: Key) -> Position | None:
        for p in self.positions.values():
            if p.key == key and not p.status.terminal:
                return p
        return None

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("simulated: database down")
        until = self.frozen_until
        if until is None:
            return
        now = self._now()
        if now >= until:
            self.frozen_until = None
            return
        if self.bound_s is None:
            self._stall(until - now)  # no client-side deadline: wait out the freeze
            self.frozen_until = None
            return
        self._stall(min(self.bound_s, until - now))
        if self._now() < until:
            raise StoreUnavailable("simulated: database frozen, client deadline passed")
        self.frozen_until = None
