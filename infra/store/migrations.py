"""Versioned schema migrations, applied at start.

:func:`migrate` is called by :class:`infra.store.postgres.PostgresStore` (unless told not to)
and by tools. It holds a PostgreSQL advisory lock for its whole run, so two processes that
start at once apply each migration exactly once; every migration runs in one transaction
together with its row in ``schema_migrations`` (version, name, checksum, time), so a failed
migration leaves nothing behind. A migration already applied whose SQL changed since, or a
database whose schema is newer than this code, is refused with :class:`MigrationError`.

Migrations are inline SQL (no package data to ship). Never edit one that has been released:
add a new version.

Schema (version 1):

* ``positions``: every field of :class:`actors.state.Position` except ``orders``; times are
  ``double precision`` epoch seconds (exact round trip of the Python floats); ``version``.
  **I1**: the partial unique index ``positions_one_open`` on ``(account, symbol)`` over every
  non-terminal status.
* ``orders``: one row per client order id (primary key), ``position_id`` → ``positions``,
  ``ord`` = index in ``Position.orders``.
* ``journal``: append-only (a trigger refuses UPDATE/DELETE/TRUNCATE); one row per journal
  event with the message that caused it (``cause_type``, ``cause`` jsonb).
* ``signals``: append-only signal history; one row per ``(account, signal_id)``.
* ``position_ids``: the sequence behind ``Store.allocate_ids``.

Version 2: order state ``pending_cancel`` (I9); ``positions.sl_since`` (I5);
``signals.retry``: a refusal that allows a retry does not bind the id, so ``signals_once`` is
a unique index over final decisions only (I11).

Version 3 (I7, one owner fenced; one installation per account):

* ``installation``: one row, this database's *installation id* (six random digits, drawn
  when the migration runs) and ``legacy_below``: position ids below it were allocated before
  (they carry no installation id). From then on ``position_ids`` counts in steps of
  1,000,000 from a value ending in those six digits, so every position id, and with it every
  client order id ``ps<position id>…``, ends in the installation id: two databases never
  produce the same id, and an order of another installation is recognised by its id
  (:class:`actors.state.Installation`). A database cloned from another (``CREATE DATABASE …
  TEMPLATE``) is the same installation until :func:`new_installation` draws a new id.
* ``leases``: one row per account: the fencing token ``epoch`` (+1 at each takeover), the
  owner (process id, host, pid, a process token for the same-host liveness check), when
  this epoch began (``since``) and ``expires_at`` (the database's clock). Every commit of
  an account's state checks its epoch here (:mod:`infra.store.commit_sql`).
* ``lease_epochs``: one row per epoch ever granted (owner, acquired, last expiry, release):
  who owned an account when (audits, the failover trial).
* ``supervisor_processes``: every running process's heartbeat (what it owns, waits for).
* ``installation_alerts``: orders of another installation seen on an account, and the
  operator's confirmation (``position-supervisor confirm-installation``).

Version 4: ``symbol_controls``, one row per ``(account, symbol)`` an operator or the restart
policy stopped entries on: ``paused`` (an operator's pause, with when and why) and
``quarantined`` (repeated crashes; lifted by an operator), so that a restart keeps both.
Written with the journal event that changes them (:mod:`infra.store.commit_sql`). (Version 3
is another change's; versions apply in order, whichever of them a database lacks.)

Version 5 (a storage plan for a year): ``journal`` and ``signals`` are partitioned by the
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

CHECK constraints express value invariants: known enum values, quantities ``>= 0``, finite
prices and times (``abs(x) < 'Infinity'`` refuses NaN and ±Infinity), bounded identifiers.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import psycopg
from psycopg.rows import TupleRow

from actors.ports import StoreError, StoreUnavailable
from actors.state import INSTALLATION_MODULUS
from infra.store.keys import MIGRATION_LOCK_NAME, advisory_key
from infra.store.retention import ensure_partitions

__all__ = [
    "INSTALLATION_MODULUS",
    "MIGRATIONS",
    "Migration",
    "MigrationError",
    "applied_migrations",
    "migrate",
    "new_installation",
]

log = logging.getLogger(__name__)


class MigrationError(StoreError):
    """The schema cannot be brought to this code's version (changed or newer migration)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


_NON_TERMINAL_SQL = "('pending_entry', 'entry_placed', 'pending_sl', 'active', 'closing')"
_STATUS_SQL = (
    "('pending_entry', 'entry_placed', 'pending_sl', 'active', 'closing', 'closed', 'failed')"
)

