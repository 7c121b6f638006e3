"""Fixtures for the sim tests: a running exchange, real ccxt clients, websocket-client readers.

Every fixture stops what it started; ``no_leaked_threads`` (autouse) fails a test that
leaves a thread running after its fixtures are torn down.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ccxt
import pytest
import websocket

from sim import SignalFeed, SimExchange

SYMBOL = "BTC/USDT:USDT"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail if a test leaves threads behind (after a short grace period to let them end)."""
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


def make_ccxt(base_url: str, *, timeout_ms: int = 10_000) -> Any:
    """A real ``ccxt.binanceusdm`` pointed at ``base_url`` with the linear error table.

    - ``urls["api"]`` is replaced (not merged), so spot/sapi calls fail with NotSupported;
    - ccxt picks its per-market error table from the URL host (``get_exceptions_by_url``
      recognises only https://fapi.binance.com & co.), so against a local URL it would fall
      back to the generic table where -2019/-2022/-4116/-4120 are plain ExchangeError. The
      instance override below makes every URL use ``exceptions["linear"]``.
    """
    ex = ccxt.binanceusdm(
        {
            "apiKey": "sim-key",
            "secret": "sim-secret",
            "enableRateLimit": False,
            "timeout": timeout_ms,
            "options": {
                "fetchCurrencies": False,
                "fetchMarkets": {"types": ["linear"]},
                "warnOnFetchOpenOrdersWithoutSymbol": False,
            },
        }
    )
    ex.urls["api"] = {
        "fapiPublic": f"{base_url}/fapi/v1",
        "fapiPrivate": f"{base_url}/fapi/v1",
        "fapiPublicV2": f"{base_url}/fapi/v2",
        "fapiPrivateV2": f"{base_url}/fapi/v2",
        "fapiPublicV3": f"{base_url}/fapi/v3",
        "fapiPrivateV3": f"{base_url}/fapi/v3",
        "fapiData": f"{base_url}/futures/data",
    }

    def linear_exceptions(url: str | None, exact_or_broad: str) -> dict[str, Any]:
        table: dict[str, Any] = ex.exceptions["linear"].get(exact_or_broad, {})
        return table

    ex.get_exceptions_by_url = linear_exceptions
    return ex


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    """A started exchange with the default ten symbols; stopped after the test."""
    with SimExchange(seed=7) as ex:
        yield ex


@pytest.fixture
def client(sim: SimExchange) -> Iterator[Any]:
    """A ccxt binanceusdm with markets loaded, talking to ``sim``."""
    ex = make_ccxt(sim.base_url)
    ex.load_markets()
    yield ex
    ex.session.close()


@pytest.fixture
def feed() -> Iterator[SignalFeed]:
    """A started signal feed without token."""
    with SignalFeed() as f:
        yield f


class WsReader:
    """A websocket-client ``WebSocketApp`` on its own thread, collecting messages in a queue."""

    def __init__(self, url: str, header: list[str] | None = None, skip_utf8: bool = False) -> None:
        self.url = url
        self.messages: queue.Queue[str | bytes] = queue.Queue()
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.errors: list[BaseException] = []
        self.app = websocket.WebSocketApp(
            url,
            header=header,
            on_open=lambda ws: self.opened.set(),
            on_message=lambda ws, msg: self.messages.put(msg),
            on_error=lambda ws, err: self.errors.append(err),
            on_close=lambda ws, code, reason: self.closed.set(),
        )
        self.thread = threading.Thread(
            target=self.app.run_forever,
            # ping_timeout bounds run_forever's select (10 s by default), so close() returns
            # promptly: closing the socket from another thread does not wake an epoll wait.
            kwargs={"skip_utf8_validation": skip_utf8, "ping_timeout": 0.2},
            name=f"ws-reader {url}",
            daemon=True,
        )

    def start(self, timeout: float = 5.0) -> WsReader:
        """Connect; fails the test if the handshake does not complete in time."""
        self.thread.start()
        assert self.opened.wait(timeout), f"could not connect to {self.url}: {self.errors}"
        return self

    def get(self, timeout: float = 5.0) -> Any:
        """The next message, JSON-decoded."""
        return json.loads(self.messages.get(timeout=timeout))

    def wait_for(self, pred: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        """Skip messages until one satisfies ``pred``; returns it (decoded)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching message in time")
            msg = self.get(left)
            if pred(msg):
                return msg

    def drain(self, quiet_s: float = 0.2) -> list[Any]:
        """Everything that arrives until nothing comes for ``quiet_s``."""
        out = []
        while True:
            try:
                out.append(json.loads(self.messages.get(timeout=quiet_s)))
            except queue.Empty:
                return out

    def close(self) -> None:
        """Close and join the reader thread."""
        self.app.close()
        self.thread.join(5.0)


@pytest.fixture
def ws_reader() -> Iterator[Callable[..., WsReader]]:
    """Factory of started ``WsReader`` objects, all closed after the test."""
    readers: list[WsReader] = []

    def make(url: str, header: list[str] | None = None, skip_utf8: bool = False) -> WsReader:
        reader = WsReader(url, header, skip_utf8)
        readers.append(reader)
        return reader.start()

    yield make
    for r in readers:
        r.close()


def user_stream_url(sim: SimExchange, client: Any) -> str:
    """Create a listenKey through ccxt (POST /fapi/v1/listenKey) and return its stream URL."""
    key = client.fapiPrivatePostListenKey()["listenKey"]
    return f"{sim.ws_url}/ws/{key}"
