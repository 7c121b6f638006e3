"""Bybit's refusals, as the actors receive them: each retCode produced against sim.bybit
through real ccxt (the natural way where the exchange refuses the request itself, else by the
sim's ``error_code`` fault), mapped by the adapter to the port's outcome class, and each
checked against the exchange's own state (no position, nothing resting, the order ledger).

ccxt 4.5.90 gives 110092/110093 (would trigger), 110017 (reduce-only) and 110072
(duplicate) the same class, InvalidOrder, and 10016 either ExchangeError ("System error")
or RequestTimeout ("Request timeout"): the adapter reads the retCode.
"""

from __future__ import annotations

import pytest

from actors.messages import CallResult, Rejection
from actors.model import ExchangeStatus
from infra.exchange import CcxtExchange
from sim.bybit import BybitExchange
from tests.exchange.bybit.conftest import ACCOUNT, KEY, SYMBOL, accepted_orders, resolve
from tests.exchange.conftest import close, entry, stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CREATE = {"path": "/v5/order/create", "method": "POST"}


def test_insufficient_balance_110007(bybit: BybitExchange, exchange: CcxtExchange) -> None:
    reply = exchange.place_order(entry("ps1e1", qty=400.0))  # 24M notional, 1M wallet x 20
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "insufficient_funds")
    assert bybit.order_log(ACCOUNT)[-1].code == 110007
    assert bybit.positions(ACCOUNT) == {}


def test_would_trigger_immediately_110093(bybit: BybitExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    reply = exchange.place_order(stop("ps1s1", 61_000.0))  # a sell stop above the price
    assert (reply.result, reply.reason, reply.rejection) == (
        CallResult.REJECTED,
        "would_trigger",
        Rejection.WOULD_TRIGGER,
    )
    assert bybit.order_log(ACCOUNT)[-1].code == 110093
    assert bybit.open_orders(ACCOUNT) == []


def test_would_trigger_immediately_110092(bybit: BybitExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1", side="sell"))
    reply = exchange.place_order(stop("ps1s1", 59_000.0, side="buy"))  # a buy stop below
    assert (reply.result, reply.rejection) == (CallResult.REJECTED, Rejection.WOULD_TRIGGER)
    assert bybit.order_log(ACCOUNT)[-1].code == 110092


def test_reduce_only_refused_110017(bybit: BybitExchange, exchange: CcxtExchange) -> None:
    reply = exchange.place_order(close("ps1c1"))  # flat: nothing to reduce
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "reduce_only")
    assert bybit.order_log(ACCOUNT)[-1].code == 110017
    assert bybit.positions(ACCOUNT) == {}


def test_rate_limit_10006_is_refused_with_the_reset_timestamp_as_retry_after(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    """/v5/order/create allows 10 a second per account: the first refusal is REJECTED
    ``rate_limited`` (nothing executed) with the time to the reset timestamp."""
    bybit.limits.enforce = True
    for n in range(1, 31):
        reply = exchange.place_order(entry(f"ps1e{n}", qty=0.001))
        if reply.result is not CallResult.ACCEPTED:
            break
    else:
        pytest.fail("30 orders accepted in a row: the 10/s limit never refused one")
    assert n > 10
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "rate_limited")
    assert reply.retry_after is not None and 0.0 <= reply.retry_after <= 1.0
    refused = bybit.order_log(ACCOUNT)[-1]
    assert (refused.client_id, refused.outcome, refused.faults) == (
        f"ps1e{n}",
        "not_executed",
        ["rate_limit"],
    )
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.001 * (n - 1))


def test_rate_limit_reply_says_when_to_come_back(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    bybit.add_fault("http_429", retry_after_s=2, **CREATE)  # 10006 with a reset in 2 s
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "rate_limited")
    assert reply.retry_after == pytest.approx(2.0, abs=0.05)  # reset - Timenow, not a default
    assert bybit.order_log(ACCOUNT)[-1].outcome == "not_executed"
    assert bybit.positions(ACCOUNT) == {}


def test_unknown_order_110001_and_empty_lookups_are_not_found(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    assert exchange.cancel_order(KEY, "ps1s1", True).result is CallResult.NOT_FOUND
    assert exchange.cancel_order(KEY, "ps1e1", False).result is CallResult.NOT_FOUND
    assert bybit.cancel_log(ACCOUNT)[-1].code == 110001
    assert exchange.lookup_order(KEY, "ps1e1", False).result is CallResult.NOT_FOUND
    assert exchange.lookup_order(KEY, "ps1s1", True).result is CallResult.NOT_FOUND


def test_system_busy_10016_is_a_refusal_to_retry(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    bybit.add_fault("busy")
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason, reply.retry_after) == (CallResult.REJECTED, "busy", 0.5)
    assert bybit.order_log(ACCOUNT)[-1].code == 10016
    assert bybit.positions(ACCOUNT) == {}


def test_request_timeout_10016_is_unknown_and_the_lookup_finds_the_order(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    """Same retCode, other text: the order IS placed; UNKNOWN, never "busy"."""
    bybit.add_fault("http_503", **CREATE)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "timeout")
    assert resolve(exchange, "ps1e1").status is ExchangeStatus.FILLED
    assert accepted_orders(bybit, "ps1e1") == 1
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.01)


def test_duplicate_order_link_id_110072_of_a_filled_order_is_that_order(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    first = exchange.place_order(entry("ps1e1"))
    again = exchange.place_order(entry("ps1e1"))
    assert (again.result, again.reason, again.status) == (
        CallResult.ACCEPTED,
        "duplicate",
        ExchangeStatus.FILLED,
    )
    assert again.exchange_id == first.exchange_id
    assert bybit.order_log(ACCOUNT)[-1].code == 110072
    assert accepted_orders(bybit, "ps1e1") == 1
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("code", "result", "reason"),
    [
        (110007, CallResult.REJECTED, "insufficient_funds"),
        (110012, CallResult.REJECTED, "insufficient_funds"),
        (110092, CallResult.REJECTED, "would_trigger"),
        (110093, CallResult.REJECTED, "would_trigger"),
        (110017, CallResult.REJECTED, "reduce_only"),
        (110094, CallResult.REJECTED, "invalid"),
        (10001, CallResult.REJECTED, "invalid"),
        (10002, CallResult.REJECTED, "clock_skew"),
        (10003, CallResult.REJECTED, "auth"),
        (10004, CallResult.REJECTED, "auth"),
        (10005, CallResult.REJECTED, "auth"),
        (10006, CallResult.REJECTED, "rate_limited"),
        (10016, CallResult.REJECTED, "busy"),
        (10429, CallResult.REJECTED, "busy"),
        (10000, CallResult.UNKNOWN, "exchange_unknown"),
        (123456, CallResult.UNKNOWN, "error:ExchangeError"),
    ],
)
def test_each_ret_code_of_a_place(
    bybit: BybitExchange,
    exchange: CcxtExchange,
    code: int,
    result: CallResult,
    reason: str,
) -> None:
    bybit.add_fault("error_code", code=code, **CREATE)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (result, reason)
    entry_log = bybit.order_log(ACCOUNT)[-1]
    assert (entry_log.outcome, entry_log.code) == ("rejected", code)
    assert bybit.positions(ACCOUNT) == {}


def test_a_duplicate_refusal_the_lookup_cannot_explain_is_unverified(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    """110072 for an id the lookups cannot find (an order older than the history Bybit
    keeps): UNKNOWN, never accepted blind, never refused blind."""
    bybit.add_fault("error_code", code=110072, **CREATE)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "duplicate_unverified")
