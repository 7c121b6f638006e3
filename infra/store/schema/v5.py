"""Version 5 (a storage plan for a year): ``journal`` and ``signals`` are partitioned by the
month (UTC) of ``recorded_at`` (PostgreSQL declarative partitioning), one partition per table
and month named ``journal_YYYY_MM``/``signals_YYYY_MM`` plus a ``DEFAULT`` partition for a
month nobody made; ``ps_month_partitions(first, last)`` makes the missing ones (the migration
makes them up to two months ahead, every start and the lease keeper every hour too:
:func:`infra.store.retention.ensure_partitions`). Their primary keys become ``(id,
recorded_at)`` (ids still from one sequence per table, so ``ORDER BY id`` is time order). The
final decision on a signal id (I11) is held apart, in ``signal_ids`` (its primary key is the
``signals_once`` constraint), since a unique index of a partitioned table must contain the
partition key. Both stay append-only (triggers on the parents, cloned to every partition, and
on each partition for TRUNCATE); whole months go only with ``position-supervisor archive``
(:mod:`infra.store.retention`), which alone may delete from ``signal_ids`` (``ps.archiving``).
Existing rows are moved into the partitions by the migration.

Released: never edit it (its checksum is recorded in every database); add a version.
"""

from __future__ import annotations

from infra.store.schema.common import HISTORY_APPEND_ONLY, SIGNAL_COLUMNS, STATUS_SQL

__all__ = ["SQL"]

SQL = (
    """
-- The append-only history, partitioned by month (UTC) of recorded_at: a month's rows go
-- with its partition (position-supervisor archive), never row by row.
CREATE FUNCTION ps_month_partitions(first timestamptz, last timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    m     timestamp := date_trunc('month', first AT TIME ZONE 'UTC');
    stop  timestamp := date_trunc('month', last AT TIME ZONE 'UTC');
    t     text;
    part  text;
    made  integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('position-supervisor:partitions'));
    WHILE m <= stop LOOP
        FOREACH t IN ARRAY ARRAY['journal', 'signals'] LOOP
            part := t || '_' || to_char(m, 'YYYY_MM');
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               part, t, m AT TIME ZONE 'UTC',
                               (m + interval '1 month') AT TIME ZONE 'UTC');
                EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I '
                               'FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only()',
                               part || '_no_truncate', part);
                made := made + 1;
            END IF;
        END LOOP;
        m := m + interval '1 month';
    END LOOP;
    RETURN made;
END
$$;

ALTER TABLE journal RENAME TO journal_v4;
ALTER TABLE signals RENAME TO signals_v4;
CREATE SEQUENCE journal_ids AS bigint;
CREATE SEQUENCE signal_rows AS bigint;
SELECT setval('journal_ids', coalesce((SELECT max(id) FROM journal_v4), 0) + 1, false);
SELECT setval('signal_rows', coalesce((SELECT max(id) FROM signals_v4), 0) + 1, false);

CREATE TABLE journal (
    id            bigint NOT NULL DEFAULT nextval('journal_ids'),
    account       text NOT NULL,
    symbol        text NOT NULL,
    position_id   bigint,
    kind          text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    status_before text CHECK (status_before IN __STATUS__),
    status_after  text CHECK (status_after IN __STATUS__),
    at            double precision NOT NULL CHECK (abs(at) < 'Infinity'),
    detail        jsonb NOT NULL,
    cause_type    text NOT NULL,
    cause         jsonb NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (recorded_at);
ALTER SEQUENCE journal_ids OWNED BY journal.id;

CREATE TABLE signals (
    id          bigint NOT NULL DEFAULT nextval('signal_rows'),
"""
    + SIGNAL_COLUMNS
    + """    retry       boolean NOT NULL DEFAULT false
) PARTITION BY RANGE (recorded_at);
ALTER SEQUENCE signal_rows OWNED BY signals.id;

-- Rows of a month without a partition (none is made ahead in time): kept, never refused.
CREATE TABLE journal_default PARTITION OF journal DEFAULT;
CREATE TABLE signals_default PARTITION OF signals DEFAULT;
CREATE TRIGGER journal_default_no_truncate BEFORE TRUNCATE ON journal_default
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER signals_default_no_truncate BEFORE TRUNCATE ON signals_default
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
SELECT ps_month_partitions(
    least(now(), (SELECT min(recorded_at) FROM journal_v4),
          (SELECT min(recorded_at) FROM signals_v4)),
    now() + interval '2 months'
);

INSERT INTO journal (id, account, symbol, position_id, kind, status_before, status_after, at,
                     detail, cause_type, cause, recorded_at)
    SELECT id, account, symbol, position_id, kind, status_before, status_after, at, detail,
           cause_type, cause, recorded_at FROM journal_v4;
INSERT INTO signals (id, account, symbol, signal_id, source, outcome, reason, at, position_id,
                     recorded_at, retry)
    SELECT id, account, symbol, signal_id, source, outcome, reason, at, position_id,
           recorded_at, retry FROM signals_v4;

-- I11 across partitions: one row per (account, signal id) with a final decision.
CREATE TABLE signal_ids (
    account     text NOT NULL,
    signal_id   text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO signal_ids (account, signal_id, recorded_at)
    SELECT account, signal_id, min(recorded_at) FROM signals_v4 WHERE NOT retry
    GROUP BY account, signal_id;

DROP TABLE journal_v4;
DROP TABLE signals_v4;

ALTER TABLE journal ADD PRIMARY KEY (id, recorded_at);
CREATE INDEX journal_by_key ON journal (account, symbol, id);
CREATE INDEX journal_by_position ON journal (position_id, id) WHERE position_id IS NOT NULL;
ALTER TABLE signals ADD PRIMARY KEY (id, recorded_at);
-- Each index costs bytes on every row: a key's recent decisions are read through
-- signals_by_key (refusals that allow a retry are few), and archive, monthly, scans
-- signal_ids without an index of its own.
CREATE INDEX signals_by_key ON signals (account, symbol, id);
CREATE INDEX signals_by_id ON signals (account, signal_id) WHERE NOT retry;
ALTER TABLE signal_ids ADD CONSTRAINT signals_once PRIMARY KEY (account, signal_id);

-- Append-only still; only an archive run (ps.archiving set in its transaction) forgets ids.
CREATE FUNCTION ps_append_only_but_archive() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('ps.archiving', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""
    + HISTORY_APPEND_ONLY
    + """CREATE TRIGGER signal_ids_append_only BEFORE UPDATE OR DELETE ON signal_ids
    FOR EACH ROW EXECUTE FUNCTION ps_append_only_but_archive();
CREATE TRIGGER signal_ids_no_truncate BEFORE TRUNCATE ON signal_ids
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
"""
).replace("__STATUS__", STATUS_SQL)
