"""What the lease store reads back: leases, grants, installation alerts, process heartbeats.

Frozen values, built by :class:`~infra.store.ownership.LeaseStore` from its rows
(:func:`lease_from_row`) and read on any thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Grant", "InstallationAlert", "LeaseInfo", "ProcessRow", "lease_from_row"]


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """One account's lease as the database showed it at ``now`` (its clock, epoch seconds)."""

    account: str
    epoch: int
    owner: uuid.UUID | None
    host: str | None
    pid: int | None
    process: str | None
    since: float | None
    expires_at: float | None
    now: float

    @property
    def expired(self) -> bool:
        """No live owner: released, never held, or past its expiry."""
        return self.owner is None or self.expires_at is None or self.expires_at <= self.now

    @property
    def remaining_s(self) -> float:
        """Seconds until it expires (0 when it has)."""
        if self.expired or self.expires_at is None:
            return 0.0
        return self.expires_at - self.now

    def describe(self) -> str:
        """``epoch 4, pid 123 on host-a, expires in 6.2 s`` (or why nobody owns it)."""
        who = f"pid {self.pid} on {self.host}" if self.host else "nobody"
        if self.owner is None:
            return f"epoch {self.epoch}, released (last owner {who})"
        if self.expired:
            return (
                f"epoch {self.epoch}, {who}, expired {self.now - (self.expires_at or 0):.1f} s ago"
            )
        return f"epoch {self.epoch}, {who}, expires in {self.remaining_s:.1f} s"


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease this process was granted. ``sent_at``: ``time.monotonic()`` just before the
    statement that set its expiry left (the database's ``now()`` is later, so
    ``sent_at + lease_s`` is never after the expiry the database recorded). ``how``: why it
    could be taken (``free``, ``expired``, ``owner_dead``, ``own``). ``previous``: the lease as
    read before (its owner, when it had one)."""

    account: str
    epoch: int
    sent_at: float
    how: str
    previous: LeaseInfo | None = None


@dataclass(frozen=True, slots=True)
class InstallationAlert:
    """Orders of another installation seen on an account (the first one's id and symbol)."""

    account: str
    installation: int
    client_id: str
    symbol: str
    seen_at: float
    seen_by: str
    confirmed_at: float | None = None
    confirmed_by: str | None = None

    @property
    def label(self) -> str:
        return f"{self.installation:06d}"


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """A supervisor process's last heartbeat (``supervisor_processes``)."""

    id: uuid.UUID
    host: str
    pid: int
    started_at: float
    seen_at: float
    max_accounts: int | None
    owns: tuple[str, ...]
    waits: tuple[str, ...]
    stopped_at: float | None
    now: float

    @property
    def age_s(self) -> float:
        """Seconds since its last heartbeat."""
        return max(0.0, self.now - self.seen_at)


def lease_from_row(r: Sequence[Any]) -> LeaseInfo:
    """A :class:`LeaseInfo` from a row of the lease store's lease columns."""
    return LeaseInfo(
        account=str(r[0]),
        epoch=int(r[1]),
        owner=r[2],
        host=r[3],
        pid=r[4],
        process=r[5],
        since=r[6],
        expires_at=None if r[7] is None or r[7] == float("-inf") else float(r[7]),
        now=float(r[8]),
    )
