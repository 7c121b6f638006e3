"""A supervisor wired to in-memory ports and a manual clock, for unit and scenario tests.

``World.settle()`` is the synchronisation primitive: it returns once every actor has handled
everything in its mailbox and no exchange call is in flight (polled with a deadline, with
``ask`` barriers through each actor's mailbox) — never a sleep.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

from actors.messages import Message, OpenSignal
from actors.model import Key, MarketRules, Side
from actors.ports import NullMetrics
from actors.state import Policy, Position, Reentry, SymbolState
from supervision.restart import RestartPolicy
from supervision.supervisor import Supervisor, SupervisorConfig
from supervision.sync import observations
from supervision.timers import ManualClock
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore
from testkit.waiting import poll

__all__ = ["CountingMetrics", "World", "priced", "signal"]

ACCOUNT = "main"


class CountingMetrics(NullMetrics):
    """Counts what the actors report; thread-safe enough for assertions (GIL, Counter)."""

    def __init__(self) -> None:
        self.signals: Counter[tuple[str, str, str]] = Counter()
        self.dead: Counter[str] = Counter()
        self.handled_n = 0
        self.unprotected_s: list[float] = []
        self._lock = threading.Lock()

    def signal(self, source: str, outcome: str, reason: str) -> None:
        with self._lock:
            self.signals[(source, outcome, reason)] += 1

    def handled(self, message_type: str, seconds: float) -> None:
        with self._lock:
            self.handled_n += 1

    def dead_letter(self, reason: str) -> None:
        with self._lock:
            self.dead[reason] += 1

    def unprotected(self, seconds: float) -> None:
        self.unprotected_s.append(seconds)

    def outcomes(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for (_, outcome, _), n in self.signals.items():
            c[outcome] += n
        return c


_seq = iter(range(1, 10**9))


def signal(
    symbol: str = "BTCUSDT",
    source: str = "sniper",
    *,
    side: Side = Side.LONG,
    size: float = 1.0,
    stop: float = 90.0,
    tp: float | None = None,
    trailing: float | None = None,
    signal_id: str | None = None,
    account: str = ACCOUNT,
    expires_at: float | None = None,
) -> OpenSignal:
    return OpenSignal(
        Key(account, symbol),
        signal_id or f"sig-{next(_seq)}",
        source,
        side,
        size,
        stop,
        take_profit=tp,
        trailing_distance=trailing,
        expires_at=expires_at,
    )


def priced(
    key: Key | None = None,
    price: float = 100.0,
    at: float = 0.0,
    rules: MarketRules | None = None,
) -> SymbolState:
    """A symbol's state that has seen the mark ``price`` at ``at`` and the market's ``rules``
    (default: none), so that a signal is decided at once by the pure transition."""
    return SymbolState(
        key or Key(ACCOUNT, "BTCUSDT"),
        last_price=price,
        last_price_at=at,
        market=rules or MarketRules(),
    )


class World:
    """Supervisor + InMemoryStore + InMemoryExchange + ManualClock. Close it (context manager)."""

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        restart: RestartPolicy | None = None,
        prices: dict[str, float] | None = None,
        store: InMemoryStore | None = None,
        exchange: InMemoryExchange | None = None,
        clock: ManualClock | None = None,
    ) -> None:
        self.clock = clock or ManualClock()
        self.store = store or InMemoryStore()
        self.exchange = exchange or InMemoryExchange(ACCOUNT, prices)
        self.exchange.use_clock(self.clock.now)
        self.metrics = CountingMetrics()
        self.sync_requests: list[tuple[str, str]] = []
        config = SupervisorConfig(
            policy=policy or Policy(reentry=Reentry.ALLOW),
            restart=restart or RestartPolicy(),
            passivate_after_s=60.0,
        )
        self.sup = Supervisor(
            self.store,
            {ACCOUNT: self.exchange},
            self.clock,
            config=config,
            metrics=self.metrics,
        )
        self.sup.sync_listeners.append(lambda a, r: self.sync_requests.append((a, r)))
        self.exchange.listener = self.sup.tell
        self.clock.on_advance(self.sup.timers.fire_due)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.exchange.gate is not None:
            self.exchange.gate.set()
        for ev in self.exchange.hold.values():
            ev.set()
        assert self.sup.stop(grace_s=5.0), "supervisor did not stop cleanly"

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``predicate`` (a condition on state that other threads change) until true."""
        poll(predicate, timeout, "", 0.001, TimeoutError)

    # -- driving

    def tell(self, *msgs: Message) -> None:
        for m in msgs:
            self.sup.tell(m)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def sync(self, account: str = ACCOUNT, *, calls: bool = True) -> None:
        """One round of the periodic sync, as the real sync service does it."""
        view = self.exchange.fetch_account(account)
        for obs in observations(view, self.sup.keys()):
            self.sup.tell(obs)
        self.settle(calls=calls)

    def settle(self, timeout: float = 10.0, *, calls: bool = True) -> None:
        """Return when every actor is idle (and, with ``calls``, no exchange call is in flight).

        With ``calls=False`` an exchange call held by a test stays in flight; only mailboxes
        are drained.
        """
        deadline = time.monotonic() + timeout
        while True:
            # Progress is a message handled *or* a call submitted: work an actor does after
            # its message (a deferred signal offered again) counts through its calls.
            before = (self.metrics.handled_n, self.sup.calls_submitted())
            if calls and not self.sup.drain_calls(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("exchange calls still in flight")
            for key in list(self.sup.keys()):
                self.sup.state(key, timeout=max(0.1, deadline - time.monotonic()))
            after = (self.metrics.handled_n, self.sup.calls_submitted())
            if (not calls or self.sup.in_flight() == 0) and after == before:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("actors did not settle")

    # -- reading

    def state(self, symbol: str = "BTCUSDT", account: str = ACCOUNT) -> SymbolState:
        return self.sup.state(Key(account, symbol))

    def positions(self, symbol: str | None = None) -> list[Position]:
        return self.store.positions(Key(ACCOUNT, symbol) if symbol else None)

    def open_positions(self, symbols: Iterable[str] | None = None) -> list[Position]:
        ps = self.store.open_positions()
        if symbols is not None:
            wanted = set(symbols)
            ps = [p for p in ps if p.key.symbol in wanted]
        return ps
