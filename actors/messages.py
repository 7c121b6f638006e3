"""Every input a position actor handles, as frozen dataclasses.

Producers: strategies through the signal feed (:class:`OpenSignal`), operators through the
control endpoint (:class:`CloseRequest`, :class:`PauseRequest`, :class:`UnquarantineRequest`),
the periodic sync (:class:`SyncObservation`), the exchange streams
(:class:`MarkPriceTick`, :class:`OrderUpdate`), the per-account worker pool
(:class:`ExchangeOutcome`), the timer service (:class:`TimerFired`) and the supervisor
(:class:`Recover`). Each carries its :class:`~actors.model.Key` so that the router needs
nothing else to deliver it. Messages are values: they are safe to hand between threads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from actors.model import (
    CloseReason,
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    MarketRules,
    OrderKind,
    Side,
)

__all__ = [
    "CallOp",
    "CallResult",
    "CloseRequest",
    "ExchangeOutcome",
    "MarkPriceTick",
    "MarketInfo",
    "Message",
    "OpenSignal",
    "OrderUpdate",
    "PauseRequest",
    "Recover",
    "Rejection",
    "SyncObservation",
    "TickSource",
    "TicksReady",
    "TimerFired",
    "TimerId",
    "TimerKind",
    "UnquarantineRequest",
]


@dataclass(frozen=True, slots=True)
class OpenSignal:
    """A strategy wants a position. ``size`` is in base units, ``stop_loss`` a price."""

    key: Key
    signal_id: str
    source: str
    side: Side
    size: float
    stop_loss: float
    take_profit: float | None = None
    trailing_distance: float | None = None
    expires_at: float | None = None
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """Close the open position at market (operator, strategy or shutdown policy).

    ``by`` names who asked (``operator`` for the control endpoint; empty for code) and
    ``note`` why (the operator's ``--reason``): a request with ``by`` set is journaled even
    when there is nothing to close.
    """

    key: Key
    reason: CloseReason = CloseReason.MANUAL
    request_id: str = ""
    by: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class PauseRequest:
    """Pause (``paused`` true) or resume new entries on the symbol: while paused every signal
    is refused ``paused`` (transient); protection, trailing stops and closes go on. Stored,
    so a restart keeps it. ``by``/``note``: who asked and why (journaled)."""

    key: Key
    paused: bool
    request_id: str = ""
    by: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class UnquarantineRequest:
    """Lift the symbol's quarantine (set after repeated crashes): entries are decided again
    and the crash count starts afresh. ``by``/``note``: who asked and why (journaled)."""

    key: Key
    request_id: str = ""
    by: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class SyncObservation:
    """What the exchange showed for the symbol, fetched starting at ``observed_at``.

    ``position`` is ``None`` when the exchange shows no position. ``observed_at`` is the local
    time the fetch *started*: anything the actor learned after that instant is newer than
    this observation and is not overridden by it. ``adoptable``: False while the account's
    adoption is stopped (another installation trades it, I7): a position the database does
    not know is then left alone, whether or not the symbol's actor is running.
    """

    key: Key
    position: ExchangePosition | None
    open_orders: tuple[ExchangeOrder, ...]
    observed_at: float
    adoptable: bool = True


@dataclass(frozen=True, slots=True)
class MarkPriceTick:
    """A mark price. ``low``/``high`` keep the extremes of ticks conflated into this one."""

    key: Key
    price: float
    event_time: float
    low: float | None = None
    high: float | None = None
    received_at: float = 0.0

    @property
    def lowest(self) -> float:
        return self.price if self.low is None else min(self.low, self.price)

    @property
    def highest(self) -> float:
        return self.price if self.high is None else max(self.high, self.price)


class TickSource(Protocol):
    """Where a conflated tick waits (``actors.conflation.TickSlot``)."""

    def take(self) -> MarkPriceTick | None: ...

    def take_parked(self) -> MarkPriceTick | None: ...

    def set_band(self, band: tuple[float, float] | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class TicksReady:
    """Wake-up for an actor: its tick slot holds the newest mark price (conflation)."""

    key: Key
    slot: TickSource


class CallResult(enum.StrEnum):
    """Outcome of one exchange call as the port reports it."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    FOUND = "found"
    NOT_FOUND = "not_found"


class CallOp(enum.StrEnum):
    """Which exchange call an :class:`ExchangeOutcome` answers."""

    PLACE = "place"
    CANCEL = "cancel"
    LOOKUP = "lookup"


class Rejection(enum.StrEnum):
    """Why the exchange refused a call, where the state machine branches on it (the
    adapter classifies the exchange's error and sets it; every other refusal is only its
    ``reason`` text). ``WOULD_TRIGGER``: a stop-loss the mark price has crossed already
    (Binance -2021): the position is closed at market instead."""

    WOULD_TRIGGER = "would_trigger"


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """The exchange says something about one of our orders (user stream or lookup).

    ``status`` is the exchange's order status as the adapter normalised it.
    ``filled_qty`` is cumulative, so a duplicated or reordered update is harmless.
    """

    key: Key
    client_id: str
    status: ExchangeStatus
    filled_qty: float
    avg_price: float | None
    event_time: float
    exchange_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExchangeOutcome:
    """The result of an exchange call made for this actor on the account's worker pool.

    ``op``: the call answered. For ``place`` and ``lookup`` an optional ``update`` carries
    the order's status as the reply showed it. ``rejection``: a refusal the state machine
    branches on, as the adapter classified it (``reason`` is text for the journal).
    """

    key: Key
    op: CallOp
    client_id: str
    kind: OrderKind
    result: CallResult
    reason: str = ""
    update: OrderUpdate | None = None
    retry_after: float | None = None
    rejection: Rejection | None = None


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """The answer to a :class:`~actors.effects.FetchMarket`: the mark price (observed at
    ``at``, local clock) and the market's rules, or ``result`` UNKNOWN / REJECTED with a
    ``reason`` when the exchange could not tell."""

    key: Key
    result: CallResult
    mark_price: float | None = None
    rules: MarketRules | None = None
    at: float = 0.0
    reason: str = ""


class TimerKind(enum.StrEnum):
    """What a timer of a position actor is for. The first six belong to the transition
    (the last three of them per order: :attr:`TimerId.client_id`), the ``SHELL_*`` ones to
    the actor shell (retrying a commit, offering deferred signals, restarting in place)."""

    CLOSE_RETRY = "close_retry"
    SL_DEADLINE = "sl_deadline"
    FLAT_CONFIRM = "flat_confirm"
    LOOKUP = "lookup"
    RETRY = "retry"
    CANCEL = "cancel"
    SHELL_PERSIST = "__persist"
    SHELL_DEFER = "__defer"
    SHELL_RESTART = "__restart"


@dataclass(frozen=True, slots=True)
class TimerId:
    """One timer of an actor: its kind and, for the per-order kinds, the order's client id.
    Hashable: the timer service keys by ``(key, TimerId)``. ``str()`` is the name it had as
    text (``lookup:ps7e1``, ``close_retry``), which :meth:`parse` reads back (stored causes
    written before the id had a type)."""

    kind: TimerKind
    client_id: str | None = None

    def __str__(self) -> str:
        return self.kind.value if self.client_id is None else f"{self.kind}:{self.client_id}"

    @classmethod
    def parse(cls, name: str) -> TimerId | None:
        """The id whose ``str()`` is ``name``, or ``None``."""
        word, sep, cid = name.partition(":")
        try:
            kind = TimerKind(word)
        except ValueError:
            return None
        return cls(kind, cid) if sep else cls(kind)


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A keyed timer came due: ``name`` is which one of the actor's."""

    key: Key
    name: TimerId


@dataclass(frozen=True, slots=True)
class Recover:
    """Sent by the actor to itself after loading a non-terminal position: resolve it. Also
    the cause recorded with a journal event the actor writes on its own (a quarantine):
    ``reason`` says why, and is stored with the event's cause."""

    key: Key
    reason: str = "start"


Message = (
    OpenSignal
    | CloseRequest
    | SyncObservation
    | MarkPriceTick
    | OrderUpdate
    | ExchangeOutcome
    | MarketInfo
    | TimerFired
    | Recover
    | TicksReady
    | PauseRequest
    | UnquarantineRequest
)
