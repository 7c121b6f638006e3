"""The lease table and its neighbours (:class:`LeaseStore`): the database side of one owner
per account (I7), for one process. See :mod:`infra.store.ownership` for the rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from actors.ports import StoreError
from actors.state import Installation
from infra.store.ownership._bounded import BoundedConnection, Conn
from infra.store.ownership._identity import ProcessIdentity, process_gone
from infra.store.ownership._records import (
    Grant,
    InstallationAlert,
    LeaseInfo,
    ProcessRow,
    lease_from_row,
)

__all__ = ["LeaseStore"]

_LEASE_COLS = (
    "account, epoch, owner, host, pid, process, extract(epoch FROM since)::float8, "
    "extract(epoch FROM expires_at)::float8, extract(epoch FROM now())::float8"
)
_TAKE = """
WITH cur AS (
    SELECT account, owner, process, expires_at FROM leases WHERE account = %(account)s
    FOR UPDATE
), ok AS (
    SELECT cur.account, CASE
        WHEN cur.owner IS NULL THEN 'free'
        WHEN cur.owner = %(me)s THEN 'own'
        WHEN cur.expires_at <= now() THEN 'expired'
        WHEN %(dead)s::text IS NOT NULL AND cur.process = %(dead)s::text THEN 'owner_dead'
    END AS how FROM cur
), upd AS (
    UPDATE leases l SET epoch = l.epoch + 1, owner = %(me)s, host = %(host)s, pid = %(pid)s,
        process = %(process)s, since = now(),
        expires_at = now() + %(lease)s * interval '1 second', renewed_at = now()
    FROM ok WHERE l.account = ok.account AND ok.how IS NOT NULL
    RETURNING l.epoch, l.expires_at, ok.how
), closed AS (
    UPDATE lease_epochs e SET released_at = least(e.expires_at, now())
    FROM upd WHERE e.account = %(account)s AND e.epoch = upd.epoch - 1 AND e.released_at IS NULL
    RETURNING 1
), hist AS (
    INSERT INTO lease_epochs (account, epoch, owner, host, pid, acquired_at, expires_at, how)
    SELECT %(account)s, upd.epoch, %(me)s, %(host)s, %(pid)s, now(), upd.expires_at, upd.how
    FROM upd RETURNING 1
)
SELECT epoch, how, (SELECT count(*) FROM closed), (SELECT count(*) FROM hist) FROM upd
"""
_RENEW = """
WITH r AS (
    UPDATE leases SET expires_at = now() + %(lease)s * interval '1 second', renewed_at = now()
    WHERE owner = %(me)s AND expires_at > now()
    AND (account, epoch) IN (SELECT * FROM unnest(%(accounts)s::text[], %(epochs)s::bigint[]))
    RETURNING account, epoch, expires_at
), h AS (
    UPDATE lease_epochs e SET expires_at = r.expires_at FROM r
    WHERE e.account = r.account AND e.epoch = r.epoch RETURNING 1
)
SELECT account, (SELECT count(*) FROM h) FROM r
"""
_RELEASE = """
WITH u AS (
    UPDATE leases SET owner = NULL, expires_at = now(), renewed_at = now()
    WHERE account = %(account)s AND owner = %(me)s AND epoch = %(epoch)s
    RETURNING account, epoch
), h AS (
    UPDATE lease_epochs e SET released_at = now(), expires_at = least(e.expires_at, now())
    FROM u WHERE e.account = u.account AND e.epoch = u.epoch RETURNING 1
)
SELECT count(*), (SELECT count(*) FROM h) FROM u
"""
_ALERT_COLS = (
    "account, installation, client_id, symbol, extract(epoch FROM seen_at)::float8, seen_by, "
    "extract(epoch FROM confirmed_at)::float8, confirmed_by"
)
_PROCESS_COLS = (
    "id, host, pid, extract(epoch FROM started_at)::float8, extract(epoch FROM seen_at)::float8, "
    "max_accounts, owns, waits, extract(epoch FROM stopped_at)::float8, "
    "extract(epoch FROM now())::float8"
)


class LeaseStore:
    """The lease table and its neighbours, for one process (its :class:`ProcessIdentity`).

    One connection of its own (a :class:`BoundedConnection`; ``application_name``: the DSN's
    with ``:lease`` appended, else ``position-supervisor:lease:<host>:<pid>``), opened on
    first use and again after a failure. Every method is bounded on the client side by
    ``timeout`` seconds (:mod:`infra.store.deadline`), connection included, and raises
    :class:`~actors.ports.StoreUnavailable` when the database does not answer within it
    (the connection is then dropped; the next call reconnects), :class:`StoreError` for
    anything else the database refuses. Thread-safe (calls are serialised); meant for the
    lease keeper's thread, the alarm path and the CLI.

    ``lease_s``: how long a lease lasts from its last renewal, on the database's clock.
    """

    def __init__(
        self,
        dsn: str,
        identity: ProcessIdentity | None = None,
        *,
        lease_s: float = 10.0,
        timeout: float = 2.0,
        application_name: str | None = None,
    ) -> None:
        if not lease_s > 0 or not timeout > 0:
            raise ValueError(f"lease_s and timeout must be > 0: {lease_s}, {timeout}")
        self.dsn = dsn
        self.identity = identity or ProcessIdentity.current()
        self.lease_s = lease_s
        self.timeout = timeout
        ident = self.identity
        given = conninfo_to_dict(dsn).get("application_name")
        self.application_name = (
            application_name
            or (
                f"{given}:lease" if given else f"position-supervisor:lease:{ident.host}:{ident.pid}"
            )
        )[:63]
        self._db = BoundedConnection(
            dsn,
            application_name=self.application_name,
            timeout=timeout,
            name=f"lease:{ident.pid}",
            closed_what="the lease store",
        )

    # -- leases

    def leases(self, accounts: Iterable[str] | None = None) -> dict[str, LeaseInfo]:
        """The leases of ``accounts`` (every lease when ``None``) that have a row."""
        wanted = None if accounts is None else list(accounts)

        def run(conn: Conn) -> dict[str, LeaseInfo]:
            sql = f"SELECT {_LEASE_COLS} FROM leases"
            params: tuple[object, ...] = ()
            if wanted is not None:
                sql += " WHERE account = ANY(%s)"
                params = (wanted,)
            rows = conn.execute(sql + " ORDER BY account", params).fetchall()
            return {str(r[0]): lease_from_row(r) for r in rows}

        return self._db.call("read leases", run)

    def acquire(self, account: str) -> Grant | LeaseInfo:
        """Take ``account``'s lease when it is free, expired, ours, or its owner is certainly
        dead (:func:`process_gone`): epoch + 1, expiry ``lease_s`` from now. Returns the
        :class:`Grant`, or the lease as it is when another live owner holds it (or took it
        first). A takeover waits for the commits in flight of the account (row locks)."""
        ident = self.identity

        def run(conn: Conn) -> Grant | LeaseInfo:
            conn.execute(
                "INSERT INTO leases (account) VALUES (%s) ON CONFLICT DO NOTHING", (account,)
            )
            row = conn.execute(
                f"SELECT {_LEASE_COLS} FROM leases WHERE account = %s", (account,)
            ).fetchone()
            assert row is not None
            info = lease_from_row(row)
            dead = info.process if info.owner not in (None, ident.id) else None
            dead = dead if not info.expired and process_gone(dead) else None
            if not (info.expired or info.owner == ident.id or dead):
                return info
            sent_at = time.monotonic()
            got = conn.execute(
                _TAKE,
                {
                    "account": account,
                    "me": ident.id,
                    "host": ident.host,
                    "pid": ident.pid,
                    "process": ident.token,
                    "lease": self.lease_s,
                    "dead": dead,
                },
            ).fetchone()
            if got is None:
                again = conn.execute(
                    f"SELECT {_LEASE_COLS} FROM leases WHERE account = %s", (account,)
                ).fetchone()
                assert again is not None
                return lease_from_row(again)
            return Grant(account, int(got[0]), sent_at, str(got[1]), info)

        return self._db.call(f"take the lease of {account!r}", run)

    def renew(self, held: Mapping[str, int]) -> tuple[float, set[str]]:
        """Extend every lease of ``held`` (``account -> epoch``) still ours, current and not
        expired to ``lease_s`` from now, in one statement. Returns ``(sent_at, renewed)``:
        ``sent_at`` is ``time.monotonic()`` just before the statement left (see
        :class:`Grant`); an account of ``held`` missing from ``renewed`` is lost (expired,
        released, or taken over: its epoch moved on)."""
        if not held:
            return time.monotonic(), set()
        accounts = list(held)
        epochs = [held[a] for a in accounts]

        def run(conn: Conn) -> tuple[float, set[str]]:
            sent_at = time.monotonic()
            rows = conn.execute(
                _RENEW,
                {
                    "lease": self.lease_s,
                    "me": self.identity.id,
                    "accounts": accounts,
                    "epochs": epochs,
                },
            ).fetchall()
            return sent_at, {str(r[0]) for r in rows}

        return self._db.call("renew leases", run)

    def release(self, account: str, epoch: int) -> bool:
        """Give ``account``'s lease up now (it must be ours at ``epoch``): another process may
        take it at once. Call it only when nothing of this process can still send an order
        for the account. True when it was ours."""

        def run(conn: Conn) -> bool:
            row = conn.execute(
                _RELEASE, {"account": account, "me": self.identity.id, "epoch": epoch}
            ).fetchone()
            return bool(row and row[0])

        return self._db.call(f"release the lease of {account!r}", run)

    def epochs(self, account: str, since: float | None = None) -> list[dict[str, Any]]:
        """The history of ``account``'s leases (``lease_epochs``), oldest first; with ``since``
        (epoch seconds) only epochs that ended after it or have not."""

        def run(conn: Conn) -> list[dict[str, Any]]:
            sql = (
                "SELECT epoch, owner, host, pid, extract(epoch FROM acquired_at)::float8, "
                "extract(epoch FROM expires_at)::float8, "
                "extract(epoch FROM released_at)::float8, how FROM lease_epochs "
                "WHERE account = %s"
            )
            params: list[object] = [account]
            if since is not None:
                sql += " AND coalesce(released_at, expires_at) >= to_timestamp(%s)"
                params.append(since)
            rows = conn.execute(sql + " ORDER BY epoch", params).fetchall()
            keys = ("epoch", "owner", "host", "pid", "acquired_at", "expires_at")
            return [
                {**dict(zip(keys, r[:6], strict=True)), "released_at": r[6], "how": r[7]}
                for r in rows
            ]

        return self._db.call("read lease history", run)

    # -- processes

    def heartbeat(
        self, owns: Sequence[str], waits: Sequence[str], max_accounts: int | None
    ) -> None:
        """Record that this process is alive, what it owns and what it waits for."""
        ident = self.identity

        def run(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO supervisor_processes (id, host, pid, max_accounts, owns, waits) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "seen_at = now(), owns = EXCLUDED.owns, waits = EXCLUDED.waits, "
                "max_accounts = EXCLUDED.max_accounts, stopped_at = NULL",
                (ident.id, ident.host, ident.pid, max_accounts, list(owns), list(waits)),
            )

        self._db.call("heartbeat", run)

    def ensure_partitions(self) -> int:
        """Make the history's missing monthly partitions (this month and the next two, see
        :func:`infra.store.retention.ensure_partitions`); returns how many were made."""
        from infra.store.retention import ensure_partitions  # noqa: PLC0415

        return self._db.call("partitions", ensure_partitions)

    def stopped(self) -> None:
        """Record that this process stopped (it owns and waits for nothing any more) and drop
        the heartbeats of processes gone for over a day."""

        def run(conn: Conn) -> None:
            conn.execute(
                "UPDATE supervisor_processes SET stopped_at = now(), seen_at = now(), "
                "owns = '{}', waits = '{}' WHERE id = %s",
                (self.identity.id,),
            )
            conn.execute(
                "DELETE FROM supervisor_processes "
                "WHERE coalesce(stopped_at, seen_at) < now() - interval '1 day'"
            )

        self._db.call("record the stop", run)

    def processes(self) -> list[ProcessRow]:
        """Every process heartbeat, newest first."""

        def run(conn: Conn) -> list[ProcessRow]:
            rows = conn.execute(
                f"SELECT {_PROCESS_COLS} FROM supervisor_processes ORDER BY seen_at DESC"
            ).fetchall()
            return [
                ProcessRow(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]), tuple(r[7]), r[8], r[9])
                for r in rows
            ]

        return self._db.call("read processes", run)

    # -- installation

    def installation(self) -> Installation:
        """This database's installation id (migration 3)."""

        def run(conn: Conn) -> Installation:
            row = conn.execute("SELECT id, legacy_below FROM installation").fetchone()
            if row is None:
                raise StoreError("the installation table is empty (migration 3 not applied?)")
            return Installation(int(row[0]), int(row[1]))

        return self._db.call("read the installation id", run)

    def record_alert(self, account: str, installation: int, client_id: str, symbol: str) -> bool:
        """Record that an order of ``installation`` was seen on ``account`` (the first one
        per installation is kept). True when this is the first time."""

        def run(conn: Conn) -> bool:
            cur = conn.execute(
                "INSERT INTO installation_alerts (account, installation, client_id, symbol, "
                "seen_by) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (account, installation, client_id[:64], symbol[:64], self.identity.describe()),
            )
            return cur.rowcount == 1

        return self._db.call("record an installation alert", run)

    def alerts(self, accounts: Iterable[str] | None = None) -> list[InstallationAlert]:
        """Installation alerts (of ``accounts``), confirmed or not, oldest first."""
        wanted = None if accounts is None else list(accounts)

        def run(conn: Conn) -> list[InstallationAlert]:
            sql = f"SELECT {_ALERT_COLS} FROM installation_alerts"
            params: tuple[object, ...] = ()
            if wanted is not None:
                sql += " WHERE account = ANY(%s)"
                params = (wanted,)
            rows = conn.execute(sql + " ORDER BY seen_at, account", params).fetchall()
            return [InstallationAlert(*r) for r in rows]

        return self._db.call("read installation alerts", run)

    def confirm(
        self, account: str, by: str, installation: int | None = None
    ) -> list[InstallationAlert]:
        """An operator confirms the unconfirmed alerts of ``account`` (of one installation,
        or all): entries may resume. Returns the alerts confirmed now."""

        def run(conn: Conn) -> list[InstallationAlert]:
            rows = conn.execute(
                "UPDATE installation_alerts SET confirmed_at = now(), confirmed_by = %s "
                "WHERE account = %s AND confirmed_at IS NULL "
                "AND (%s::integer IS NULL OR installation = %s::integer) "
                f"RETURNING {_ALERT_COLS}",
                (by[:255], account, installation, installation),
            ).fetchall()
            return [InstallationAlert(*r) for r in rows]

        return self._db.call("confirm installation alerts", run)

    # -- lifecycle

    def close(self) -> None:
        """Close the connection and the watchdog. Idempotent; later calls raise
        :class:`StoreUnavailable`."""
        self._db.close()

    def __enter__(self) -> LeaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
