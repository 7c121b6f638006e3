"""Advisory-lock keys: one signed 64-bit integer per prefixed name.

PostgreSQL advisory locks are scoped to the current database and keyed on a ``bigint``. A key
is the first 8 bytes of the SHA-256 of a prefixed name, so the account locks
(:mod:`infra.store.ownership`) and the migration lock (:mod:`infra.store.migrations`) cannot
collide with each other, nor in practice with locks of other applications.
"""

from __future__ import annotations

import hashlib

__all__ = ["ACCOUNT_PREFIX", "MIGRATION_LOCK_NAME", "advisory_key", "split_key"]

ACCOUNT_PREFIX = "position-supervisor/account:"
MIGRATION_LOCK_NAME = "position-supervisor/migrate"


def advisory_key(name: str) -> int:
    """The signed 64-bit advisory-lock key of ``name``."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def split_key(key: int) -> tuple[int, int]:
    """``(classid, objid)`` under which ``pg_locks`` shows a ``bigint`` advisory key."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF
