"""The ports the actors need, as small Protocols; ``infra/`` implements them.

Unit tests use in-memory implementations of the same Protocols (``testkit/``); everything
else uses the real adapters (PostgreSQL, ccxt, prometheus-client).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from actors.messages import CallResult, Rejection, TimerId
from actors.model import (
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    MarketRules,
    OrderKind,
)
from actors.state import Commit, Position, SignalRecord

__all__ = [
    "AccountView",
    "Clock",
    "ExchangePort",
    "Fenced",
    "MarketReply",
    "Metrics",
    "NullMetrics",
    "OrderReply",
    "OrderRequest",
    "SignalSeen",
    "Snapshot",
    "StaleVersion",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
    "Timers",
]


class Clock(Protocol):
    """Wall-clock seconds since the epoch. Tests drive a manual clock instead."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


# --- store -------------------------------------------------------------------------------


class StoreError(Exception):
    """A write or read did not happen. The message says why; nothing was half-written."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (outage, pool exhausted). Safe to retry later."""


class StaleVersion(StoreError):
    """The expected version did not match: another writer got there first. Nothing was
    written. The actor reloads its state (not a crash) and the ownership of its account is
    checked at once (I7)."""


class Fenced(StoreError):
    """The commit's fencing token (the account's lease epoch) is not the database's current
    one, or this process does not hold the account's lease (any more): another process owns
    the account. Nothing was written. The actor sends nothing more for the account; the
    process fences the account and waits for its lease again (I7)."""


class SignalSeen(StoreError):
    """The commit accepts a signal whose id is already in the account's signal history (a
    replay older than the actor's memory of recent ids): nothing was written."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the store knows of one ``(account, symbol)`` at actor start.

    ``decided``: the final decisions (:attr:`SignalRecord.retry` false) on the key's most
    recent signal ids, oldest first. ``paused``/``quarantined``: the symbol's stored control
    flags (an operator's pause; a quarantine after repeated crashes).
    """

    position: Position | None = None
    last_closed_at: float | None = None
    bought: bool = False
    decided: tuple[SignalRecord, ...] = ()
    paused: bool = False
    quarantined: bool = False


class Store(Protocol):
    """Durable state. Called on the actor's own thread; every method may block briefly.

    ``commit`` writes one transition in one transaction (position with expected version,
    its orders, its journal events, the signal record) or nothing at all, raising
    :class:`StaleVersion`, :class:`SignalSeen` (an accepted signal's id is recorded already),
    :class:`Fenced` (this process does not own the account) or :class:`StoreUnavailable`.
    """

    def load(self, key: Key) -> Snapshot: ...

    def commit(self, commit: Commit) -> None: ...

    def allocate_ids(self, n: int) -> Sequence[int]: ...

    def open_positions(self, account: str | None = None) -> list[Position]: ...

    def recorded_signal(self, account: str, signal_id: str) -> SignalRecord | None:
        """The final decision recorded for ``signal_id`` in the account's signal history
        (accepted, or refused for good), or ``None``. Raises :class:`StoreUnavailable`."""
        ...


# --- exchange ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRequest:
    key: Key
    client_id: str
    kind: OrderKind
    side: str
    qty: float
    trigger_price: float | None = None
    reduce_only: bool = False
    close_position: bool = False


@dataclass(frozen=True, slots=True)
class OrderReply:
    """What one exchange call came back with.

    ``result`` is ACCEPTED / REJECTED / UNKNOWN for place and cancel, FOUND / NOT_FOUND /
    UNKNOWN for lookups. ``status`` is the exchange's order status, normalised by the
    adapter, when the reply showed one. ``retry_after`` is set when the exchange asked us to
    back off.
    ``rejection``: a refusal the state machine branches on, classified by the adapter.
    """

    result: CallResult
    reason: str = ""
    status: ExchangeStatus | None = None
    filled_qty: float = 0.0
    avg_price: float | None = None
    exchange_id: str | None = None
    event_time: float = 0.0
    retry_after: float | None = None
    rejection: Rejection | None = None