_V1 = f"""
CREATE SEQUENCE position_ids AS bigint START WITH 1;

CREATE TABLE positions (
    id                bigint PRIMARY KEY CHECK (id > 0),
    account           text NOT NULL CHECK (length(account) BETWEEN 1 AND 64),
    symbol            text NOT NULL CHECK (length(symbol) BETWEEN 1 AND 64),
    side              text NOT NULL CHECK (side IN ('long', 'short')),
    status            text NOT NULL CHECK (status IN {_STATUS_SQL}),
    source            text NOT NULL CHECK (length(source) <= 256),
    signal_id         text CHECK (length(signal_id) <= 256),
    requested_qty     double precision NOT NULL
                      CHECK (requested_qty >= 0 AND requested_qty < 'Infinity'),
    qty               double precision NOT NULL CHECK (qty >= 0 AND qty < 'Infinity'),
    stop_price        double precision NOT NULL CHECK (abs(stop_price) < 'Infinity'),
    entry_price       double precision CHECK (abs(entry_price) < 'Infinity'),
    take_profit       double precision CHECK (abs(take_profit) < 'Infinity'),
    trailing_distance double precision CHECK (abs(trailing_distance) < 'Infinity'),
    best_price        double precision CHECK (abs(best_price) < 'Infinity'),
    close_reason      text CHECK (close_reason IN ('signal', 'stop_loss', 'take_profit',
                                                   'closed_on_exchange', 'emergency', 'manual')),
    fail_reason       text CHECK (length(fail_reason) <= 8192),
    created_at        double precision NOT NULL CHECK (abs(created_at) < 'Infinity'),
    updated_at        double precision NOT NULL CHECK (abs(updated_at) < 'Infinity'),
    filled_at         double precision CHECK (abs(filled_at) < 'Infinity'),
    protected_at      double precision CHECK (abs(protected_at) < 'Infinity'),
    closed_at         double precision CHECK (abs(closed_at) < 'Infinity'),
    stop_seq          integer NOT NULL CHECK (stop_seq >= 0),
    close_seq         integer NOT NULL CHECK (close_seq >= 0),
    sl_failures       integer NOT NULL CHECK (sl_failures >= 0),
    version           bigint NOT NULL CHECK (version >= 1)
);

-- I1: at most one non-terminal position per (account, symbol).
CREATE UNIQUE INDEX positions_one_open ON positions (account, symbol)
    WHERE status IN {_NON_TERMINAL_SQL};

CREATE INDEX positions_by_key ON positions (account, symbol, id);

CREATE TABLE orders (
    client_id     text PRIMARY KEY CHECK (length(client_id) BETWEEN 1 AND 64),
    position_id   bigint NOT NULL REFERENCES positions (id),
    ord           integer NOT NULL CHECK (ord >= 0),
    kind          text NOT NULL CHECK (kind IN ('entry', 'stop_loss', 'take_profit', 'close')),
    side          text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty           double precision NOT NULL CHECK (qty >= 0 AND qty < 'Infinity'),
    state         text NOT NULL CHECK (state IN ('intended', 'unknown', 'accepted',
                                                 'partially_filled', 'filled', 'canceled',
                                                 'rejected', 'not_found')),
    trigger_price double precision CHECK (abs(trigger_price) < 'Infinity'),
    filled_qty    double precision NOT NULL CHECK (filled_qty >= 0 AND filled_qty < 'Infinity'),
    avg_price     double precision CHECK (abs(avg_price) < 'Infinity'),
    exchange_id   text CHECK (length(exchange_id) <= 128),
    event_time    double precision NOT NULL CHECK (abs(event_time) < 'Infinity'),
    sent_at       double precision CHECK (abs(sent_at) < 'Infinity'),
    attempts      integer NOT NULL CHECK (attempts >= 0)
);

CREATE INDEX orders_by_position ON orders (position_id, ord);

CREATE TABLE journal (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account       text NOT NULL,
    symbol        text NOT NULL,
    position_id   bigint,
    kind          text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    status_before text CHECK (status_before IN {_STATUS_SQL}),
    status_after  text CHECK (status_after IN {_STATUS_SQL}),
    at            double precision NOT NULL CHECK (abs(at) < 'Infinity'),
    detail        jsonb NOT NULL,
    cause_type    text NOT NULL,
    cause         jsonb NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX journal_by_key ON journal (account, symbol, id);
CREATE INDEX journal_by_position ON journal (position_id, id) WHERE position_id IS NOT NULL;

CREATE TABLE signals (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account     text NOT NULL,
    symbol      text NOT NULL,
    signal_id   text NOT NULL CHECK (length(signal_id) <= 1024),
    source      text NOT NULL CHECK (length(source) <= 1024),
    outcome     text NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'cooldown', 'rejected')),
    reason      text NOT NULL CHECK (length(reason) <= 8192),
    at          double precision NOT NULL CHECK (abs(at) < 'Infinity'),
    position_id bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signals_once UNIQUE (account, signal_id)
);

CREATE INDEX signals_by_key ON signals (account, symbol, id);

CREATE FUNCTION ps_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER signals_append_only BEFORE UPDATE OR DELETE ON signals
    FOR EACH ROW EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER signals_no_truncate BEFORE TRUNCATE ON signals
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
"""

