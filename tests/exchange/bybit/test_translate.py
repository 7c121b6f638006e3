"""The Bybit venue's data through the pure translation (no server): Bybit's ``orderStatus``
words, its raw order fields, its close-position params, its market-order maximum."""

from __future__ import annotations

import pytest

from actors.messages import CallResult
from actors.model import ExchangeStatus, OrderKind
from actors.ports import OrderRequest
from infra.exchange import BYBIT_LINEAR
from infra.exchange.translate import TICK_SIZE, mismatch, order_params, order_reply, rules_of_market
from tests.exchange.bybit.conftest import KEY

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("New", ExchangeStatus.NEW),
        ("PartiallyFilled", ExchangeStatus.PARTIALLY_FILLED),
        ("Untriggered", ExchangeStatus.NEW),
        ("Triggered", ExchangeStatus.TRIGGERED),
        ("Filled", ExchangeStatus.FILLED),
        ("Cancelled", ExchangeStatus.CANCELED),
        ("Rejected", ExchangeStatus.REJECTED),
        ("Deactivated", ExchangeStatus.CANCELED),
        ("PartiallyFilledCanceled", ExchangeStatus.CANCELED),
    ],
)
def test_every_bybit_order_status_has_a_meaning(raw: str, status: ExchangeStatus) -> None:
    assert BYBIT_LINEAR.normalize_status(raw) is status


def test_a_bybit_order_row_becomes_the_ports_reply() -> None:
    row = {
        "orderId": "5a0c8d41-0f4f-4c2b-8a57-1d8b1e0d2b11",
        "orderLinkId": "ps1e1",
        "orderStatus": "PartiallyFilledCanceled",
        "cumExecQty": "0.004",
        "avgPrice": "60012.5",
        "updatedTime": "1764750000123",
        "stopOrderType": "",
    }
    order = {"info": row, "status": "closed", "filled": 0.004, "symbol": "BTC/USDT:USDT"}
    reply = order_reply(BYBIT_LINEAR, CallResult.FOUND, order, lambda: 0.0)
    assert reply.status is ExchangeStatus.CANCELED
    assert (reply.filled_qty, reply.avg_price) == (0.004, 60012.5)
    assert reply.exchange_id == row["orderId"] and reply.event_time == 1764750000.123
    unfilled = {**row, "orderStatus": "Untriggered", "cumExecQty": "0", "avgPrice": ""}
    reply = order_reply(BYBIT_LINEAR, CallResult.FOUND, {"info": unfilled}, lambda: 0.0)
    assert (reply.status, reply.filled_qty, reply.avg_price) == (ExchangeStatus.NEW, 0.0, None)


def test_a_close_position_stop_is_qty_zero_reduce_only_close_on_trigger_on_the_mark() -> None:
    req = OrderRequest(
        KEY, "ps1s1", OrderKind.STOP_LOSS, "sell", 0.01, trigger_price=58_000.0, close_position=True
    )
    assert order_params(BYBIT_LINEAR, req) == {
        "orderLinkId": "ps1s1",
        "stopLossPrice": 58_000.0,
        "triggerBy": "MarkPrice",
        "qty": "0",
        "reduceOnly": True,
        "closeOnTrigger": True,
    }
    sized = OrderRequest(KEY, "ps1s2", OrderKind.STOP_LOSS, "sell", 0.01, trigger_price=58_000.0)
    assert order_params(BYBIT_LINEAR, sized)["reduceOnly"] is True
    assert "closeOnTrigger" not in order_params(BYBIT_LINEAR, sized)


def test_a_stop_holding_our_id_is_recognised_by_its_stop_order_type() -> None:
    req = OrderRequest(KEY, "ps1s1", OrderKind.STOP_LOSS, "sell", 0.01, trigger_price=58_000.0)
    ours = {"symbol": "BTC/USDT:USDT", "side": "sell", "info": {"stopOrderType": "Stop"}}
    assert mismatch(BYBIT_LINEAR, "BTC/USDT:USDT", req, ours) == ""
    plain = {**ours, "info": {"stopOrderType": ""}}
    assert "type" in mismatch(BYBIT_LINEAR, "BTC/USDT:USDT", req, plain)


def test_market_orders_are_bounded_by_max_mkt_order_qty() -> None:
    market = {
        "precision": {"amount": 0.001, "price": 0.1},
        "limits": {
            "amount": {"min": 0.001, "max": 1190.0},
            "price": {"min": 0.1, "max": 1999999.8},
            "cost": {"min": 5.0},
        },
        "info": {"lotSizeFilter": {"maxOrderQty": "1190", "maxMktOrderQty": "119"}},
    }
    rules = rules_of_market(market, TICK_SIZE, BYBIT_LINEAR.market_max_qty_path)
    assert (rules.step_size, rules.min_qty, rules.max_qty) == (0.001, 0.001, 119.0)
    assert (rules.tick_size, rules.min_notional) == (0.1, 5.0)
    assert rules_of_market(market, TICK_SIZE).max_qty == 1190.0  # without the path
