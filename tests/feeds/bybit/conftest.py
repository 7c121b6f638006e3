"""Fixtures for the Bybit feed tests: the sim's Bybit front (REST and both streams), real
ccxt ``bybit`` clients to place orders, and a recording sink.

The feeds under test use the real websocket-client against ``sim.bybit``; orders are placed
with the real ccxt (issue 17's client options, ``tests.sim.bybit.conftest``). What the feeds
deliver is recorded by :class:`Recorder`, a :class:`~infra.feeds.FeedSink` (the supervisor's
two methods), and checked against the sim's own ledger (its positions and order log).
Every fixture stops what it started; ``no_leaked_threads`` (tests/feeds/conftest.py) applies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.messages import MarkPriceTick, Message, OrderUpdate
from infra.feeds import BybitCredentials, BybitUserStream, CountingFeedMetrics
from sim.bybit import BybitExchange
from tests.feeds.conftest import FAST, SyncRecorder, stopped
from tests.sim.bybit.conftest import ACCOUNTS, KEY, SECRET, SECRETS, make_bybit_ccxt

ACCOUNT = "main"
SYMBOL = "BTCUSDT"
CCXT_SYMBOL = "BTC/USDT:USDT"
PRIVATE = "/v5/private"
PUBLIC = "/v5/public/linear"


@dataclass
class Recorder:
    """A sink that records what it is told (any thread); waitable."""

    messages: list[Message] = field(default_factory=list)
    ticks: list[MarkPriceTick] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def tell(self, msg: Message) -> bool:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()
        return True

    def tell_tick(self, tick: MarkPriceTick) -> bool:
        with self.cond:
            self.ticks.append(tick)
            self.cond.notify_all()
        return True

    def updates(self, client_id: str | None = None) -> list[OrderUpdate]:
        with self.cond:
            return [
                m
                for m in self.messages
                if isinstance(m, OrderUpdate) and (client_id is None or m.client_id == client_id)
            ]

    def wait(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)

    def wait_update(
        self, client_id: str, status: str, filled: float | None = None, timeout: float = 5.0
    ) -> OrderUpdate:
        def found() -> OrderUpdate | None:
            return next(
                (
                    u
                    for u in self.updates(client_id)
                    if u.status.value == status and (filled is None or u.filled_qty == filled)
                ),
                None,
            )

        with self.cond:
            self.cond.wait_for(lambda: found() is not None, timeout)
        got = found()
        assert got is not None, (client_id, status, filled, self.updates(client_id))
        return got

    def wait_tick(
        self, pred: Callable[[MarkPriceTick], bool], timeout: float = 5.0
    ) -> MarkPriceTick:
        def found() -> MarkPriceTick | None:
            return next((t for t in self.ticks if pred(t)), None)

        with self.cond:
            self.cond.wait_for(lambda: found() is not None, timeout)
            got = found()
        assert got is not None, self.ticks[-5:]
        return got


@pytest.fixture
def bybit() -> Iterator[BybitExchange]:
    """A started Bybit front (accounts "main" and "other", strict keys); stopped after."""
    with BybitExchange(seed=7, accounts=ACCOUNTS, secrets=SECRETS, strict_keys=True) as ex:
        yield ex


@pytest.fixture
def client(bybit: BybitExchange) -> Iterator[Any]:
    """A real ccxt bybit of account "main", markets loaded."""
    ex = make_bybit_ccxt(bybit.base_url)
    ex.load_markets()
    yield ex
    ex.session.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def user_stream(
    bybit: BybitExchange,
    sink: Recorder,
    syncs: SyncRecorder,
    metrics: CountingFeedMetrics,
    secret: str = SECRET,
    **kw: Any,
) -> BybitUserStream:
    options: dict[str, Any] = {"backoff": FAST, "metrics": metrics, "poll_s": 0.05}
    options.update(kw)
    return BybitUserStream(
        ACCOUNT,
        bybit.ws_url + PRIVATE,
        BybitCredentials(KEY, secret),
        sink,
        request_sync=syncs,
        **options,
    )


@pytest.fixture
def private(
    bybit: BybitExchange,
    recorder: Recorder,
    syncs: SyncRecorder,
    feed_metrics: CountingFeedMetrics,
) -> Iterator[BybitUserStream]:
    """A started, subscribed private stream of account "main"."""
    s = user_stream(bybit, recorder, syncs, feed_metrics)
    s.start()
    try:
        assert syncs.wait_for("stream connected"), "subscriptions confirmed"
        assert bybit.wait_for_user_streams(1)
        yield s
    finally:
        stopped(s)
