"""The embedded PostgreSQL for benchmarks (tests/pg.py helpers), or None with a reason."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def database() -> Iterator[tuple[str | None, str]]:
    """Yield (dsn, note): a fresh migrated database, or (None, why not)."""
    try:
        from tests import pg

        admin = pg.admin_dsn()
    except Exception as exc:
        yield None, f"PostgreSQL unavailable ({type(exc).__name__}: {exc}); InMemoryStore used"
        return
    try:
        with pg.fresh_database(admin) as dsn:
            yield dsn, "PostgresStore on the embedded server"
    finally:
        pg.shutdown()
