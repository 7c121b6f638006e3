"""Every ExchangePort method the actors use, on Bybit: the adapter on the ``bybit`` venue,
the real ccxt ``bybit`` over HTTP to ``sim.bybit``, each outcome checked against the
exchange's own state (positions, open orders, order ledger), not the adapter's.
"""

from __future__ import annotations

import pytest

from actors.messages import CallResult
from actors.model import ExchangeStatus, Key, OrderKind, Side
from actors.ports import OrderRequest
from infra.exchange import BYBIT_LINEAR, VENUES, CcxtExchange
from infra.exchange.listen_keys import NoListenKey
from infra.feeds import ListenKeyError
from sim.bybit import BybitExchange
from sim.symbols import make_symbols
from tests.exchange.bybit.conftest import ACCOUNT, KEY, SYMBOL, accepted_orders, resolve
from tests.exchange.conftest import close, entry, stop
from tests.venues import make_sim, venue_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_the_venue_is_known_by_name_and_asks_only_the_lifecycle_endpoints(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    assert VENUES["bybit"] is BYBIT_LINEAR and exchange.venue is BYBIT_LINEAR
    client = exchange.pool.client()
    assert client.has["fetchCurrencies"] is False
    assert set(client.urls["api"]) == {"spot", "futures", "v2", "public", "private"}
    exchange.place_order(entry("ps1e1"))
    asked = set(bybit.limits.by_path)
    # No coin info before the markets, no account-mode calls before the first order.
    for path in ("/v5/asset/coin/query-info", "/v5/user/query-api", "/v5/account/info"):
        assert not any(route.endswith(path) for route in asked), asked
    assert "POST /v5/order/create" in asked


def test_market_entry_is_accepted_with_its_fill(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    reply = exchange.place_order(entry("ps1e1", qty=0.01))
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, ExchangeStatus.FILLED)
    assert reply.filled_qty == pytest.approx(0.01)
    assert reply.avg_price == pytest.approx(60_000, rel=1e-3)
    assert reply.exchange_id and reply.event_time > 0
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.01)  # long
    assert accepted_orders(bybit, "ps1e1") == 1
    found = exchange.lookup_order(KEY, "ps1e1", False)
    assert (found.result, found.status, found.exchange_id) == (
        CallResult.FOUND,
        ExchangeStatus.FILLED,
        reply.exchange_id,
    )


def test_protective_stop_is_reduce_only_close_on_trigger_on_the_mark_price(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1", qty=0.02))
    reply = exchange.place_order(stop("ps1s1", 58_000.0))
    # Bybit's reply names the order only; a stop is not looked up after placing (the actor
    # takes an accepted order without a status as new).
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, None)
    assert reply.exchange_id
    (logged,) = [e for e in bybit.order_log(ACCOUNT) if e.client_id == "ps1s1"]
    assert (logged.type, logged.reduce_only, logged.close_position) == ("STOP_MARKET", True, True)
    assert logged.trigger_price == 58_000.0
    (order_id,) = bybit.book_of(ACCOUNT).trigger_by
    assert bybit.book_of(ACCOUNT).trigger_by[order_id] == "MarkPrice"
    found = exchange.lookup_order(KEY, "ps1s1", True)
    assert (found.result, found.status) == (CallResult.FOUND, ExchangeStatus.NEW)
    # The stop closes the whole position when the mark price falls through it.
    bybit.set_prices({SYMBOL: 57_900.0})
    assert resolve_status(exchange, "ps1s1") is ExchangeStatus.FILLED
    assert SYMBOL not in bybit.positions(ACCOUNT)


def resolve_status(ex: CcxtExchange, cid: str) -> ExchangeStatus | None:
    return resolve(ex, cid, trigger=True).status


def test_cancel_then_lookup_then_cancel_again(bybit: BybitExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    exchange.place_order(stop("ps1s1", 58_000.0))
    reply = exchange.cancel_order(KEY, "ps1s1", True)
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, ExchangeStatus.CANCELED)
    assert bybit.open_orders(ACCOUNT) == []
    found = exchange.lookup_order(KEY, "ps1s1", True)  # Deactivated
    assert (found.result, found.status) == (CallResult.FOUND, ExchangeStatus.CANCELED)
    again = exchange.cancel_order(KEY, "ps1s1", True)  # 110001
    assert again.result is CallResult.NOT_FOUND
    assert exchange.cancel_order(KEY, "ps9s1", True).result is CallResult.NOT_FOUND
    assert exchange.lookup_order(KEY, "ps9e1", False).result is CallResult.NOT_FOUND


def test_reduce_only_close_takes_the_position_down(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1", qty=0.03))
    reply = exchange.place_order(close("ps1c1", qty=0.01))
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, ExchangeStatus.FILLED)
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.02)


