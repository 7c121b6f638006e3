"""Fixtures for the exchange adapter tests: a local sim exchange and real ccxt adapters.

Everything runs in-process over real HTTP on 127.0.0.1 (``SimExchange`` on port 0) with the
real ccxt ``binanceusdm`` client; nothing of ccxt is mocked. Every fixture stops what it
started (the suite-wide guard in ``tests/conftest.py`` fails a test that leaves a thread).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import ccxt
import pytest

from actors.model import Key, OrderKind
from actors.ports import OrderRequest, SystemClock
from actors.state import Policy
from infra.exchange import BINANCE_USDM, CcxtExchange, VenueConfig
from sim import SimExchange
from supervision.supervisor import Supervisor, SupervisorConfig
from testkit.store import InMemoryStore
from testkit.waiting import poll
from tests.venues import adapters, venue_config

ACCOUNT = "main"
SYMBOL = "BTCUSDT"
KEY = Key(ACCOUNT, SYMBOL)


def sim_config(sim: SimExchange, **changes: Any) -> VenueConfig:
    """How tests (and the demo) point the adapter at the sim: its base URL, dummy keys
    (:func:`tests.venues.venue_config` on Binance's venue)."""
    return venue_config(BINANCE_USDM.name, sim, **changes)


@contextlib.contextmanager
def running_supervisor(sim: SimExchange, policy: Policy, **venue: Any) -> Iterator[Supervisor]:
    """The real supervisor and actors on the in-memory store, with a ccxt adapter pointed at
    ``sim`` (``venue``: :func:`sim_config` overrides), its timer thread started; stopped (and
    checked to stop cleanly) afterwards."""
    exchange = CcxtExchange(ACCOUNT, sim_config(sim, **venue))
    sup = Supervisor(
        InMemoryStore(),
        {ACCOUNT: exchange},
        SystemClock(),
        config=SupervisorConfig(policy=policy, shutdown_grace_s=5.0),
    )
    sup.start()
    try:
        yield sup
    finally:
        assert sup.stop(grace_s=5.0), "supervisor did not stop cleanly"
        exchange.close()


def wait_until(
    pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll ``pred`` until it returns something truthy (returned) or fail after ``timeout``."""
    return poll(pred, timeout, what, interval)


def entry(cid: str, qty: float = 0.01, side: str = "buy", key: Key = KEY) -> OrderRequest:
    return OrderRequest(key, cid, OrderKind.ENTRY, side, qty)


def close(cid: str, qty: float = 0.01, side: str = "sell", key: Key = KEY) -> OrderRequest:
    return OrderRequest(key, cid, OrderKind.CLOSE, side, qty, reduce_only=True)


def stop(cid: str, trigger: float, side: str = "sell", key: Key = KEY) -> OrderRequest:
    return OrderRequest(
        key, cid, OrderKind.STOP_LOSS, side, 0.01, trigger_price=trigger, close_position=True
    )


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    """A started local exchange (ten symbols, BTCUSDT at 60,000); stopped after the test."""
    with SimExchange(seed=11) as ex:
        yield ex


@pytest.fixture
def make_exchange(sim: SimExchange) -> Iterator[Callable[..., CcxtExchange]]:
    """Factory of adapters pointed at ``sim`` (``VenueConfig`` overrides as keywords)."""
    with adapters(lambda **changes: sim_config(sim, **changes), ACCOUNT) as make:
        yield make


@pytest.fixture
def exchange(make_exchange: Callable[..., CcxtExchange]) -> CcxtExchange:
    """An adapter for account ``main`` on the sim, markets loaded."""
    ex = make_exchange()
    ex.load_markets()
    return ex


@pytest.fixture
def outsider(sim: SimExchange) -> Iterator[Any]:
    """A raw ccxt client on the same sim account: someone trading by hand, not the product."""
    client = ccxt.binanceusdm(
        {
            "apiKey": "other-key",
            "secret": "other-secret",
            "enableRateLimit": False,
            "options": dict(BINANCE_USDM.options),
        }
    )
    client.urls["api"] = BINANCE_USDM.api_urls(sim.base_url)
    client.load_markets()
    yield client
    client.close()
