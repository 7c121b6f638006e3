"""Version 3 (I7, one owner fenced; one installation per account):

* ``installation``: one row, this database's *installation id* (six random digits, drawn
  when the migration runs) and ``legacy_below``: position ids below it were allocated before
  (they carry no installation id). From then on ``position_ids`` counts in steps of
  1,000,000 from a value ending in those six digits, so every position id, and with it every
  client order id ``ps<position id>…``, ends in the installation id: two databases never
  produce the same id, and an order of another installation is recognised by its id
  (:class:`actors.state.Installation`). A database cloned from another (``CREATE DATABASE …
  TEMPLATE``) is the same installation until
  :func:`infra.store.migrations.new_installation` draws a new id.
* ``leases``: one row per account: the fencing token ``epoch`` (+1 at each takeover), the
  owner (process id, host, pid, a process token for the same-host liveness check), when
  this epoch began (``since``) and ``expires_at`` (the database's clock). Every commit of
  an account's state checks its epoch here (:mod:`infra.store.commit_sql`).
* ``lease_epochs``: one row per epoch ever granted (owner, acquired, last expiry, release):
  who owned an account when (audits, the failover trial).
* ``supervisor_processes``: every running process's heartbeat (what it owns, waits for).
* ``installation_alerts``: orders of another installation seen on an account, and the
  operator's confirmation (``position-supervisor confirm-installation``).

Released: never edit it (its checksum is recorded in every database); add a version.
"""

from __future__ import annotations

from actors.state import INSTALLATION_MODULUS

__all__ = ["NEW_INSTALLATION", "SQL"]

NEW_INSTALLATION = f"""
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
"""Draw a new installation id (version 3, and :func:`infra.store.migrations.new_installation`)."""

SQL = f"""
CREATE TABLE installation (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id           integer NOT NULL CHECK (id >= 0 AND id < {INSTALLATION_MODULUS}),
    legacy_below bigint NOT NULL CHECK (legacy_below >= 1),
    created_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation (id, legacy_below) VALUES (0, 1);
{NEW_INSTALLATION}

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
