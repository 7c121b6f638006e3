"""Versioned schema migrations, applied at start.

:func:`migrate` is called by :class:`infra.store.postgres.PostgresStore` (unless told not to)
and by tools. It holds a PostgreSQL advisory lock for its whole run, so two processes that
start at once apply each migration exactly once; every migration runs in one transaction
together with its row in ``schema_migrations`` (version, name, checksum, time), so a failed
migration leaves nothing behind. A migration already applied whose SQL changed since, or a
database whose schema is newer than this code, is refused with :class:`MigrationError`.

Migrations are SQL text in Python modules (no package data to ship). Never edit one that has
been released: add a new version.

The schema itself, one module per version with what it makes, is :mod:`infra.store.schema`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import psycopg
from psycopg.rows import TupleRow

from actors.ports import StoreError, StoreUnavailable
from actors.state import INSTALLATION_MODULUS
from infra.store.keys import MIGRATION_LOCK_NAME, advisory_key
from infra.store.retention import ensure_partitions
from infra.store.schema import v1, v2, v3, v4, v5, v6

__all__ = [
    "INSTALLATION_MODULUS",
    "MIGRATIONS",
    "Migration",
    "MigrationError",
    "applied_migrations",
    "migrate",
    "new_installation",
]

log = logging.getLogger(__name__)


class MigrationError(StoreError):
    """The schema cannot be brought to this code's version (changed or newer migration)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", v1.SQL),
    Migration(2, "pending cancels, stop-loss deadline, retryable refusals", v2.SQL),
    Migration(3, "leases with fencing epochs, installation id, installation alerts", v3.SQL),
    Migration(4, "symbol controls: pause and quarantine", v4.SQL),
    Migration(5, "journal and signals partitioned by month; signal ids apart", v5.SQL),
    Migration(6, "an order's kind: entry, stop-loss or close (no take-profit orders)", v6.SQL),
)
"""Every migration, in version order. Append only."""

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrate(
    dsn: str,
    *,
    lock_timeout: float = 60.0,
    connect_timeout: int = 10,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> list[int]:
    """Bring the database at ``dsn`` to the latest schema; return the versions applied now.

    Idempotent, and safe when several processes call it at once (an advisory lock serialises
    them; the later ones find nothing to do). Called from any thread, blocking.

    Raises :class:`StoreUnavailable` when the server cannot be reached (or the lock is not
    obtained within ``lock_timeout`` s), :class:`MigrationError` when an applied migration
    changed or the database is newer than this code, :class:`StoreError` when a migration's
    SQL fails (its transaction is rolled back: nothing of it remains).
    """
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=connect_timeout,
            application_name="position-supervisor:migrate",
        )
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"migrate: cannot connect to the database: {exc}") from exc
    key = advisory_key(MIGRATION_LOCK_NAME)
    try:
        with conn:
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false)", (f"{int(lock_timeout * 1000)}ms",)
            )
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                return _apply(conn, migrations)
            finally:
                if not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except StoreError:
        raise
    except psycopg.errors.LockNotAvailable as exc:
        raise StoreUnavailable(
            f"migrate: another process held the migration lock for more than {lock_timeout} s"
        ) from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"migrate: database unreachable: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"migrate: {exc}") from exc


def _apply(conn: psycopg.Connection[TupleRow], migrations: tuple[Migration, ...]) -> list[int]:
    conn.execute(_CREATE_TABLE)
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    applied = {int(str(v)): str(c) for v, c in rows}
    known = {m.version: m for m in migrations}
    newer = sorted(v for v in applied if v not in known)
    if newer and newer[-1] > max(known, default=0):
        raise MigrationError(
            f"database schema is at version {newer[-1]}, newer than this code "
            f"(version {max(known, default=0)}): upgrade the code"
        )
    for v, checksum in applied.items():
        if v in known and known[v].checksum != checksum:
            raise MigrationError(
                f"migration {v} ({known[v].name}) changed since it was applied: "
                "add a new migration instead of editing a released one"
            )
    done: list[int] = []
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version in applied:
            continue
        try:
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            raise StoreError(f"migration {m.version} ({m.name}) failed: {exc}") from exc
        log.info("applied schema migration %d: %s", m.version, m.name)
        done.append(m.version)
    ensure_partitions(conn)
    return done


def new_installation(dsn: str, *, connect_timeout: int = 10) -> int:
    """Draw a new installation id for the database at ``dsn`` (a copy of another database
    is the same installation until then); returns it. Position ids allocated from now on end
    in it; those allocated before count as legacy (``installation.legacy_below``). Run it
    while no supervisor uses the database. Raises :class:`StoreUnavailable` when the server
    cannot be reached, :class:`StoreError` when the schema is older than version 3."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
            with conn.transaction():
                conn.execute(v3.NEW_INSTALLATION)
            row = conn.execute("SELECT id FROM installation").fetchone()
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"new installation: database unreachable: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"new installation: {exc}") from exc
    assert row is not None
    return int(row[0])


def applied_migrations(dsn: str) -> list[tuple[int, str, str]]:
    """``(version, name, checksum)`` of every applied migration, in version order.

    Raises :class:`StoreUnavailable` when the server cannot be reached.
    """
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return []
            rows = conn.execute(
                "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
            ).fetchall()
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot read schema_migrations: {exc}") from exc
    return [(int(str(v)), str(n), str(c)) for v, n, c in rows]
