"""Binance error codes the simulated exchange answers with.

Pure data: raised by the matching model and the REST layer, turned into an HTTP reply
``{"code": <code>, "msg": <msg>}`` by the REST layer. No I/O, no threads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BinanceError(Exception):
    """An error the exchange reports to the client in Binance shape.

    ``status`` is the HTTP status of the reply (400 for request errors, as Binance does).
    """

    code: int
    msg: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.msg}"

    def body(self) -> dict[str, object]:
        """The JSON body Binance sends for this error."""
        return {"code": self.code, "msg": self.msg}


def unknown_order() -> BinanceError:
    """-2011: cancel of an order that is not open (ccxt: OrderNotFound)."""
    return BinanceError(-2011, "Unknown order sent.")


def order_not_found() -> BinanceError:
    """-2013: lookup of an order that does not exist (ccxt: OrderNotFound)."""
    return BinanceError(-2013, "Order does not exist.")


def insufficient_margin() -> BinanceError:
    """-2019: not enough available balance for the initial margin (ccxt: InsufficientFunds)."""
    return BinanceError(-2019, "Margin is insufficient.")


def would_trigger() -> BinanceError:
    """-2021: a stop whose trigger is already crossed (ccxt: OrderImmediatelyFillable)."""
    return BinanceError(-2021, "Order would immediately trigger.")


def reduce_only_rejected() -> BinanceError:
    """-2022: a reduce-only order that would open or increase a position (ccxt: InvalidOrder)."""
    return BinanceError(-2022, "ReduceOnly Order is rejected.")


def duplicate_client_id() -> BinanceError:
    """-4116: the client order id is already used by an open order (ccxt: InvalidOrder)."""
    return BinanceError(-4116, "ClientOrderId is duplicated.")


def use_algo_endpoint() -> BinanceError:
    """-4120: conditional order types on /fapi/v1/order (ccxt: InvalidOrder)."""
    return BinanceError(
        -4120,
        "Order type not supported for this endpoint. "
        "Please use the Algo Order API endpoints instead.",
    )


def illegal_chars(name: str) -> BinanceError:
    """-1100: a parameter with illegal characters or too long (ccxt: BadRequest)."""
    return BinanceError(
        -1100,
        f"Illegal characters found in parameter '{name}'; "
        "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
    )


def mandatory_missing(name: str) -> BinanceError:
    """-1102: a mandatory parameter is missing (ccxt: BadRequest)."""
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def bad_symbol() -> BinanceError:
    """-1121: unknown symbol (ccxt: BadSymbol)."""
    return BinanceError(-1121, "Invalid symbol.")


def bad_param(msg: str) -> BinanceError:
    """-1116 style generic invalid parameter (ccxt: BadRequest / InvalidOrder)."""
    return BinanceError(-1116, msg)


def bad_precision() -> BinanceError:
    """-1111: quantity or price has more decimals than the filters allow."""
    return BinanceError(-1111, "Precision is over the maximum defined for this asset.")


def min_notional(limit: float) -> BinanceError:
    """-4164: order notional under the symbol's minimum (ccxt: InvalidOrder)."""
    return BinanceError(
        -4164,
        f"Order's notional must be no smaller than {limit:g} (unless you choose reduce only).",
    )


def timestamp_outside() -> BinanceError:
    """-1021: timestamp outside recvWindow (ccxt: InvalidNonce)."""
    return BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")


def backend_timeout() -> BinanceError:
    """-1007 with HTTP 503: the order may or may not be placed (ccxt: RequestTimeout)."""
    return BinanceError(
        -1007,
        "Timeout waiting for response from backend server. Send status unknown; "
        "execution status unknown.",
        status=503,
    )


def too_many_requests() -> BinanceError:
    """-1003 with HTTP 429 (ccxt: DDoSProtection, decided by the status)."""
    return BinanceError(-1003, "Too many requests; current limit is exceeded.", status=429)


def server_busy() -> BinanceError:
    """-1008 with HTTP 503: the server is overloaded, nothing was done (ccxt: OperationFailed
    family; the adapter reads the code as ``busy``)."""
    return BinanceError(
        -1008,
        "Server is currently overloaded with other requests. Please try again in a few minutes.",
        status=503,
    )


def listen_key_missing() -> BinanceError:
    """-1125: unknown listenKey."""
    return BinanceError(-1125, "This listenKey does not exist.")


def qty_above_max(limit: float) -> BinanceError:
    """-4005: a quantity above the filter's maxQty (MARKET_LOT_SIZE for market orders)."""
    return BinanceError(-4005, f"Quantity greater than max quantity {limit:g}.")


def stop_price_above_max(limit: float) -> BinanceError:
    """-4007: a trigger price above PRICE_FILTER's maxPrice."""
    return BinanceError(-4007, f"Stop price greater than max price {limit:g}.")


MESSAGES: dict[int, str] = {
    -1000: "An unknown error occured while processing the request.",
    -1001: "Internal error; unable to process your request. Please try again.",
    -1003: "Too many requests; current limit is exceeded.",
    -1006: "An unexpected response was received from the message bus. Execution status unknown.",
    -1007: backend_timeout().msg,
    -1008: "Server is currently overloaded with other requests. Please try again in a few minutes.",
    -1015: "Too many new orders.",
    -1021: timestamp_outside().msg,
    -1111: bad_precision().msg,
    -1121: bad_symbol().msg,
    -2015: "Invalid API-key, IP, or permissions for action.",
    -2019: insufficient_margin().msg,
    -2021: would_trigger().msg,
    -2022: reduce_only_rejected().msg,
    -4116: duplicate_client_id().msg,
    -4131: "The counterparty's best price does not meet the PERCENT_PRICE filter limit.",
    -4164: "Order's notional must be no smaller than 5 (unless you choose reduce only).",
    -5021: "Due to the order could not be filled immediately, the FOK order has been rejected.",
}
"""Binance's messages for the codes the ``error_code`` fault is used with (others: generic)."""


def injected(code: int, status: int = 400, msg: str | None = None) -> BinanceError:
    """The reply of an ``error_code`` fault: ``code`` with Binance's message for it."""
    text = msg if msg is not None else MESSAGES.get(code, f"sim: injected error {code}.")
    return BinanceError(code, text, status)
