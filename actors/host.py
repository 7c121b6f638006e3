"""The contract between a position actor and its host (the supervisor).

What the host hands each actor (:class:`ActorDeps`), what it offers it (:class:`ActorHost`),
what it may send besides the domain messages (:class:`Barrier`, :class:`Passivate`), and what
the actor publishes for it after every message (:class:`ActorCell`, :class:`StatusReport`,
:func:`is_activity`). Nothing here runs on its own: the types are shared by
:mod:`actors.position_actor` (the actor thread) and the supervisor (its own threads).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pykka

from actors.effects import CancelOrder, FetchMarket, LookupOrder, PlaceOrder
from actors.messages import MarkPriceTick, Message, SyncObservation, TicksReady, TimerFired
from actors.model import Key, Status
from actors.orders import parse_client_id
from actors.ports import Clock, Metrics, Store, Timers
from actors.state import (
    ControlOutcome,
    Policy,
    Position,
    SignalRecord,
    SymbolState,
)

__all__ = [
    "ActorCell",
    "ActorDeps",
    "ActorHost",
    "Barrier",
    "Passivate",
    "RestartDecision",
    "StatusReport",
    "actor_log",
    "is_activity",
]


#: The logger of every line about a position actor, whichever of its modules writes it
#: (operators and the log tests filter on this one name).
actor_log = logging.getLogger("actors.position_actor")


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """The supervisor's answer to a crash: wait ``delay`` s, then restart; maybe quarantine."""

    delay: float
    quarantine: bool


@dataclass(frozen=True, slots=True)
class Barrier:
    """Asked (``ref.ask(Barrier())``): answered True once the actor has started (loaded its
    position) and handled every message before it. Cheap: no proxy, no transition."""


@dataclass(frozen=True, slots=True)
class Passivate:
    """The supervisor thinks this actor is idle; it stops itself if it still is."""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What an actor publishes after each message (read by the supervisor, never written).

    ``close_failing``: the open position is closing and the exchange has refused
    ``close_max_attempts`` closes or more (shown in the readiness check).
    ``last_activity``: when the actor last handled a message that counts as activity
    (:func:`is_activity`), or stopped being idle; the supervisor passivates an actor idle
    since ``passivate_after_s``. ``paused``: an operator paused new entries. ``position``:
    the actor's position (the open one, else the latest; a frozen value), ``mark``: its last
    mark price (the live view reads both).
    """

    status: Status | None
    last_activity: float
    idle: bool
    quarantined: bool
    unwritten: int
    close_failing: bool = False
    paused: bool = False
    position: Position | None = None
    mark: float | None = None

    @classmethod
    def of(
        cls,
        state: SymbolState,
        policy: Policy,
        *,
        last_activity: float,
        idle: bool,
        quarantined: bool,
        unwritten: int,
    ) -> StatusReport:
        """The report of an actor whose state is ``state``."""
        pos = state.open_position
        return cls(
            status=state.position.status if state.position is not None else None,
            last_activity=last_activity,
            idle=idle,
            quarantined=quarantined,
            unwritten=unwritten,
            close_failing=(
                pos is not None
                and pos.status is Status.CLOSING
                and pos.close_seq >= policy.close_max_attempts
            ),
            paused=state.paused,
            position=state.position,
            mark=state.last_price,
        )


class ActorCell:
    """The supervisor's handle on one actor's published status.

    The actor thread replaces ``report`` after every message (one attribute store); the
    supervisor's housekeeping reads it. Nothing else is shared.
    """

    __slots__ = ("key", "report")

    def __init__(self, key: Key, now: float) -> None:
        self.key = key
        self.report = StatusReport(None, now, True, False, 0)


class ActorHost(Protocol):
    """What the supervisor offers its actors. Every method is thread-safe and non-blocking."""

    def deliver(self, msg: Message) -> object: ...

    def submit(self, effect: PlaceOrder | CancelOrder | LookupOrder | FetchMarket) -> None: ...

    def request_sync(self, key: Key, reason: str) -> None: ...

    def signal_decided(self, record: SignalRecord) -> None:
        """A signal's outcome is decided and, but during a store outage, written."""

    def control_decided(self, outcome: ControlOutcome) -> None:
        """An operator's request is decided and, but during a store outage, written."""

    def clear_quarantine(self, key: Key) -> None:
        """An operator lifted the quarantine: the crash count starts afresh."""

    def on_crash(self, key: Key, exc: BaseException) -> RestartDecision: ...

    def retire(self, key: Key, ref: pykka.ActorRef[Any]) -> bool: ...

    def not_owner(self, key: Key, why: str, certain: bool) -> None:
        """A write of ``key`` was refused because another process owns the account
        (``certain``: its lease epoch is stale, :class:`~actors.ports.Fenced`) or may own it
        (a stale version, :class:`~actors.ports.StaleVersion`): fence the account, or check
        its lease now."""


@dataclass(frozen=True, slots=True)
class ActorDeps:
    """What the supervisor hands each actor. ``ids``: where new position ids come from
    (default: a small block of the actor's own, fetched from the store)."""

    store: Store
    timers: Timers
    clock: Clock
    metrics: Metrics
    policy: Policy
    host: ActorHost
    ids: Callable[[], int] | None = None


def is_activity(message: Message) -> bool:
    """Whether handling ``message`` keeps an idle actor from passivating. Mark prices do not
    (an actor without a position has nothing to decide on them), nor do timers (one that
    fires on an idle actor finds what it was armed for over: a deferred signal, a restart or
    an unwritten transition make the actor not idle), nor the sync's "nothing here": no
    position on the exchange and no open order of ours. Everything else does: signals,
    order updates, exchange outcomes, other observations, close requests. Any message that
    leaves the actor not idle, or ends a spell of not being idle, counts anyway."""
    if isinstance(message, MarkPriceTick | TicksReady | TimerFired):
        return False
    if isinstance(message, SyncObservation):
        xp = message.position
        return (xp is not None and xp.qty > 0) or any(
            parse_client_id(o.client_id) is not None for o in message.open_orders
        )
    return True