def test_account_view_lists_positions_and_each_open_order_once(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1", qty=0.02))
    exchange.place_order(
        OrderRequest(Key(ACCOUNT, "ETHUSDT"), "ps2e1", OrderKind.ENTRY, "sell", 0.1)
    )
    exchange.place_order(stop("ps1s1", 58_000.0))
    view = exchange.fetch_account(ACCOUNT)
    assert set(view.positions) == set(bybit.positions(ACCOUNT)) == {SYMBOL, "ETHUSDT"}
    assert view.positions[SYMBOL].qty == pytest.approx(0.02)
    assert bybit.positions(ACCOUNT)["ETHUSDT"].qty == pytest.approx(-0.1)
    assert view.positions["ETHUSDT"].side is Side.SHORT
    assert view.positions["ETHUSDT"].qty == pytest.approx(0.1)
    (order,) = view.open_orders[SYMBOL]  # once: plain and conditional lists are disjoint
    assert (order.client_id, order.trigger, order.reduce_only) == ("ps1s1", True, True)
    assert order.trigger_price == pytest.approx(58_000.0)
    assert SYMBOL in view.symbols


def test_account_view_reads_every_page_of_open_orders(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    """Bybit lists at most 50 open orders a page: 60 stops come back in two pages."""
    exchange.place_order(entry("ps1e1", qty=0.06))
    for n in range(60):
        req = OrderRequest(
            KEY, f"ps1s{n + 1}", OrderKind.STOP_LOSS, "sell", 0.001, trigger_price=50_000.0 + n
        )
        assert exchange.place_order(req).result is CallResult.ACCEPTED
    assert len(bybit.open_orders(ACCOUNT)) == 60
    view = exchange.fetch_account(ACCOUNT)
    ids = [o.client_id for o in view.open_orders[SYMBOL]]
    assert sorted(ids) == sorted(f"ps1s{n + 1}" for n in range(60))


def test_mark_price_and_market_rules_come_from_tickers_and_instruments_info(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    reply = exchange.fetch_market(KEY)
    assert reply.result is CallResult.FOUND
    assert reply.mark_price == pytest.approx(60_000.0)
    spec = bybit.engine_of(ACCOUNT).spec(SYMBOL)
    rules = reply.rules
    assert rules is not None
    assert rules.tick_size == pytest.approx(spec.tick_size)
    assert rules.step_size == pytest.approx(spec.step_size)
    assert rules.min_qty == pytest.approx(spec.min_qty)
    assert rules.max_qty == pytest.approx(spec.market_max_qty)  # maxMktOrderQty
    assert rules.min_notional == pytest.approx(spec.min_notional)
    bybit.set_prices({SYMBOL: 61_000.0})
    assert exchange.fetch_market(KEY).mark_price == pytest.approx(61_000.0)
    unknown = exchange.fetch_market(Key(ACCOUNT, "NOPEUSDT"))
    assert (unknown.result, unknown.reason) == (CallResult.REJECTED, "bad_symbol")


def test_a_quantity_off_the_step_is_put_on_it_before_sending(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    step = bybit.engine_of(ACCOUNT).spec(SYMBOL).step_size
    reply = exchange.place_order(entry("ps1e1", qty=0.01 + step / 3))
    assert reply.filled_qty == pytest.approx(0.01)
    tiny = exchange.place_order(entry("ps1e2", qty=step / 3))
    assert (tiny.result, tiny.reason) == (CallResult.REJECTED, "invalid:amount")
    assert bybit.orders_sent("ps1e2") == 0


def test_balance_through_the_adapters_client(bybit: BybitExchange, exchange: CcxtExchange) -> None:
    balance = exchange.pool.client().fetch_balance()
    assert balance["USDT"]["total"] == pytest.approx(bybit.wallet_balance(ACCOUNT))


def test_no_listen_key_on_bybit_says_so_without_asking(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    keys = exchange.listen_keys
    assert keys.applicable is False and "not applicable" in repr(keys)
    before = bybit.limits.requests
    with pytest.raises(NoListenKey, match="bybit has no listen key") as err:
        keys.create()
    assert isinstance(err.value, ListenKeyError)
    with pytest.raises(NoListenKey):
        keys.keepalive()
    assert bybit.limits.requests == before
    # What a Bybit private stream needs instead: the venue's name and the key pair.
    assert exchange.venue.name == "bybit"
    assert exchange.credentials.api_key == "bybit-key-main"
    assert "bybit-secret-main" not in repr(exchange.credentials)


def test_account_view_reads_every_page_of_positions() -> None:
    """Bybit lists at most 200 positions a page: 450 positions come back in three pages,
    every one (a sync that saw 200 would take the other 250 for closed on the exchange)."""
    symbols = make_symbols(450)
    with make_sim("bybit", symbols) as sim:
        sim.seed(
            [
                {"symbol": s, "side": "BUY", "qty": 1.0, "client_id": f"ps{i}e1"}
                for i, s in enumerate(symbols, 1)
            ],
            [],
        )
        assert len(sim.positions()) == 450
        ex = CcxtExchange(ACCOUNT, venue_config("bybit", sim))
        try:
            ex.load_markets()
            view = ex.fetch_account(ACCOUNT)
        finally:
            ex.close()
    assert set(view.positions) == set(symbols)
    assert sim.limits.by_path["GET /v5/position/list"] >= 3
