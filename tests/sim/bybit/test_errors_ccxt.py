"""Bybit retCodes the sim answers with, and the ccxt 4.5.90 exception each becomes.

Each refusal issue 17 names is produced the natural way (the request the exchange refuses)
where the sim can, and every code also through the ``error_code`` fault, so the adapter's
table can be tested against both. ccxt's bybit picks the class from the retCode
(``exceptions["exact"]``) after the message (``exceptions["broad"]``), whatever the URL:
no per-URL table to force, unlike binanceusdm.
"""

from __future__ import annotations

import json
from typing import Any

import ccxt
import pytest

from sim.bybit import BybitExchange
from tests.sim.bybit.conftest import SYMBOL, make_bybit_ccxt

pytestmark = pytest.mark.timeout(30)


def _ret_code(err: pytest.ExceptionInfo[Exception]) -> int:
    text = str(err.value)
    return int(json.loads(text[text.index("{") :])["retCode"])


def test_insufficient_balance_110007(bybit: BybitExchange, client: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds) as err:
        client.create_order(SYMBOL, "market", "buy", 400.0)  # 24M notional / 20 > 1M
    assert _ret_code(err) == 110007
    entry = bybit.order_log()[-1]
    assert (entry.outcome, entry.code) == ("rejected", 110007)
    assert bybit.positions("main") == {}


def test_would_trigger_immediately_110092_110093(bybit: BybitExchange, client: Any) -> None:
    """ccxt maps both to InvalidOrder (not OrderImmediatelyFillable): the adapter must read
    the retCode."""
    client.create_order(SYMBOL, "market", "buy", 0.01)
    with pytest.raises(ccxt.InvalidOrder) as err:  # a sell stop above the price: falling
        client.create_order(SYMBOL, "market", "sell", 0.01, None, {"stopLossPrice": 61_000})
    assert _ret_code(err) == 110093
    assert "trigger_price[61000.0] >= current[60000.0]" in str(err.value)
    with pytest.raises(ccxt.InvalidOrder) as err:  # a take-profit below it: rising
        client.create_order(SYMBOL, "market", "sell", 0.01, None, {"takeProfitPrice": 59_000})
    assert _ret_code(err) == 110092
    with pytest.raises(ccxt.InvalidOrder) as err:  # at the price is "already crossed" too
        client.create_order(
            SYMBOL,
            "market",
            "buy",
            0.01,
            None,
            {"triggerPrice": 60_000, "triggerDirection": "ascending"},
        )
    assert _ret_code(err) == 110092
    assert bybit.open_orders("main") == []


def test_reduce_only_refused_110017(bybit: BybitExchange, client: Any) -> None:
    with pytest.raises(ccxt.InvalidOrder) as err:  # flat
        client.create_order(SYMBOL, "market", "sell", 0.01, None, {"reduceOnly": True})
    assert _ret_code(err) == 110017
    client.create_order(SYMBOL, "market", "buy", 0.01)
    with pytest.raises(ccxt.InvalidOrder) as err:  # same side as the position
        client.create_order(SYMBOL, "market", "buy", 0.01, None, {"reduceOnly": True})
    assert _ret_code(err) == 110017
    # a reduce-only conditional order is refused at placement when there is nothing to reduce
    with pytest.raises(ccxt.InvalidOrder) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01, None, {"stopLossPrice": 61_000})
    assert _ret_code(err) == 110017


def test_unknown_order_110001(client: Any) -> None:
    with pytest.raises(ccxt.OrderNotFound) as err:
        client.cancel_order("00000000-0000-0000-0000-000000000001", SYMBOL)
    assert _ret_code(err) == 110001
    with pytest.raises(ccxt.OrderNotFound) as err:
        client.cancel_order(None, SYMBOL, {"orderLinkId": "never-sent"})
    assert _ret_code(err) == 110001
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    with pytest.raises(ccxt.OrderNotFound) as err:  # filled: too late to cancel
        client.cancel_order(None, SYMBOL, {"orderLinkId": "e1"})
    assert _ret_code(err) == 110001
    # a lookup that finds nothing is an empty list, which ccxt turns into OrderNotFound
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_open_order(None, SYMBOL, {"orderLinkId": "never-sent", "orderId": ""})


