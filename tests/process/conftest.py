"""Fixtures of the process tests: the shared test PostgreSQL (see :mod:`testkit.pg`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit import pg


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """DSN of the test server's maintenance database; stopped at the end of the session."""
    yield pg.admin_dsn()
    pg.shutdown()
