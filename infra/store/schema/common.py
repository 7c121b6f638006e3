"""What several schema versions write the same way: the status lists, the columns of the
signal history and the triggers that keep the history append-only.

Spelled out literally, not derived from the Python enums: a released migration's text (its
checksum) must never change when the code does (``tests/store/test_migrations.py`` checks
that the lists still match the enums, and pins every released migration's checksum).
"""

from __future__ import annotations

__all__ = ["HISTORY_APPEND_ONLY", "NON_TERMINAL_SQL", "SIGNAL_COLUMNS", "STATUS_SQL"]

NON_TERMINAL_SQL = "('pending_entry', 'entry_placed', 'pending_sl', 'active', 'closing')"
STATUS_SQL = (
    "('pending_entry', 'entry_placed', 'pending_sl', 'active', 'closing', 'closed', 'failed')"
)

HISTORY_APPEND_ONLY = """CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER signals_append_only BEFORE UPDATE OR DELETE ON signals
    FOR EACH ROW EXECUTE FUNCTION ps_append_only();
CREATE TRIGGER signals_no_truncate BEFORE TRUNCATE ON signals
    FOR EACH STATEMENT EXECUTE FUNCTION ps_append_only();
"""
"""The triggers that refuse UPDATE, DELETE and TRUNCATE on ``journal`` and ``signals``
(versions 1 and 5, which makes the tables anew)."""

SIGNAL_COLUMNS = """    account     text NOT NULL,
    symbol      text NOT NULL,
    signal_id   text NOT NULL CHECK (length(signal_id) <= 1024),
    source      text NOT NULL CHECK (length(source) <= 1024),
    outcome     text NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'cooldown', 'rejected')),
    reason      text NOT NULL CHECK (length(reason) <= 8192),
    at          double precision NOT NULL CHECK (abs(at) < 'Infinity'),
    position_id bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
"""
"""The columns of ``signals`` from ``account`` to ``recorded_at`` with their checks (versions 1
and 5; the table's key and ``retry`` differ between them)."""
