"""The history's storage plan: monthly partitions made ahead, whole months archived.

``journal`` and ``signals`` are partitioned by the month (UTC) of ``recorded_at`` (schema
version 5, :mod:`infra.store.migrations`).

* :func:`ensure_partitions` makes the partitions of this month and the next
  ``months_ahead``; :func:`infra.store.migrations.migrate` calls it at every start and the
  lease keeper (:mod:`supervision.leases`) every hour, so a process running for months never
  writes into the ``DEFAULT`` partition. Cheap when they exist.
* :func:`archive` (``position-supervisor archive --before DATE``) exports every row of the
  months wholly before ``DATE`` to one gzip'd JSON-lines file, together with the positions
  (and their orders) those rows speak of, then drops those months' partitions and forgets
  the signal ids decided in them. A month that holds a row of a position still open is kept
  whole (its rows are the open position's history), as is every month after it, so that what
  stays is always a contiguous tail. The file is written, flushed and fsync'd and renamed
  into place before anything is dropped: a failure leaves the database as it was. The
  ``positions`` and ``orders`` tables are the state (re-entry rules read them) and grow with
  positions, not with signals: they stay.

Called from any thread, blocking; raise :class:`~actors.ports.StoreUnavailable` when the
server cannot be reached, :class:`~actors.ports.StoreError` for anything else the server
refuses, :class:`ValueError` for a bad ``before``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from actors.ports import StoreError, StoreUnavailable
from infra.store.codec import NON_TERMINAL_SQL
from infra.store.connections import Conn

__all__ = [
    "GROWING_TABLES",
    "ArchiveReport",
    "MonthPartition",
    "archive",
    "ensure_partitions",
    "month_partitions",
    "table_bytes",
]

log = logging.getLogger(__name__)

TABLES = ("journal", "signals")
"""The partitioned history tables."""


GROWING_TABLES = ("journal", "signals", "signal_ids", "positions", "orders")
"""The tables that grow with signals and positions."""


def table_bytes(conn: Conn, table: str) -> int | None:
    """Bytes on disk of ``table`` with its indexes, TOAST and every partition; ``None`` when
    the schema has no such table (e.g. ``signal_ids`` before version 5)."""
    row = conn.execute(
        "SELECT CASE WHEN to_regclass(%s) IS NULL THEN NULL ELSE "
        "(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "WHERE c.oid = to_regclass(%s) OR c.oid IN "
        "(SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(%s))) END",
        (table, table, table),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def ensure_partitions(conn: Conn, months_ahead: int = 2) -> int:
    """Make the missing monthly partitions from this month to ``months_ahead`` months on;
    returns how many were made. A schema older than version 5 (no partitions) makes none.
    Takes a brief exclusive lock on a parent for each partition it makes (commits wait)."""
    row = conn.execute("SELECT to_regprocedure('ps_month_partitions(timestamptz,timestamptz)')")
    found = row.fetchone()
    if found is None or found[0] is None:
        return 0
    made = conn.execute(
        "SELECT ps_month_partitions(now(), now() + make_interval(months => %s))",
        (months_ahead,),
    ).fetchone()
    n = int(made[0]) if made is not None else 0
    if n:
        log.info("made %d monthly partitions of the journal and the signal history", n)
    return n


@dataclass(frozen=True, slots=True)
class MonthPartition:
    """One month of the history: its partitions' names and bounds (UTC)."""

    month: str  # YYYY_MM
    start: dt.datetime
    end: dt.datetime

    def table(self, parent: str) -> str:
        return f"{parent}_{self.month}"


@dataclass
class ArchiveReport:
    """What :func:`archive` did. ``kept_open``: months kept because a row in them belongs to
    a position still open (``{month: [position ids]}``); ``kept_after``: later months kept
    with them (what stays is a contiguous tail)."""

    before: dt.datetime
    path: Path | None = None
    dropped: list[str] = field(default_factory=list)
    kept_open: dict[str, list[int]] = field(default_factory=dict)
    kept_after: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    forgotten_ids: int = 0
    dry_run: bool = False


def month_partitions(conn: Conn) -> list[MonthPartition]:
    """The months with a partition of ``journal`` (and of ``signals``), oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'journal'::regclass AND c.relname ~ '^journal_[0-9]{4}_[0-9]{2}$' "
        "ORDER BY c.relname"
    ).fetchall()
    out = []
    for (name,) in rows:
        y, m = int(str(name)[8:12]), int(str(name)[13:15])
        start = dt.datetime(y, m, 1, tzinfo=dt.UTC)
        end = dt.datetime(y + m // 12, m % 12 + 1, 1, tzinfo=dt.UTC)
        out.append(MonthPartition(f"{y:04d}_{m:02d}", start, end))
    return out


def parse_before(text: str) -> dt.datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM`` (UTC midnight) or an ISO time with an offset; raises
    :class:`ValueError` with the accepted forms."""
    s = text.strip()
    try:
        if len(s) == 7:
            return dt.datetime.strptime(s, "%Y-%m").replace(tzinfo=dt.UTC)
        if len(s) == 10:
            return dt.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        when = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"--before {text!r}: expected YYYY-MM-DD, YYYY-MM or an ISO time with an offset"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"--before {text!r}: an ISO time needs an offset (e.g. +00:00)")
    return when.astimezone(dt.UTC)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):  # CHECKs refuse them; be safe
        return str(value)
    return value


