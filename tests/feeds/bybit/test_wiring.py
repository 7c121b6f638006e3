"""Feeds chosen by the account's exchange: a ``bybit`` account gets Bybit's private stream and
tickers wire (URLs derived from its ``ws_url``), a ``binanceusdm`` one Binance's, side by side
in one process; the Bybit ones run against sim/bybit.

The configuration is parsed as a Binance one and the account's ``exchange`` then set to
``bybit`` (the configuration accepts only venues of ``infra.exchange.venues.VENUES``; the
feeds read the name alone).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from actors.model import Key
from infra.config import DUMMY_API_KEY, DUMMY_API_SECRET, Config, parse_config
from infra.feeds import (
    STREAMS,
    BybitTickers,
    BybitUserStream,
    MarkPriceFeed,
    UserDataStream,
    bybit_stream_urls,
    feeds_from_config,
)
from infra.feeds.wiring import BYBIT_WS_URL
from sim import SimExchange
from sim.bybit import BybitExchange
from tests.feeds.bybit.conftest import CCXT_SYMBOL, SYMBOL, Recorder
from tests.feeds.conftest import FAST, SyncRecorder, stopped
from tests.sim.bybit.conftest import make_bybit_ccxt

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.fixture
def dummy_bybit() -> Iterator[BybitExchange]:
    """A Bybit front whose account "by" trades with the configuration's dummy key pair."""
    with BybitExchange(
        seed=7,
        accounts={"by": [DUMMY_API_KEY]},
        secrets={DUMMY_API_KEY: DUMMY_API_SECRET},
        strict_keys=True,
    ) as ex:
        yield ex


def two_venues(binance_ws: str, bybit_ws: str) -> Config:
    data: dict[str, Any] = {
        "accounts": {
            "bn": {
                "rest_url": "http://127.0.0.1:1",
                "ws_url": binance_ws,
                "symbols": [SYMBOL],
                "credentials": "dummy",
            },
            "by": {
                "rest_url": "http://127.0.0.1:1",
                "ws_url": bybit_ws,
                "symbols": [SYMBOL, "ETHUSDT"],
                "credentials": "dummy",
            },
        },
        "feeds": {"silence_timeout_s": 30.0},
    }
    cfg = parse_config(data, {})
    by = dataclasses.replace(cfg.accounts["by"], exchange="bybit")
    return dataclasses.replace(cfg, accounts={**cfg.accounts, "by": by})


def test_the_stream_urls_derive_from_the_account_ws_url() -> None:
    prod = ("wss://stream.bybit.com/v5/private", "wss://stream.bybit.com/v5/public/linear")
    for url in (
        BYBIT_WS_URL,
        "wss://stream.bybit.com/",
        "wss://stream.bybit.com/v5",
        "wss://stream.bybit.com/v5/private",
        "wss://stream.bybit.com/v5/public/linear",
    ):
        assert bybit_stream_urls(url) == prod, url
    assert bybit_stream_urls("ws://127.0.0.1:9") == (
        "ws://127.0.0.1:9/v5/private",
        "ws://127.0.0.1:9/v5/public/linear",
    )
    assert set(STREAMS) == {"binanceusdm", "bybit"}


def test_an_unknown_exchange_is_an_error_not_an_account_without_streams() -> None:
    cfg = two_venues("ws://127.0.0.1:1", "ws://127.0.0.1:2")
    odd = dataclasses.replace(cfg.accounts["by"], exchange="okx")
    cfg = dataclasses.replace(cfg, accounts={**cfg.accounts, "by": odd})
    with pytest.raises(ValueError, match="no exchange streams for exchange 'okx'"):
        feeds_from_config(cfg, Recorder(), None)


def test_a_bybit_account_gets_bybit_feeds_that_run(
    sim: SimExchange, dummy_bybit: BybitExchange, recorder: Recorder, syncs: SyncRecorder
) -> None:
    cfg = two_venues(sim.ws_url, dummy_bybit.ws_url)
    feeds = feeds_from_config(cfg, recorder, syncs, backoff=FAST)
    users = {f.account: f for f in feeds if isinstance(f, UserDataStream | BybitUserStream)}
    assert type(users["bn"]) is UserDataStream and type(users["by"]) is BybitUserStream
    assert users["by"].url == f"{dummy_bybit.ws_url}/v5/private"
    markets = [f for f in feeds if isinstance(f, MarkPriceFeed)]
    assert len(markets) == 2, "one mark-price feed per venue"
    (bybit_market,) = [m for m in markets if isinstance(m.wire, BybitTickers)]
    (binance_market,) = [m for m in markets if not isinstance(m.wire, BybitTickers)]
    assert bybit_market.url == f"{dummy_bybit.ws_url}/v5/public/linear"
    assert bybit_market.accounts == ("by",) and binance_market.accounts == ("bn",)
    assert binance_market.url.startswith(f"{sim.ws_url}/stream?streams=")
    assert users["by"].session.ping_interval_s == 10.0  # a third of the silence limit
    running = [bybit_market, users["by"]]
    bybit_market.start()
    users["by"].start()
    try:
        assert syncs.wait_for("stream connected")
        recorder.wait_tick(lambda t: t.key == Key("by", "ETHUSDT") and t.price > 0)
        ex = make_bybit_ccxt(dummy_bybit.base_url, DUMMY_API_KEY, DUMMY_API_SECRET)
        try:
            ex.load_markets()
            ex.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "w1"})
        finally:
            ex.session.close()
        upd = recorder.wait_update("w1", "filled")
        assert upd.key == Key("by", SYMBOL)
        assert dummy_bybit.positions("by")[SYMBOL].qty == pytest.approx(upd.filled_qty)
    finally:
        stopped(*running)
