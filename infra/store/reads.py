"""Read-only queries for the operator's commands (``status``): who owns each account.

An account is owned by the process holding its lease (:mod:`infra.store.ownership`, I7): the
``leases`` row names the owning process (host, pid), the lease epoch, since when this epoch
runs and when it expires (the database's clock). The owner's lease connection is found in
``pg_stat_activity`` by its name (``position-supervisor:lease:<host>:<pid>``; a process whose
DSN names an ``application_name`` uses ``<that name>:lease``, and its backend is then not
shown). The processes waiting for the account come from their heartbeats
(``supervisor_processes``); the installation id and its alarms from ``installation`` and
``installation_alerts``.

Reads only: opens one short connection, takes no lock, changes nothing. Called by the CLI on
its main thread. Raises :class:`~actors.ports.StoreUnavailable` when the server cannot be
reached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

from actors.ports import StoreUnavailable

__all__ = ["AccountOwner", "InstallationView", "account_owners", "installation_view"]

#: A process whose heartbeat is older than this is not listed as waiting.
STALE_PROCESS_S = 60.0

_OWNER_SQL = (
    "SELECT l.owner IS NOT NULL AND l.expires_at > now(), l.host, l.pid, l.epoch, "
    "extract(epoch FROM l.since)::float8, "
    "extract(epoch FROM l.expires_at - now())::float8, "
    "(SELECT a.pid FROM pg_stat_activity a "
    " WHERE a.application_name = 'position-supervisor:lease:' || l.host || ':' || l.pid "
    " AND a.datname = current_database() LIMIT 1), "
    "(SELECT coalesce(a.client_addr::text, 'local') FROM pg_stat_activity a "
    " WHERE a.application_name = 'position-supervisor:lease:' || l.host || ':' || l.pid "
    " AND a.datname = current_database() LIMIT 1), "
    "(SELECT array_agg('pid ' || p.pid || ' on ' || p.host ORDER BY p.started_at) "
    " FROM supervisor_processes p WHERE l.account = ANY(p.waits) AND p.stopped_at IS NULL "
    " AND p.seen_at > now() - make_interval(secs => %s)) "
    "FROM leases l WHERE l.account = %s"
)


@dataclass(frozen=True, slots=True)
class AccountOwner:
    """Who holds an account's lease. ``owned`` False: nobody now (never taken, given up, or
    expired: no supervisor manages it).

    ``host``/``pid``: the owning supervisor process (the last one, when not owned);
    ``epoch``: the lease's fencing token; ``since``: when that epoch began (epoch seconds);
    ``expires_in``: seconds until the lease expires (negative: expired that long ago);
    ``backend_pid``/``client``: the PostgreSQL backend and client address of the owner's
    lease connection, when it can be found; ``waiting``: the processes waiting for it.
    """

    account: str
    owned: bool
    host: str | None = None
    pid: int | None = None
    backend_pid: int | None = None
    application: str | None = None
    client: str | None = None
    since: float | None = None
    epoch: int | None = None
    expires_in: float | None = None
    waiting: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstallationView:
    """This database's installation id and the alarms of other installations seen on its
    accounts that no operator confirmed: ``(account, installation, client id, symbol)``."""

    id: int
    alarms: tuple[tuple[str, int, str, str], ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"{self.id:06d}"


def _connect(dsn: str, timeout_s: int) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=timeout_s,
        application_name="position-supervisor-cli",
    )


def account_owners(dsn: str, accounts: Iterable[str], timeout_s: int = 5) -> list[AccountOwner]:
    """The owner of each of ``accounts`` (in the order given), read from the server."""
    out: list[AccountOwner] = []
    try:
        with _connect(dsn, timeout_s) as conn:
            for account in accounts:
                row = conn.execute(_OWNER_SQL, (STALE_PROCESS_S, account)).fetchone()
                if row is None:
                    out.append(AccountOwner(account, owned=False))
                    continue
                owned, host, pid, epoch, since, left, backend, client, waiting = row
                out.append(
                    AccountOwner(
                        account,
                        owned=bool(owned),
                        host=str(host) if host is not None else None,
                        pid=int(str(pid)) if pid is not None else None,
                        backend_pid=int(str(backend)) if backend is not None else None,
                        application=(f"position-supervisor:lease:{host}:{pid}" if host else None),
                        client=str(client) if client is not None else None,
                        since=float(str(since)) if since is not None else None,
                        epoch=int(str(epoch)),
                        expires_in=float(str(left)) if left is not None else None,
                        waiting=tuple(str(w) for w in waiting or ()),  # type: ignore[attr-defined]
                    )
                )
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot read the account leases: {exc}") from exc
    return out


def installation_view(dsn: str, accounts: Iterable[str], timeout_s: int = 5) -> InstallationView:
    """The installation id and the unconfirmed alarms of ``accounts``."""
    try:
        with _connect(dsn, timeout_s) as conn:
            row = conn.execute("SELECT id FROM installation").fetchone()
            alarms = conn.execute(
                "SELECT account, installation, client_id, symbol FROM installation_alerts "
                "WHERE confirmed_at IS NULL AND account = ANY(%s) ORDER BY seen_at, account",
                (list(accounts),),
            ).fetchall()
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot read the installation: {exc}") from exc
    if row is None:
        raise StoreUnavailable("the installation table is empty (migration 3 not applied?)")
    return InstallationView(
        int(str(row[0])),
        tuple((str(a), int(str(i)), str(c), str(s)) for a, i, c, s in alarms),
    )
