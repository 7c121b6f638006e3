"""Lookup before re-send on Bybit, checked against the exchange's own order ledger.

On Binance a client id is unique among *open* orders only; on Bybit an ``orderLinkId`` is
refused (110072) for any order the account ever had, and ccxt's ``fetch_order`` sees only
the last 500 orders. The adapter's lookup (``Venue.lookup_calls``: open orders, the latest
closed ones, the order history) finds an order whatever became of it, and a duplicate refusal
resolves to the real status of the order holding the id. An order whose reply was lost after
the exchange accepted it is found and never placed twice.
"""

from __future__ import annotations

from collections.abc import Callable

import ccxt
import pytest

from actors.messages import CallResult
from actors.model import ExchangeStatus
from infra.exchange import CcxtExchange
from sim.bybit import BybitExchange
from tests.exchange.bybit.conftest import (
    ACCOUNT,
    API_KEY,
    API_SECRET,
    KEY,
    SYMBOL,
    accepted_orders,
    resolve,
)
from tests.exchange.conftest import entry, stop
from tests.sim.bybit.conftest import make_bybit_ccxt

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CREATE = {"path": "/v5/order/create", "method": "POST"}
UNIFIED = "BTC/USDT:USDT"


@pytest.mark.parametrize(
    ("fault", "options", "reason"),
    [
        ("timeout", {"close": True}, "network"),  # connection closed after acting
        ("bad_response", {}, "error:ValueError"),  # acted, then an unreadable reply
    ],
)
def test_an_entry_whose_reply_is_lost_is_found_and_never_placed_twice(
    bybit: BybitExchange,
    exchange: CcxtExchange,
    fault: str,
    options: dict[str, object],
    reason: str,
) -> None:
    bybit.add_fault(fault, **CREATE, **options)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, reason)
    # The actor looks it up by its client id: the exchange has it, filled.
    found = resolve(exchange, "ps1e1")
    assert found.status is ExchangeStatus.FILLED
    assert found.filled_qty == pytest.approx(0.01)
    # A re-send with the same id (what a restart could do) is refused 110072 and resolves
    # to the same order.
    again = exchange.place_order(entry("ps1e1"))
    assert (again.result, again.reason, again.status) == (
        CallResult.ACCEPTED,
        "duplicate",
        ExchangeStatus.FILLED,
    )
    assert again.exchange_id == found.exchange_id
    assert accepted_orders(bybit, "ps1e1") == 1
    assert bybit.orders_sent("ps1e1") == 2
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.01)


def test_an_entry_whose_reply_is_held_past_the_timeout_is_found(
    bybit: BybitExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    ex = make_exchange(timeout_s=0.3)
    ex.load_markets()
    bybit.add_fault("timeout", hold_s=1.0, **CREATE)
    reply = ex.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "timeout")
    assert resolve(ex, "ps1e1").status is ExchangeStatus.FILLED
    assert accepted_orders(bybit, "ps1e1") == 1
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.01)


def test_a_stop_whose_reply_is_lost_rests_once(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1"))
    bybit.add_fault("timeout", close=True, **CREATE)
    assert exchange.place_order(stop("ps1s1", 58_000.0)).result is CallResult.UNKNOWN
    assert resolve(exchange, "ps1s1", trigger=True).status is ExchangeStatus.NEW
    again = exchange.place_order(stop("ps1s1", 58_000.0))
    assert (again.result, again.reason, again.status) == (
        CallResult.ACCEPTED,
        "duplicate",
        ExchangeStatus.NEW,
    )
    assert accepted_orders(bybit, "ps1s1") == 1
    assert [o.client_id for o in bybit.open_orders(ACCOUNT)] == ["ps1s1"]


def test_a_duplicate_of_a_cancelled_stop_resolves_to_cancelled(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    """Binance would place it again (the id is free once the order is closed); Bybit refuses
    it for ever, and the reply says what became of the first."""
    exchange.place_order(entry("ps1e1"))
    exchange.place_order(stop("ps1s1", 58_000.0))
    assert exchange.cancel_order(KEY, "ps1s1", True).result is CallResult.ACCEPTED
    again = exchange.place_order(stop("ps1s1", 58_000.0))
    assert (again.result, again.reason, again.status) == (
        CallResult.ACCEPTED,
        "duplicate",
        ExchangeStatus.CANCELED,
    )
    assert bybit.order_log(ACCOUNT)[-1].code == 110072
    assert accepted_orders(bybit, "ps1s1") == 1
    assert bybit.open_orders(ACCOUNT) == []


def test_a_duplicate_held_by_another_order_is_refused(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    """Someone else's order (opposite side) holds the id: not ours, refused, logged."""
    other = make_bybit_ccxt(bybit.base_url, API_KEY, API_SECRET)
    try:
        other.load_markets()
        other.create_order(UNIFIED, "market", "sell", 0.01, None, {"orderLinkId": "ps1e1"})
    finally:
        other.session.close()
    reply = exchange.place_order(entry("ps1e1"))  # a buy
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "duplicate_id_mismatch")
    assert accepted_orders(bybit, "ps1e1") == 1
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(-0.01)


def test_an_order_older_than_the_last_500_is_still_found(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    """ccxt's fetch_order (acknowledged) and the realtime list keep only the latest 500
    closed orders; the lookup goes on to the order history."""
    exchange.place_order(entry("ps1e1"))
    raw = make_bybit_ccxt(bybit.base_url, API_KEY, API_SECRET)
    try:
        raw.load_markets()
        for n in range(501):
            side = "sell" if n % 2 == 0 else "buy"
            raw.create_order(UNIFIED, "market", side, 0.001, None, {"orderLinkId": f"x{n}"})
        with pytest.raises(ccxt.OrderNotFound):
            raw.fetch_open_order(
                None, UNIFIED, {"orderLinkId": "ps1e1", "orderId": "", "openOnly": 1}
            )
    finally:
        raw.session.close()
    found = exchange.lookup_order(KEY, "ps1e1", False)
    assert (found.result, found.status) == (CallResult.FOUND, ExchangeStatus.FILLED)
    again = exchange.place_order(entry("ps1e1"))
    assert (again.result, again.status) == (CallResult.ACCEPTED, ExchangeStatus.FILLED)
    assert accepted_orders(bybit, "ps1e1") == 1
