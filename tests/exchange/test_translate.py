"""The pure translation between ccxt's structures and the port's types, without a server.

The reply shapes are what ccxt 4 (binanceusdm) returns for the sim's answers, trimmed to the
fields that matter: a filled market order, a resting conditional (algo) stop, the reply to
its cancel, a position and an open algo order, a market structure. Each test fails if the
translation of one field breaks.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.messages import CallResult
from actors.model import (
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    MarketRules,
    OrderKind,
    Side,
)
from actors.ports import OrderReply, OrderRequest
from infra.exchange import BINANCE_USDM
from infra.exchange.client import error_code, request_cost, retry_after
from infra.exchange.limits import Cost
from infra.exchange.translate import (
    DECIMAL_PLACES,
    TICK_SIZE,
    mismatch,
    open_orders_of,
    order_params,
    order_reply,
    positions_of,
    rules_of_market,
)

V = BINANCE_USDM
SYM = "BTC/USDT:USDT"
TO_ID = {SYM: "BTCUSDT"}
KEY = Key("main", "BTCUSDT")


def never() -> float:
    raise AssertionError("the reply carries its own time")


# -- replies as ccxt returns them ----------------------------------------------------------

FILLED_MARKET: dict[str, Any] = {
    "info": {
        "orderId": 8000000002,
        "symbol": "BTCUSDT",
        "status": "FILLED",
        "clientOrderId": "ps1e1",
        "avgPrice": "60000.0",
        "origQty": "0.01000",
        "executedQty": "0.01000",
        "cumQty": "0.01000",
        "type": "MARKET",
        "side": "BUY",
        "updateTime": 1796269233855,
    },
    "id": "8000000002",
    "clientOrderId": "ps1e1",
    "symbol": SYM,
    "side": "buy",
    "amount": 0.01,
    "average": 60000.0,
    "filled": 0.01,
    "status": "closed",
}

RESTING_STOP: dict[str, Any] = {
    "info": {
        "algoId": 1000000002,
        "clientAlgoId": "ps1s1",
        "orderType": "STOP_MARKET",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "quantity": "0.00000",
        "algoStatus": "NEW",
        "triggerPrice": "58000.0",
        "closePosition": True,
        "reduceOnly": True,
        "createTime": 1796269233867,
        "updateTime": 1796269233867,
        "actualOrderId": "",
        "executedQty": "0.00000",
        "avgPrice": "0.00",
    },
    "id": "1000000002",
    "clientOrderId": "ps1s1",
    "symbol": SYM,
    "type": "market",
    "reduceOnly": True,
    "side": "sell",
    "triggerPrice": 58000.0,
    "amount": None,
    "average": None,
    "filled": 0.0,
    "status": "open",
}

CANCELLED_STOP: dict[str, Any] = {
    "info": {"algoId": 1000000002, "clientAlgoId": "ps1s1", "code": "200", "msg": "success"},
    "id": "1000000002",
    "clientOrderId": "ps1s1",
    "symbol": SYM,
    "side": None,
    "filled": 0.0,
    "status": None,
}

POSITION: dict[str, Any] = {
    "info": {"symbol": "BTCUSDT", "positionAmt": "0.01000", "entryPrice": "60000.00000000"},
    "symbol": SYM,
    "contracts": 0.01,
    "contractSize": 1.0,
    "entryPrice": 60000.0,
    "side": "long",
}

MARKET: dict[str, Any] = {
    "id": "BTCUSDT",
    "symbol": SYM,
    "type": "swap",
    "linear": True,
    "precision": {"amount": 1e-05, "price": 0.1},
    "limits": {
        "amount": {"min": 1e-05, "max": 100000000.0},
        "price": {"min": 0.1, "max": 10000000.0},
        "cost": {"min": 5.0, "max": None},
        "market": {"min": 1e-05, "max": 100000000.0},
    },
    "info": {
        "symbol": "BTCUSDT",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.1", "maxPrice": "10000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "stepSize": "0.00001"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00001", "stepSize": "0.00001"},
        ],
    },
}


def stop_req(kind: OrderKind = OrderKind.STOP_LOSS, **kw: Any) -> OrderRequest:
    options: dict[str, Any] = {"trigger_price": 58_000.0, "close_position": True}
    options.update(kw)
    return OrderRequest(KEY, "ps1s1", kind, "sell", 0.01, **options)


# -- order replies -------------------------------------------------------------------------


def test_a_filled_market_order_reads_the_raw_fields() -> None:
    reply = order_reply(V, CallResult.ACCEPTED, FILLED_MARKET, never)
    assert reply == OrderReply(
        CallResult.ACCEPTED,
        status=ExchangeStatus.FILLED,
        filled_qty=0.01,
        avg_price=60_000.0,
        exchange_id="8000000002",
        event_time=1796269233.855,
    )


def test_a_resting_algo_stop_reads_algo_status_and_algo_id() -> None:
    reply = order_reply(V, CallResult.FOUND, RESTING_STOP, never)
    assert reply == OrderReply(
        CallResult.FOUND,
        status=ExchangeStatus.NEW,
        filled_qty=0.0,
        avg_price=None,  # "0.00" is no price
        exchange_id="1000000002",
        event_time=1796269233.867,
    )


def test_a_cancel_reply_without_status_or_time_is_stamped_by_the_clock() -> None:
    reply = order_reply(V, CallResult.ACCEPTED, CANCELLED_STOP, lambda: 123.5)
    assert reply == OrderReply(
        CallResult.ACCEPTED, status=None, exchange_id="1000000002", event_time=123.5
    )


def test_raw_fields_missing_fall_back_to_ccxts_unified_ones() -> None:
    order = {"id": 7, "status": "canceled", "filled": 0.004, "average": 59_000.0, "info": {}}
    reply = order_reply(V, CallResult.FOUND, order, lambda: 1.0)
    assert (reply.status, reply.filled_qty, reply.avg_price, reply.exchange_id) == (
        "canceled",
        0.004,
        59_000.0,
        "7",
    )


def test_an_unknown_raw_status_is_logged_and_the_unified_one_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    order = {**FILLED_MARKET, "info": {**FILLED_MARKET["info"], "status": "WEIRD"}}
    with caplog.at_level(logging.WARNING, "infra.exchange"):
        reply = order_reply(V, CallResult.FOUND, order, never)
    assert reply.status == "filled"  # ccxt's "closed"
    assert "WEIRD" in caplog.text


def test_an_unreadable_reply_keeps_the_calls_result() -> None:
    assert order_reply(V, CallResult.ACCEPTED, {"info": 5}, never) == OrderReply(
        CallResult.ACCEPTED
    )


# -- requests ------------------------------------------------------------------------------


def test_order_params_of_each_kind() -> None:
    entry = OrderRequest(KEY, "ps1e1", OrderKind.ENTRY, "buy", 0.01)
    assert order_params(V, entry) == {"clientOrderId": "ps1e1", "newOrderRespType": "RESULT"}
    close = OrderRequest(KEY, "ps1c1", OrderKind.CLOSE, "sell", 0.01)
    assert order_params(V, close)["reduceOnly"] is True
    assert order_params(V, stop_req()) == {
        "clientOrderId": "ps1s1",
        "stopLossPrice": 58_000.0,
        "workingType": "MARK_PRICE",
        "closePosition": True,
    }
    partial = order_params(V, stop_req(close_position=False))
    assert partial["reduceOnly"] is True and "closePosition" not in partial
    with pytest.raises(ValueError, match="without trigger_price"):
        order_params(V, stop_req(trigger_price=None))


def test_mismatch_names_what_differs_from_the_request() -> None:
    assert mismatch(V, SYM, stop_req(), RESTING_STOP) == ""
    buy = {**RESTING_STOP, "side": "buy"}
    assert mismatch(V, SYM, stop_req(), buy) == "side 'buy'"
    take_profit = {
        **RESTING_STOP,
        "info": {**RESTING_STOP["info"], "orderType": "TAKE_PROFIT_MARKET"},
    }
    assert mismatch(V, SYM, stop_req(), take_profit) == (
        "type 'TAKE_PROFIT_MARKET', not 'STOP_MARKET'"
    )
    assert mismatch(V, "ETH/USDT:USDT", stop_req(), RESTING_STOP) == f"symbol {SYM!r}"


# -- the account ---------------------------------------------------------------------------


def test_positions_of_the_account() -> None:
    short = {**POSITION, "symbol": "ETH/USDT:USDT", "side": "short", "contractSize": 10.0}
    flat = {**POSITION, "contracts": 0.0}
    unknown = {**POSITION, "symbol": "DOGE/USDT:USDT"}
    to_id = {**TO_ID, "ETH/USDT:USDT": "ETHUSDT"}
    assert positions_of([POSITION, short, unknown], to_id) == {
        "BTCUSDT": ExchangePosition(Side.LONG, 0.01, 60_000.0),
        "ETHUSDT": ExchangePosition(Side.SHORT, 0.1, 60_000.0),
    }
    assert positions_of([flat], TO_ID) == {}


def test_open_orders_of_the_account() -> None:
    resting_entry = {**FILLED_MARKET, "status": "open", "reduceOnly": False}
    close_position_only_in_info = {
        **RESTING_STOP,
        "reduceOnly": False,
        "clientOrderId": "ps2s1",
        "id": None,
    }
    orders = open_orders_of([resting_entry], [RESTING_STOP, close_position_only_in_info], TO_ID)
    assert orders == {
        "BTCUSDT": (
            ExchangeOrder("ps1e1", "buy", 0.01, False, None, False, "8000000002"),
            ExchangeOrder("ps1s1", "sell", 0.0, True, 58_000.0, True, "1000000002"),
            ExchangeOrder("ps2s1", "sell", 0.0, True, 58_000.0, True, None),
        )
    }
    assert open_orders_of([], [{**RESTING_STOP, "symbol": "X/USDT:USDT"}], TO_ID) == {}


# -- markets -------------------------------------------------------------------------------


def test_rules_of_a_market() -> None:
    assert rules_of_market(MARKET, TICK_SIZE) == MarketRules(
        tick_size=0.1,
        step_size=1e-05,
        min_qty=1e-05,
        max_qty=1e8,
        min_notional=5.0,
        min_price=0.1,
        max_price=1e7,
    )


def test_market_lot_size_wins_and_zero_bounds_are_none() -> None:
    info = {"filters": [{"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "minQty": "0.001"}]}
    limits = {**MARKET["limits"], "price": {"min": 0.1, "max": 0}, "market": {"min": 0.002}}
    rules = rules_of_market({**MARKET, "info": info, "limits": limits}, TICK_SIZE)
    assert (rules.step_size, rules.min_qty, rules.max_price) == (0.001, 0.002, None)
    decimal_places = {**MARKET, "info": {}, "precision": {"amount": 3, "price": 1}}
    places = rules_of_market(decimal_places, DECIMAL_PLACES)
    assert (places.tick_size, places.step_size) == pytest.approx((0.1, 0.001))


# -- the client's wire helpers -------------------------------------------------------------


def test_request_cost_by_path_and_symbol() -> None:
    base = "http://127.0.0.1:1/fapi/v1"
    assert request_cost(V, "post", f"{base}/order", "symbol=BTCUSDT&side=BUY") == Cost(0, 1)
    assert request_cost(V, "GET", f"{base}/openOrders?symbol=BTCUSDT", None) == Cost(1, 0)
    assert request_cost(V, "GET", f"{base}/openOrders?timestamp=1", None) == Cost(40, 0)
    assert request_cost(V, "POST", f"{base}/listenKey", "") == Cost(1, 0)


def test_retry_after_and_error_code_of_a_reply() -> None:
    assert retry_after({"Retry-After": "3"}, "Retry-After") == 3.0
    assert retry_after({"Retry-After": "soon"}, "Retry-After") is None
    assert retry_after({"Retry-After": "-1"}, "Retry-After") is None
    assert error_code('{"code":-2019,"msg":"Margin is insufficient."}') == "-2019"
    assert error_code("<html>502</html>") is None
