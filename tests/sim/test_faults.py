"""Each injected fault: its observable effect and the ccxt exception it produces."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import ccxt
import pytest

from sim import SimExchange
from tests.sim.conftest import SYMBOL, WsReader, make_ccxt, user_stream_url

pytestmark = pytest.mark.timeout(30)


def test_latency_fixed_and_random(sim: SimExchange, client: Any) -> None:
    sim.add_fault("latency", latency_s=0.3, path="/fapi/v3/positionRisk")
    t0 = time.monotonic()
    client.fetch_positions()
    assert time.monotonic() - t0 >= 0.3
    assert sim.list_faults() == []  # count=1: spent
    sim.add_fault("latency", latency_s=0.1, latency_max_s=0.2, count=2)
    for _ in range(2):
        t0 = time.monotonic()
        client.fetch_balance()
        assert 0.1 <= time.monotonic() - t0 < 1.0
    assert sim.list_faults() == []


def test_502_before_acting(sim: SimExchange, client: Any) -> None:
    sim.add_fault("http_502", path="/fapi/v1/order")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "g1"})
    assert sim.positions() == {}
    entry = sim.order_log()[-1]
    assert (
        entry.client_id == "g1" and entry.outcome == "not_executed" and entry.faults == ["http_502"]
    )
    client.fetch_positions()  # other paths unaffected


def test_503_after_acting_places_the_order(sim: SimExchange, client: Any) -> None:
    sim.add_fault("http_503", path="/fapi/v1/order", method="POST")
    with pytest.raises(ccxt.RequestTimeout):
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "u1"})
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.01)
    found = client.fetch_order(None, SYMBOL, {"clientOrderId": "u1"})  # lookup before re-send
    assert found["status"] == "closed"
    entry = sim.order_log()[-1]
    assert entry.outcome == "accepted" and entry.faults == ["http_503"]


def test_429_with_retry_after(sim: SimExchange, client: Any) -> None:
    sim.add_fault("http_429", retry_after_s=7, count=2)
    with pytest.raises(ccxt.DDoSProtection):
        client.create_order(SYMBOL, "market", "buy", 0.01)
    assert sim.positions() == {}
    req = urllib.request.Request(sim.base_url + "/fapi/v1/time")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 429 and err.value.headers["Retry-After"] == "7"
    err.value.close()


def test_timeout_hold_executes_then_client_times_out(sim: SimExchange) -> None:
    fast = make_ccxt(sim.base_url, timeout_ms=300)
    fast.load_markets()
    sim.add_fault("timeout", path="/fapi/v1/order", hold_s=3.0)
    t0 = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout):
        fast.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "t1"})
    assert time.monotonic() - t0 < 2.0
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.01)
    fast.session.close()


def test_timeout_close_without_reply_is_network_error(sim: SimExchange, client: Any) -> None:
    sim.add_fault("timeout", path="/fapi/v1/order", close=True)
    with pytest.raises(ccxt.NetworkError) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "t2"})
    assert type(err.value) is ccxt.NetworkError  # not RequestTimeout: the reply never came
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.01)
    assert client.fetch_order(None, SYMBOL, {"clientOrderId": "t2"})["filled"] == 0.01


def test_reject_2019_fault(sim: SimExchange, client: Any) -> None:
    sim.add_fault("reject_2019")
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order(SYMBOL, "market", "buy", 0.01)
    assert sim.positions() == {}
    client.create_order(SYMBOL, "market", "buy", 0.01)


def test_not_found_for_a_moment_after_placement(sim: SimExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "nf"})
    client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 59_000, "clientOrderId": "nfs"}
    )
    sim.add_fault("not_found", count=2)
    for params in ({"clientOrderId": "nf"}, {"clientOrderId": "nfs", "trigger": True}):
        with pytest.raises(ccxt.OrderNotFound):
            client.fetch_order(None, SYMBOL, params)
    assert client.fetch_order(None, SYMBOL, {"clientOrderId": "nf"})["status"] == "closed"


def test_partial_fill_rest_shows_first_part_stream_brings_the_rest(
    sim: SimExchange, client: Any, ws_reader: Callable[..., WsReader]
) -> None:
    reader = ws_reader(user_stream_url(sim, client))
    assert sim.wait_for_user_streams(1)
    sim.add_fault("partial_fill", parts=3, part_interval_s=0.02)
    order = client.create_order(SYMBOL, "market", "buy", 0.03, params={"clientOrderId": "pp"})
    assert order["status"] == "open" and order["filled"] == 0.01
    filled = reader.wait_for(
        lambda m: m.get("e") == "ORDER_TRADE_UPDATE" and m["o"]["X"] == "FILLED"
    )
    assert (
        filled["o"]["c"] == "pp" and filled["o"]["z"] == "0.03000" and filled["o"]["l"] == "0.01000"
    )
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.03)
    assert client.fetch_order(None, SYMBOL, {"clientOrderId": "pp"})["filled"] == 0.03


def test_duplicated_and_reordered_user_events(
    sim: SimExchange, client: Any, ws_reader: Callable[..., WsReader]
) -> None:
    reader = ws_reader(user_stream_url(sim, client))
    assert sim.wait_for_user_streams(1)
    sim.add_fault("ws_duplicate", count=1)
    client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "d1"})
    got = [reader.get() for _ in range(4)]
    kinds = [(m["e"], m["o"]["x"]) if "o" in m else (m["e"], "") for m in got]
    assert kinds == [
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "TRADE"),
        ("ACCOUNT_UPDATE", ""),
    ]
    sim.add_fault("ws_reorder", count=1)
    client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "r1"})
    got = [reader.get() for _ in range(3)]
    assert [m["e"] for m in got] == ["ACCOUNT_UPDATE", "ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE"]
    assert [m["o"]["x"] for m in got[1:]] == ["TRADE", "NEW"]


def test_drop_market_streams_keeps_user_stream(
    sim: SimExchange, client: Any, ws_reader: Callable[..., WsReader]
) -> None:
    market = ws_reader(f"{sim.ws_url}/ws/btcusdt@markPrice")
    user = ws_reader(user_stream_url(sim, client))
    assert sim.wait_for_user_streams(1) and sim.wait_for_subscribers("btcusdt@markPrice")
    assert sim.drop_streams("market") == 1
    assert market.closed.wait(5)
    assert not user.closed.is_set()
    client.create_order(SYMBOL, "market", "buy", 0.01)
    assert user.get()["e"] == "ORDER_TRADE_UPDATE"
    assert sim.drop_streams("user") == 1
    assert user.closed.wait(5)


def test_path_scoping_and_counts(sim: SimExchange, client: Any) -> None:
    sim.add_fault("http_502", path="/fapi/v1/algo*", count=2)
    client.create_order(SYMBOL, "market", "buy", 0.01)  # /fapi/v1/order: unaffected
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            client.create_order(
                SYMBOL,
                "market",
                "sell",
                0.01,
                params={"stopLossPrice": 59_000, "clientOrderId": "s"},
            )
    client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 59_000, "clientOrderId": "s"}
    )
    assert sim.orders_sent("s") == 3
    assert [e.outcome for e in sim.order_log() if e.client_id == "s"] == ["not_executed"] * 2 + [
        "accepted"
    ]
    assert sim.clear_faults() == 0
