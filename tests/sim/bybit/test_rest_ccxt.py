"""The Bybit front through the real ccxt ``bybit`` (issue 17's options): the lifecycle of a
position, what ccxt asks of the server (the measured list of BYBIT_WIRE.md), signatures,
and Bybit's own rules (orderLinkId unique for ever, reduce-only cut to the position).
"""

from __future__ import annotations

import json
from typing import Any

import ccxt
import pytest

from sim.bybit import BybitExchange
from tests.sim.bybit.conftest import KEY, SYMBOL, make_bybit_ccxt

pytestmark = pytest.mark.timeout(30)

STOP = {"stopLossPrice": 58_000}
NO_ID = {"orderId": ""}
"""ccxt's fetch_open_order / fetch_closed_order send ``orderId=None`` for a None id (see
test_a_none_id_is_sent_as_the_text_none): an empty ``orderId`` leaves the lookup to
``orderLinkId``."""


def _ret_code(err: pytest.ExceptionInfo[Exception]) -> int:
    text = str(err.value)
    return int(json.loads(text[text.index("{") :])["retCode"])


def _paths(bybit: BybitExchange) -> dict[str, int]:
    return dict(bybit.limits.snapshot()["by_path"])


def test_what_ccxt_asks_for_a_position_lifecycle(bybit: BybitExchange) -> None:
    """Every request ccxt sends, counted by the server, for the lifecycle of issue 17."""
    ex = make_bybit_ccxt(bybit.base_url)
    try:
        ex.load_markets()
        assert _paths(bybit) == {"GET /v5/market/instruments-info": 2}  # + status=PreLaunch
        ex.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
        ex.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", **STOP})
        ex.fetch_open_order(None, SYMBOL, {"orderLinkId": "s1", "trigger": True, **NO_ID})
        ex.fetch_closed_order(None, SYMBOL, {"orderLinkId": "e1", **NO_ID})
        ex.fetch_positions([SYMBOL])
        ex.fetch_balance()
        ex.fetch_ticker(SYMBOL)
        ex.cancel_order(None, SYMBOL, {"orderLinkId": "s1"})
        ex.fetch_time()
        assert _paths(bybit) == {
            "GET /v5/market/instruments-info": 2,
            "POST /v5/order/create": 2,
            "GET /v5/order/realtime": 1,
            "GET /v5/order/history": 1,
            "GET /v5/position/list": 1,
            "GET /v5/account/wallet-balance": 1,
            "GET /v5/market/tickers": 1,
            "POST /v5/order/cancel": 1,
            "GET /v5/market/time": 1,
        }
    finally:
        ex.session.close()


def test_request_shapes(bybit: BybitExchange, client: Any) -> None:
    """orderLinkId carries clientOrderId; a stop-loss is a reduce-only conditional Market
    order with triggerDirection 2 (falling) for a sell; bodies are JSON."""
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    assert json.loads(client.last_request_body) == {
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "orderLinkId": "e1",
        "category": "linear",
        "qty": "0.01",
    }
    client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", **STOP})
    body = json.loads(client.last_request_body)
    assert body["triggerPrice"] == "58000" and body["triggerDirection"] == 2
    assert body["reduceOnly"] is True
    log = bybit.order_log()
    assert [(e.client_id, e.type, e.outcome) for e in log] == [
        ("e1", "MARKET", "accepted"),
        ("s1", "STOP_MARKET", "accepted"),
    ]
    assert log[0].api_key == KEY and log[0].account == "main"


