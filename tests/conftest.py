"""Suite-wide guards and fixtures: logging on, no actor or thread left behind by any test,
and the test PostgreSQL (bodies in :mod:`testkit.pg`):

* ``pg_admin`` (session): DSN of the server's maintenance database; the embedded server
  (``.data/pgtest``) is started once per session (per xdist worker) on first use unless
  ``PS_TEST_DSN`` names a server, and stopped at the end of the session.
* ``pg_dsn``: a fresh database with the schema, dropped after the test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pykka
import pytest

from testkit import pg

# The kill modules' shared assertions (``assert_whole``) report their differences as a test's own.
pytest.register_assert_rewrite("tests.unit.kills")

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

_BACKGROUND = ("pydevd", "pytest_timeout", "ThreadPoolExecutor", "asyncio")


def _ours(t: threading.Thread) -> bool:
    return t.is_alive() and t is not threading.main_thread() and not t.daemon


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """DSN of the test server's maintenance database; stopped at the end of the session."""
    yield pg.admin_dsn()
    pg.shutdown()


@pytest.fixture
def pg_dsn(pg_admin: str) -> Iterator[str]:
    """A fresh migrated database on the test server, dropped after the test."""
    with pg.fresh_database(pg_admin) as dsn:
        yield dsn


@pytest.fixture(autouse=True)
def no_leftover_actors_or_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    leftover_actors = pykka.ActorRegistry.get_all()
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    deadline = time.monotonic() + 5
    while True:
        extra = [t for t in threading.enumerate() if t.ident not in before and _ours(t)]
        if not extra or time.monotonic() > deadline:
            break
        extra[0].join(timeout=max(0.0, deadline - time.monotonic()))
    assert not leftover_actors, f"test left actors running: {leftover_actors[:5]}"
    assert not extra, f"test left threads running: {[t.name for t in extra][:10]}"
