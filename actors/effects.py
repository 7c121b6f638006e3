"""Effects: what a transition asks the actor shell to do after the new state is written.

The pure state machine returns them; :class:`actors.position_actor.PositionActor` performs
them, at most once per committed transition (Akka persistence's rule). None of them blocks
the actor: exchange calls go to the account's worker pool, timers to the timer service.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.messages import TimerId
from actors.model import Key, OrderKind, OrderRecord

__all__ = [
    "CancelOrder",
    "CancelTimer",
    "Effect",
    "FetchMarket",
    "LookupOrder",
    "PlaceOrder",
    "RequestSync",
    "StartTimer",
]


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Send ``order`` (its client id is the deterministic one, I2).

    ``reduce_only`` for closes; ``close_position`` for stop-losses, which then cover the whole
    position whatever partial fills made of it.
    """

    key: Key
    position_id: int
    order: OrderRecord
    reduce_only: bool = False
    close_position: bool = False


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel the order with this client id. ``why``: ``orphan`` for an order of ours that no
    position of this actor knows (counted apart), else a word for the log."""

    key: Key
    client_id: str
    kind: OrderKind
    why: str = ""


@dataclass(frozen=True, slots=True)
class LookupOrder:
    """Ask the exchange for the order with this client id (never re-send blindly)."""

    key: Key
    client_id: str
    kind: OrderKind


@dataclass(frozen=True, slots=True)
class FetchMarket:
    """Ask the exchange for the symbol's mark price and market rules (answered by a
    :class:`~actors.messages.MarketInfo`): a signal waits for a fresh reference price (I10)."""

    key: Key


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Deliver ``TimerFired(key, name)`` after ``delay`` s, superseding a pending one."""

    key: Key
    name: TimerId
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: Key
    name: TimerId


@dataclass(frozen=True, slots=True)
class RequestSync:
    """Ask for a fresh exchange observation of the symbol's account (something is uncertain)."""

    key: Key
    reason: str


Effect = (
    PlaceOrder | CancelOrder | LookupOrder | FetchMarket | StartTimer | CancelTimer | RequestSync
)
