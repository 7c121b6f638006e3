"""Version 6: an order's ``kind`` is ``entry``, ``stop_loss`` or ``close``. No version ever
placed a ``take_profit`` order (a take-profit is a close the actor sends when the mark crosses
its price), so the kind left the core and the check narrows to what the core can write.

Released: never edit it (its checksum is recorded in every database); add a version.
"""

from __future__ import annotations

__all__ = ["SQL"]

SQL = """
-- A take-profit is a close at a watched price, never a resting order: the kind goes.
ALTER TABLE orders DROP CONSTRAINT orders_kind_check;
ALTER TABLE orders ADD CONSTRAINT orders_kind_check
    CHECK (kind IN ('entry', 'stop_loss', 'close'));
"""
