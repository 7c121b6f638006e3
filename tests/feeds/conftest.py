"""Fixtures for the feed tests: the sim's real WebSocket servers, real websocket-client, a real
supervisor on the in-memory store.

Everything runs in-process on 127.0.0.1 with port 0. Every fixture stops what it started;
``no_leaked_threads`` (autouse) also fails a test that leaves a *daemon* thread behind (the
feeds' threads are daemons, which the suite-wide guard does not look at). Waits poll a
condition with a deadline (:func:`wait_until`) or block on an event; no sleep synchronises.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from actors.model import Key
from actors.ports import SystemClock
from actors.state import Policy, Reentry
from infra.feeds import Backoff, CountingFeedMetrics
from sim import SignalFeed, SimExchange
from supervision.supervisor import Supervisor, SupervisorConfig
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore
from testkit.waiting import poll
from testkit.world import CountingMetrics

ACCOUNT = "main"
SYMBOL = "BTCUSDT"
KEY = Key(ACCOUNT, SYMBOL)

FAST = Backoff(min_s=0.02, max_s=0.2, jitter=0.2, stable_after_s=1.0)
"""Reconnect quickly in tests (the production default starts at 0.1 s)."""

_T = TypeVar("_T")


def wait_until(
    pred: Callable[[], _T | None], timeout: float = 5.0, what: str = "", interval: float = 0.005
) -> _T:
    """Poll ``pred`` until it returns something truthy (returned) or fail after ``timeout``."""
    return poll(pred, timeout, what, interval)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail if a test leaves any thread (daemon or not) behind after its fixtures ended."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        for t in extra:
            t.join(0.05)
    assert not extra, f"threads left behind: {[t.name for t in extra]}"


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    """A started local exchange (ten symbols, BTCUSDT at 60,000); stopped after the test."""
    with SimExchange(seed=7) as ex:
        yield ex


@pytest.fixture
def signal_server() -> Iterator[SignalFeed]:
    """The sim's signal feed server without a token."""
    with SignalFeed("127.0.0.1", 0) as feed:
        yield feed


@dataclass
class SyncRecorder:
    """Records ``request_sync(account, reason)`` calls; thread-safe; waitable."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    forward: Callable[[str, str], object] | None = None

    def __call__(self, account: str, reason: str) -> None:
        with self.cond:
            self.calls.append((account, reason))
            self.cond.notify_all()
        if self.forward is not None:
            self.forward(account, reason)

    def reasons(self) -> list[str]:
        with self.cond:
            return [r for _, r in self.calls]

    def wait_for(self, reason: str, n: int = 1, timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: sum(1 for _, r in self.calls if r == reason) >= n, timeout
            )


@pytest.fixture
def syncs() -> SyncRecorder:
    return SyncRecorder()


@pytest.fixture
def feed_metrics() -> CountingFeedMetrics:
    return CountingFeedMetrics()


@dataclass
class Local:
    """A real supervisor on the in-memory store and exchange (no WebSocket of its own)."""

    sup: Supervisor
    store: InMemoryStore
    exchange: InMemoryExchange
    metrics: CountingMetrics


def make_local(prices: dict[str, float], accounts: tuple[str, ...] = (ACCOUNT,)) -> Local:
    store = InMemoryStore()
    exchange = InMemoryExchange(ACCOUNT, prices)
    exchange.stream = False  # order updates come only from replies here
    metrics = CountingMetrics()
    sup = Supervisor(
        store,
        dict.fromkeys(accounts, exchange),
        SystemClock(),
        config=SupervisorConfig(
            policy=Policy(reentry=Reentry.ALLOW, max_signal_age_s=30.0), shutdown_grace_s=5.0
        ),
        metrics=metrics,
    )
    sup.start()
    return Local(sup, store, exchange, metrics)


@pytest.fixture
def local(sim: SimExchange) -> Iterator[Local]:
    """Supervisor on in-memory ports, prices of the sim's symbols; stopped after the test."""
    world = make_local(sim.mark_prices())
    try:
        yield world
    finally:
        assert world.sup.stop(grace_s=5.0), "supervisor did not stop cleanly"


def stopped(*feeds: Any) -> None:
    """Stop feeds (each bounded) and assert every thread ended."""
    for f in feeds:
        f.stop(5.0)
        assert not f.running, f"{f!r} did not stop"