_V2 = """
-- I9: an order we asked to cancel stays 'pending_cancel' until the exchange confirms.
ALTER TABLE orders DROP CONSTRAINT orders_state_check;
ALTER TABLE orders ADD CONSTRAINT orders_state_check
    CHECK (state IN ('intended', 'unknown', 'accepted', 'pending_cancel', 'partially_filled',
                     'filled', 'canceled', 'rejected', 'not_found'));
-- I5: when the current unprotected spell began (its stop-loss deadline runs from there).
ALTER TABLE positions ADD COLUMN sl_since double precision CHECK (abs(sl_since) < 'Infinity');
-- I11: a refusal that allows a retry does not bind the signal id; only final decisions do.
ALTER TABLE signals ADD COLUMN retry boolean NOT NULL DEFAULT false;
ALTER TABLE signals DROP CONSTRAINT signals_once;
CREATE UNIQUE INDEX signals_once ON signals (account, signal_id) WHERE NOT retry;
CREATE INDEX signals_decided_by_key ON signals (account, symbol, id) WHERE NOT retry;
"""

_NEW_INSTALLATION = f"""
UPDATE installation SET
    id = floor(random() * {INSTALLATION_MODULUS})::integer,
    legacy_below = greatest(
        (SELECT coalesce(max(id), 0) FROM positions),
        (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM position_ids)
    ) + 1,
    created_at = now();
ALTER SEQUENCE position_ids INCREMENT BY {INSTALLATION_MODULUS};
SELECT setval(
    'position_ids',
    ((SELECT legacy_below FROM installation) / {INSTALLATION_MODULUS} + 1) * {INSTALLATION_MODULUS}
        + (SELECT id FROM installation),
    false
);
"""

_V3 = f"""
CREATE TABLE installation (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id           integer NOT NULL CHECK (id >= 0 AND id < {INSTALLATION_MODULUS}),
    legacy_below bigint NOT NULL CHECK (legacy_below >= 1),
    created_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation (id, legacy_below) VALUES (0, 1);
{_NEW_INSTALLATION}

CREATE TABLE leases (
    account    text PRIMARY KEY CHECK (length(account) BETWEEN 1 AND 64),
    epoch      bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    owner      uuid,
    host       text CHECK (length(host) <= 255),
    pid        integer,
    process    text CHECK (length(process) <= 255),
    since      timestamptz,
    expires_at timestamptz NOT NULL DEFAULT '-infinity',
    renewed_at timestamptz
);

CREATE TABLE lease_epochs (
    account     text NOT NULL,
    epoch       bigint NOT NULL,
    owner       uuid NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    released_at timestamptz,
    how         text NOT NULL CHECK (how IN ('free', 'expired', 'owner_dead', 'own')),
    PRIMARY KEY (account, epoch)
);

CREATE TABLE supervisor_processes (
    id           uuid PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    seen_at      timestamptz NOT NULL DEFAULT now(),
    max_accounts integer,
    owns         text[] NOT NULL DEFAULT '{{}}',
    waits        text[] NOT NULL DEFAULT '{{}}',
    stopped_at   timestamptz
);

CREATE TABLE installation_alerts (
    account      text NOT NULL,
    installation integer NOT NULL,
    client_id    text NOT NULL CHECK (length(client_id) <= 64),
    symbol       text NOT NULL CHECK (length(symbol) <= 64),
    seen_at      timestamptz NOT NULL DEFAULT now(),
    seen_by      text NOT NULL CHECK (length(seen_by) <= 255),
    confirmed_at timestamptz,
    confirmed_by text CHECK (length(confirmed_by) <= 255),
    PRIMARY KEY (account, installation)
);
"""

_V4 = """
-- An operator's pause and the restart policy's quarantine, per symbol: a restart keeps them.
CREATE TABLE symbol_controls (
    account          text NOT NULL CHECK (length(account) BETWEEN 1 AND 64),
    symbol           text NOT NULL CHECK (length(symbol) BETWEEN 1 AND 64),
    paused           boolean NOT NULL DEFAULT false,
    paused_at        double precision CHECK (abs(paused_at) < 'Infinity'),
    paused_note      text NOT NULL DEFAULT '' CHECK (length(paused_note) <= 1024),
    quarantined      boolean NOT NULL DEFAULT false,
    quarantined_at   double precision CHECK (abs(quarantined_at) < 'Infinity'),
    quarantined_note text NOT NULL DEFAULT '' CHECK (length(quarantined_note) <= 1024),
    PRIMARY KEY (account, symbol)
);
"""


_PARTITIONED = ("journal", "signals")
"""The history tables partitioned by month of ``recorded_at`` (version 5)."""

