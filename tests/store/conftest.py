"""Fixtures for tests against a real PostgreSQL (bodies in :mod:`testkit.pg`).

* ``pg_admin`` and ``pg_dsn``: in ``tests/conftest.py``.
* ``pg_empty_dsn``: a fresh database without any schema (migration tests).
* ``store``: a :class:`~infra.store.PostgresStore` on ``pg_dsn``, closed after the test.
* ``pg_private``: ``(server, dsn)``: a server of this process that the test may stop and
  start, and a fresh database on it; the server is running again after the test.
* ``no_new_threads`` (autouse): fails a test that leaves any thread behind, daemon or not
  (pool workers, lock watchdogs).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from infra.store import EmbeddedPostgres, PostgresStore
from testkit import pg


@pytest.fixture
def pg_empty_dsn(pg_admin: str) -> Iterator[str]:
    with pg.fresh_database(pg_admin, migrated=False) as dsn:
        yield dsn


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_dsn, migrate_schema=False)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def pg_private_server() -> Iterator[EmbeddedPostgres]:
    with pg.private_server() as server:
        yield server


@pytest.fixture
def pg_private(pg_private_server: EmbeddedPostgres) -> Iterator[tuple[EmbeddedPostgres, str]]:
    pg_private_server.start()
    with pg.fresh_database(pg_private_server.dsn) as dsn:
        try:
            yield pg_private_server, dsn
        finally:
            pg_private_server.start()


@pytest.fixture(autouse=True)
def no_new_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate() if t.ident is not None}
    yield
    left = pg.new_threads(before)
    assert not left, f"test left threads running: {[t.name for t in left]}"
