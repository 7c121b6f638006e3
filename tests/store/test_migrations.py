"""Migrations: idempotent, recorded, serialised between concurrent starters, guarded."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace

import psycopg
import pytest

from actors.model import NON_TERMINAL, CloseReason, OrderKind, OrderState, Side, Status
from actors.ports import StoreError
from actors.state import SignalOutcome
from infra.store import MIGRATIONS, Migration, MigrationError, applied_migrations, migrate
from infra.store.schema import v1, v2, v6

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(  # partitions (monthly, default) are not tables of their own
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrate_twice_applies_once(pg_empty_dsn: str) -> None:
    assert migrate(pg_empty_dsn) == [m.version for m in MIGRATIONS]
    assert migrate(pg_empty_dsn) == []
    assert _tables(pg_empty_dsn) == {
        "schema_migrations",
        "positions",
        "orders",
        "journal",
        "signals",
        "installation",
        "leases",
        "lease_epochs",
        "supervisor_processes",
        "installation_alerts",
        "symbol_controls",
        "signal_ids",
    }
    applied = applied_migrations(pg_empty_dsn)
    assert [(v, n, c) for v, n, c in applied] == [
        (m.version, m.name, m.checksum) for m in MIGRATIONS
    ]


def test_concurrent_migrations_apply_each_version_once(pg_empty_dsn: str) -> None:
    n = 6
    barrier = threading.Barrier(n)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            done = migrate(pg_empty_dsn)
            with lock:
                results.append(done)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, name=f"migrate-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(results, key=len) == [[]] * (n - 1) + [[m.version for m in MIGRATIONS]]
    assert len(applied_migrations(pg_empty_dsn)) == len(MIGRATIONS)


def test_an_edited_released_migration_is_refused(pg_empty_dsn: str) -> None:
    migrate(pg_empty_dsn)
    edited = (replace(MIGRATIONS[0], sql=MIGRATIONS[0].sql + "\n-- edited"), *MIGRATIONS[1:])
    with pytest.raises(MigrationError, match="changed since it was applied"):
        migrate(pg_empty_dsn, migrations=edited)


def test_a_newer_database_is_refused(pg_empty_dsn: str) -> None:
    newer = (*MIGRATIONS, Migration(99, "from the future", "CREATE TABLE future (x int)"))
    assert migrate(pg_empty_dsn, migrations=newer)[-1] == 99
    with pytest.raises(MigrationError, match="newer than this code"):
        migrate(pg_empty_dsn)


def test_a_failing_migration_leaves_nothing(pg_empty_dsn: str) -> None:
    migrate(pg_empty_dsn)
    n = len(MIGRATIONS) + 1
    bad = (*MIGRATIONS, Migration(n, "half", "CREATE TABLE half (x int); SELECT 1/0"))
    with pytest.raises(StoreError, match=f"migration {n}"):
        migrate(pg_empty_dsn, migrations=bad)
    assert "half" not in _tables(pg_empty_dsn)
    assert [v for v, _, _ in applied_migrations(pg_empty_dsn)] == [m.version for m in MIGRATIONS]


def test_the_schema_knows_exactly_the_python_enums() -> None:
    def in_list(values: Iterable[str]) -> str:
        return "(" + ", ".join(f"'{v}'" for v in values) + ")"

    assert f"status IN {in_list(s.value for s in Status)}" in v1.SQL
    assert f"WHERE status IN {in_list(s.value for s in NON_TERMINAL)}" in " ".join(v1.SQL.split())
    assert f"side IN {in_list(s.value for s in Side)}" in v1.SQL
    assert f"kind IN {in_list(k.value for k in OrderKind)}" in v6.SQL
    assert f"outcome IN {in_list(o.value for o in SignalOutcome)}" in v1.SQL
    flat = " ".join(v1.SQL.replace("(", "( ").split())
    latest = " ".join(v2.SQL.replace("(", "( ").split())  # the order states as of version 2
    assert "state IN ( " + ", ".join(f"'{s.value}'" for s in OrderState) + ")" in latest
    assert "close_reason IN ( " + ", ".join(f"'{r.value}'" for r in CloseReason) + ")" in flat


#: The checksum of every released migration, as databases recorded it when they applied it.
RELEASED = {
    1: "3a6e67ad2e76f1bc47d61a2c812a87c12bb675d08785754956d7ae20cfaa151a",
    2: "3315fd08b9ebbb4381c24a4aa32163f79990b54ec817b5ec7efbd1999b2f21d2",
    3: "aa213191df040e19ce3bb2ef0365a7374a6c79b3c4aed9e217e3f360d571c44d",
    4: "60f86ddfba50750a45c15f93b5477101c61e8cb0c31658a653ed44a2797a250a",
    5: "eefcce2b01c4a3be80a703d59539aed957b708c54c98eab035da89cd3dff9c9a",
    6: "e6f6b8d5637f98ab51c92e776459fdfde20b19f39db3068d43721292dbaff8b8",
}


def test_released_migrations_are_unchanged() -> None:
    """A released migration's text must not change (databases that applied it would refuse
    to start, see test_an_edited_released_migration_is_refused): a refactor of the schema
    modules, or of the SQL they share, must leave every checksum as it was released."""
    assert {m.version: m.checksum for m in MIGRATIONS if m.version in RELEASED} == RELEASED
