"""Fixtures for the adapter's Bybit tests: a local Bybit v5 exchange and real ccxt adapters.

One :class:`sim.bybit.BybitExchange` per module (port 0, account ``main`` with its own key
pair, strict keys and signatures), reset before every test (prices, orders, orderLinkIds,
faults, limits); adapters (``CcxtExchange`` on the ``bybit`` venue, the real ccxt ``bybit``
over HTTP) per test, closed after it. Nothing of ccxt is mocked.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors.messages import CallResult
from actors.model import Key
from actors.ports import OrderReply
from infra.exchange import BYBIT_LINEAR, CcxtExchange, Credentials, VenueConfig
from sim.bybit import BybitExchange
from testkit.waiting import poll
from tests.venues import adapters, venue_config

ACCOUNT = "main"
SYMBOL = "BTCUSDT"
KEY = Key(ACCOUNT, SYMBOL)
API_KEY = "bybit-key-main"
API_SECRET = "bybit-secret-main"


def bybit_config(ex: BybitExchange, **changes: Any) -> VenueConfig:
    """How tests point the adapter at the Bybit sim: the ``bybit`` venue, its base URL,
    the account's key pair, no limiter unless asked (:func:`tests.venues.venue_config`)."""
    changes.setdefault("api_credentials", Credentials(API_KEY, API_SECRET))
    return venue_config(BYBIT_LINEAR.name, ex, **changes)


@pytest.fixture(scope="module")
def bybit() -> Iterator[BybitExchange]:
    """One started Bybit front per module (BTCUSDT at 60,000)."""
    with BybitExchange(
        seed=7, accounts={ACCOUNT: [API_KEY]}, secrets={API_KEY: API_SECRET}, strict_keys=True
    ) as ex:
        yield ex


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts from the start state; afterwards a garbage collection frees
    responses held by caught ccxt errors' tracebacks (see tests/sim/bybit/conftest.py)."""
    if "bybit" in request.fixturenames:
        ex: BybitExchange = request.getfixturevalue("bybit")
        ex.reset()
        ex.limits.enforce = False
    yield
    gc.collect()


@pytest.fixture
def make_exchange(bybit: BybitExchange) -> Iterator[Callable[..., CcxtExchange]]:
    """Factory of adapters on the Bybit sim (``VenueConfig`` overrides as keywords)."""
    with adapters(lambda **changes: bybit_config(bybit, **changes), ACCOUNT) as make:
        yield make


@pytest.fixture
def exchange(make_exchange: Callable[..., CcxtExchange]) -> CcxtExchange:
    """An adapter for account ``main`` on the Bybit sim, markets loaded."""
    ex = make_exchange()
    ex.load_markets()
    return ex


def resolve(ex: CcxtExchange, cid: str, trigger: bool = False, timeout: float = 5.0) -> OrderReply:
    """What the actor does after UNKNOWN: look the order up by client id until found."""

    def found() -> OrderReply | None:
        reply = ex.lookup_order(KEY, cid, trigger)
        return reply if reply.result is CallResult.FOUND else None

    result: OrderReply = poll(found, timeout, f"lookup {cid}", 0.05)
    return result


def accepted_orders(ex: BybitExchange, cid: str) -> int:
    """How many order requests carrying ``cid`` the exchange accepted (its own ledger)."""
    return sum(1 for e in ex.order_log(ACCOUNT) if e.client_id == cid and e.outcome == "accepted")