@dataclass(frozen=True, slots=True)
class MarketReply:
    """A symbol's reference (mark) price and trading rules, as one exchange call returned them.

    ``result`` is FOUND (``mark_price`` and ``rules`` set; ``rules`` may be ``None`` only when
    the venue states none) or UNKNOWN (nothing learnt: ``reason`` says why, ``retry_after`` is
    set when the exchange asked us to back off) or REJECTED (the symbol is not traded there).
    ``at`` is the local clock's time when the request was sent: the price is at least that
    fresh.
    """

    result: CallResult
    mark_price: float | None = None
    rules: MarketRules | None = None
    at: float = 0.0
    reason: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class AccountView:
    """Positions and open orders of one account, keyed by exchange symbol id."""

    account: str
    positions: Mapping[str, ExchangePosition]
    open_orders: Mapping[str, tuple[ExchangeOrder, ...]]
    observed_at: float
    symbols: frozenset[str] = field(default_factory=frozenset)


class ExchangePort(Protocol):
    """One account's exchange. Blocking; called only on that account's worker threads.

    Implementations never raise for exchange or network errors: they map them to an
    :class:`OrderReply` (``UNKNOWN`` whenever the order may have reached the exchange).
    ``fetch_account`` may raise; the sync treats that as "no observation this round".
    """

    def place_order(self, req: OrderRequest) -> OrderReply: ...

    def cancel_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply: ...

    def lookup_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply: ...

    def fetch_account(self, account: str) -> AccountView: ...

    def fetch_market(self, key: Key) -> MarketReply:
        """The symbol's mark price and market rules. Never raises: failures are UNKNOWN."""
        ...


# --- timers and metrics ------------------------------------------------------------------


class Timers(Protocol):
    """Keyed timers: a newer timer with the same ``(key, name)`` supersedes the older one."""

    def start(self, key: Key, name: TimerId, delay: float) -> None: ...

    def cancel(self, key: Key, name: TimerId) -> None: ...


class Metrics(Protocol):
    """What the actors report. Every method is cheap and thread-safe and never raises."""

    def signal(self, source: str, outcome: str, reason: str) -> None: ...

    def order(self, kind: str, op: str, result: str) -> None: ...

    def transition(self, before: str | None, after: str | None) -> None: ...

    def handled(self, message_type: str, seconds: float) -> None: ...

    def tick_decision(self, seconds: float) -> None: ...

    def unprotected(self, seconds: float) -> None: ...

    def commit_failed(self, reason: str) -> None: ...

    def dead_letter(self, reason: str) -> None: ...

    def exchange_call(self, op: str, seconds: float) -> None: ...

    def orphan_cancelled(self) -> None:
        """A resting order of ours that no open position needs is being cancelled (I9)."""

    def protection_failure(self, kind: str) -> None:
        """Protection in trouble: ``stop_failed`` (attempts or deadline spent, closing at
        market), ``close_failing`` (closes refused again and again),
        ``stop_rejected_at_trigger``."""


class NullMetrics:
    """Metrics that go nowhere (unit tests, tools)."""

    def signal(self, source: str, outcome: str, reason: str) -> None:
        pass

    def order(self, kind: str, op: str, result: str) -> None:
        pass

    def transition(self, before: str | None, after: str | None) -> None:
        pass

    def handled(self, message_type: str, seconds: float) -> None:
        pass

    def tick_decision(self, seconds: float) -> None:
        pass

    def unprotected(self, seconds: float) -> None:
        pass

    def commit_failed(self, reason: str) -> None:
        pass

    def dead_letter(self, reason: str) -> None:
        pass

    def exchange_call(self, op: str, seconds: float) -> None:
        pass

    def orphan_cancelled(self) -> None:
        pass

    def protection_failure(self, kind: str) -> None:
        pass
