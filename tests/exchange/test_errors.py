"""The ccxt exception -> outcome table, row by row, for the rows the sim cannot produce.

The exceptions are the real ccxt classes with the :class:`WireInfo` the client subclass
attaches; the sim-driven tests (test_faults.py) cover the rest end to end.
"""

from __future__ import annotations

import decimal

import ccxt
import pytest
import requests
import urllib3.exceptions

from actors.messages import CallResult
from infra.exchange import BINANCE_USDM, Op, classify
from infra.exchange.errors import WireInfo, attach_wire, describe, never_sent

pytestmark = pytest.mark.timeout(10)


def err(cls: type[Exception], status: int | None = 400, code: str | None = None) -> Exception:
    exc = cls("binanceusdm test")
    attach_wire(exc, WireInfo(http_status=status, code=code))
    return exc


PLACE_ROWS = [
    (err(ccxt.InvalidOrder, code="-4116"), CallResult.ACCEPTED, "duplicate"),
    (err(ccxt.DDoSProtection, 429), CallResult.REJECTED, "rate_limited"),
    (err(ccxt.RateLimitExceeded, code="-1003"), CallResult.REJECTED, "rate_limited"),
    (err(ccxt.OperationFailed, 503, "-1008"), CallResult.REJECTED, "busy"),
    (err(ccxt.InvalidNonce, code="-1021"), CallResult.REJECTED, "clock_skew"),
    (err(ccxt.OrderImmediatelyFillable, code="-2021"), CallResult.REJECTED, "would_trigger"),
    (err(ccxt.InsufficientFunds, code="-2019"), CallResult.REJECTED, "insufficient_funds"),
    (err(ccxt.InvalidOrder, code="-2022"), CallResult.REJECTED, "reduce_only"),
    (err(ccxt.PermissionDenied, 401, "-2015"), CallResult.REJECTED, "auth"),
    (err(ccxt.BadSymbol, code="-1121"), CallResult.REJECTED, "bad_symbol"),
    (err(ccxt.MarketClosed), CallResult.REJECTED, "market_closed"),
    (err(ccxt.OrderNotFillable, code="-5021"), CallResult.REJECTED, "not_fillable"),
    (err(ccxt.BadRequest, code="-1100"), CallResult.REJECTED, "invalid"),
    (err(ccxt.InvalidOrder, code="-4120"), CallResult.REJECTED, "invalid"),
    (err(ccxt.OperationRejected, code="-4131"), CallResult.REJECTED, "refused"),
    (err(ccxt.ExchangeError, code="-9999"), CallResult.REJECTED, "exchange_error:-9999"),
    (err(ccxt.ExchangeError, 500, "-9999"), CallResult.UNKNOWN, "error:ExchangeError"),
    (err(ccxt.ExchangeError, None), CallResult.UNKNOWN, "error:ExchangeError"),
    (err(ccxt.RequestTimeout, 503, "-1007"), CallResult.UNKNOWN, "timeout"),
    (err(ccxt.OperationFailed, 500, "-1001"), CallResult.UNKNOWN, "exchange_unknown"),
    (err(ccxt.OperationFailed, 500, "-1000"), CallResult.UNKNOWN, "exchange_unknown"),
    (err(ccxt.OnMaintenance, 503), CallResult.UNKNOWN, "unavailable"),
    (err(ccxt.ExchangeNotAvailable, 502), CallResult.UNKNOWN, "unavailable"),
    (err(ccxt.NetworkError, None), CallResult.UNKNOWN, "network"),
    (err(ccxt.BadResponse, 200), CallResult.UNKNOWN, "error:BadResponse"),
    (err(ccxt.NullResponse, 200), CallResult.UNKNOWN, "error:NullResponse"),
    (TypeError("a ccxt bug"), CallResult.UNKNOWN, "error:TypeError"),
]


@pytest.mark.parametrize(("exc", "result", "reason"), PLACE_ROWS, ids=lambda v: str(v)[:40])
def test_place_mapping(exc: Exception, result: CallResult, reason: str) -> None:
    reply = classify(Op.PLACE, exc, BINANCE_USDM, 1.5)
    assert (reply.result, reply.reason) == (result, reason)
    assert type(reply.reason) is str
    if result is CallResult.REJECTED and reason in ("rate_limited", "busy", "clock_skew"):
        assert reply.retry_after == 1.5
    else:
        assert reply.retry_after is None


def test_retry_after_header_wins_over_the_default() -> None:
    exc = ccxt.DDoSProtection("429")
    attach_wire(exc, WireInfo(http_status=429, retry_after=7.0))
    assert classify(Op.PLACE, exc, BINANCE_USDM, 1.0).retry_after == 7.0