def test_rate_limit_10006_with_bybit_headers(bybit: BybitExchange, client: Any) -> None:
    bybit.limits.enforce = True
    for _ in range(10):  # /v5/order/create: 10 per second per account
        client.create_order(SYMBOL, "market", "buy", 0.001)
    with pytest.raises(ccxt.RateLimitExceeded) as err:
        client.create_order(SYMBOL, "market", "buy", 0.001)
    assert _ret_code(err) == 10006
    headers = client.last_response_headers
    assert headers["X-Bapi-Limit"] == "10" and headers["X-Bapi-Limit-Status"] == "0"
    assert (
        int(headers["X-Bapi-Limit-Reset-Timestamp"])
        > json.loads(client.last_http_response)["time"] - 1000
    )
    assert bybit.positions("main")["BTCUSDT"].qty == pytest.approx(0.01)  # 10, not 11
    assert bybit.order_log()[-1].outcome == "not_executed"
    assert bybit.order_log()[-1].faults == ["rate_limit"]


def test_system_busy_10016(bybit: BybitExchange, client: Any) -> None:
    """10016 "System error" (the ``busy`` fault: nothing done) is a plain ExchangeError;
    10016 "Request timeout" (the ``http_503`` fault: the order IS placed) is RequestTimeout,
    from ccxt's broad table."""
    bybit.add_fault("busy")
    with pytest.raises(ccxt.ExchangeError) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01)
    assert type(err.value) is ccxt.ExchangeError and _ret_code(err) == 10016
    assert bybit.positions("main") == {}
    bybit.add_fault("http_503", path="/v5/order/create")
    with pytest.raises(ccxt.RequestTimeout) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "u1"})
    assert _ret_code(err) == 10016
    assert bybit.positions("main")["BTCUSDT"].qty == 0.01  # placed
    found = client.fetch_closed_order(None, SYMBOL, {"orderLinkId": "u1", "orderId": ""})
    assert found["status"] == "closed"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (10001, ccxt.BadRequest),
        (10002, ccxt.InvalidNonce),
        (10003, ccxt.AuthenticationError),
        (10004, ccxt.AuthenticationError),
        (10005, ccxt.PermissionDenied),
        (10006, ccxt.RateLimitExceeded),
        (10016, ccxt.ExchangeError),
        (110001, ccxt.OrderNotFound),
        (110007, ccxt.InsufficientFunds),
        (110017, ccxt.InvalidOrder),
        (110072, ccxt.InvalidOrder),
        (110092, ccxt.InvalidOrder),
        (110093, ccxt.InvalidOrder),
        (110094, ccxt.InvalidOrder),
    ],
)
def test_error_code_fault_maps_to_the_ccxt_class(
    bybit: BybitExchange, client: Any, code: int, cls: type[Exception]
) -> None:
    bybit.add_fault("error_code", code=code)
    with pytest.raises(cls) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01)
    assert type(err.value) is cls
    assert _ret_code(err) == code
    assert bybit.positions("main") == {}
    entry = bybit.order_log()[-1]
    assert (entry.outcome, entry.code, entry.faults) == ("rejected", code, ["error_code"])


def test_error_code_fault_after_acting(bybit: BybitExchange, client: Any) -> None:
    bybit.add_fault("error_code", code=110072, act=True)
    with pytest.raises(ccxt.InvalidOrder):
        client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "d1"})
    assert bybit.positions("main")["BTCUSDT"].qty == 0.01


@pytest.mark.parametrize(
    ("kind", "options", "cls", "placed"),
    [
        ("http_502", {}, ccxt.ExchangeNotAvailable, False),
        ("http_429", {"retry_after_s": 2}, ccxt.RateLimitExceeded, False),
        ("timeout", {"close": True}, ccxt.NetworkError, True),
        ("bad_response", {}, ValueError, True),
    ],
)
def test_transport_faults(
    bybit: BybitExchange,
    client: Any,
    kind: str,
    options: dict[str, Any],
    cls: type[Exception],
    placed: bool,
) -> None:
    bybit.add_fault(kind, path="/v5/order/create", **options)
    with pytest.raises(cls):
        client.create_order(SYMBOL, "market", "buy", 0.01)
    assert ("BTCUSDT" in bybit.positions("main")) is placed
    if kind == "http_429":
        headers = client.last_response_headers
        assert headers["X-Bapi-Limit-Status"] == "0"
        assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) >= int(headers["Timenow"]) + 2000


def test_held_reply_is_a_request_timeout(bybit: BybitExchange) -> None:
    quick = make_bybit_ccxt(bybit.base_url, timeout_ms=300)
    try:
        quick.load_markets()
        bybit.add_fault("timeout", path="/v5/order/create", hold_s=2.0)
        with pytest.raises(ccxt.RequestTimeout):
            quick.create_order(SYMBOL, "market", "buy", 0.01)
        assert bybit.positions("main")["BTCUSDT"].qty == 0.01
    finally:
        quick.session.close()
