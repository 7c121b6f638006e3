"""Every method of ``CcxtExchange`` with the real ccxt client against the sim over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ccxt
import pytest

from actors.messages import CallResult
from actors.model import ExchangeOrder, Key, OrderKind, Side
from actors.ports import ExchangePort, OrderRequest
from infra.exchange import (
    BINANCE_USDM,
    AccountFetchError,
    CcxtExchange,
    ConfigError,
    Credentials,
    UnknownSymbol,
    VenueConfig,
)
from sim import SimExchange
from tests.exchange.conftest import ACCOUNT, KEY, SYMBOL, close, entry, sim_config, stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_is_an_exchange_port(exchange: CcxtExchange) -> None:
    port: ExchangePort = exchange
    assert port is exchange


# -- configuration ------------------------------------------------------------------------


def test_urls_replaced_and_linear_error_table_forced(exchange: CcxtExchange) -> None:
    client: Any = exchange.pool.client()
    assert set(client.urls["api"]) == set(BINANCE_USDM.url_paths)
    assert client.urls["api"]["fapiPrivate"].endswith("/fapi/v1")
    assert client.get_exceptions_by_url(client.urls["api"]["fapiPrivate"], "exact")["-2019"] is (
        ccxt.InsufficientFunds
    )
    # Anything outside the futures API fails at once instead of reaching the internet.
    with pytest.raises(ccxt.NotSupported):
        client.sapiGetSystemStatus()


def test_ccxt_never_retries_even_if_configured(
    sim: SimExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    ex = make_exchange(extra_options={"maxRetriesOnFailure": 5})
    sim.add_fault("http_503", path="/fapi/v1/order", method="POST")
    reply = ex.place_order(entry("ps1e1"))
    assert reply.result is CallResult.UNKNOWN
    assert sim.orders_sent("ps1e1") == 1


def test_credentials_come_from_the_environment(sim: SimExchange) -> None:
    env = {"PS_DESK_2_API_KEY": "abcdefghijkl", "PS_DESK_2_API_SECRET": "topsecret"}
    cfg = sim_config(sim, require_credentials=True)
    ex = CcxtExchange("desk-2", cfg, environ=env)
    try:
        assert "topsecret" not in repr(ex._credentials)
        assert "abcdefghijkl" not in repr(ex._credentials)
        assert ex.place_order(entry("ps1e1", key=Key("desk-2", SYMBOL))).result is (
            CallResult.ACCEPTED
        )
    finally:
        ex.close()
    with pytest.raises(ConfigError, match="PS_DESK_2_API_KEY"):
        CcxtExchange("desk-2", cfg, environ={})
    assert "s3cr3t" not in str(Credentials("key-123456789", "s3cr3t"))


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        CcxtExchange(ACCOUNT, VenueConfig(venue="nope", require_credentials=False))
    with pytest.raises(ConfigError):
        CcxtExchange(ACCOUNT, VenueConfig(base_url="localhost:1", require_credentials=False))


def test_symbol_mapping(exchange: CcxtExchange) -> None:
    assert exchange.pool.unified("BTCUSDT") == "BTC/USDT:USDT"
    assert exchange.pool.exchange_id("ETH/USDT:USDT") == "ETHUSDT"
    assert "SOLUSDT" in exchange.symbols
    with pytest.raises(UnknownSymbol):
        exchange.pool.unified("NOPEUSDT")
    reply = exchange.place_order(entry("ps1e1", key=Key(ACCOUNT, "NOPEUSDT")))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "bad_symbol")


def test_markets_load_lazily_with_retry(
    sim: SimExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    ex = make_exchange(markets_attempts=3)
    sim.add_fault("http_502", path="/fapi/v1/exchangeInfo", count=2)
    assert ex.place_order(entry("ps1e1")).result is CallResult.ACCEPTED
    infos = [f for f in sim.list_faults() if f.path == "/fapi/v1/exchangeInfo"]
    assert infos == []  # both 502s were consumed by the retries


def test_markets_unavailable_is_a_refusal_with_retry_after(
    sim: SimExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    ex = make_exchange(markets_attempts=2)
    sim.add_fault("http_502", path="/fapi/v1/exchangeInfo", count=2)
    reply = ex.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "markets_unavailable")
    assert reply.retry_after == 0.5
    assert sim.orders_sent("ps1e1") == 0
    # The next call loads them (the faults are spent) and places the order.
    assert ex.place_order(entry("ps1e1")).result is CallResult.ACCEPTED


# -- place -----------------------------------------------------------------------------


def test_market_entry_fills_with_result_reply(sim: SimExchange, exchange: CcxtExchange) -> None:
    reply = exchange.place_order(entry("ps1e1", qty=0.01))
    assert reply.result is CallResult.ACCEPTED
    assert reply.status == "filled"
    assert reply.filled_qty == pytest.approx(0.01)
    assert reply.avg_price == pytest.approx(60000.0)
    assert reply.exchange_id
    assert reply.event_time > 0
    (log,) = sim.order_log()
    assert (log.endpoint, log.type, log.side, log.client_id) == ("order", "MARKET", "BUY", "ps1e1")
    assert not log.reduce_only
    assert sim.positions()[SYMBOL].qty == pytest.approx(0.01)


def test_short_entry_and_reduce_only_close(sim: SimExchange, exchange: CcxtExchange) -> None:
    assert exchange.place_order(entry("ps1e1", side="sell")).status == "filled"
    assert sim.positions()[SYMBOL].qty == pytest.approx(-0.01)
    reply = exchange.place_order(close("ps1c1", side="buy"))
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, "filled")
    assert SYMBOL not in sim.positions()
    assert sim.order_log()[-1].reduce_only
    # A reduce-only close with nothing to reduce is a definite refusal.
    reply = exchange.place_order(close("ps1c2", side="buy"))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "reduce_only")


def test_stop_loss_goes_to_the_algo_endpoint_with_close_position(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1"))
    reply = exchange.place_order(stop("ps1s1", 58000.0))
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, "new")
    assert reply.exchange_id
    log = sim.order_log()[-1]
    assert (log.endpoint, log.type, log.client_id) == ("algoOrder", "STOP_MARKET", "ps1s1")
    assert log.close_position and log.quantity is None
    assert log.trigger_price == pytest.approx(58000.0)
    (resting,) = sim.open_orders()
    assert (resting.kind, resting.client_id, resting.close_position) == ("algo", "ps1s1", True)


def test_stop_without_close_position_is_reduce_only_with_quantity(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1"))
    req = OrderRequest(KEY, "ps1s1", OrderKind.STOP_LOSS, "sell", 0.01, trigger_price=58000.0)
    assert exchange.place_order(req).result is CallResult.ACCEPTED
    log = sim.order_log()[-1]
    assert log.reduce_only and not log.close_position
    assert log.quantity == pytest.approx(0.01)


def test_stop_that_would_trigger_is_refused_with_would_trigger(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1"))
    reply = exchange.place_order(stop("ps1s1", 61000.0))  # above the mark for a long's stop
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "would_trigger")
    assert sim.order_log()[-1].code == -2021


def test_stop_without_trigger_price_is_refused_locally(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    req = OrderRequest(KEY, "ps1s1", OrderKind.STOP_LOSS, "sell", 0.01, close_position=True)
    reply = exchange.place_order(req)
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "invalid:price")
    assert sim.order_log() == []


def test_insufficient_margin(sim: SimExchange, exchange: CcxtExchange) -> None:
    reply = exchange.place_order(entry("ps1e1", qty=1000.0))  # 60 M notional, 1 M wallet
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "insufficient_funds")
    assert reply.retry_after is None


def test_invalid_quantity_is_a_definite_refusal(sim: SimExchange, exchange: CcxtExchange) -> None:
    reply = exchange.place_order(entry("ps1e1", qty=1e-9))  # below one step (1e-5)
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "invalid:amount")
    assert sim.orders_sent("ps1e1") == 0


def test_duplicate_client_id_means_already_placed(sim: SimExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    assert exchange.place_order(stop("ps1s1", 58000.0)).result is CallResult.ACCEPTED
    again = exchange.place_order(stop("ps1s1", 58000.0))
    assert (again.result, again.reason, again.status) == (CallResult.ACCEPTED, "duplicate", "new")
    assert sim.order_log()[-1].code == -4116
    assert len(sim.open_orders()) == 1


# -- lookup, cancel ----------------------------------------------------------------------


def test_lookup_plain_and_conditional(sim: SimExchange, exchange: CcxtExchange) -> None:
    placed = exchange.place_order(entry("ps1e1"))
    found = exchange.lookup_order(KEY, "ps1e1", False)
    assert (found.result, found.status) == (CallResult.FOUND, "filled")
    assert found.filled_qty == pytest.approx(0.01)
    assert found.avg_price == pytest.approx(60000.0)
    assert found.exchange_id == placed.exchange_id
    exchange.place_order(stop("ps1s1", 58000.0))
    found = exchange.lookup_order(KEY, "ps1s1", True)
    assert (found.result, found.status) == (CallResult.FOUND, "new")
    # A stop is not a plain order and vice versa.
    assert exchange.lookup_order(KEY, "ps1s1", False).result is CallResult.NOT_FOUND
    assert exchange.lookup_order(KEY, "ps9e1", False).result is CallResult.NOT_FOUND
    assert exchange.lookup_order(KEY, "ps9s1", True).result is CallResult.NOT_FOUND


def test_triggered_stop_is_seen_as_finished(sim: SimExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    exchange.place_order(stop("ps1s1", 58000.0))
    sim.set_price(SYMBOL, 57900.0)
    found = exchange.lookup_order(KEY, "ps1s1", True)
    assert found.result is CallResult.FOUND
    assert found.status in ("triggered", "finished")
    assert SYMBOL not in sim.positions()


def test_cancel(sim: SimExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    exchange.place_order(stop("ps1s1", 58000.0))
    reply = exchange.cancel_order(KEY, "ps1s1", True)
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, "canceled")
    assert sim.open_orders() == []
    assert exchange.cancel_order(KEY, "ps1s1", True).result is CallResult.NOT_FOUND
    assert exchange.lookup_order(KEY, "ps1s1", True).status == "canceled"
    # A filled market order cannot be canceled: not found among open orders.
    assert exchange.cancel_order(KEY, "ps1e1", False).result is CallResult.NOT_FOUND


def test_cancel_partially_filled_order(sim: SimExchange, exchange: CcxtExchange) -> None:
    sim.add_fault("partial_fill", parts=3, part_interval_s=5.0)
    placed = exchange.place_order(entry("ps1e1", qty=0.03))
    assert placed.status == "partially_filled"
    reply = exchange.cancel_order(KEY, "ps1e1", False)
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, "canceled")
    assert reply.filled_qty == pytest.approx(0.01)


# -- fetch_account -----------------------------------------------------------------------


def test_fetch_account(sim: SimExchange, exchange: CcxtExchange) -> None:
    assert exchange.fetch_account(ACCOUNT).positions == {}
    exchange.place_order(entry("ps1e1", qty=0.02))
    exchange.place_order(stop("ps1s1", 58000.0))
    eth = Key(ACCOUNT, "ETHUSDT")
    exchange.place_order(entry("ps2e1", qty=0.5, side="sell", key=eth))
    sim.add_fault("partial_fill", parts=2, part_interval_s=5.0)
    exchange.place_order(entry("ps3e1", qty=2.0, key=Key(ACCOUNT, "SOLUSDT")))

    view = exchange.fetch_account(ACCOUNT)
    assert view.account == ACCOUNT
    btc, eth_pos = view.positions[SYMBOL], view.positions["ETHUSDT"]
    assert (btc.side, btc.entry_price) == (Side.LONG, 60000.0)
    assert btc.qty == pytest.approx(0.02)
    assert eth_pos.side is Side.SHORT
    assert eth_pos.qty == pytest.approx(0.5)
    assert eth_pos.entry_price == pytest.approx(3000.0)
    assert view.positions["SOLUSDT"].qty == pytest.approx(1.0)
    (sl,) = view.open_orders[SYMBOL]
    assert sl == ExchangeOrder("ps1s1", "sell", sl.qty, True, 58000.0, True, sl.exchange_id)
    (part,) = view.open_orders["SOLUSDT"]
    assert (part.client_id, part.trigger) == ("ps3e1", False)
    assert part.qty == pytest.approx(2.0)
    assert "ETHUSDT" not in view.open_orders
    assert SYMBOL in view.symbols and len(view.symbols) == 10


def test_fetch_account_observed_at_is_when_the_fetch_started(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    sim.add_fault("latency", path="/fapi/v3/positionRisk", latency_s=0.3)
    before = time.time()
    view = exchange.fetch_account(ACCOUNT)
    after = time.time()
    assert after - before >= 0.3
    assert before <= view.observed_at < before + 0.1


def test_fetch_account_failure_raises(sim: SimExchange, exchange: CcxtExchange) -> None:
    sim.add_fault("http_502", path="/fapi/v1/openOrders")
    with pytest.raises(AccountFetchError) as err:
        exchange.fetch_account(ACCOUNT)
    assert "signature" not in str(err.value)
    with pytest.raises(ValueError):
        exchange.fetch_account("someone-else")


# -- threads -------------------------------------------------------------------------------


def test_many_worker_threads_at_once(sim: SimExchange, exchange: CcxtExchange) -> None:
    """Eight threads place, look up and fetch at once: one client each, nothing crossed."""
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "LTCUSDT", "LINKUSDT", "AVAXUSDT"]
    results: dict[str, list[Any]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(symbols) + 1)

    def work(sym: str) -> None:
        try:
            barrier.wait(5)
            key = Key(ACCOUNT, sym)
            out = [
                exchange.place_order(OrderRequest(key, f"ps{sym}e1", OrderKind.ENTRY, "buy", 1.0))
            ]
            out.append(exchange.lookup_order(key, f"ps{sym}e1", False))
            results[sym] = out
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def fetch() -> None:
        try:
            barrier.wait(5)
            exchange.fetch_account(ACCOUNT)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in symbols]
    threads.append(threading.Thread(target=fetch))
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors
    for sym in symbols:
        placed, found = results[sym]
        assert placed.result is CallResult.ACCEPTED and placed.status == "filled"
        assert found.exchange_id == placed.exchange_id
        assert sim.orders_sent(f"ps{sym}e1") == 1
    assert len(sim.order_log()) == len(symbols)
    assert exchange.pool.client_count >= len(symbols)


def test_measure_round_trip_runs() -> None:
    """The benchmark helper works (figures are printed by bench/, not asserted here)."""
    from tests.exchange.roundtrip import measure_round_trip

    rt = measure_round_trip(20, warmup=2)
    assert rt.n == 20 and 0 < rt.p50_ms <= rt.p99_ms <= rt.max_ms