def test_market_order_fills_at_the_mark(bybit: BybitExchange, client: Any) -> None:
    order = client.create_order(SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": "e1"})
    assert order["clientOrderId"] == "e1" and order["id"]
    closed = client.fetch_closed_order(None, SYMBOL, {"orderLinkId": "e1", **NO_ID})
    assert closed["id"] == order["id"]
    assert closed["status"] == "closed" and closed["filled"] == 0.02
    assert closed["average"] == 60_000 and closed["reduceOnly"] is False
    assert bybit.positions("main")["BTCUSDT"].qty == 0.02  # the engine's own record


def test_conditional_stop_lookups_and_cancel(bybit: BybitExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    stop = client.create_order(
        SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", **STOP}
    )
    found = client.fetch_open_order(None, SYMBOL, {"orderLinkId": "s1", "trigger": True, **NO_ID})
    assert found["id"] == stop["id"] and found["status"] == "open"
    assert found["triggerPrice"] == 58_000 and found["stopLossPrice"] == 58_000
    assert found["info"]["orderStatus"] == "Untriggered"
    assert found["info"]["stopOrderType"] == "Stop" and found["reduceOnly"] is True
    # the market order is not among the conditional ones, nor the stop among plain orders
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_open_order(None, SYMBOL, {"orderLinkId": "e1", "trigger": True, **NO_ID})
    plain = client.fetch_open_orders(SYMBOL, None, None, {"orderFilter": "Order"})
    assert plain == []
    cancelled = client.cancel_order(None, SYMBOL, {"orderLinkId": "s1"})
    assert cancelled["id"] == stop["id"]
    assert [o.client_id for o in bybit.open_orders("main")] == []
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_open_order(None, SYMBOL, {"orderLinkId": "s1", "trigger": True, **NO_ID})
    history = client.fetch_canceled_and_closed_orders(SYMBOL, None, None, {"orderLinkId": "s1"})
    assert [o["info"]["orderStatus"] for o in history] == ["Deactivated"]
    assert history[0]["status"] == "canceled"


def test_triggered_stop_keeps_its_id_and_is_closed(bybit: BybitExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    stop = client.create_order(
        SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", **STOP}
    )
    bybit.set_price("BTCUSDT", 57_900)
    assert "BTCUSDT" not in bybit.positions("main")
    closed = client.fetch_closed_order(
        None, SYMBOL, {"orderLinkId": "s1", "trigger": True, **NO_ID}
    )
    assert closed["id"] == stop["id"] and closed["status"] == "closed"
    assert closed["filled"] == 0.01 and closed["average"] == 57_900


def test_close_on_trigger_with_qty_zero_closes_the_whole_position(
    bybit: BybitExchange, client: Any
) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.03, None, {"clientOrderId": "e1"})
    client.create_order(
        SYMBOL,
        "market",
        "sell",
        0,
        None,
        {"clientOrderId": "s1", "closeOnTrigger": True, "qty": "0", **STOP},
    )  # ccxt leaves qty out for an amount of 0: Bybit needs it, "0" with closeOnTrigger
    assert json.loads(client.last_request_body)["closeOnTrigger"] is True
    client.create_order(SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": "e2"})
    bybit.set_price("BTCUSDT", 57_000)
    assert "BTCUSDT" not in bybit.positions("main")  # 0.05 closed by a stop of qty 0
    closed = client.fetch_closed_order(
        None, SYMBOL, {"orderLinkId": "s1", "trigger": True, **NO_ID}
    )
    assert closed["filled"] == 0.05 and closed["info"]["closeOnTrigger"] is True


def test_order_link_id_is_refused_for_ever_110072(bybit: BybitExchange, client: Any) -> None:
    """Unlike Binance (-4116 for open orders only): a filled, cancelled or conditional
    order's orderLinkId is refused too, whatever the kind of the new order."""
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    with pytest.raises(ccxt.InvalidOrder) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    assert _ret_code(err) == 110072
    client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", **STOP})
    client.cancel_order(None, SYMBOL, {"orderLinkId": "s1"})
    with pytest.raises(ccxt.InvalidOrder) as err:
        client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", **STOP})
    assert _ret_code(err) == 110072
    with pytest.raises(ccxt.InvalidOrder) as err:  # across kinds
        client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1"})
    assert _ret_code(err) == 110072
    assert bybit.positions("main")["BTCUSDT"].qty == 0.01  # nothing refused was executed
    assert [e.code for e in bybit.order_log() if e.outcome == "rejected"] == [110072] * 3


def test_order_link_ids_are_per_account(bybit: BybitExchange, client: Any) -> None:
    other = make_bybit_ccxt(bybit.base_url, "key-other", "secret-other")
    try:
        client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "same"})
        other.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "same"})
        assert bybit.positions("other")["BTCUSDT"].qty == 0.01
    finally:
        other.session.close()


def test_reduce_only_larger_than_the_position_is_cut_to_it(
    bybit: BybitExchange, client: Any
) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    order = client.create_order(
        SYMBOL, "market", "sell", 0.05, None, {"clientOrderId": "c1", "reduceOnly": True}
    )
    closed = client.fetch_closed_order(order["id"], SYMBOL)
    assert closed["amount"] == 0.01 and closed["filled"] == 0.01
    assert "BTCUSDT" not in bybit.positions("main")


def test_positions_and_balance(bybit: BybitExchange, client: Any) -> None:
    assert client.fetch_positions() == []  # settleCoin=USDT: non-flat ones only
    flat = client.fetch_positions([SYMBOL])  # a symbol: its row even when flat
    assert [p["contracts"] for p in flat] == [0]
    client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "e1"})
    bybit.set_price("BTCUSDT", 59_000)
    (pos,) = client.fetch_positions()
    assert pos["symbol"] == SYMBOL and pos["side"] == "short" and pos["contracts"] == 0.01
    assert pos["entryPrice"] == 60_000 and pos["markPrice"] == 59_000
    assert pos["unrealizedPnl"] == pytest.approx(10.0)
    balance = client.fetch_balance()
    wallet = bybit.wallet_balance("main")
    assert balance["USDT"]["total"] == pytest.approx(wallet)
    assert balance["USDT"]["used"] == pytest.approx(0.01 * 59_000 / 20)


