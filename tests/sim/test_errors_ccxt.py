"""Binance error codes the sim answers with, and the ccxt exception each becomes.

With the linear error table forced (see ``make_ccxt``) the classes are those listed in
EXCHANGE_WIRE.md; without it ccxt maps several codes to plain ExchangeError.
"""

from __future__ import annotations

from typing import Any

import ccxt
import pytest

from sim import SimExchange
from tests.sim.conftest import SYMBOL

pytestmark = pytest.mark.timeout(30)


def _code(err: pytest.ExceptionInfo[Exception]) -> int:
    text = str(err.value)
    import json

    return int(json.loads(text[text.index("{") :])["code"])


def test_order_not_found_2013_and_2011(client: Any) -> None:
    with pytest.raises(ccxt.OrderNotFound) as err:
        client.fetch_order(None, SYMBOL, {"clientOrderId": "nope"})
    assert _code(err) == -2013
    with pytest.raises(ccxt.OrderNotFound) as err:
        client.fetch_order(None, SYMBOL, {"clientOrderId": "nope", "trigger": True})
    assert _code(err) == -2013
    with pytest.raises(ccxt.OrderNotFound) as err:
        client.cancel_order("123", SYMBOL)
    assert _code(err) == -2011
    with pytest.raises(ccxt.OrderNotFound) as err:
        client.cancel_order("123", SYMBOL, {"trigger": True})
    assert _code(err) == -2011


def test_insufficient_margin_2019(sim: SimExchange, client: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds) as err:
        client.create_order(SYMBOL, "market", "buy", 400.0)  # 24M notional / 20 > 1M
    assert _code(err) == -2019
    assert sim.order_log()[-1].outcome == "rejected" and sim.order_log()[-1].code == -2019


def test_reduce_only_rejected_2022(client: Any) -> None:
    with pytest.raises(ccxt.InvalidOrder) as err:
        client.create_order(SYMBOL, "market", "sell", 0.01, params={"reduceOnly": True})
    assert _code(err) == -2022


def test_duplicate_client_id_4116_for_open_orders(sim: SimExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01)
    client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 59_000, "clientOrderId": "dup"}
    )
    with pytest.raises(ccxt.InvalidOrder) as err:
        client.create_order(
            SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 58_000, "clientOrderId": "dup"}
        )
    assert _code(err) == -4116
    sim.add_fault("partial_fill", parts=2, part_interval_s=30.0)
    client.create_order(SYMBOL, "market", "buy", 0.02, params={"clientOrderId": "open"})
    with pytest.raises(ccxt.InvalidOrder) as err:
        client.create_order(SYMBOL, "market", "buy", 0.02, params={"clientOrderId": "open"})
    assert _code(err) == -4116
    assert sim.orders_sent("open") == 2


def test_stop_that_would_trigger_2021(client: Any) -> None:
    with pytest.raises(ccxt.OrderImmediatelyFillable) as err:
        client.create_order(SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 60_500})
    assert isinstance(err.value, ccxt.InvalidOrder)
    assert _code(err) == -2021


def test_bad_client_id_1100(client: Any) -> None:
    with pytest.raises(ccxt.BadRequest) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "x" * 37})
    assert _code(err) == -1100
    with pytest.raises(ccxt.BadRequest) as err:
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "bad id!"})
    assert _code(err) == -1100


def test_plain_stop_market_on_order_endpoint_4120(client: Any) -> None:
    with pytest.raises(ccxt.InvalidOrder) as err:
        client.fapiPrivatePostOrder(
            {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "STOP_MARKET",
                "stopPrice": "59000",
                "quantity": "0.01",
            }
        )
    assert _code(err) == -4120


def test_without_linear_table_codes_fall_back_to_exchange_error(sim: SimExchange) -> None:
    """Why the fixture overrides ``get_exceptions_by_url``: a plain client loses the classes."""
    plain = ccxt.binanceusdm(
        {
            "apiKey": "k",
            "secret": "s",
            "options": {"fetchCurrencies": False, "fetchMarkets": {"types": ["linear"]}},
        }
    )
    plain.urls["api"] = {
        k: f"{sim.base_url}/fapi/{v}" for k, v in (("fapiPublic", "v1"), ("fapiPrivate", "v1"))
    }
    plain.load_markets()
    with pytest.raises(ccxt.ExchangeError) as err:
        plain.create_order(SYMBOL, "market", "buy", 400.0)
    assert type(err.value) is ccxt.ExchangeError
    plain.session.close()


def test_close_position_with_reduce_only_or_quantity_1106(client: Any) -> None:
    with pytest.raises(ccxt.BadRequest) as err:
        client.create_order(
            SYMBOL,
            "market",
            "sell",
            None,
            params={"triggerPrice": 59_000, "closePosition": True, "reduceOnly": True},
        )
    assert _code(err) == -1106
    # ccxt itself drops the quantity when closePosition is set; a raw request may not
    raw = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "algoType": "CONDITIONAL"}
    with pytest.raises(ccxt.BadRequest) as err:
        client.fapiPrivatePostAlgoOrder(
            {**raw, "triggerPrice": "59000", "closePosition": "true", "quantity": "0.01"}
        )
    assert _code(err) == -1106
