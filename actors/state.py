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
from actors.messages import Message, OpenSignal
from actors.model import (
    CloseReason,
    Key,
    MarketRules,
    OrderKind,
    OrderRecord,
    OrderState,
    Side,
    Status,
)
from actors.orders import (
    INSTALLATION_MODULUS,
    Installation,
    client_order_id,
    intended_order,
    parse_client_id,
)
from actors.reasons import retry_allowed

__all__ = [
    "INSTALLATION_MODULUS",
    "Commit",
    "ControlChange",
    "ControlOutcome",
    "Installation",
    "JournalEvent",
    "JournalKind",
    "Policy",
    "Position",
    "Reentry",
    "SignalOutcome",
    "SignalRecord",
    "SymbolState",
    "Transition",
    "client_order_id",
    "intended_order",
    "parse_client_id",
    "printable",
]


class Reentry(enum.StrEnum):
    """What a signal may do after a position on the symbol closed (S1's "bought history")."""

    ALLOW = "allow"
    COOLDOWN = "cooldown"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-account knobs of the state machine; defaults are safe for real money.

    Entry checks (I10): ``max_mark_age_s`` is the oldest mark price an entry may be decided
    on (stream or REST alike); without one the actor asks the exchange and the signal waits
    at most ``mark_wait_s``. ``max_stop_distance_pct``: a stop-loss (or trailing distance)
    further than this fraction from the mark is refused. ``max_signal_age_s``: a signal
    whose ``created_at`` is older is refused ``too_old`` (``None``: no limit).

    One installation per account (I7): with an ``installation``, an order with our prefix
    that another installation (another database) placed is never touched (the orphan sweep
    leaves it alone); without one (unit tests, in-memory fakes) every ``ps…`` order is ours.

    Protection (I5): every stop-loss placement of one unprotected spell counts toward
    ``sl_max_attempts``, and the spell may last ``sl_deadline_s`` at most; past either, the
    position is closed at market. A close the exchange keeps refusing is retried for ever,
    ``close_retry_delay_s`` doubling up to ``close_retry_max_delay_s``.

    Trailing stops: the stop moves when the ideal one (best mark minus the distance) is
    ``trailing_step_fraction`` of the distance (at least ``trailing_min_step_pct`` of the
    price) ahead of the placed one; a move while a confirmed stop rests spends no attempt
    of an unprotected spell.

    Replays (I11): an actor answers a replay of one of its symbol's last
    ``recent_signal_memory`` final decisions from memory (32: about 7 KiB an actor); an older
    one is caught by the store's signal-id key (an accepted replay's commit is refused as a
    whole), so the memory is a fast path, not the guard.

    Order hygiene (I9): cancels that fail are retried every ``cancel_retry_delay_s`` (or the
    exchange's Retry-After); a stop the exchange's open-order list does not show is looked
    up by id once it is ``stop_grace_s`` old, never re-placed on the list alone; a position
    the sync finds flat is closed after ``flat_confirm_s``, its orders looked up meanwhile
    so that the close reason is the order that closed it.
    """

    reentry: Reentry = Reentry.COOLDOWN
    cooldown_s: float = 60.0
    max_notional: float | None = None
    default_stop_pct: float = 0.02
    sl_max_attempts: int = 3
    sl_retry_delay_s: float = 0.2
    sl_deadline_s: float = 10.0
    place_max_attempts: int = 3
    lookup_delay_s: float = 0.25
    lookup_deadline_s: float = 10.0
    close_retry_delay_s: float = 1.0
    close_retry_max_delay_s: float = 30.0
    close_max_attempts: int = 5
    cancel_retry_delay_s: float = 1.0
    stop_grace_s: float = 5.0
    flat_confirm_s: float = 2.0
    trailing_min_step_pct: float = 0.0005
    trailing_step_fraction: float = 0.5
    recent_signal_memory: int = 32
    max_mark_age_s: float = 5.0
    mark_wait_s: float = 3.0
    max_stop_distance_pct: float = 0.5
    max_signal_age_s: float | None = None
    installation: Installation | None = None


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
    sl_since: float | None = None
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


def printable(x: object) -> str:
    """A text that any store can record: printable, at most 64 characters."""
    text = x if isinstance(x, str) else repr(x)
    return "".join(c if c.isprintable() else "?" for c in text[:64]) or "?"


class SignalOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    COOLDOWN = "cooldown"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """One signal and what became of it (the signal history of S1).

    ``replay``: this is the answer to an id decided before, carrying that decision (not
    written again). :attr:`retry`: whether the same id may succeed if sent again later
    (:func:`actors.reasons.retry_allowed`); only final decisions bind the id.
    """

    key: Key
    signal_id: str
    source: str
    outcome: SignalOutcome
    reason: str
    at: float
    position_id: int | None = None
    replay: bool = False

    @property
    def retry(self) -> bool:
        return self.outcome is not SignalOutcome.ACCEPTED and retry_allowed(self.reason)

    @classmethod
    def refused(
        cls,
        sig: OpenSignal,
        reason: str,
        at: float,
        outcome: SignalOutcome = SignalOutcome.REJECTED,
        position_id: int | None = None,
    ) -> SignalRecord:
        """The record of ``sig`` refused for ``reason`` at ``at``: the one way every layer
        (the transition, the actor shell, the supervisor's gates, the intake) writes a
        refusal. Its id and source are stored as :func:`printable` text (a signal refused
        for an invalid id still gets a record any store can hold)."""
        return cls(
            sig.key,
            printable(sig.signal_id),
            printable(sig.source),
            outcome,
            reason,
            at,
            position_id,
        )


class JournalKind(enum.StrEnum):
    """What one journal event records. The value is the text stored in the journal's
    ``kind`` column (the README's journal docs name them), so rows keep their meaning.
    ``closed`` / ``failed``: the position ended (the status's own word);
    ``illegal_transition``: a pair in no table of :mod:`actors.lifecycle`, nothing changed;
    ``position_changed`` / ``order_fact``: a durable change named by its difference."""

    ADOPTED = "adopted"
    CANCEL_REQUESTED = "cancel_requested"
    CLOSE_ADDED = "close_added"
    CLOSE_FAILING = "close_failing"
    CLOSE_PART_DONE = "close_part_done"
    CLOSE_REJECTED = "close_rejected"
    CLOSE_REQUESTED = "close_requested"
    CLOSE_REQUESTED_UNFILLED = "close_requested_unfilled"
    CLOSE_RETRY = "close_retry"
    CLOSE_RETRY_SCHEDULED = "close_retry_scheduled"
    CLOSED = "closed"
    CLOSING = "closing"
    ENTRY_ACCEPTED = "entry_accepted"
    ENTRY_FILL = "entry_fill"
    ENTRY_INTENT = "entry_intent"
    FAILED = "failed"
    ILLEGAL_TRANSITION = "illegal_transition"
    ORDER_FACT = "order_fact"
    ORDER_RESENT = "order_resent"
    ORDER_THROTTLED = "order_throttled"
    ORDER_UNKNOWN = "order_unknown"
    PAUSED = "paused"
    POSITION_CHANGED = "position_changed"
    QTY_FROM_SYNC = "qty_from_sync"
    QUARANTINED = "quarantined"
    RECOVERING = "recovering"
    RESUMED = "resumed"
    STOP_CONFIRMED = "stop_confirmed"
    STOP_FAILED = "stop_failed"
    STOP_INTENT = "stop_intent"
    STOP_REJECTED = "stop_rejected"
    STOP_REJECTED_AT_TRIGGER = "stop_rejected_at_trigger"
    UNQUARANTINED = "unquarantined"


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """One entry of the append-only journal: a transition and what caused it.

    ``kind``: a :class:`JournalKind` for every event the actors write; text only for a
    row whose kind no longer is one (read back from an older database) or a test's label."""

    position_id: int | None
    kind: JournalKind | str
    status_before: Status | None
    status_after: Status | None
    at: float
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ControlChange:
    """A stored control flag of the symbol changes (written with the commit's events, in the
    same transaction): ``flag`` is ``paused`` or ``quarantined``; ``note`` says why."""

    flag: str
    value: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class ControlOutcome:
    """What became of an operator's request, once the actor decided it (and, but during a
    store outage, wrote it). ``command``: ``close``, ``pause``, ``resume``, ``unquarantine``.
    ``outcome``: ``closing``, ``entry_cancel_requested``, ``already_closing``,
    ``no_position``, ``paused``, ``already_paused``, ``resumed``, ``not_paused``,
    ``unquarantined``, ``not_quarantined``; or, with ``ok`` false, why it was not done
    (``store_unavailable``)."""

    key: Key
    request_id: str
    command: str
    outcome: str
    ok: bool = True
    position_id: int | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    """What one transition makes durable, in one transaction.

    ``position`` carries ``version = expected_version + 1``; ``expected_version`` 0 means
    the position is new (INSERT). A store refuses a write whose expected version is stale.
    ``control``: a stored flag of the symbol (pause, quarantine) that changes with it (only
    in a commit without a position).
    """

    key: Key
    cause: Message
    position: Position | None
    expected_version: int
    events: tuple[JournalEvent, ...]
    signal: SignalRecord | None = None
    control: ControlChange | None = None

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
    """Everything one position actor knows.

    Durable (rebuilt from the store): ``position`` (the open one, else the latest),
    ``last_closed_at``, ``bought``, ``decided`` (the final decisions on the last
    ``recent_signal_memory`` signal ids, oldest first), ``paused`` (an operator stopped new
    entries) and ``quarantined`` (repeated crashes stopped them). In memory only: the mark price and
    when it was seen (local clock), the market's rules, whether a :class:`FetchMarket` is
    out, when the sync first saw the open position flat, recent orphan cancels and stop
    lookups (so that a lagging exchange list does not repeat them every round).
    """

    key: Key
    position: Position | None = None
    last_closed_at: float | None = None
    bought: bool = False
    decided: tuple[SignalRecord, ...] = ()
    quarantined: bool = False
    paused: bool = False
    last_price: float | None = None
    last_price_at: float | None = None
    market: MarketRules | None = None
    market_requested: bool = False
    market_failed_at: float | None = None
    flat_seen_at: float | None = None
    orphan_cancels: tuple[tuple[str, float], ...] = ()
    stop_lookup_at: float | None = None

    def decision(self, signal_id: str) -> SignalRecord | None:
        """The final decision recorded for ``signal_id`` among the remembered ones."""
        for rec in reversed(self.decided):
            if rec.signal_id == signal_id:
                return rec
        return None

    @property
    def open_position(self) -> Position | None:
        """The non-terminal position, if any (I1: at most one)."""
        p = self.position
        return p if p is not None and not p.status.terminal else None


@dataclass(frozen=True, slots=True)
class Transition:
    """Result of :func:`actors.transition.transition`: new state, what to write, what to do.

    ``deferred``: the message (a signal) cannot be decided yet (no fresh mark price, an
    earlier position's orders not confirmed cancelled): the shell keeps it and offers it
    again after the next message, or with ``Context.give_up`` once it waited too long.
    ``control``: the answer to an operator's request (the shell reports it once written).
    """

    state: SymbolState
    effects: tuple[Effect, ...] = ()
    commit: Commit | None = None
    signal: SignalRecord | None = None
    deferred: bool = False
    control: ControlOutcome | None = None