_V5 = """
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
    account     text NOT NULL,
    symbol      text NOT NULL,
    signal_id   text NOT NULL CHECK (length(signal_id) <= 1024),
    source      text NOT NULL CHECK (length(source) <= 1024),
    outcome     text NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'cooldown', 'rejected')),
    reason      text NOT NULL CHECK (length(reason) <= 8192),
    at          double precision NOT NULL CHECK (abs(at) < 'Infinity'),
    position_id bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    retry       boolean NOT NULL DEFAULT false
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
CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER signals_append_only BEFORE UPDATE OR DELETE ON signals
    FOR EACH ROW EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER signals_no_truncate BEFORE TRUNCATE ON signals
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER signal_ids_append_only BEFORE UPDATE OR DELETE ON signal_ids
    FOR EACH ROW EXECUTE FUNCTION ps_append_only_but_archive();
CREATE TRIGGER signal_ids_no_truncate BEFORE TRUNCATE ON signal_ids
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
""".replace("__STATUS__", _STATUS_SQL)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _V1),
    Migration(2, "pending cancels, stop-loss deadline, retryable refusals", _V2),
    Migration(3, "leases with fencing epochs, installation id, installation alerts", _V3),
    Migration(4, "symbol controls: pause and quarantine", _V4),
    Migration(5, "journal and signals partitioned by month; signal ids apart", _V5),
)
"""Every migration, in version order. Append only."""

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrate(
    dsn: str,
    *,
    lock_timeout: float = 60.0,
    connect_timeout: int = 10,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> list[int]:
    """Bring the database at ``dsn`` to the latest schema; return the versions applied now.

    Idempotent, and safe when several processes call it at once (an advisory lock serialises
    them; the later ones find nothing to do). Called from any thread, blocking.

    Raises :class:`StoreUnavailable` when the server cannot be reached (or the lock is not
    obtained within ``lock_timeout`` s), :class:`MigrationError` when an applied migration
    changed or the database is newer than this code, :class:`StoreError` when a migration's
    SQL fails (its transaction is rolled back: nothing of it remains).
    """
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=connect_timeout,
            application_name="position-supervisor:migrate",
        )
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"migrate: cannot connect to the database: {exc}") from exc
    key = advisory_key(MIGRATION_LOCK_NAME)
    try:
        with conn:
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false)", (f"{int(lock_timeout * 1000)}ms",)
            )
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                return _apply(conn, migrations)
            finally:
                if not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except StoreError:
        raise
    except psycopg.errors.LockNotAvailable as exc:
        raise StoreUnavailable(
            f"migrate: another process held the migration lock for more than {lock_timeout} s"
        ) from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"migrate: database unreachable: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"migrate: {exc}") from exc


def _apply(conn: psycopg.Connection[TupleRow], migrations: tuple[Migration, ...]) -> list[int]:
    conn.execute(_CREATE_TABLE)
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    applied = {int(str(v)): str(c) for v, c in rows}
    known = {m.version: m for m in migrations}
    newer = sorted(v for v in applied if v not in known)
    if newer and newer[-1] > max(known, default=0):
        raise MigrationError(
            f"database schema is at version {newer[-1]}, newer than this code "
            f"(version {max(known, default=0)}): upgrade the code"
        )
    for v, checksum in applied.items():
        if v in known and known[v].checksum != checksum:
            raise MigrationError(
                f"migration {v} ({known[v].name}) changed since it was applied: "
                "add a new migration instead of editing a released one"
            )
    done: list[int] = []
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version in applied:
            continue
        try:
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            raise StoreError(f"migration {m.version} ({m.name}) failed: {exc}") from exc
        log.info("applied schema migration %d: %s", m.version, m.name)
        done.append(m.version)
    ensure_partitions(conn)
    return done


def new_installation(dsn: str, *, connect_timeout: int = 10) -> int:
    """Draw a new installation id for the database at ``dsn`` (a copy of another database
    is the same installation until then); returns it. Position ids allocated from now on end
    in it; those allocated before count as legacy (``installation.legacy_below``). Run it
    while no supervisor uses the database. Raises :class:`StoreUnavailable` when the server
    cannot be reached, :class:`StoreError` when the schema is older than version 3."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
            with conn.transaction():
                conn.execute(_NEW_INSTALLATION)
            row = conn.execute("SELECT id FROM installation").fetchone()
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"new installation: database unreachable: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"new installation: {exc}") from exc
    assert row is not None
    return int(row[0])


def applied_migrations(dsn: str) -> list[tuple[int, str, str]]:
    """``(version, name, checksum)`` of every applied migration, in version order.

    Raises :class:`StoreUnavailable` when the server cannot be reached.
    """
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return []
            rows = conn.execute(
                "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
            ).fetchall()
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot read schema_migrations: {exc}") from exc
    return [(int(str(v)), str(n), str(c)) for v, n, c in rows]
