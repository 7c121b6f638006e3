"""Schema (version 1):

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

Released: never edit it (its checksum is recorded in every database); add a version.
"""

from __future__ import annotations

from infra.store.schema.common import (
    HISTORY_APPEND_ONLY,
    NON_TERMINAL_SQL,
    SIGNAL_COLUMNS,
    STATUS_SQL,
)

__all__ = ["SQL"]

SQL = f"""
CREATE SEQUENCE position_ids AS bigint START WITH 1;

CREATE TABLE positions (
    id                bigint PRIMARY KEY CHECK (id > 0),
    account           text NOT NULL CHECK (length(account) BETWEEN 1 AND 64),
    symbol            text NOT NULL CHECK (length(symbol) BETWEEN 1 AND 64),
    side              text NOT NULL CHECK (side IN ('long', 'short')),
    status            text NOT NULL CHECK (status IN {STATUS_SQL}),
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
    WHERE status IN {NON_TERMINAL_SQL};

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
    status_before text CHECK (status_before IN {STATUS_SQL}),
    status_after  text CHECK (status_after IN {STATUS_SQL}),
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
{SIGNAL_COLUMNS}    CONSTRAINT signals_once UNIQUE (account, signal_id)
);

CREATE INDEX signals_by_key ON signals (account, symbol, id);

CREATE FUNCTION ps_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

{HISTORY_APPEND_ONLY}"""
