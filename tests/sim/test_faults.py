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
from testkit.waiting import poll
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


def test_error_code_before_acting_and_after_acting(sim: SimExchange, client: Any) -> None:
    sim.add_fault("error_code", code=-1008, status=503)
    with pytest.raises(ccxt.OperationFailed) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "e1"})
    assert '"code":-1008' in str(err.value) and "overloaded" in str(err.value)
    assert sim.positions() == {}
    log = sim.order_log()[-1]
    assert (log.outcome, log.code, log.faults) == ("rejected", -1008, ["error_code"])
    # act=true: the order is executed, the reply is the error all the same
    sim.add_fault("error_code", code=-1001, status=500, act=True)
    with pytest.raises(ccxt.OperationFailed):
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "e2"})
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.01)
    assert sim.order_log()[-1].outcome == "accepted"
    # default scope: order creation only; msg overrides the code's message
    sim.add_fault("error_code", code=-4000, msg="Market is closed.")
    client.fetch_positions()
    with pytest.raises(ccxt.MarketClosed):
        client.create_order(SYMBOL, "market", "buy", 0.01)


def test_bad_response_after_acting(sim: SimExchange, client: Any) -> None:
    sim.add_fault("bad_response")
    with pytest.raises(ValueError):
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "b1"})
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.01)
    sim.add_fault("bad_response", path="/fapi/v1/time", msg="<html>not json</html>")
    req = urllib.request.Request(sim.base_url + "/fapi/v1/time")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b"<html>not json</html>"


def test_429_aimed_at_cancels_only(sim: SimExchange, client: Any) -> None:
    from sim.faults import CANCEL_PATHS

    client.create_order(SYMBOL, "market", "buy", 0.01)
    client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 59_000, "clientOrderId": "c1"}
    )
    sim.add_fault("http_429", path=CANCEL_PATHS, method="DELETE", retry_after_s=5, count=None)
    assert client.fetch_order(None, SYMBOL, {"clientOrderId": "c1", "trigger": True})  # GET ok
    client.create_order(SYMBOL, "market", "buy", 0.01)  # POST ok
    with pytest.raises(ccxt.DDoSProtection):
        client.cancel_order(None, SYMBOL, {"clientOrderId": "c1", "trigger": True})
    with pytest.raises(ccxt.DDoSProtection):
        client.cancel_order(None, SYMBOL, {"clientOrderId": "nope"})
    req = urllib.request.Request(
        sim.base_url + "/fapi/v1/algoOrder?clientAlgoId=c1&timestamp=1", method="DELETE"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 429 and err.value.headers["Retry-After"] == "5"
    err.value.close()
    assert len(sim.open_orders()) == 1
    sim.clear_faults()
    client.cancel_order(None, SYMBOL, {"clientOrderId": "c1", "trigger": True})
    assert sim.open_orders() == []


def test_faults_narrowed_to_a_symbol(sim: SimExchange, client: Any) -> None:
    sim.add_fault("http_502", symbol="ETHUSDT", count=None)
    client.create_order(SYMBOL, "market", "buy", 0.01)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.create_order("ETH/USDT:USDT", "market", "buy", 0.1)


def test_lag_open_orders_answers_an_older_state(sim: SimExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01)
    client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 59_000, "clientOrderId": "old"}
    )
    placed = time.time()
    poll(lambda: time.time() > placed + 0.3, 2.0, "0.3 s on the clock", 0.02)
    sim.add_fault("lag_open_orders", lag_s=0.2, count=None)
    client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 58_000, "clientOrderId": "new"}
    )
    client.cancel_order(None, SYMBOL, {"clientOrderId": "old", "trigger": True})
    lagged = client.fetch_open_orders(SYMBOL, None, None, {"trigger": True})
    assert [o["clientOrderId"] for o in lagged] == ["old"]
    assert client.fetch_open_orders(SYMBOL) == []
    # lookups by id and the control view are current
    found = client.fetch_order(None, SYMBOL, {"clientOrderId": "old", "trigger": True})
    assert found["info"]["algoStatus"] == "CANCELED"
    assert [o.client_id for o in sim.open_orders()] == ["new"]
    sim.clear_faults()
    now = client.fetch_open_orders(SYMBOL, None, None, {"trigger": True})
    assert [o["clientOrderId"] for o in now] == ["new"]


def test_reject_on_trigger(
    sim: SimExchange, client: Any, ws_reader: Callable[..., WsReader]
) -> None:
    reader = ws_reader(user_stream_url(sim, client))
    assert sim.wait_for_user_streams(1)
    client.create_order(SYMBOL, "market", "buy", 0.01)
    client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 59_000, "clientOrderId": "s1"}
    )
    sim.add_fault("reject_on_trigger", symbol="ETHUSDT")  # another symbol: not this stop
    sim.add_fault("reject_on_trigger", symbol="BTCUSDT", msg="Margin is insufficient.")
    sim.set_price("BTCUSDT", 58_900)
    rejected = reader.wait_for(lambda m: m.get("e") == "ALGO_UPDATE" and m["o"]["X"] == "REJECTED")
    assert rejected["o"]["caid"] == "s1" and rejected["o"]["rm"] == "Margin is insufficient."
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.01)
    assert sim.open_orders() == []
    assert [f.symbol for f in sim.list_faults()] == ["ETHUSDT"]
    assert not [m for m in reader.drain() if m.get("e") == "ORDER_TRADE_UPDATE"]


def test_filters_published_and_enforced() -> None:
    from dataclasses import replace

    from sim import SymbolSpec

    spec = replace(
        SymbolSpec.for_price("BTCUSDT", 60_000.0),
        max_qty=1000.0,
        market_max_qty=120.0,
        max_price=1_000_000.0,
    )
    with SimExchange({"BTCUSDT": 60_000.0}, specs={"BTCUSDT": spec}, wallet_usdt=1e9) as ex:
        client = make_ccxt(ex.base_url)
        try:
            market = client.load_markets()[SYMBOL]
            assert market["limits"]["market"]["max"] == 120.0
            assert market["limits"]["amount"]["max"] == 1000.0
            assert market["limits"]["price"]["max"] == 1_000_000.0
            with pytest.raises(ccxt.ExchangeError, match="-4005"):
                client.create_order(SYMBOL, "market", "buy", 121.0)
            client.create_order(SYMBOL, "market", "buy", 120.0)
            with pytest.raises(ccxt.ExchangeError, match="-4007"):
                client.create_order(
                    SYMBOL,
                    "market",
                    "buy",
                    None,
                    None,
                    {"stopLossPrice": 2e6, "closePosition": True},
                )
        finally:
            client.session.close()
    with pytest.raises(ValueError):
        SimExchange({"ETHUSDT": 3000.0}, specs={"BTCUSDT": spec})
