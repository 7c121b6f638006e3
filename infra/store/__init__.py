"""PostgreSQL persistence: the :class:`~actors.ports.Store` implementation, its migrations,
the embedded server for demos and tests, and the per-account ownership lock (I7).

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
