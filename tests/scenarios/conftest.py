"""The embedded PostgreSQL for the live scenarios (``test_live.py``): one server for the
session, a fresh migrated database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit import pg


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """DSN of the test server's maintenance database; stopped at the end of the session."""
    yield pg.admin_dsn()
    pg.shutdown()


@pytest.fixture
def pg_dsn(pg_admin: str) -> Iterator[str]:
    with pg.fresh_database(pg_admin) as dsn:
        yield dsn
