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
from infra.store.migrations import _V1, _V2

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

    assert f"status IN {in_list(s.value for s in Status)}" in _V1
    assert f"WHERE status IN {in_list(s.value for s in NON_TERMINAL)}" in " ".join(_V1.split())
    assert f"side IN {in_list(s.value for s in Side)}" in _V1
    assert f"kind IN {in_list(k.value for k in OrderKind)}" in _V1
    assert f"outcome IN {in_list(o.value for o in SignalOutcome)}" in _V1
    flat = " ".join(_V1.replace("(", "( ").split())
    latest = " ".join(_V2.replace("(", "( ").split())  # the order states as of version 2
    assert "state IN ( " + ", ".join(f"'{s.value}'" for s in OrderState) + ")" in latest
    assert "close_reason IN ( " + ", ".join(f"'{r.value}'" for r in CloseReason) + ")" in flat
