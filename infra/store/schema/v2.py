"""Version 2: order state ``pending_cancel`` (I9); ``positions.sl_since`` (I5);
``signals.retry``: a refusal that allows a retry does not bind the id, so ``signals_once`` is
a unique index over final decisions only (I11).

Released: never edit it (its checksum is recorded in every database); add a version.
"""

from __future__ import annotations

__all__ = ["SQL"]

SQL = """
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
