"""Every REST endpoint ccxt's binanceusdm uses, exercised through the real ccxt client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import ccxt
import pytest

from sim import SimExchange
from tests.sim.conftest import SYMBOL, make_ccxt

pytestmark = pytest.mark.timeout(30)


def test_load_markets_parses_every_symbol(sim: SimExchange, client: Any) -> None:
    assert len(client.markets) == len(sim.initial_prices)
    m = client.market(SYMBOL)
    assert m["id"] == "BTCUSDT" and m["linear"] and m["swap"] and m["active"]
    assert m["precision"]["amount"] == 0.00001 and m["precision"]["price"] == 0.1
    assert m["limits"]["cost"]["min"] == 5.0
    assert client.fetch_time() > 0


def test_many_symbols_load() -> None:
    from sim import make_symbols

    with SimExchange(make_symbols(1000)) as ex:
        c = make_ccxt(ex.base_url)
        markets = c.load_markets()
        assert len(markets) == 1000
        assert "SYM0001/USDT:USDT" in markets
        c.session.close()


def test_market_order_result_and_refill_with_same_client_id(sim: SimExchange, client: Any) -> None:
    order = client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "e1"})
    assert order["status"] == "closed" and order["filled"] == 0.01 and order["average"] == 60_000.0
    assert order["clientOrderId"] == "e1" and order["info"]["executedQty"] == "0.01000"
    again = client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "e1"})
    assert again["id"] != order["id"] and again["status"] == "closed"
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.02)
    assert sim.orders_sent("e1") == 2
    fetched = client.fetch_order(None, SYMBOL, {"clientOrderId": "e1"})
    assert fetched["id"] == again["id"] and fetched["filled"] == 0.01


def test_reduce_only_close(sim: SimExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "sell", 0.02)
    closing = client.create_order(SYMBOL, "market", "buy", 0.02, params={"reduceOnly": True})
    assert closing["reduceOnly"] is True and closing["status"] == "closed"
    assert sim.positions() == {}


def test_stop_loss_take_profit_and_trigger_orders(sim: SimExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01)
    sl = client.create_order(
        SYMBOL,
        "market",
        "sell",
        0.01,
        params={"stopLossPrice": 59_000, "clientOrderId": "sl1", "reduceOnly": True},
    )
    assert sl["status"] == "open" and sl["clientOrderId"] == "sl1" and sl["triggerPrice"] == 59_000
    assert sl["info"]["algoStatus"] == "NEW" and sl["info"]["orderType"] == "STOP_MARKET"
    tp = client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"takeProfitPrice": 62_000, "clientOrderId": "tp1"}
    )
    assert tp["info"]["orderType"] == "TAKE_PROFIT_MARKET" and tp["takeProfitPrice"] == 62_000
    cp = client.create_order(
        SYMBOL,
        "market",
        "sell",
        None,
        params={"triggerPrice": 58_000, "clientOrderId": "cp1", "closePosition": True},
    )
    assert cp["info"]["closePosition"] is True and cp["info"]["quantity"] == "0.00000"

    opened = client.fetch_open_orders(SYMBOL, params={"trigger": True})
    assert sorted(o["clientOrderId"] for o in opened) == ["cp1", "sl1", "tp1"]
    assert client.fetch_open_orders(SYMBOL) == []

    one = client.fetch_order(None, SYMBOL, {"clientOrderId": "sl1", "trigger": True})
    assert one["status"] == "open" and one["id"] == sl["id"]

    canceled = client.cancel_order(tp["id"], SYMBOL, {"trigger": True})
    assert canceled["info"]["msg"] == "success"
    assert (
        client.fetch_order(None, SYMBOL, {"clientOrderId": "tp1", "trigger": True})["status"]
        == "canceled"
    )

    sim.set_price("BTCUSDT", 58_990.0)  # crosses sl1 (59,000); cp1 waits at 58,000
    done = client.fetch_order(None, SYMBOL, {"clientOrderId": "sl1", "trigger": True})
    assert done["status"] == "closed" and done["filled"] == 0.01 and done["average"] == 58_990.0
    assert done["info"]["algoStatus"] == "FINISHED" and done["info"]["actualOrderId"]
    market = client.fetch_order(None, SYMBOL, {"clientOrderId": "sl1"})
    assert (
        market["id"] == done["info"]["actualOrderId"]
        and market["info"]["origType"] == "STOP_MARKET"
    )
    assert sim.positions() == {}
    sim.set_price("BTCUSDT", 57_000.0)  # cp1 triggers on a flat position: rejected
    assert (
        client.fetch_order(None, SYMBOL, {"clientOrderId": "cp1", "trigger": True})["status"]
        == "rejected"
    )


def test_open_and_cancel_plain_order_while_partially_filled(sim: SimExchange, client: Any) -> None:
    sim.add_fault("partial_fill", parts=3, part_interval_s=30.0)
    order = client.create_order(SYMBOL, "market", "buy", 0.03, params={"clientOrderId": "pf"})
    assert order["status"] == "open" and order["filled"] == 0.01
    opened = client.fetch_open_orders(SYMBOL)
    assert [o["clientOrderId"] for o in opened] == ["pf"]
    assert client.fetch_open_orders() != []  # without symbol too
    canceled = client.cancel_order(order["id"], SYMBOL)
    assert canceled["status"] == "canceled" and canceled["filled"] == 0.01
    assert client.fetch_open_orders(SYMBOL) == []
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.01)


def test_positions_balance_leverage(sim: SimExchange, client: Any) -> None:
    assert client.fetch_positions() == []
    client.create_order("ETH/USDT:USDT", "market", "sell", 1.0)
    sim.set_price("ETHUSDT", 2_900.0)
    positions = client.fetch_positions()
    assert len(positions) == 1
    p = positions[0]
    assert p["symbol"] == "ETH/USDT:USDT" and p["side"] == "short" and p["contracts"] == 1.0
    assert p["entryPrice"] == 3_000.0 and p["markPrice"] == 2_900.0 and p["unrealizedPnl"] == 100.0
    balance = client.fetch_balance()
    assert balance["USDT"]["total"] == pytest.approx(1_000_000 - 1.2 + 100.0)
    assert balance["USDT"]["used"] == pytest.approx(2_900 / 20)
    client.set_leverage(5, "ETH/USDT:USDT")
    assert client.fetch_balance()["USDT"]["used"] == pytest.approx(2_900 / 5)
    v2 = client.fapiPrivateV2GetPositionRisk()
    assert len(v2) == len(sim.initial_prices)
    assert client.fapiPrivateV2GetBalance()[0]["asset"] == "USDT"


def test_listen_key_lifecycle(sim: SimExchange, client: Any) -> None:
    key = client.fapiPrivatePostListenKey()["listenKey"]
    assert client.fapiPrivatePostListenKey()["listenKey"] == key  # the active key is reused
    assert client.fapiPrivatePutListenKey()["listenKey"] == key
    client.fapiPrivateDeleteListenKey()
    assert sim.listen_keys() == []
    with pytest.raises(ccxt.AuthenticationError):  # -1125
        client.fapiPrivatePutListenKey()


def _raw(sim: SimExchange, method: str, path: str) -> tuple[int, Any]:
    req = urllib.request.Request(sim.base_url + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_timestamp_required_and_unknown_paths(sim: SimExchange) -> None:
    status, body = _raw(sim, "GET", "/fapi/v3/positionRisk")
    assert status == 400 and body["code"] == -1102
    status, body = _raw(sim, "GET", "/fapi/v3/positionRisk?timestamp=1")
    assert status == 400 and body["code"] == -1021
    status, body = _raw(sim, "GET", "/fapi/v1/nothing")
    assert status == 404
    status, body = _raw(sim, "GET", "/fapi/v1/premiumIndex?symbol=BTCUSDT")
    assert status == 200 and body["markPrice"] == "60000.00000000"


def test_spot_endpoints_are_not_reachable(client: Any) -> None:
    with pytest.raises(ccxt.NotSupported):
        client.sapiGetCapitalConfigGetall()


def test_secondary_endpoints(sim: SimExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "h1"})
    trades = client.fetch_my_trades(SYMBOL)
    assert len(trades) == 1 and trades[0]["price"] == 60_000.0 and trades[0]["amount"] == 0.01
    assert [o["clientOrderId"] for o in client.fetch_orders(SYMBOL)] == ["h1"]
    assert client.fetch_ticker(SYMBOL)["last"] == 60_000.0
    assert client.fetch_mark_price(SYMBOL)["markPrice"] == 60_000.0
    book = client.fetch_order_book(SYMBOL, 5)
    assert book["bids"][0][0] < 60_000.0 < book["asks"][0][0]
    assert client.fetch_leverage(SYMBOL)["longLeverage"] == 20
    assert client.fetch_trading_fee(SYMBOL)["taker"] == 0.0004
    assert client.fetch_position_mode(SYMBOL)["hedged"] is False
    with pytest.raises(ccxt.MarginModeAlreadySet):
        client.set_margin_mode("cross", SYMBOL)
    with pytest.raises(ccxt.BadRequest):
        client.set_margin_mode("isolated", SYMBOL)
    with pytest.raises(ccxt.ExchangeError) as err:
        client.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1m"})
    assert "sim: no endpoint" in str(err.value) and not isinstance(err.value, ccxt.NetworkError)


def test_concurrent_clients_are_serialised(sim: SimExchange) -> None:
    import threading

    errors: list[BaseException] = []

    def trade(n: int) -> None:
        c = make_ccxt(sim.base_url)
        try:
            c.load_markets()
            for i in range(25):
                c.create_order(
                    SYMBOL, "market", "buy", 0.001, params={"clientOrderId": f"w{n}-{i}"}
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            c.session.close()

    threads = [threading.Thread(target=trade, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert sim.positions()["BTCUSDT"].qty == pytest.approx(0.1)
    assert len(sim.order_log()) == 100 and {e.outcome for e in sim.order_log()} == {"accepted"}
