"""The lease keeper's vocabulary: the roles of an account, the settings, what the keeper
shows of an account (:class:`AccountView`) and the readiness rule read from those views.

Plain values and pure functions; any thread.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from infra.config import OwnershipConfig
from infra.store.ownership import LeaseInfo

#: The configuration's defaults (``[ownership]``), written once there.
_DEFAULTS = OwnershipConfig()

__all__ = [
    "FOREIGN",
    "LOST",
    "NOT_OWNER",
    "AccountView",
    "LeaseSettings",
    "Role",
    "readiness_problems",
]

#: Entry refusals while an account waits here (signals are held instead, see the
#: supervisor), when it was lost, and while another installation trades it.
NOT_OWNER = "not_owner"
LOST = "ownership_lock_lost"
FOREIGN = "foreign_installation"


class Role(enum.StrEnum):
    """What this process is for an account."""

    OWNER = "owner"  # holds the lease, entries open (unless an installation alarm)
    TAKING_OVER = "taking_over"  # holds the lease, first sync not done yet
    STANDBY = "standby"  # waits: another process owns it, or no room here
    FENCED = "fenced"  # lost it (could not renew in time, or taken over); waits again
    LEFT_OUT = "left_out"  # owned elsewhere at start and account_lock_wait = false


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """``lease_s``: a lease's length from its last renewal (database clock); ``renew_s``:
    how often the keeper renews; ``fence_margin_s``: how long before the lease can expire
    the owner stops (must exceed any clock-rate difference over ``lease_s`` and the time an
    exchange call takes to leave once allowed); ``max_accounts``: at most this many owned
    here; ``wait``: take accounts that become free later (``False``: only at start);
    ``timeout``: the bound of each database call of the keeper; ``hold_s``: how long the
    supervisor holds the signals of an account that waits for its lease."""

    lease_s: float = _DEFAULTS.lease_s
    renew_s: float = _DEFAULTS.renew_s
    fence_margin_s: float = _DEFAULTS.fence_margin_s
    max_accounts: int | None = _DEFAULTS.max_accounts
    wait: bool = True
    timeout: float = 2.0
    hold_s: float = _DEFAULTS.hold_signals_s

    def __post_init__(self) -> None:
        if not (self.renew_s > 0 and 0 < self.fence_margin_s < self.lease_s):
            raise ValueError(f"bad lease settings: {self}")
        if self.renew_s >= self.lease_s - self.fence_margin_s:
            raise ValueError(
                f"renew_s ({self.renew_s}) must be below lease_s - fence_margin_s "
                f"({self.lease_s - self.fence_margin_s}): the owner would fence itself "
                "between two renewals"
            )
        if self.max_accounts is not None and self.max_accounts < 1:
            raise ValueError(f"max_accounts must be >= 1, got {self.max_accounts}")


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account as this process sees it (readiness, metrics, ``status``).

    ``epoch`` and ``since`` are this process's when it owns the account, else the owner's
    as last read; ``owner`` describes the lease as last read from the database;
    ``valid_s``: seconds of validity left here (owner only); ``alarm``: the installation id
    of another installation trading the account (unconfirmed), if any."""

    account: str
    role: Role
    epoch: int | None
    since: float | None
    owner: LeaseInfo | None
    valid_s: float
    note: str
    alarm: str | None = None
    fenced: int = 0
    takeovers: int = 0


def readiness_problems(
    views: Sequence[AccountView], *, db_ok: bool | None, db_note: str, rounds: int
) -> str | None:
    """``None`` when this process owns accounts and has nothing fenced; else why not:
    a standby that owns nothing (and what it waits for, owned by whom), a fenced
    account, an account nobody owns that this process has no room for (said once the
    database answered and the keeper ran more than one round), leases not renewed."""
    problems = []
    fenced = [v for v in views if v.role is Role.FENCED]
    if fenced:
        problems.append("fenced: " + ", ".join(f"{v.account} ({v.note})" for v in fenced))
    if not any(v.role in (Role.OWNER, Role.TAKING_OVER) for v in views):
        waits = [
            f"{v.account} ({v.owner.describe() if v.owner else v.note})"
            for v in views
            if v.role is Role.STANDBY
        ]
        problems.append(
            "standby: owns no account" + (f"; waits for {', '.join(waits)}" if waits else "")
        )
    unowned = [
        v.account for v in views if v.role is Role.STANDBY and (v.owner is None or v.owner.expired)
    ]
    if unowned and db_ok and rounds > 1:
        problems.append("owned by no process, no room here: " + ", ".join(unowned))
    if db_ok is False:
        problems.append(f"leases not renewed: {db_note}")
    return "; ".join(problems) if problems else None
