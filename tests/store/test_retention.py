"""The history's storage plan on a real PostgreSQL: monthly partitions, the signal-id key
apart from them, the migration of an existing history, and ``archive``."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from actors.model import Status
from actors.ports import SignalSeen
from infra.store import MIGRATIONS, migrate
from infra.store.postgres import PostgresStore
from infra.store.retention import archive, ensure_partitions, month_partitions, parse_before
from tests.store.builders import KEY, advance, entry_commit, new_position, refusal_commit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

UTC = dt.UTC


def _rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _exec(dsn: str, sql: str, *params: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, params)


def _this_month() -> str:
    return dt.datetime.now(UTC).strftime("%Y_%m")


def _journal_row(dsn: str, pid: int | None, kind: str, when: str) -> None:
    _exec(
        dsn,
        "INSERT INTO journal (account, symbol, position_id, kind, at, detail, cause_type, cause, "
        "recorded_at) VALUES ('acc1', 'BTCUSDT', %s, %s, 1.0, '{}', 'Test', '{}', %s)",
        pid,
        kind,
        when,
    )


def _signal_row(dsn: str, signal_id: str, pid: int | None, when: str, *, bind: bool) -> None:
    _exec(
        dsn,
        "INSERT INTO signals (account, symbol, signal_id, source, outcome, reason, at, "
        "position_id, recorded_at) VALUES ('acc1', 'BTCUSDT', %s, 'whale', 'rejected', "
        "'cooldown', 1.0, %s, %s)",
        signal_id,
        pid,
        when,
    )
    if bind:
        _exec(
            dsn,
            "INSERT INTO signal_ids (account, signal_id, recorded_at) VALUES ('acc1', %s, %s)",
            signal_id,
            when,
        )


def test_commits_land_in_this_months_partition(store: PostgresStore, pg_dsn: str) -> None:
    pos = new_position(1)
    store.commit(entry_commit(pos))
    store.commit(refusal_commit(KEY, "late", 12.0))
    month = _this_month()
    where = {
        str(t): n
        for t, n in _rows(
            pg_dsn,
            "SELECT tableoid::regclass::text, count(*) FROM journal GROUP BY 1 UNION ALL "
            "SELECT tableoid::regclass::text, count(*) FROM signals GROUP BY 1",
        )
    }
    assert where == {f"journal_{month}": 2, f"signals_{month}": 2}
    # Partitions exist ahead: two more months.
    months = [m.month for m in month_partitions(psycopg.connect(pg_dsn, autocommit=True))]
    assert month in months and months.index(month) + 2 < len(months)


def test_a_decided_signal_id_is_refused_again_whatever_its_month(
    store: PostgresStore, pg_dsn: str
) -> None:
    # Decided months ago: its history row is in an old partition, its key in signal_ids.
    _exec(pg_dsn, "SELECT ps_month_partitions('2026-01-01', now())")
    _signal_row(pg_dsn, "sig-7", None, "2026-02-10 12:00+00", bind=True)
    with pytest.raises(SignalSeen):
        store.commit(entry_commit(new_position(7)))  # signal_id "sig-7"
    assert store.positions() == []
    # A final refusal of it adds nothing (answered with the recorded decision).
    with pytest.raises(SignalSeen):
        store.commit(refusal_commit(KEY, "sig-7", 20.0))
    assert len(_rows(pg_dsn, "SELECT 1 FROM signals WHERE signal_id = 'sig-7'")) == 1


def test_history_stays_append_only_in_every_partition(store: PostgresStore, pg_dsn: str) -> None:
    store.commit(refusal_commit(KEY, "s1", 10.0))
    month = _this_month()
    for sql in (
        "DELETE FROM journal",
        "DELETE FROM signals",
        "UPDATE signals SET reason = 'x'",
        f"TRUNCATE signals_{month}",
        f"DELETE FROM signals_{month}",
        "TRUNCATE journal",
        "DELETE FROM signal_ids",
        "TRUNCATE signal_ids",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _exec(pg_dsn, sql)
    assert len(_rows(pg_dsn, "SELECT 1 FROM signal_ids")) == 1


def test_migration_moves_an_existing_history_into_months(pg_empty_dsn: str) -> None:
    dsn = pg_empty_dsn
    migrate(dsn, migrations=MIGRATIONS[:4])
    cols = "account, symbol, signal_id, source, outcome, reason, at, position_id, retry"
    _exec(
        dsn,
        f"INSERT INTO signals ({cols}, recorded_at) VALUES "
        "('acc1', 'BTCUSDT', 'old', 'w', 'accepted', '', 1.0, NULL, false, '2026-03-05+00'), "
        "('acc1', 'BTCUSDT', 'busy', 'w', 'rejected', 'store', 2.0, NULL, true, now()), "
        "('acc1', 'BTCUSDT', 'new', 'w', 'cooldown', 'c', 3.0, NULL, false, now())",
    )
    for when in ("2026-03-05 00:00+00", "2026-03-06 00:00+00"):
        _journal_row(dsn, None, "k", when)
    _exec(
        dsn,
        "INSERT INTO journal (account, symbol, kind, at, detail, cause_type, cause) "
        "VALUES ('acc1', 'BTCUSDT', 'k', 1.0, '{}', 'T', '{}')",
    )
    before = _rows(dsn, "SELECT id, signal_id FROM signals ORDER BY id")
    journal_ids = _rows(dsn, "SELECT id FROM journal ORDER BY id")
    assert migrate(dsn) == [5, 6]
    assert _rows(dsn, "SELECT id, signal_id FROM signals ORDER BY id") == before
    assert _rows(dsn, "SELECT id FROM journal ORDER BY id") == journal_ids
    assert _rows(dsn, "SELECT tableoid::regclass::text FROM journal ORDER BY id")[0] == (
        "journal_2026_03",
    )
    # Decided ids keep their key; the transient refusal binds nothing.
    assert sorted(r[0] for r in _rows(dsn, "SELECT signal_id FROM signal_ids")) == ["new", "old"]
    with PostgresStore(dsn, migrate_schema=False) as store:
        with pytest.raises(SignalSeen):
            store.commit(entry_commit(replace(new_position(9), signal_id="old")))
        store.commit(entry_commit(new_position(10)))
    ids = [r[0] for r in _rows(dsn, "SELECT id FROM journal ORDER BY id")]
    assert ids[:3] == [r[0] for r in journal_ids] and ids[3] > ids[2]


def _history(tmp: Path) -> list[dict[str, Any]]:
    with gzip.open(tmp, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_archive_exports_then_drops_months_that_hold_nothing_open(
    store: PostgresStore, pg_dsn: str, tmp_path: Path
) -> None:
    _exec(pg_dsn, "SELECT ps_month_partitions('2026-01-01', now())")
    closed, other, still_open = new_position(1), new_position(2), new_position(3)
    for p in (closed, other):
        store.commit(entry_commit(p))
        _, c = advance(p, status=Status.CLOSED, closed_at=5.0)
        store.commit(c)
    store.commit(entry_commit(still_open))  # pending_entry: open
    _journal_row(pg_dsn, closed.id, "old_fill", "2026-02-10 12:00+00")
    _signal_row(pg_dsn, "feb-dup", closed.id, "2026-02-11 12:00+00", bind=True)
    _journal_row(pg_dsn, other.id, "old_close", "2026-03-20 12:00+00")
    _journal_row(pg_dsn, still_open.id, "old_intent", "2026-04-02 12:00+00")
    _journal_row(pg_dsn, other.id, "after_open", "2026-05-02 12:00+00")

    dry = archive(pg_dsn, parse_before("2026-06"), None, dry_run=True)
    assert dry.dropped == ["2026_01", "2026_02", "2026_03"]
    assert dry.rows == {"journal": 2, "signals": 1}
    assert len(_rows(pg_dsn, "SELECT 1 FROM journal WHERE recorded_at < '2026-06-01'")) == 4

    out = tmp_path / "history-2026-06.jsonl.gz"
    report = archive(pg_dsn, parse_before("2026-06-01"), out)
    assert report.dropped == ["2026_01", "2026_02", "2026_03"]
    assert report.kept_open == {"2026_04": [still_open.id]}
    assert report.kept_after == ["2026_05"]
    assert report.forgotten_ids == 1
    rows = _history(out)
    by_table: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_table.setdefault(r["table"], []).append(r["row"])
    assert sorted(r["kind"] for r in by_table["journal"]) == ["old_close", "old_fill"]
    assert [r["signal_id"] for r in by_table["signals"]] == ["feb-dup"]
    assert sorted(r["id"] for r in by_table["positions"]) == [closed.id, other.id]
    assert {r["position_id"] for r in by_table["orders"]} == {closed.id, other.id}
    # Gone from the database: the months, their rows, the ids decided in them.
    left = [m.month for m in month_partitions(psycopg.connect(pg_dsn, autocommit=True))]
    assert left[:2] == ["2026_04", "2026_05"]
    kinds = {r[0] for r in _rows(pg_dsn, "SELECT kind FROM journal")}
    assert {"old_fill", "old_close"}.isdisjoint(kinds) and {"old_intent", "after_open"} <= kinds
    assert _rows(pg_dsn, "SELECT 1 FROM signal_ids WHERE signal_id = 'feb-dup'") == []
    # The state stays: positions and orders are not the history.
    assert {p.id for p in store.positions(include_terminal=True)} == {1, 2, 3}
    # Run again: nothing more to do, the file is not overwritten.
    with pytest.raises(ValueError, match="exists"):
        archive(pg_dsn, parse_before("2026-06-01"), out)
    again = archive(pg_dsn, parse_before("2026-06-01"), tmp_path / "again.jsonl.gz")
    assert again.dropped == [] and not (tmp_path / "again.jsonl.gz").exists()


def test_archive_never_takes_the_current_month(pg_dsn: str, tmp_path: Path) -> None:
    now = dt.datetime.now(UTC)
    next_month = (now.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    with pytest.raises(ValueError, match="current month"):
        archive(pg_dsn, next_month, tmp_path / "x.jsonl.gz")
    assert not (tmp_path / "x.jsonl.gz").exists()


def test_a_failed_export_drops_nothing(pg_dsn: str, tmp_path: Path) -> None:
    _exec(pg_dsn, "SELECT ps_month_partitions('2026-01-01', now())")
    _journal_row(pg_dsn, None, "old", "2026-02-10 12:00+00")
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where a directory should be")
    with pytest.raises(OSError):
        archive(pg_dsn, parse_before("2026-06"), blocked / "out.jsonl.gz")
    assert len(_rows(pg_dsn, "SELECT 1 FROM journal WHERE kind = 'old'")) == 1


def test_ensure_partitions_makes_only_what_is_missing(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert ensure_partitions(conn) == 0  # made by the migration already
        conn.execute(f"DROP TABLE journal_{_this_month()}")
        assert ensure_partitions(conn) == 1


def test_parse_before_refuses_what_it_cannot_read() -> None:
    assert parse_before("2026-05") == dt.datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_before("2026-05-03T10:00+02:00") == dt.datetime(2026, 5, 3, 8, tzinfo=UTC)
    for bad in ("May", "2026-13", "2026-05-03T10:00"):
        with pytest.raises(ValueError):
            parse_before(bad)
