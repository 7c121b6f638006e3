"""The state a position actor holds, the policy it applies, and what a transition returns.

All frozen values. :class:`SymbolState` is the whole memory of one ``(account, symbol)``
actor; everything durable in it is rebuilt from the store on (re)start
(:class:`~actors.ports.Snapshot`), the rest (last price, trailing high-water mark between
stop moves) is refreshed by the next ticks.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from actors.effects import Effect
from actors.messages import Message
from actors.model import CloseReason, Key, OrderKind, OrderRecord, OrderState, Side, Status

__all__ = [
    "Commit",
    "JournalEvent",
    "Policy",
    "Position",
    "Reentry",
    "SignalOutcome",
    "SignalRecord",
    "SymbolState",
    "Transition",
    "client_order_id",
]


def client_order_id(position_id: int, kind: OrderKind, seq: int) -> str:
    """Deterministic client order id (I2): ``ps<position id><kind letter><seq>``.

    Derived from durable fields only, so after any crash the order can be looked up on the
    exchange by this id. At most 36 characters of ``[a-z0-9]`` as Binance requires.
    """
    return f"ps{position_id}{kind.letter}{seq}"


class Reentry(enum.StrEnum):
    """What a signal may do after a position on the symbol closed (S1's "bought history")."""

    ALLOW = "allow"
    COOLDOWN = "cooldown"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-account knobs of the state machine; defaults are safe for real money."""

    reentry: Reentry = Reentry.COOLDOWN
    cooldown_s: float = 60.0
    max_notional: float | None = None
    default_stop_pct: float = 0.02
    sl_max_attempts: int = 3
    sl_retry_delay_s: float = 0.2
    place_max_attempts: int = 3
    lookup_delay_s: float = 0.25
    lookup_deadline_s: float = 10.0
    close_retry_delay_s: float = 1.0
    close_max_attempts: int = 5
    trailing_min_step_pct: float = 0.0005
    recent_signal_memory: int = 256


@dataclass(frozen=True, slots=True)
class Position:
    """One attempt at a position: from the accepted signal (or adoption) to a terminal state."""

    id: int
    key: Key
    side: Side
    status: Status
    source: str
    requested_qty: float
    stop_price: float
    created_at: float
    updated_at: float
    signal_id: str | None = None
    qty: float = 0.0
    entry_price: float | None = None
    take_profit: float | None = None
    trailing_distance: float | None = None
    orders: tuple[OrderRecord, ...] = ()
    close_reason: CloseReason | None = None
    fail_reason: str | None = None
    filled_at: float | None = None
    protected_at: float | None = None
    closed_at: float | None = None
    best_price: float | None = None
    stop_seq: int = 0
    close_seq: int = 0
    sl_failures: int = 0
    version: int = 0

    def order(self, client_id: str) -> OrderRecord | None:
        for o in self.orders:
            if o.client_id == client_id:
                return o
        return None

    def latest(self, kind: OrderKind) -> OrderRecord | None:
        found = None
        for o in self.orders:
            if o.kind is kind:
                found = o
        return found

    @property
    def stop_confirmed(self) -> bool:
        """True when the current stop-loss order is known to rest on the exchange."""
        stop = self.latest(OrderKind.STOP_LOSS)
        return stop is not None and stop.state is OrderState.ACCEPTED


class SignalOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    COOLDOWN = "cooldown"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """One signal and what became of it (the signal history of S1)."""

    key: Key
    signal_id: str
    source: str
    outcome: SignalOutcome
    reason: str
    at: float
    position_id: int | None = None


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """One entry of the append-only journal: a transition and what caused it."""

    position_id: int | None
    kind: str
    status_before: Status | None
    status_after: Status | None
    at: float
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Commit:
    """What one transition makes durable, in one transaction.

    ``position`` carries ``version = expected_version + 1``; ``expected_version`` 0 means
    the position is new (INSERT). A store refuses a write whose expected version is stale.
    """

    key: Key
    cause: Message
    position: Position | None
    expected_version: int
    events: tuple[JournalEvent, ...]
    signal: SignalRecord | None = None

    @property
    def risk_increasing(self) -> bool:
        """True when this commit records the intent of an entry (a new position from a signal).

        Such a commit must be durable before its order is sent (I2). Protective transitions
        (stops, closes) may run on when the store is briefly unavailable.
        """
        return (
            self.position is not None
            and self.expected_version == 0
            and self.position.status is Status.PENDING_ENTRY
        )


@dataclass(frozen=True, slots=True)
class SymbolState:
    """Everything one position actor knows."""

    key: Key
    position: Position | None = None
    last_closed_at: float | None = None
    bought: bool = False
    recent_signals: tuple[str, ...] = ()
    quarantined: bool = False
    last_price: float | None = None

    @property
    def open_position(self) -> Position | None:
        """The non-terminal position, if any (I1: at most one)."""
        p = self.position
        return p if p is not None and not p.status.terminal else None


@dataclass(frozen=True, slots=True)
class Transition:
    """Result of :func:`actors.transition.transition`: new state, what to write, what to do."""

    state: SymbolState
    effects: tuple[Effect, ...] = ()
    commit: Commit | None = None
    signal: SignalRecord | None = None
