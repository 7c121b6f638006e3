"""I10 at the adapter: the mark price and market rules, and every order on those rules.

Real ccxt over HTTP to the sim. What is asserted is what reached the exchange (the sim's
order log) or that nothing did.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from actors.messages import CallResult
from actors.model import Key, MarketRules, OrderKind
from actors.ports import OrderRequest
from infra.exchange import CcxtExchange, quantize_qty
from sim import SimExchange, SymbolSpec
from tests.exchange.conftest import ACCOUNT, KEY, SYMBOL, entry, sim_config, stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

ETH = Key(ACCOUNT, "ETHUSDT")
FOO = Key(ACCOUNT, "FOOUSDT")  # start price 5: step 0.1


@pytest.fixture
def custom_sim() -> Iterator[Callable[..., SimExchange]]:
    """Factory of started sims with their own symbols and filters; all stopped after."""
    made: list[SimExchange] = []

    def make(
        symbols: dict[str, float] | None = None, **spec_changes: dict[str, float]
    ) -> SimExchange:
        prices = symbols or {SYMBOL: 60_000.0, "FOOUSDT": 5.0}
        specs: dict[str, SymbolSpec] = {}
        for name, changes in spec_changes.items():
            spec = SymbolSpec.for_price(name, prices[name])
            specs[name] = dataclasses.replace(
                spec,
                max_qty=changes.get("max_qty", spec.max_qty),
                market_max_qty=changes.get("market_max_qty", spec.market_max_qty),
                max_price=changes.get("max_price", spec.max_price),
            )
        ex = SimExchange(prices, seed=3, specs=specs).start()
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.stop()


@pytest.fixture
def adapter_for() -> Iterator[Callable[[SimExchange], CcxtExchange]]:
    made: list[CcxtExchange] = []

    def make(sim: SimExchange) -> CcxtExchange:
        ex = CcxtExchange(ACCOUNT, sim_config(sim))
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.close()


# -- fetch_market --------------------------------------------------------------------------


def test_fetch_market_mark_price_and_rules(sim: SimExchange, exchange: CcxtExchange) -> None:
    before = time.time()
    reply = exchange.fetch_market(KEY)
    after = time.time()
    assert (reply.result, reply.mark_price, reply.reason) == (CallResult.FOUND, 60_000.0, "")
    assert before <= reply.at <= after
    assert reply.rules == MarketRules(
        tick_size=0.1,
        step_size=1e-05,
        min_qty=1e-05,
        max_qty=100_000_000.0,
        min_notional=5.0,
        min_price=0.1,
        max_price=10_000_000.0,
    )
    # The price is asked each time; the rules come from the markets, once.
    sim.set_price(SYMBOL, 59_123.4)
    again = exchange.fetch_market(KEY)
    assert again.mark_price == 59_123.4
    assert again.rules is reply.rules


def test_market_orders_obey_market_lot_size(
    custom_sim: Callable[..., SimExchange], adapter_for: Callable[[SimExchange], CcxtExchange]
) -> None:
    """Binance: LOT_SIZE maxQty 1000 but MARKET_LOT_SIZE maxQty 120 for BTCUSDT."""
    sim = custom_sim(BTCUSDT={"max_qty": 1000.0, "market_max_qty": 120.0})
    ex = adapter_for(sim)
    rules = ex.fetch_market(KEY).rules
    assert rules is not None and rules.max_qty == 120.0
    reply = ex.place_order(entry("ps1e1", qty=150.0))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "invalid:amount")
    assert sim.orders_sent("ps1e1") == 0
    assert ex.place_order(entry("ps1e2", qty=120.0)).status == "filled"


def test_fetch_market_of_an_unknown_symbol_is_rejected(exchange: CcxtExchange) -> None:
    reply = exchange.fetch_market(Key(ACCOUNT, "NOPEUSDT"))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "bad_symbol")
    assert reply.mark_price is None and reply.at > 0


def test_fetch_market_exchange_says_bad_symbol(sim: SimExchange, exchange: CcxtExchange) -> None:
    sim.add_fault("error_code", code=-1121, path="/fapi/v1/premiumIndex", method="GET")
    reply = exchange.fetch_market(KEY)
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "bad_symbol")


def test_fetch_market_rate_limited_is_unknown_with_retry_after(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    sim.add_fault("http_429", retry_after_s=6, path="/fapi/v1/premiumIndex")
    reply = exchange.fetch_market(KEY)
    assert (reply.result, reply.reason, reply.retry_after) == (
        CallResult.UNKNOWN,
        "rate_limited",
        6.0,
    )
    assert reply.mark_price is None and reply.rules is None


def test_fetch_market_unavailable_is_unknown(sim: SimExchange, exchange: CcxtExchange) -> None:
    sim.add_fault("http_502", path="/fapi/v1/premiumIndex")
    reply = exchange.fetch_market(KEY)
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "unavailable")


def test_fetch_market_without_markets_is_unknown(
    sim: SimExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    ex = make_exchange(markets_attempts=1)
    sim.add_fault("http_502", path="/fapi/v1/exchangeInfo")
    reply = ex.fetch_market(KEY)
    assert (reply.result, reply.reason, reply.retry_after) == (
        CallResult.UNKNOWN,
        "markets_unavailable",
        0.5,
    )
    assert ex.fetch_market(KEY).result is CallResult.FOUND


def test_fetch_market_reply_without_a_usable_price_is_unknown(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    sim.add_fault(
        "bad_response", path="/fapi/v1/premiumIndex", msg='{"symbol":"BTCUSDT","markPrice":"0"}'
    )
    reply = exchange.fetch_market(KEY)
    assert (reply.result, reply.reason, reply.mark_price) == (
        CallResult.UNKNOWN,
        "bad_mark_price",
        None,
    )


# -- quantities ----------------------------------------------------------------------------


def test_quantize_qty_snaps_float_noise_and_truncates_the_rest() -> None:
    assert quantize_qty(0.7 - 0.4, 0.1) == Decimal("0.3")  # 0.29999999999999993
    assert quantize_qty(1.4 - 0.1, 0.1) == Decimal("1.3")  # 1.2999999999999998
    assert quantize_qty(0.1 * 3, 0.1) == Decimal("0.3")  # 0.30000000000000004
    assert quantize_qty(0.35, 0.1) == Decimal("0.3")
    assert quantize_qty(0.39999, 0.1) == Decimal("0.3")  # not noise: never more than asked
    assert quantize_qty(0.30007, 0.0001) == Decimal("0.3")
    assert quantize_qty(0.05, 0.1) == 0
    assert quantize_qty(1234.0, 10.0) == Decimal("1230")


@pytest.mark.parametrize(
    ("key", "qty", "sent"),
    [(FOO, 1.4 - 0.1, 1.3), (Key(ACCOUNT, SYMBOL), 0.7 - 0.4, 0.3)],
    ids=["step 0.1", "step 1e-5"],
)
def test_float_noise_in_a_quantity_is_not_a_step_less(
    custom_sim: Callable[..., SimExchange],
    adapter_for: Callable[[SimExchange], CcxtExchange],
    key: Key,
    qty: float,
    sent: float,
) -> None:
    sim = custom_sim()
    ex = adapter_for(sim)
    reply = ex.place_order(OrderRequest(key, "ps1e1", OrderKind.ENTRY, "buy", qty))
    assert reply.status == "filled"
    (log,) = sim.order_log()
    assert log.quantity == sent
    assert sim.positions()[key.symbol].qty == pytest.approx(sent, abs=1e-12)


def test_quantity_is_truncated_to_the_step_never_rounded_up(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(OrderRequest(ETH, "ps1e1", OrderKind.ENTRY, "buy", 0.30009))
    assert sim.order_log()[-1].quantity == 0.3  # step 1e-4: 0.3000, not 0.3001


@pytest.mark.parametrize("qty", [1e-9, 0.0, -1.0, math.nan, math.inf, 1e300])
def test_quantity_the_market_cannot_take_is_refused_before_sending(
    sim: SimExchange, exchange: CcxtExchange, qty: float
) -> None:
    reply = exchange.place_order(entry("ps1e1", qty=qty))
    assert (reply.result, reply.reason, reply.retry_after) == (
        CallResult.REJECTED,
        "invalid:amount",
        None,
    )
    assert sim.orders_sent("ps1e1") == 0


# -- prices --------------------------------------------------------------------------------


def test_trigger_price_is_rounded_to_the_tick(sim: SimExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    assert exchange.place_order(stop("ps1s1", 58_000.0400000001)).status == "new"
    assert sim.order_log()[-1].trigger_price == 58_000.0
    (resting,) = sim.open_orders()
    assert resting.trigger_price == 58_000.0


@pytest.mark.parametrize("price", [1.7e308, 20_000_000.0, math.nan, math.inf, 0.0, -5.0, 0.01])
def test_trigger_price_out_of_the_market_bounds_is_refused_before_sending(
    sim: SimExchange, exchange: CcxtExchange, price: float
) -> None:
    """The observed defect: a short's stop at 1.7e308 (now refused locally, not UNKNOWN)."""
    exchange.place_order(entry("ps1e1", side="sell"))
    reply = exchange.place_order(stop("ps1s1", price, side="buy"))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "invalid:price")
    assert sim.orders_sent("ps1s1") == 0


