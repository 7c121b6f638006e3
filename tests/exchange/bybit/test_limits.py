"""The account limiter on Bybit: the venue's limits (10 orders a second per account, 600
requests per 5 s), and a refusal for the request rate (retCode 10006 in an HTTP 200 reply,
or HTTP 403) stopping every request of the account until Bybit's reset timestamp."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from actors.messages import CallResult
from infra.exchange import BINANCE_USDM, BYBIT_LINEAR, CcxtExchange
from infra.exchange.client import (
    backoff_of,
    error_code,
    order_usage,
    rate_limited,
    request_cost,
    reset_after,
)
from infra.exchange.limits import AccountLimiter, Limit
from sim.bybit import BybitExchange
from tests.exchange.bybit.conftest import ACCOUNT, API_KEY, API_SECRET, KEY
from tests.exchange.conftest import entry
from tests.sim.bybit.conftest import make_bybit_ccxt

pytestmark = pytest.mark.timeout(60)

CREATE = {"path": "/v5/order/create", "method": "POST"}


def test_reset_timestamp_is_read_against_the_replys_server_time() -> None:
    headers = {"X-Bapi-Limit-Reset-Timestamp": "1700000001500", "Timenow": "1700000000000"}
    assert reset_after(headers, "X-Bapi-Limit-Reset-Timestamp", "Timenow") == 1.5
    past = {"X-Bapi-Limit-Reset-Timestamp": "1699999999000", "Timenow": "1700000000000"}
    assert reset_after(past, "X-Bapi-Limit-Reset-Timestamp", "Timenow") == 0.0
    local = {"X-Bapi-Limit-Reset-Timestamp": str(int(time.time() * 1000) + 2000)}
    seconds = reset_after(local, "X-Bapi-Limit-Reset-Timestamp", "Timenow")
    assert seconds is not None and 1.0 < seconds <= 2.0
    assert (
        reset_after({"X-Bapi-Limit-Reset-Timestamp": "soon"}, "X-Bapi-Limit-Reset-Timestamp", None)
        is None
    )
    assert backoff_of(BYBIT_LINEAR, headers) == 1.5
    assert backoff_of(BYBIT_LINEAR, {"Retry-After": "3", **headers}) == 3.0
    assert backoff_of(BINANCE_USDM, headers) is None
    assert backoff_of(BYBIT_LINEAR, {}, 403) == 600.0
    assert backoff_of(BYBIT_LINEAR, {"Retry-After": "3"}, 403) == 3.0


def test_what_counts_as_a_refusal_for_the_rate() -> None:
    assert rate_limited(BYBIT_LINEAR, 200, "10006")
    assert rate_limited(BYBIT_LINEAR, 200, "10018")
    assert rate_limited(BYBIT_LINEAR, 403, None)
    assert not rate_limited(BYBIT_LINEAR, 200, "110007")
    assert not rate_limited(BYBIT_LINEAR, 200, None)
    assert rate_limited(BINANCE_USDM, 429, None) and not rate_limited(BINANCE_USDM, 200, "10006")
    body = '{"retCode":10006,"retMsg":"Too many visits!","result":{},"time":1}'
    assert error_code(body, BYBIT_LINEAR.error_code_fields) == "10006"
    assert error_code(body) is None


def test_order_creation_counts_against_the_orders_limit() -> None:
    url = "http://127.0.0.1:1/v5/order/create"
    assert request_cost(BYBIT_LINEAR, "POST", url, b'{"symbol":"BTCUSDT"}').orders == 1
    assert request_cost(BYBIT_LINEAR, "POST", url, None).weight == 1
    cancel = request_cost(BYBIT_LINEAR, "POST", "http://h/v5/order/cancel", None)
    assert (cancel.weight, cancel.orders) == (1, 0)
    assert (
        request_cost(BYBIT_LINEAR, "GET", "http://h/v5/order/realtime?symbol=X", None).orders == 0
    )


@pytest.mark.integration
def test_the_limiter_keeps_orders_under_bybits_10_a_second(
    bybit: BybitExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    bybit.limits.enforce = True
    ex = make_exchange(enable_rate_limit=True)
    ex.load_markets()
    assert ex.limiter is not None
    replies = [ex.place_order(entry(f"ps1e{n}", qty=0.001)) for n in range(1, 15)]
    assert [r.result for r in replies] == [CallResult.ACCEPTED] * 14
    snapshot = bybit.limits.snapshot()
    assert snapshot["refused"] == {}, snapshot["refused"]
    assert ex.limiter.stats().waited > 0  # it did hold some back
    assert sum(1 for e in bybit.order_log(ACCOUNT) if e.outcome == "accepted") == 14


@pytest.mark.integration
def test_a_rate_refusal_holds_every_request_until_the_reset_timestamp(
    bybit: BybitExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    ex = make_exchange(enable_rate_limit=True, entry_max_wait_s=0.2)
    ex.load_markets()
    assert ex.limiter is not None
    bybit.add_fault("http_429", retry_after_s=1, **CREATE)  # 10006, reset in 1 s
    first = ex.place_order(entry("ps1e1"))
    refused_at = time.monotonic()
    assert (first.result, first.reason) == (CallResult.REJECTED, "rate_limited")
    assert first.retry_after == pytest.approx(1.0, abs=0.05)
    assert ex.limiter.stats().blocked == 1
    sent = len(bybit.order_log(ACCOUNT))
    # Within the back-off nothing leaves: refused by the limiter, not by the exchange.
    held = ex.place_order(entry("ps1e2"))
    assert (held.result, held.reason) == (CallResult.REJECTED, "rate_limited")
    assert held.retry_after is not None and held.retry_after > 0.3
    assert len(bybit.order_log(ACCOUNT)) == sent
    # A lookup waits for the back-off too (its bound is longer), then goes.
    looked = ex.lookup_order(KEY, "ps1e1", False)
    assert looked.result is CallResult.NOT_FOUND
    assert time.monotonic() - refused_at >= 0.8
    assert ex.place_order(entry("ps1e3")).result is CallResult.ACCEPTED


def test_an_order_reply_states_the_limit_and_what_is_left() -> None:
    url = "http://127.0.0.1:1/v5/order/create"
    headers = {"X-Bapi-Limit": "20", "X-Bapi-Limit-Status": "15"}
    assert order_usage(BYBIT_LINEAR, "POST", url, headers) == (20, 5)
    assert order_usage(BYBIT_LINEAR, "GET", "http://h/v5/order/realtime", headers) is None
    assert order_usage(BYBIT_LINEAR, "POST", url, {"X-Bapi-Limit": "x"}) is None
    assert order_usage(BINANCE_USDM, "POST", "http://h/fapi/v1/order", headers) is None
    limiter = AccountLimiter([Limit(k, w, n) for k, w, n in BYBIT_LINEAR.rate_limits])
    limiter.correct("ORDERS", 1.0, 5, limit=20)  # a higher tier than the default 10
    assert Limit("ORDERS", 1.0, 20) in limiter.limits
    assert limiter.stats().usage["x-mbx-order-count-1s"] == 5


@pytest.mark.integration
def test_usage_of_another_client_on_the_account_is_taken_from_the_reply(
    bybit: BybitExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    """Orders sent by someone else on the account count: after 6 of theirs and one of ours,
    the limiter holds 7 of the 10 of this second."""
    ex = make_exchange(enable_rate_limit=True)
    ex.load_markets()
    assert ex.limiter is not None
    other = make_bybit_ccxt(bybit.base_url, API_KEY, API_SECRET)
    try:
        other.load_markets()
        for _ in range(6):
            other.create_order("BTC/USDT:USDT", "market", "buy", 0.001)
    finally:
        other.session.close()
    ex.place_order(entry("ps1e1", qty=0.001))
    assert ex.limiter.stats().usage["x-mbx-order-count-1s"] >= 7
    assert ex.limiter.stats().corrected >= 1


@pytest.mark.integration
def test_an_ip_ban_403_holds_every_request_for_ten_minutes(
    bybit: BybitExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    """HTTP 403 carries no reset timestamp: Bybit's rule (wait at least 10 minutes) is the
    back-off, and nothing more is sent in the meantime."""
    ex = make_exchange(enable_rate_limit=True, entry_max_wait_s=0.2, resolve_max_wait_s=0.2)
    ex.load_markets()
    assert ex.limiter is not None
    bybit.add_fault("error_code", code=10018, status=403, msg="access too frequent", **CREATE)
    first = ex.place_order(entry("ps1e1"))
    assert (first.result, first.reason, first.retry_after) == (
        CallResult.REJECTED,
        "rate_limited",
        600.0,
    )
    sent = len(bybit.order_log(ACCOUNT))
    held = ex.place_order(entry("ps1e2"))
    assert (held.result, held.reason) == (CallResult.REJECTED, "rate_limited")
    assert held.retry_after is not None and held.retry_after > 590.0
    looked = ex.lookup_order(KEY, "ps1e1", False)
    assert (looked.result, looked.reason) == (CallResult.UNKNOWN, "rate_limited")
    assert len(bybit.order_log(ACCOUNT)) == sent
