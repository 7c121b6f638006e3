"""Read-only queries for the operator's commands (``status``): who owns each account.

An account is owned by the process holding its advisory lock (:mod:`infra.store.ownership`).
PostgreSQL shows the holder in ``pg_locks`` (the server backend holding the lock) joined
with ``pg_stat_activity`` (that backend's ``application_name``, client address and start).
The supervisor names its lock connection ``position-supervisor:<host>:<pid>:<account>``, so
the host and pid of the owning process can be read back from it; a holder with another name
(another tool, or a name cut at 63 characters) is shown as PostgreSQL gives it.

Reads only: opens one short connection, takes no lock, changes nothing. Called by the CLI on
its main thread. Raises :class:`~actors.ports.StoreUnavailable` when the server cannot be
reached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from actors.ports import StoreUnavailable
from infra.store.keys import split_key
from infra.store.ownership import account_lock_key

__all__ = ["AccountOwner", "account_owners"]

_OWNER_SQL = (
    "SELECT l.pid, a.application_name, coalesce(a.client_addr::text, 'local'), "
    "extract(epoch FROM a.backend_start)::float8 "
    "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.classid::bigint = %s AND l.objid::bigint = %s "
    "AND l.objsubid = 1 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_APP_PREFIX = "position-supervisor:"


@dataclass(frozen=True, slots=True)
class AccountOwner:
    """Who holds an account's lock. ``owned`` False: nobody (no supervisor manages it).

    ``host``/``pid``: the owning supervisor process, when its connection name tells;
    ``backend_pid``: the PostgreSQL server process of its lock connection; ``client``: the
    connection's client address (``local`` for a Unix socket); ``since``: when that
    connection started (epoch seconds).
    """

    account: str
    owned: bool
    host: str | None = None
    pid: int | None = None
    backend_pid: int | None = None
    application: str | None = None
    client: str | None = None
    since: float | None = None


def _parse_application(name: str | None) -> tuple[str | None, int | None]:
    """``(host, pid)`` from ``position-supervisor:<host>:<pid>:<account>``."""
    if not name or not name.startswith(_APP_PREFIX):
        return None, None
    parts = name[len(_APP_PREFIX) :].split(":")
    if len(parts) < 3 or not parts[-2].isdigit():
        return None, None
    return ":".join(parts[:-2]), int(parts[-2])


def account_owners(dsn: str, accounts: Iterable[str], timeout_s: int = 5) -> list[AccountOwner]:
    """The owner of each of ``accounts`` (in the order given), read from the server."""
    out: list[AccountOwner] = []
    try:
        with psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=timeout_s,
            application_name="position-supervisor-cli",
        ) as conn:
            for account in accounts:
                classid, objid = split_key(account_lock_key(account))
                row = conn.execute(_OWNER_SQL, (classid, objid)).fetchone()
                if row is None:
                    out.append(AccountOwner(account, owned=False))
                    continue
                backend, app, client, since = row
                host, pid = _parse_application(app)
                out.append(
                    AccountOwner(
                        account,
                        owned=True,
                        host=host,
                        pid=pid,
                        backend_pid=int(backend) if backend is not None else None,
                        application=app,
                        client=client,
                        since=float(since) if since is not None else None,
                    )
                )
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot read the account locks: {exc}") from exc
    return out