def test_close_position_stop_sends_no_quantity_so_its_qty_is_not_judged(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1"))
    req = OrderRequest(
        KEY, "ps1s1", OrderKind.STOP_LOSS, "sell", math.nan, 58_000.0, close_position=True
    )
    assert exchange.place_order(req).result is CallResult.ACCEPTED
    assert sim.order_log()[-1].quantity is None


# -- failures before the request left ------------------------------------------------------


def test_absurd_stop_on_a_market_without_a_price_bound_fails_locally_not_unknown(
    custom_sim: Callable[..., SimExchange],
    adapter_for: Callable[[SimExchange], CcxtExchange],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The defect as observed: no max price to judge 1.7e308, ccxt raises DivisionImpossible
    while building the stop request. That was UNKNOWN, looked up, not found, re-sent 175
    times; it is a definite refusal: nothing left."""
    sim = custom_sim(BTCUSDT={"max_price": 0.0})
    ex = adapter_for(sim)
    rules = ex.fetch_market(KEY).rules
    assert rules is not None and rules.max_price is None
    ex.place_order(entry("ps1e1", side="sell"))
    with caplog.at_level(logging.ERROR, "infra.exchange"):
        reply = ex.place_order(stop("ps1s1", 1.7e308, side="buy"))
    assert (reply.result, reply.reason, reply.retry_after) == (
        CallResult.REJECTED,
        "local:InvalidOperation",
        None,
    )
    assert sim.orders_sent("ps1s1") == 0
    assert any("local:InvalidOperation" in r.getMessage() for r in caplog.records)


def test_an_exception_after_the_request_left_stays_unknown(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    """A ValueError raised while reading the reply is not local: the order may be there."""
    sim.add_fault("bad_response", path="/fapi/v1/order", method="POST")
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "error:ValueError")
    assert exchange.lookup_order(KEY, "ps1e1", False).status == "filled"


def test_a_request_that_cannot_be_signed_fails_locally_for_every_call(
    sim: SimExchange, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret with undecodable bytes (surrogate-escaped by os.environ) fails when ccxt
    signs, before fetch: place is REJECTED, lookup and cancel UNKNOWN, all ``local:``."""
    secret = "k3y\udcff-tail"
    env = {"PS_MAIN_API_KEY": "abcdefghijkl", "PS_MAIN_API_SECRET": secret}
    ex = CcxtExchange(ACCOUNT, sim_config(sim, require_credentials=True), environ=env)
    try:
        with caplog.at_level(logging.DEBUG, "infra.exchange"):
            placed = ex.place_order(entry("ps1e1"))
            looked = ex.lookup_order(KEY, "ps1e1", False)
            cancelled = ex.cancel_order(KEY, "ps1s1", True)
            market = ex.fetch_market(KEY)  # public: not signed
    finally:
        ex.close()
    assert (placed.result, placed.reason) == (CallResult.REJECTED, "local:UnicodeEncodeError")
    assert (looked.result, looked.reason) == (CallResult.UNKNOWN, "local:UnicodeEncodeError")
    assert (cancelled.result, cancelled.reason) == (
        CallResult.UNKNOWN,
        "local:UnicodeEncodeError",
    )
    assert market.result is CallResult.FOUND
    assert sim.order_log() == []
    text = caplog.text
    assert "local:UnicodeEncodeError" in text
    assert "tail" not in text and "\\udcff" not in text and "\udcff" not in text


# -- duplicate client ids ------------------------------------------------------------------


def test_duplicate_id_held_by_an_order_of_the_other_side_is_refused(
    sim: SimExchange, exchange: CcxtExchange, outsider: object, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.place_order(entry("ps1e1"))
    client: object = outsider
    client.create_order(  # type: ignore[attr-defined]
        "BTC/USDT:USDT",
        "market",
        "buy",
        None,
        None,
        {"stopLossPrice": 62_000, "closePosition": True, "clientOrderId": "ps1s1"},
    )
    with caplog.at_level(logging.ERROR, "infra.exchange"):
        reply = exchange.place_order(stop("ps1s1", 58_000.0))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "duplicate_id_mismatch")
    assert sim.order_log()[-1].code == -4116
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "side 'buy'" in error.getMessage() and "ps1s1" in error.getMessage()


def test_duplicate_id_held_by_a_take_profit_is_not_our_stop(
    sim: SimExchange, exchange: CcxtExchange, outsider: object
) -> None:
    exchange.place_order(entry("ps1e1"))
    outsider.create_order(  # type: ignore[attr-defined]
        "BTC/USDT:USDT",
        "market",
        "sell",
        None,
        None,
        {"takeProfitPrice": 62_000, "closePosition": True, "clientOrderId": "ps1s1"},
    )
    reply = exchange.place_order(stop("ps1s1", 58_000.0))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "duplicate_id_mismatch")


def test_duplicate_answer_for_an_order_the_lookup_cannot_find_is_unknown(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1"))
    sim.add_fault("error_code", code=-4116, path="/fapi/v1/algoOrder", method="POST")
    reply = exchange.place_order(stop("ps1s1", 58_000.0))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "duplicate_unverified")
    assert sim.open_orders() == []
