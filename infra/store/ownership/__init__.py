"""One owner per account (I7): leases with fencing tokens in PostgreSQL.

:class:`LeaseStore` is the database side of the rule the supervisor's lease keeper applies
(:mod:`supervision.leases`): every account has one row in ``leases`` (migration 3) holding
its *epoch* (the fencing token, +1 at every takeover), its owner (a process id drawn at start,
with host, pid and a process token) and ``expires_at`` on the database's clock. The owner
renews its leases every few seconds (:meth:`LeaseStore.renew`); another process takes an
account (:meth:`LeaseStore.acquire`) only when its lease is free (released, or never held),
expired, its own, or held by a process that is certainly dead (same kernel boot and PID
namespace, and no process with that pid and start time: the *same-host fast path*, see
:func:`process_gone`). Every commit of the account's state carries the epoch and the
database refuses a stale one (:mod:`infra.store.commit_sql`); the takeover locks the lease
row ``FOR UPDATE`` first, so it waits for commits in flight (which hold it ``FOR KEY SHARE``)
and every commit that follows it sees the new epoch. Times are the database's (``now()``):
the hosts' clocks never decide who owns an account.

``lease_epochs`` keeps every epoch granted (owner, acquired, last expiry, release): who owned
an account when. ``supervisor_processes`` holds each process's heartbeat (what it owns and
waits for), ``installation_alerts`` the orders of another installation seen on an account.

:class:`AccountLock` (a session advisory lock per account) was the rule before the leases;
the app no longer takes it. It remains for tools that want a lock bound to a session.

The package's parts: ``_lease_store`` (:class:`LeaseStore`), ``_bounded`` (its one bounded
connection), ``_records`` (the values it returns), ``_identity`` (who a process is, whether
it is gone), ``_account_lock`` (:class:`AccountLock`). Import from the package.
"""

from infra.store.ownership._account_lock import AccountLock, AccountLocked, account_lock_key
from infra.store.ownership._identity import ProcessIdentity, process_gone
from infra.store.ownership._lease_store import LeaseStore
from infra.store.ownership._records import Grant, InstallationAlert, LeaseInfo, ProcessRow

__all__ = [
    "AccountLock",
    "AccountLocked",
    "Grant",
    "InstallationAlert",
    "LeaseInfo",
    "LeaseStore",
    "ProcessIdentity",
    "ProcessRow",
    "account_lock_key",
    "process_gone",
]
