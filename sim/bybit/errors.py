"""Bybit v5 retCodes the simulated Bybit front answers with, and the engine's errors in them.

Pure data, no I/O. A refused request is answered, as Bybit does, with HTTP 200 and the
envelope ``{"retCode": <code>, "retMsg": <msg>, "result": {}, "retExtInfo": {}, "time"}``
(``BybitError.status`` says otherwise only for the faults that model a broken transport).
The matching engine (``sim.matching``) raises Binance's codes; :func:`from_engine` turns them
into the retCode Bybit gives for the same refusal. ccxt 4.5.90 maps each code through
``bybit.describe()["exceptions"]`` (exact codes, then broad messages): see BYBIT_WIRE.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import BinanceError


@dataclass(frozen=True)
class BybitError(Exception):
    """An error the Bybit front reports: ``ret_code`` / ``ret_msg`` in the envelope."""

    ret_code: int
    ret_msg: str
    status: int = 200

    def __str__(self) -> str:
        return f"{self.ret_code}: {self.ret_msg}"


PARAMS = 10001
"""Any parameter error (ccxt BadRequest; "Not supported symbols" in the text: BadSymbol)."""
EXPIRED = 10002
"""Timestamp outside recv_window (ccxt InvalidNonce)."""
BAD_KEY = 10003
"""Unknown or missing API key (ccxt AuthenticationError)."""
BAD_SIGN = 10004
"""Signature does not match (ccxt AuthenticationError)."""
RATE_LIMIT = 10006
"""Over the endpoint's per-second limit (ccxt RateLimitExceeded)."""
SYSTEM_BUSY = 10016
"""System error / request timeout (ccxt ExchangeError; RequestTimeout when the text says
"Request timeout")."""
ORDER_NOT_FOUND = 110001
"""Cancel of an order that is not open or does not exist (ccxt OrderNotFound)."""
INSUFFICIENT = 110007
"""Available balance too low for the order (ccxt InsufficientFunds)."""
REDUCE_ONLY = 110017
"""Reduce-only order with no opposite position (ccxt InvalidOrder)."""
DUPLICATE_LINK_ID = 110072
"""orderLinkId used before by any order of the account (ccxt InvalidOrder)."""
EXPECT_RISING = 110092
"""Trigger direction 1 (rise) with the trigger at or below the price (ccxt InvalidOrder)."""
EXPECT_FALLING = 110093
"""Trigger direction 2 (fall) with the trigger at or above the price (ccxt InvalidOrder)."""
MIN_NOTIONAL = 110094
"""Order value under the symbol's minimum (ccxt InvalidOrder)."""

MESSAGES: dict[int, str] = {
    PARAMS: "params error",
    EXPIRED: ("invalid request, please check your server timestamp or recv_window param"),
    BAD_KEY: "API key is invalid.",
    BAD_SIGN: "error sign! please check your signature generation algorithm.",
    10005: "Permission denied, please check your API key permissions.",
    RATE_LIMIT: "Too many visits!",
    SYSTEM_BUSY: "System error. Please try again later.",
    ORDER_NOT_FOUND: "order not exists or too late to cancel",
    INSUFFICIENT: "ab not enough for new order",
    REDUCE_ONLY: "current position is zero, cannot fix reduce-only order qty",
    DUPLICATE_LINK_ID: "OrderLinkedID is duplicate",
    EXPECT_RISING: "expect Rising, but trigger_price <= current",
    EXPECT_FALLING: "expect Falling, but trigger_price >= current",
    MIN_NOTIONAL: "The order value must be greater than the minimum order value",
}
"""Bybit's messages for the codes the sim gives (and the ``error_code`` fault's defaults)."""

REQUEST_TIMEOUT_MSG = "Request timeout, please try again later"
"""10016's other text: ccxt's broad table maps it to RequestTimeout (outcome unknown)."""

NOT_SUPPORTED_SYMBOL = "Not supported symbols"
"""10001's text for an unknown symbol (ccxt's broad table: BadSymbol)."""


def error(code: int, msg: str | None = None, status: int = 200) -> BybitError:
    """``code`` with Bybit's message for it (or ``msg``)."""
    text = msg if msg is not None else MESSAGES.get(code, f"sim: injected error {code}.")
    return BybitError(code, text, status)


def params(detail: str) -> BybitError:
    """10001 with Bybit's "params error: ..." wording."""
    return BybitError(PARAMS, f"params error: {detail}")


def bad_symbol() -> BybitError:
    """10001 "Not supported symbols" (ccxt BadSymbol)."""
    return BybitError(PARAMS, NOT_SUPPORTED_SYMBOL)


def would_trigger(rising: bool, trigger: str, current: str) -> BybitError:
    """110092 / 110093 with the prices, as Bybit words them."""
    if rising:
        return BybitError(
            EXPECT_RISING, f"expect Rising, but trigger_price[{trigger}] <= current[{current}]"
        )
    return BybitError(
        EXPECT_FALLING, f"expect Falling, but trigger_price[{trigger}] >= current[{current}]"
    )


_FROM_ENGINE: dict[int, int] = {
    -2011: ORDER_NOT_FOUND,
    -2013: ORDER_NOT_FOUND,
    -2019: INSUFFICIENT,
    -2022: REDUCE_ONLY,
    -4116: DUPLICATE_LINK_ID,
    -4164: MIN_NOTIONAL,
}


def from_engine(exc: BinanceError) -> BybitError:
    """The Bybit refusal for an error the matching engine raised in Binance's terms."""
    if exc.code == -1121:
        return bad_symbol()
    code = _FROM_ENGINE.get(exc.code)
    if code is not None:
        return error(code)
    if exc.code == -2021:  # a veto at trigger time (reject_on_trigger): kept as text
        return BybitError(PARAMS, exc.msg)
    return params(exc.msg)
