"""Value types shared by messages, the state machine and the ports.

Everything here is an immutable value: frozen dataclasses and string enums. Nothing does I/O.
Prices and quantities are floats; the exchange adapter applies the market's precision, and
quantities are compared with :data:`QTY_EPS` (relative) so that cumulative fills reported by
the exchange compare equal to the requested size.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "NON_TERMINAL",
    "QTY_EPS",
    "CloseReason",
    "ExchangeOrder",
    "ExchangePosition",
    "ExchangeStatus",
    "Key",
    "MarketRules",
    "OrderKind",
    "OrderRecord",
    "OrderState",
    "Side",
    "Status",
    "qty_done",
]

QTY_EPS = 1e-9


def qty_done(filled: float, wanted: float) -> bool:
    """True when ``filled`` reaches ``wanted`` within a relative tolerance."""
    return filled >= wanted * (1.0 - QTY_EPS) - QTY_EPS


@dataclass(frozen=True, slots=True)
class Key:
    """Identity of a position actor: one per account and exchange symbol id (``BTCUSDT``)."""

    account: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.account}:{self.symbol}"


class Side(enum.StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def entry_side(self) -> str:
        """The order side that opens this position (``buy`` or ``sell``)."""
        return "buy" if self is Side.LONG else "sell"

    @property
    def exit_side(self) -> str:
        """The order side that reduces this position."""
        return "sell" if self is Side.LONG else "buy"


class Status(enum.StrEnum):
    """Position lifecycle (the transitions are :mod:`actors.transition`'s): non-terminal
    first, then the two terminal states."""

    PENDING_ENTRY = "pending_entry"
    ENTRY_PLACED = "entry_placed"
    PENDING_SL = "pending_sl"
    ACTIVE = "active"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (Status.CLOSED, Status.FAILED)


NON_TERMINAL: tuple[Status, ...] = tuple(s for s in Status if not s.terminal)


class CloseReason(enum.StrEnum):
    SIGNAL = "signal"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    CLOSED_ON_EXCHANGE = "closed_on_exchange"
    EMERGENCY = "emergency"
    MANUAL = "manual"


class OrderKind(enum.StrEnum):
    """What an order of ours is for. A take-profit is a close at a price the actor watches
    (:attr:`CloseReason.TAKE_PROFIT`), never a resting exchange order."""

    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    CLOSE = "close"

    @property
    def letter(self) -> str:
        """The letter used in deterministic client order ids (``ps17e1``, ``ps17s2`` …)."""
        return {"entry": "e", "stop_loss": "s", "close": "c"}[self.value]

    @property
    def trigger(self) -> bool:
        """Conditional orders live in the exchange's algo-order service."""
        return self is OrderKind.STOP_LOSS


class ExchangeStatus(enum.StrEnum):
    """An order's status as the exchange reported it, normalised by the adapter (the
    exchange's own words vary: ``EXPIRED_IN_MATCH``, ``CANCELLED``, an algo order's
    ``TRIGGERING``). The values are the lower-case words stored in rows written before
    this enum, so they decode as they are; ``cancelled`` and any case decode too."""

    NEW = "new"
    TRIGGERED = "triggered"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    FINISHED = "finished"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @classmethod
    def _missing_(cls, value: object) -> ExchangeStatus | None:
        if not isinstance(value, str):
            return None
        word = value.lower()
        word = "canceled" if word == "cancelled" else word
        return next((s for s in cls if s.value == word), None)

    @classmethod
    def parse(cls, value: str | None) -> ExchangeStatus | None:
        """The status for an exchange's word, or ``None``: not one we know."""
        if value is None:
            return None
        try:
            return cls(value)
        except ValueError:
            return None


class OrderState(enum.StrEnum):
    """Our view of one order, after NautilusTrader's explicit order-status table.

    ``intended``: written, not yet known to have reached the exchange.
    ``unknown``: sent, outcome not known (timeout, 5xx, dropped connection): look it up by id.
    ``pending_cancel``: we want it gone and asked; it may still rest until the exchange
    confirms (I9: an order is cancelled only when the exchange says so).
    """

    INTENDED = "intended"
    UNKNOWN = "unknown"
    ACCEPTED = "accepted"
    PENDING_CANCEL = "pending_cancel"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    NOT_FOUND = "not_found"

    @property
    def done(self) -> bool:
        return self in (
            OrderState.FILLED,
            OrderState.CANCELED,
            OrderState.REJECTED,
            OrderState.NOT_FOUND,
        )


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order of a position as the position knows it."""

    client_id: str
    kind: OrderKind
    side: str
    qty: float
    state: OrderState
    trigger_price: float | None = None
    filled_qty: float = 0.0
    avg_price: float | None = None
    exchange_id: str | None = None
    event_time: float = 0.0
    sent_at: float | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    """What the exchange shows for a symbol: a one-way position (qty > 0)."""

    side: Side
    qty: float
    entry_price: float


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An open order as the exchange shows it."""

    client_id: str
    side: str
    qty: float
    trigger: bool
    trigger_price: float | None = None
    reduce_only: bool = False
    exchange_id: str | None = None


@dataclass(frozen=True, slots=True)
class MarketRules:
    """What the market accepts for one symbol, from the exchange's own filters.

    ``None`` means the exchange states no such rule. ``tick_size``: price increment;
    ``step_size``: quantity increment of market orders; ``min_qty`` / ``max_qty``: quantity
    bounds of market orders; ``min_notional``: quantity x price at least this (quote
    currency); ``min_price`` / ``max_price``: bounds of any price (stop triggers included).
    """

    tick_size: float | None = None
    step_size: float | None = None
    min_qty: float | None = None
    max_qty: float | None = None
    min_notional: float | None = None
    min_price: float | None = None
    max_price: float | None = None
