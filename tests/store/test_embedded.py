"""The embedded server wrapper: DSN resolution, stop and start, shared handles."""

from __future__ import annotations

import psycopg
import pytest

from infra.store import EmbeddedPostgres, resolve_dsn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_a_given_dsn_wins() -> None:
    assert resolve_dsn("postgresql://u@db.example/x", "/nonexistent") == (
        "postgresql://u@db.example/x"
    )


def _alive(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def test_stop_and_start_on_the_same_folder_keep_the_dsn(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    server, dsn = pg_private
    before = server.dsn
    assert server.running and _alive(dsn)
    assert len(before) < 200 and str(server.data_dir) in before
    server.stop()
    assert not server.running and not _alive(dsn)
    server.stop()  # no-op
    assert server.start() == before
    assert server.running and _alive(dsn)
    assert server.start() == before  # idempotent


def test_a_second_handle_in_the_process_does_not_stop_the_first(
    pg_private: tuple[EmbeddedPostgres, str],
) -> None:
    server, dsn = pg_private
    other = EmbeddedPostgres(server.data_dir, cleanup="delete")
    assert other.start() == server.dsn
    assert other.dsn_for("abc").endswith("/abc?host=" + str(server.data_dir))
    other.close()
    other.close()
    assert server.running and _alive(dsn)
    with pytest.raises(RuntimeError, match="not started"):
        _ = other.dsn
