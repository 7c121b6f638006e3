"""PostgreSQL persistence: the :class:`~actors.ports.Store` implementation, its migrations,
the embedded server for demos and tests, and the per-account ownership (I7).

The modules, one job each:

* ``postgres``: :class:`PostgresStore`, the Store port (load, commit, ids, open positions);
  ``connections``: its pool, bounds, health and the translation of driver errors;
  ``commit_sql``: the one statement that writes a commit, and its values;
  ``commit_errors``: why a commit was refused, as the port's exceptions;
  ``reads``: the read queries (history on the store's pool; ownership for ``status``);
  ``deadline``: the client-side watchdog that bounds every call.
* ``codec``: the value types as rows and as JSON.
* ``migrations``: applying the schema; ``schema``: its SQL, one module per version;
  ``retention``: monthly partitions and the archive.
* ``ownership``: leases with fencing epochs (:class:`~infra.store.ownership.LeaseStore`) and
  the account lock; ``keys``: the advisory-lock keys.
* ``embedded``: a private PostgreSQL server for demos and tests.

Imports ``actors`` (value types and ports), psycopg, psycopg-pool and pgserver; nothing from
``supervision``.
"""

from infra.store.codec import CodecError, decode_message, encode_message
from infra.store.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    resolve_dsn,
    shutdown_embedded,
)
from infra.store.migrations import (
    MIGRATIONS,
    Migration,
    MigrationError,
    applied_migrations,
    migrate,
)
from infra.store.ownership import AccountLock, AccountLocked, account_lock_key
from infra.store.postgres import JournalEntry, PostgresStore, StoreRejected, SymbolControl

__all__ = [
    "MIGRATIONS",
    "AccountLock",
    "AccountLocked",
    "CodecError",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "JournalEntry",
    "Migration",
    "MigrationError",
    "PostgresStore",
    "StoreRejected",
    "SymbolControl",
    "account_lock_key",
    "applied_migrations",
    "decode_message",
    "encode_message",
    "migrate",
    "resolve_dsn",
    "shutdown_embedded",
]
