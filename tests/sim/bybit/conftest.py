"""Fixtures for the Bybit front's tests: one exchange per module, real ccxt ``bybit`` clients,
websocket-client readers of the public and private streams.

The exchange (``bybit``) is started once per module and reset before every test (prices,
wallets, orders, orderLinkIds, faults, limits); clients and stream readers are per test and
closed after it, so ``no_leaked_threads`` (tests/sim/conftest.py) still holds per test.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import ccxt
import pytest

from sim.bybit import BybitExchange, sign
from tests.sim.conftest import WsReader

SYMBOL = "BTC/USDT:USDT"
KEY = "key-main"
SECRET = "secret-main"
OTHER_KEY = "key-other"
OTHER_SECRET = "secret-other"
ACCOUNTS = {"main": [KEY], "other": [OTHER_KEY]}
SECRETS = {KEY: SECRET, OTHER_KEY: OTHER_SECRET}

CLIENT_OPTIONS = {
    "fetchMarkets": {"types": ["linear"]},
    "enableUnifiedAccount": True,
    "enableUnifiedMargin": False,
    "unifiedMarginStatus": 6,
}
"""The client options of issue 17: no account-mode calls before the first order."""


def make_bybit_ccxt(
    base_url: str, key: str = KEY, secret: str = SECRET, *, timeout_ms: int = 10_000
) -> Any:
    """A real ``ccxt.bybit`` pointed at ``base_url`` (issue 17's options).

    ``urls["api"]`` is replaced (not merged): its keys ``spot``, ``futures``, ``v2``,
    ``public``, ``private`` all go to the sim; ``has["fetchCurrencies"] = False`` keeps
    ``load_markets`` from asking for coin info.
    """
    ex = ccxt.bybit(
        {
            "apiKey": key,
            "secret": secret,
            "enableRateLimit": False,
            "timeout": timeout_ms,
            "options": dict(CLIENT_OPTIONS),
        }
    )
    ex.has["fetchCurrencies"] = False
    ex.urls["api"] = {k: base_url for k in ("spot", "futures", "v2", "public", "private")}
    return ex


@pytest.fixture(scope="module")
def bybit() -> Iterator[BybitExchange]:
    """One started Bybit front per module (accounts "main" and "other", strict keys)."""
    with BybitExchange(seed=7, accounts=ACCOUNTS, secrets=SECRETS, strict_keys=True) as ex:
        yield ex


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test of a module sharing ``bybit`` starts from the start state.

    After the test, a garbage collection: a ccxt error caught by ``pytest.raises`` keeps its
    traceback's frames in a reference cycle, and with them the HTTP response whose
    connection never went back to the session's pool, so ``session.close()`` cannot close
    it and the sim's connection thread would wait for it.
    """
    if "bybit" in request.fixturenames:
        ex: BybitExchange = request.getfixturevalue("bybit")
        ex.reset()
        ex.limits.enforce = False
    yield
    gc.collect()


@pytest.fixture
def client(bybit: BybitExchange) -> Iterator[Any]:
    """A ccxt bybit of account "main" with markets loaded."""
    ex = make_bybit_ccxt(bybit.base_url)
    ex.load_markets()
    yield ex
    ex.session.close()


def auth_frame(key: str = KEY, secret: str = SECRET, expires_in_ms: int = 10_000) -> str:
    """The private stream's ``auth`` request, as ccxt pro builds it."""
    import json

    expires = str(int(time.time() * 1000) + expires_in_ms)
    return json.dumps(
        {"op": "auth", "args": [key, expires, sign(secret, "GET/realtime" + expires)]}
    )


@pytest.fixture
def stream() -> Iterator[Callable[[str], WsReader]]:
    """Factory of started websocket-client readers (closed after the test)."""
    readers: list[WsReader] = []

    def make(url: str) -> WsReader:
        reader = WsReader(url)
        readers.append(reader)
        return reader.start()

    yield make
    for r in readers:
        r.close()


def private_reader(
    bybit: BybitExchange,
    make: Callable[[str], WsReader],
    topics: tuple[str, ...] = ("order", "execution", "position"),
) -> WsReader:
    """An authenticated private stream subscribed to ``topics`` (answers consumed)."""
    import json

    reader = make(f"{bybit.ws_url}/v5/private")
    reader.app.send(auth_frame())
    assert reader.get()["success"] is True
    reader.app.send(json.dumps({"op": "subscribe", "args": list(topics), "req_id": "s"}))
    answer = reader.get()
    assert answer["success"] is True and answer["op"] == "subscribe"
    return reader
