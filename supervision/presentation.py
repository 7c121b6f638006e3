"""Figures and words the operator reads, written once for every place that shows them.

The ``status`` and ``history`` commands (:mod:`supervision.cli`), the live view
(:mod:`supervision.live_view`) and the control endpoint's answers
(:mod:`supervision.control`) show the same profit and loss, the same causes of journal
events, the same ages and the same stored controls. Their rules live here.

Pure functions: no I/O, no locks; callable from any thread; they never raise for a position
that lacks a price (the figure is then ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from actors.model import Key, OrderKind, Side
from actors.state import Position

__all__ = [
    "StoredControl",
    "age_text",
    "cause_text",
    "control_doc",
    "exit_price",
    "number_text",
    "realised_pnl",
    "unrealised_pnl",
]


def unrealised_pnl(pos: Position, mark: float | None) -> float | None:
    """(mark - entry) x qty, sign-adjusted for shorts; ``None`` without a mark or a fill."""
    if mark is None or pos.entry_price is None or pos.qty <= 0:
        return None
    sign = 1.0 if pos.side is Side.LONG else -1.0
    return sign * (mark - pos.entry_price) * pos.qty


def exit_price(pos: Position) -> float | None:
    """The average price of the fills that reduced the position (its close, stop-loss and
    take-profit orders); ``None`` when none is known (e.g. closed on the exchange by hand)."""
    qty = value = 0.0
    for o in pos.orders:
        if o.kind is OrderKind.ENTRY or o.filled_qty <= 0 or o.avg_price is None:
            continue
        qty += o.filled_qty
        value += o.filled_qty * o.avg_price
    return value / qty if qty > 0 else None


def realised_pnl(pos: Position) -> float | None:
    """(exit - entry) x the quantity the exits filled, sign-adjusted for shorts (quote
    currency, before fees); ``None`` without an entry or an exit price."""
    price = exit_price(pos)
    if price is None or pos.entry_price is None:
        return None
    closed = sum(
        o.filled_qty
        for o in pos.orders
        if o.kind is not OrderKind.ENTRY and o.filled_qty > 0 and o.avg_price is not None
    )
    sign = 1.0 if pos.side is Side.LONG else -1.0
    return sign * (price - pos.entry_price) * min(closed, pos.qty or closed)


def cause_text(cause_type: str, data: object) -> str:
    """A journal row's cause in words: a signal's id and source, an operator and the reason
    given, else the message type. ``data``: the row's stored cause (anything but a mapping
    counts as empty)."""
    fields: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    if cause_type == "OpenSignal" and "signal_id" in fields:
        return f"signal {fields.get('signal_id')} from {fields.get('source', '?')}"
    by = fields.get("by")
    if isinstance(by, str) and by:  # an operator's request, with the reason given
        note = fields.get("note")
        return f"{by}: {note}" if isinstance(note, str) and note else by
    return str(cause_type)


def number_text(x: float | None) -> str:
    """A price or a size in up to 8 significant digits; ``-`` for none."""
    return "-" if x is None else f"{x:.8g}"


def age_text(seconds: float) -> str:
    """A duration in its two largest units: ``42s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class StoredControl(Protocol):
    """A symbol's pause and quarantine with when and why (the store's
    :class:`~infra.store.postgres.SymbolControl`, the live view's ``ControlRow``)."""

    @property
    def key(self) -> Key: ...
    @property
    def paused(self) -> bool: ...
    @property
    def paused_at(self) -> float | None: ...
    @property
    def paused_note(self) -> str: ...
    @property
    def quarantined(self) -> bool: ...
    @property
    def quarantined_at(self) -> float | None: ...
    @property
    def quarantined_note(self) -> str: ...


def control_doc(c: StoredControl) -> dict[str, Any]:
    """One symbol's controls as JSON (``status --json`` and ``GET /api/view``)."""
    return {
        "account": c.key.account,
        "symbol": c.key.symbol,
        "paused": c.paused,
        "paused_at": c.paused_at,
        "paused_note": c.paused_note,
        "quarantined": c.quarantined,
        "quarantined_at": c.quarantined_at,
        "quarantined_note": c.quarantined_note,
    }
