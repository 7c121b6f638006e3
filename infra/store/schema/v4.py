"""Version 4: ``symbol_controls``, one row per ``(account, symbol)`` an operator or the restart
policy stopped entries on: ``paused`` (an operator's pause, with when and why) and
``quarantined`` (repeated crashes; lifted by an operator), so that a restart keeps both.
Written with the journal event that changes them (:mod:`infra.store.commit_sql`). (Version 3
is another change's; versions apply in order, whichever of them a database lacks.)

Released: never edit it (its checksum is recorded in every database); add a version.
"""

from __future__ import annotations

__all__ = ["SQL"]

SQL = """
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
