"""The unwritten-commit buffer: protective transitions the store could not take yet.

Who uses it: one :class:`~actors.position_actor.PositionActor`, on its own thread only (no
lock). A protective transition (fill, stop, close) whose write fails because the store is
unavailable is performed anyway and its commit held here; every later commit of the actor
queues behind it (writes stay in order), and the buffer is written, oldest first, before the
actor's next transition and on its persist timer. Consecutive commits of one position are
folded into one write (:func:`merge`). A failed write keeps what is not yet written; the
exception is the caller's (:class:`~actors.ports.StoreUnavailable`: try again later).
"""

from __future__ import annotations

from actors.ports import Store, StoreUnavailable
from actors.state import Commit

__all__ = ["UnwrittenCommits", "count_for", "merge"]


class UnwrittenCommits:
    """Commits performed but not yet written, in the order they were decided."""

    __slots__ = ("_commits",)

    def __init__(self) -> None:
        self._commits: list[Commit] = []

    def __len__(self) -> int:
        return len(self._commits)

    def append(self, commit: Commit) -> None:
        self._commits.append(commit)

    def clear(self) -> None:
        """Forget them (a restart reloads from the store; fenced: not ours to write)."""
        self._commits.clear()

    def flush(self, store: Store) -> bool:
        """Write them all, merged. True when none is left, False when the store is still
        unavailable (those not written are kept). Raises what ``Store.commit`` raises
        otherwise (:class:`~actors.ports.StaleVersion`, :class:`~actors.ports.Fenced`, a
        defect), with the commits not yet written kept."""
        try:
            for c in merge(self._commits):
                store.commit(c)
                self._commits = self._commits[count_for(self._commits, c) :]
        except StoreUnavailable:
            return False
        self._commits.clear()
        return True


def merge(commits: list[Commit]) -> list[Commit]:
    """Fold consecutive unwritten commits of one position into one write each."""
    out: list[Commit] = []
    for c in commits:
        last = out[-1] if out else None
        if last is not None and _same_position(last, c):
            out[-1] = Commit(
                c.key,
                c.cause,
                c.position,
                last.expected_version,
                last.events + c.events,
                c.signal or last.signal,
            )
        else:
            out.append(c)
    return out


def count_for(commits: list[Commit], merged: Commit) -> int:
    """How many leading unwritten commits ``merged`` stands for."""
    n = 0
    for c in commits:
        same = _same_position(c, merged)
        if n > 0 and not same:
            break
        n += 1
        if not same:
            break
    return n


def _same_position(a: Commit, b: Commit) -> bool:
    return a.position is not None and b.position is not None and a.position.id == b.position.id
