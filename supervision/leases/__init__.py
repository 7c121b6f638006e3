"""One owner per account, fenced (I7): the lease keeper and the installation check.

:class:`Ownership` is the process's side of the rule whose database side is
:class:`infra.store.ownership.LeaseStore`. It runs one thread that, every ``renew_s``:

1. renews every lease this process holds, in one statement. A renewal that comes back sets
   the account's *validity*: ``sent_at + lease_s - fence_margin_s`` on ``time.monotonic()``,
   where ``sent_at`` is taken before the statement left (the database's expiry is later than
   ``sent_at + lease_s``: the validity ends at least ``fence_margin_s`` before the lease can
   expire, whatever the clocks of the two hosts do within that margin). A lease that did not
   come back (expired, taken over) is *lost*;
2. fences every account whose validity ran out (the database could not be reached in time)
   or whose lease was lost, and every account an actor reported (a write refused because
   the epoch is stale, :class:`~actors.ports.Fenced`): its gate closes, the supervisor stops
   its actors and drops its queued calls (:meth:`Supervisor.deactivate`), and the account
   waits for its lease again, like a standby;
3. takes free accounts while it has room (``max_accounts``): a lease is taken only when it
   is free, expired, its own, or its owner is certainly dead on this host
   (:meth:`LeaseStore.acquire`). The supervisor activates the account (recovery of its open
   positions, S5) and asks for a sync; entries open once that first sync went through and
   showed no order of another installation (:class:`InstallationGuard`);
4. records a heartbeat (what it owns, what it waits for), persists installation alarms and
   reads confirmations.

:meth:`Ownership.token` is the gate: the epoch while the account is owned and valid, else
``None``. It reads the clock each time, so it closes at the validity's end to the
microsecond even if the keeper's thread is held up (a database call is bounded by
``timeout``). The worker pools ask it immediately before each exchange call leaves, the
store before each commit: from the end of the validity on, nothing is sent and nothing is
written for the account by this process. Within its validity, an owner that lost the
database goes on protecting as before (writes retried, stops placed).

Threads: the keeper's own thread (``lease-keeper``); :meth:`token`, :meth:`fence`,
:meth:`check`, :meth:`view` and :meth:`InstallationGuard.inspect` from any thread.

The package: :class:`Ownership` (the keeper, in ``_keeper``), :class:`InstallationGuard`
(``_installation``), the roles, settings and views (``_model``), the history's partitions
made ahead by the keeper (``_partitions``), the metrics (``_metrics``).
"""

from supervision.leases._installation import InstallationGuard
from supervision.leases._keeper import Ownership
from supervision.leases._metrics import OwnershipCollector, register
from supervision.leases._model import AccountView, LeaseSettings, Role

__all__ = [
    "AccountView",
    "InstallationGuard",
    "LeaseSettings",
    "Ownership",
    "OwnershipCollector",
    "Role",
    "register",
]