def test_ticker_carries_the_mark_price(bybit: BybitExchange, client: Any) -> None:
    bybit.set_price("ETHUSDT", 3_123.45)
    ticker = client.fetch_ticker("ETH/USDT:USDT")
    assert ticker["markPrice"] == 3_123.45 and ticker["info"]["markPrice"] == "3123.45"


def test_a_none_id_is_sent_as_the_text_none(bybit: BybitExchange, client: Any) -> None:
    """ccxt 4.5.90's fetch_open_order(None, ...) sends ``orderId=None``: an order id that
    matches nothing, and orderId comes before orderLinkId. The adapter must send an empty
    orderId (or use fetch_open_orders with orderLinkId)."""
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", **STOP})
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_open_order(None, SYMBOL, {"orderLinkId": "s1", "trigger": True})
    assert "orderId=None" in client.last_request_url
    rows = client.fetch_open_orders(SYMBOL, None, None, {"orderLinkId": "s1", "trigger": True})
    assert [o["clientOrderId"] for o in rows] == ["s1"]
    # without orderFilter a lookup finds conditional and market orders alike
    rows = client.fetch_open_orders(SYMBOL, None, None, {"orderLinkId": "s1"})
    assert [o["clientOrderId"] for o in rows] == ["s1"]
    assert "orderFilter" not in client.last_request_url


def test_open_only_lists_and_the_last_500_closed(bybit: BybitExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    assert client.fetch_open_orders(SYMBOL) == []  # a filled market order is not open
    recent = client.fetch_open_orders(SYMBOL, None, None, {"openOnly": 1})
    assert [o["clientOrderId"] for o in recent] == ["e1"]


def test_unknown_symbol_is_bad_symbol(client: Any) -> None:
    with pytest.raises(ccxt.BadSymbol):
        client.publicGetV5MarketTickers({"category": "linear", "symbol": "NOPEUSDT"})


def test_bad_signature_and_key_are_refused(bybit: BybitExchange) -> None:
    wrong = make_bybit_ccxt(bybit.base_url, KEY, "not-the-secret")
    unknown = make_bybit_ccxt(bybit.base_url, "no-such-key", "x")
    try:
        wrong.load_markets()  # public: no signature
        with pytest.raises(ccxt.AuthenticationError) as err:
            wrong.fetch_balance()
        assert _ret_code(err) == 10004
        with pytest.raises(ccxt.AuthenticationError) as err:
            unknown.fetch_positions()
        assert _ret_code(err) == 10003
    finally:
        wrong.session.close()
        unknown.session.close()


def test_timestamp_outside_recv_window_10002(bybit: BybitExchange, client: Any) -> None:
    client.options["recvWindow"] = 1_000
    base = client.nonce
    client.nonce = lambda: base() - 5_000  # a clock 5 s behind the server
    with pytest.raises(ccxt.InvalidNonce) as err:
        client.fetch_positions()
    assert _ret_code(err) == 10002
    client.nonce = lambda: base() + 5_000  # 5 s ahead
    with pytest.raises(ccxt.InvalidNonce):
        client.fetch_positions()
    client.options["recvWindow"] = 10_000
    client.nonce = lambda: base() - 5_000  # within a wider window
    assert client.fetch_positions() == []


def test_unsigned_sim_accepts_any_signature() -> None:
    with BybitExchange(check_signatures=False) as ex:
        c = make_bybit_ccxt(ex.base_url, "anything", "whatever")
        try:
            c.load_markets()
            c.create_order(SYMBOL, "market", "buy", 0.01)
            assert ex.positions()["BTCUSDT"].qty == 0.01  # the default account
        finally:
            c.session.close()


def test_market_qty_zero_with_close_on_trigger_closes_the_position(
    bybit: BybitExchange, client: Any
) -> None:
    """Bybit's "qty 0 closes the whole position" needs reduceOnly and closeOnTrigger; a
    plain qty 0 is refused 10001 (as pybit#168 reports)."""
    close = {"qty": "0", "reduceOnly": True, "closeOnTrigger": True}
    with pytest.raises(ccxt.InvalidOrder) as err:  # nothing to close
        client.create_order(SYMBOL, "market", "sell", 0, None, {"clientOrderId": "c0", **close})
    assert _ret_code(err) == 110017
    client.create_order(SYMBOL, "market", "buy", 0.03, None, {"clientOrderId": "e1"})
    with pytest.raises(ccxt.BadRequest) as err:
        client.create_order(SYMBOL, "market", "sell", 0, None, {"qty": "0"})
    assert _ret_code(err) == 10001
    client.create_order(SYMBOL, "market", "sell", 0, None, {"clientOrderId": "c1", **close})
    assert "BTCUSDT" not in bybit.positions("main")
    closed = client.fetch_closed_order(None, SYMBOL, {"orderLinkId": "c1", "orderId": ""})
    assert closed["filled"] == 0.03 and closed["reduceOnly"] is True