def _dump_query(
    conn: Conn, table: str, query: str, params: Iterable[Any], write: Callable[[str], object]
) -> int:
    n = 0
    with conn.cursor() as cur:
        cur.execute(query, tuple(params))
        names = [d.name for d in cur.description or ()]
        for row in cur:
            values = {k: _jsonable(v) for k, v in zip(names, row, strict=True)}
            doc = {"table": table, "row": values}
            write(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")
            n += 1
    return n


def archive(
    dsn: str,
    before: dt.datetime,
    out: Path | None,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    lock_timeout_s: float = 5.0,
) -> ArchiveReport:
    """Export, then drop, the history's months that end at or before ``before``.

    ``before`` may not be later than the start of the current month (UTC, the database's
    clock; ``now`` overrides it for tests): the month being written is never archived.
    ``out``: the file to write (``.jsonl.gz``; refused if it exists); ``None`` only with
    ``dry_run``, which reports what would go and writes nothing. Blocking; see the module
    docstring for the errors.
    """
    report = ArchiveReport(before=before, dry_run=dry_run)
    if out is None and not dry_run:
        raise ValueError("archive: an output file is needed")
    if out is not None and out.exists():
        raise ValueError(f"archive: {out} exists already; choose another file")
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"archive: cannot connect to the database: {exc}") from exc
    try:
        with conn:
            return _archive(conn, report, out, now, lock_timeout_s)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"archive: database unreachable: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"archive: {exc}") from exc


def _archive(
    conn: Conn,
    report: ArchiveReport,
    out: Path | None,
    now: dt.datetime | None,
    lock_timeout_s: float,
) -> ArchiveReport:
    if now is None:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now = row[0]
    assert now is not None
    this_month = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if report.before > this_month:
        raise ValueError(
            f"archive: --before {report.before.date()} is inside the current month "
            f"(from {this_month.date()}): the month being written is never archived"
        )
    candidates = [m for m in month_partitions(conn) if m.end <= report.before]
    chosen: list[MonthPartition] = []
    for i, m in enumerate(candidates):
        open_ids = _open_positions_in(conn, m)
        if open_ids:
            report.kept_open[m.month] = open_ids
            report.kept_after = [later.month for later in candidates[i + 1 :]]
            break
        chosen.append(m)
    if not chosen:
        return report
    if report.dry_run:
        for m in chosen:
            for t in TABLES:
                n = conn.execute(f'SELECT count(*) FROM "{m.table(t)}"').fetchone()
                report.rows[t] = report.rows.get(t, 0) + (int(n[0]) if n else 0)
        report.dropped = [m.month for m in chosen]
        return report
    assert out is not None
    _export(conn, chosen, out, report)
    report.path = out
    with conn.transaction():
        timeout = f"{int(lock_timeout_s * 1000)}ms"
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
        conn.execute("SELECT set_config('ps.archiving', 'on', true)")
        for m in chosen:
            got = conn.execute(
                "DELETE FROM signal_ids WHERE recorded_at >= %s AND recorded_at < %s",
                (m.start, m.end),
            )
            report.forgotten_ids += max(0, got.rowcount)
            for t in TABLES:
                conn.execute(f'DROP TABLE "{m.table(t)}"')
    report.dropped = [m.month for m in chosen]
    log.warning(
        "archived %s to %s (%s rows), signal ids forgotten: %d",
        ", ".join(report.dropped),
        out,
        report.rows,
        report.forgotten_ids,
    )
    return report


def _open_positions_in(conn: Conn, m: MonthPartition) -> list[int]:
    ids: set[int] = set()
    for t in TABLES:
        rows = conn.execute(
            f'SELECT DISTINCT x.position_id FROM "{m.table(t)}" x JOIN positions p '
            f"ON p.id = x.position_id WHERE p.status IN {NON_TERMINAL_SQL}"
        ).fetchall()
        ids.update(int(r[0]) for r in rows)
    return sorted(ids)


def _export(conn: Conn, months: list[MonthPartition], out: Path, report: ArchiveReport) -> None:
    """Every row of ``months`` and the positions and orders they speak of, to ``out``
    (written aside, fsync'd, renamed into place). One repeatable-read snapshot."""
    tmp = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as raw:
            with gzip.open(raw, "wt", encoding="utf-8") as gz, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                for m in months:
                    for t in TABLES:
                        report.rows[t] = report.rows.get(t, 0) + _dump_query(
                            conn,
                            t,
                            f'SELECT * FROM "{m.table(t)}" ORDER BY id',
                            (),
                            gz.write,
                        )
                union = " UNION ".join(
                    f'SELECT position_id FROM "{m.table(t)}" WHERE position_id IS NOT NULL'
                    for m in months
                    for t in TABLES
                )
                report.rows["positions"] = _dump_query(
                    conn,
                    "positions",
                    f"SELECT * FROM positions WHERE id IN ({union}) ORDER BY id",
                    (),
                    gz.write,
                )
                report.rows["orders"] = _dump_query(
                    conn,
                    "orders",
                    f"SELECT * FROM orders WHERE position_id IN ({union}) "
                    "ORDER BY position_id, ord",
                    (),
                    gz.write,
                )
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
        dfd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