@pytest.mark.parametrize("op", [Op.LOOKUP, Op.CANCEL])
def test_lookup_and_cancel_mapping(op: Op) -> None:
    assert classify(op, err(ccxt.OrderNotFound, code="-2013"), BINANCE_USDM, 1).result is (
        CallResult.NOT_FOUND
    )
    for exc in (
        err(ccxt.RequestTimeout, None),
        err(ccxt.InsufficientFunds, code="-2019"),
        err(ccxt.ExchangeNotAvailable, 502),
        RuntimeError("boom"),
    ):
        assert classify(op, exc, BINANCE_USDM, 1).result is CallResult.UNKNOWN
    throttled = classify(op, err(ccxt.DDoSProtection, 429), BINANCE_USDM, 2.0)
    assert (throttled.result, throttled.retry_after) == (CallResult.UNKNOWN, 2.0)


def test_connection_refused_is_never_sent_but_a_dropped_connection_may_be() -> None:
    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            None,  # type: ignore[arg-type]
            "/fapi/v1/order",
            urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
        )
    )
    wrapped = ccxt.NetworkError("binanceusdm POST")
    wrapped.__cause__ = refused
    assert never_sent(wrapped)
    reply = classify(Op.PLACE, wrapped, BINANCE_USDM, 0.5)
    assert (reply.result, reply.reason, reply.retry_after) == (
        CallResult.REJECTED,
        "unreachable",
        0.5,
    )
    dropped = ccxt.NetworkError("binanceusdm POST")
    dropped.__cause__ = requests.exceptions.ConnectionError("Connection aborted.")
    assert not never_sent(dropped)
    assert classify(Op.PLACE, dropped, BINANCE_USDM, 0.5).result is CallResult.UNKNOWN


def test_describe_strips_query_strings() -> None:
    exc = ccxt.ExchangeError(
        "binanceusdm GET http://h/fapi/v3/account?timestamp=1&signature=abcdef 500"
    )
    text = describe(exc)
    assert "signature" not in text and "abcdef" not in text
    assert text.startswith("ExchangeError: binanceusdm GET http://h/fapi/v3/account?")


LOCAL = [
    decimal.InvalidOperation([decimal.DivisionImpossible]),
    TypeError("bad argument"),
    ValueError("bad value"),
    OverflowError("too big"),
    ccxt.ArgumentsRequired("binanceusdm needs an id"),
    ccxt.InvalidOrder("binanceusdm amount must be greater than minimum amount precision"),
    ccxt.NetworkError("even this class, raised before fetch"),
]


@pytest.mark.parametrize("exc", LOCAL, ids=lambda e: type(e).__name__)
def test_raised_before_the_request_left_is_local(exc: Exception) -> None:
    name = type(exc).__name__
    placed = classify(Op.PLACE, exc, BINANCE_USDM, 1.0, left=False)
    assert (placed.result, placed.reason, placed.retry_after) == (
        CallResult.REJECTED,
        f"local:{name}",
        None,
    )
    for op in (Op.LOOKUP, Op.CANCEL, Op.MARKET):
        reply = classify(op, exc, BINANCE_USDM, 1.0, left=False)
        assert (reply.result, reply.reason) == (CallResult.UNKNOWN, f"local:{name}")
    # The same exception once the request may have left is no local failure.
    assert not classify(Op.PLACE, exc, BINANCE_USDM, 1.0).reason.startswith("local:")


def test_market_data_mapping() -> None:
    bad = classify(Op.MARKET, err(ccxt.BadSymbol, code="-1121"), BINANCE_USDM, 1.0)
    assert (bad.result, bad.reason) == (CallResult.REJECTED, "bad_symbol")
    gone = classify(Op.MARKET, err(ccxt.OrderNotFound, code="-2013"), BINANCE_USDM, 1.0)
    assert gone.result is CallResult.UNKNOWN
    slow = classify(Op.MARKET, err(ccxt.DDoSProtection, 429), BINANCE_USDM, 2.5)
    assert (slow.result, slow.reason, slow.retry_after) == (
        CallResult.UNKNOWN,
        "rate_limited",
        2.5,
    )


def test_describe_withholds_the_text_of_unicode_errors() -> None:
    try:
        "s3cr\udcffet".encode()
    except UnicodeEncodeError as exc:
        text = describe(exc)
    assert text == "UnicodeEncodeError: surrogates not allowed (text withheld)"
