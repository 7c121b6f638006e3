"""The store's contract as the in-memory stores keep it (``testkit.store.InMemoryStore`` for
unit tests, ``testkit.dst.store.SimStore`` for the simulation), written once.

It is PostgreSQL's (``infra.store.PostgresStore``): the expected version is checked, at most
one non-terminal position per key exists (I1, the partial unique index), a signal id bound by
a final decision stays bound (``signals_once``): accepting it again, or refusing it finally
again, is :class:`~actors.ports.SignalSeen` and writes nothing; a refusal that allows a retry
binds nothing. Who calls: the two stores, each under its own discipline (a lock, or the
simulation's one thread). Pure over the tables they pass: dicts in insertion order.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.model import Key, Status
from actors.ports import SignalSeen, Snapshot, StaleVersion
from actors.state import Commit, Position, SignalOutcome, SignalRecord

__all__ = ["check_commit", "record_signal", "snapshot"]

#: How many final decisions of a key a load hands the actor (its memory of recent ids).
DECIDED_ON_LOAD = 256


def check_commit(
    commit: Commit,
    positions: Mapping[int, Position],
    final: Mapping[tuple[str, str], SignalRecord],
) -> None:
    """Raise what the store refuses ``commit`` with, before anything of it is written."""
    sig = commit.signal
    if (
        sig is not None
        and (sig.outcome is SignalOutcome.ACCEPTED or not sig.retry)
        and (sig.key.account, sig.signal_id) in final
    ):
        raise SignalSeen(f"signal {sig.signal_id!r} is in the signal history already")
    pos = commit.position
    if pos is None:
        return
    current = positions.get(pos.id)
    if commit.expected_version == 0:
        if current is not None:
            raise StaleVersion(f"position {pos.id} exists")
    elif current is None or current.version != commit.expected_version:
        got = None if current is None else current.version
        raise StaleVersion(f"position {pos.id}: expected v{commit.expected_version}, found v{got}")
    if not pos.status.terminal:
        for other in positions.values():
            if other.id != pos.id and other.key == pos.key and not other.status.terminal:
                raise StaleVersion(f"{pos.key} already has open position {other.id}")


def record_signal(
    sig: SignalRecord,
    signals: list[SignalRecord],
    final: dict[tuple[str, str], SignalRecord],
) -> None:
    """Append a decision to the history; a final one binds its id (checked by
    :func:`check_commit` first)."""
    k = (sig.key.account, sig.signal_id)
    if sig.retry:
        signals.append(sig)  # transient: the id stays free
    elif k not in final:
        final[k] = sig
        signals.append(sig)


def snapshot(
    key: Key,
    positions: Mapping[int, Position],
    signals: list[SignalRecord],
    *,
    paused: bool = False,
    quarantined: bool = False,
) -> Snapshot:
    """What a load of ``key`` answers: its open position (else its newest), when it last
    closed, whether it ever bought, and its recent final decisions."""
    mine = [p for p in positions.values() if p.key == key]
    open_ = [p for p in mine if not p.status.terminal]
    latest = open_[0] if open_ else (max(mine, key=lambda p: p.id) if mine else None)
    closed = [p.closed_at for p in mine if p.status is Status.CLOSED and p.closed_at]
    decided = [r for r in signals if r.key == key and not r.retry][-DECIDED_ON_LOAD:]
    return Snapshot(
        position=latest,
        last_closed_at=max(closed) if closed else None,
        bought=any(p.qty > 0 for p in mine),
        decided=tuple(decided),
        paused=paused,
        quarantined=quarantined,
    )
