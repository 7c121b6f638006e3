"""The ccxt exception -> port outcome mapping (the heart of the adapter).

Pure functions over an exception and the :class:`~infra.exchange.venues.Venue` that raised
it. The ccxt client subclass in :mod:`infra.exchange.client` attaches a
:class:`WireInfo` to every exception it raises (HTTP status, ``Retry-After``, the
exchange's error code, and whether the request can have left this process at all), so the
mapping does not have to parse messages.

The rule that matters: an order call ends REJECTED only when the exchange (or ccxt before
sending) *definitely* refused it; whenever the order may have reached the exchange the
outcome is UNKNOWN and the actor looks it up by its client id. Nothing here re-sends.

Whether a request can have left is known exactly: the client subclass marks each call that
entered ccxt's ``fetch`` (the one place a request goes out), and the adapter passes that mark
as ``left``. An exception raised before (building the request: ccxt's own argument and
precision checks, ``decimal`` errors, ``TypeError``, ``ValueError``, ``OverflowError``,
signing) is a *local* failure: nothing was sent.

Outcome classes of a place (``Op.PLACE``); the sim fault that produces each is in
``sim/README.md`` and the adapter test of each in ``tests/exchange/test_outcome_classes.py``
(Bybit's: ``tests/exchange/bybit/test_errors.py``). Codes are Binance's, Bybit's after the
slash; every code comes from the :class:`~infra.exchange.venues.Venue`:

==========================================  ==========  ========================  ===========
condition (place)                           result      reason                    retry_after
==========================================  ==========  ========================  ===========
raised before any request left (local)      REJECTED    ``local:<Class>``         -
lease lapsed as the request was stamped      REJECTED    ``lease_lapsed``          -
duplicate client id (-4116 / 110072), ours   ACCEPTED    ``duplicate``             -
418/429, DDoSProtection, RateLimitExceeded  REJECTED    ``rate_limited``          header
(10006, 10018, HTTP 403)
kept back by the account's limiter           REJECTED    ``rate_limited``          wait
busy codes (-1003, -1008, -1015 / 10016     REJECTED    ``busy``                  default
"System error", 10429), not RequestTimeout
connection refused / connect timeout        REJECTED    ``unreachable``           default
markets cannot be loaded                    REJECTED    ``markets_unavailable``   default
InvalidNonce (-1021)                        REJECTED    ``clock_skew``            default
OrderImmediatelyFillable (-2021 / 110092,   REJECTED    ``would_trigger``         -
110093, which ccxt calls InvalidOrder)
InsufficientFunds (-2019, -2018 / 110007)   REJECTED    ``insufficient_funds``    -
reduce-only refused (-2022 / 110017)        REJECTED    ``reduce_only``           -
Authentication/PermissionDenied/Suspended   REJECTED    ``auth``                  -
BadSymbol, unknown symbol                   REJECTED    ``bad_symbol``            -
MarketClosed                                REJECTED    ``market_closed``         -
OrderNotFillable                            REJECTED    ``not_fillable``          -
InvalidOrder/BadRequest/ArgumentsRequired/  REJECTED    ``invalid``               -
NotSupported (from the exchange's reply)
OperationRejected                           REJECTED    ``refused``               -
other ExchangeError, 4xx reply with a code  REJECTED    ``exchange_error:<code>`` -
(Bybit refuses with HTTP 200: an unnamed
retCode stays UNKNOWN ``error:<Class>``)
RequestTimeout (client timeout, 503/-1007,  UNKNOWN     ``timeout``               -
10016 "Request timeout")
unknown-status codes (-1000/-1001/-1006 /   UNKNOWN     ``exchange_unknown``      -
10000, 5004)
ExchangeNotAvailable (5xx), OnMaintenance   UNKNOWN     ``unavailable``           -
NetworkError (connection dropped)           UNKNOWN     ``network``               -
BadResponse/NullResponse, other             UNKNOWN     ``error:<Class>``         -
==========================================  ==========  ========================  ===========

The adapter adds place outcomes of its own (not in :func:`classify`): REJECTED
``invalid:amount`` / ``invalid:price`` (the market's rules refuse the request before it is
sent, see ``CcxtExchange.place_order``); after a -4116, REJECTED ``duplicate_id_mismatch``
(the order holding the id is not the one asked for) or UNKNOWN ``duplicate_unverified``
(the lookup could not find or fetch it). On Bybit the holder may be any order the account
ever had: the lookup searches the closed orders too, and the reply carries the holder's
real status (``filled``, ``canceled`` ...). ``fetch_market`` adds UNKNOWN ``bad_mark_price``.

Lookups: OrderNotFound -> NOT_FOUND, anything else UNKNOWN (with ``retry_after`` when the
exchange asked to back off). Cancels: OrderNotFound -> NOT_FOUND, anything else UNKNOWN.
Market data (``Op.MARKET``): BadSymbol -> REJECTED ``bad_symbol``, anything else UNKNOWN.
A lookup, cancel or market call that failed locally stays UNKNOWN (the port's meaning) with
reason ``local:<Class>``, so the log and the journal show that nothing was asked.
"""

from __future__ import annotations

import contextlib
import enum
import re
from dataclasses import dataclass

import ccxt
import requests
import urllib3.exceptions

from actors.messages import CallResult, Rejection
from actors.ports import OrderReply
from infra.exchange.limits import RateBudgetExhausted
from infra.exchange.venues import Venue

__all__ = [
    "LeaseLapsed",
    "Op",
    "Reason",
    "WireInfo",
    "attach_wire",
    "classify",
    "describe",
    "local_reason",
    "never_sent",
    "wire_of",
]

_WIRE_ATTR = "_ps_wire"


class Op(enum.StrEnum):
    PLACE = "place"
    CANCEL = "cancel"
    LOOKUP = "lookup"
    MARKET = "market"


class Reason(enum.StrEnum):
    """Short reasons in :class:`~actors.ports.OrderReply` (journal, metrics, state machine)."""

    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    UNREACHABLE = "unreachable"
    MARKETS_UNAVAILABLE = "markets_unavailable"
    CLOCK_SKEW = "clock_skew"
    WOULD_TRIGGER = "would_trigger"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    REDUCE_ONLY = "reduce_only"
    AUTH = "auth"
    BAD_SYMBOL = "bad_symbol"
    MARKET_CLOSED = "market_closed"
    NOT_FILLABLE = "not_fillable"
    INVALID = "invalid"
    REFUSED = "refused"
    NOT_FOUND = "not_found"
    TIMEOUT = "timeout"
    EXCHANGE_UNKNOWN = "exchange_unknown"
    UNAVAILABLE = "unavailable"
    NETWORK = "network"
    LOCAL = "local"
    DUPLICATE_ID_MISMATCH = "duplicate_id_mismatch"
    DUPLICATE_UNVERIFIED = "duplicate_unverified"
    BAD_MARK_PRICE = "bad_mark_price"
    LEASE_LAPSED = "lease_lapsed"
    INVALID_AMOUNT = "invalid:amount"
    INVALID_PRICE = "invalid:price"


@dataclass(frozen=True, slots=True)
class WireInfo:
    """What the HTTP exchange looked like when a ccxt call raised.

    ``http_status`` is ``None`` when no reply arrived. ``sent`` is False only when the request
    certainly never left this process (the TCP connection could not be opened).
    """

    http_status: int | None = None
    retry_after: float | None = None
    code: str | None = None
    sent: bool = True


class LeaseLapsed(Exception):
    """Raised by the client as it stamps a place or cancel request, before the request
    exists: this process's lease of the account has no validity left (I7), so nothing is
    sent. :func:`classify` makes it ``lease_lapsed`` (a place REJECTED, a cancel UNKNOWN)."""


def attach_wire(exc: BaseException, info: WireInfo) -> None:
    """Record ``info`` on ``exc`` (called by the ccxt client subclass as it raises)."""
    with contextlib.suppress(AttributeError):  # exceptions with __slots__
        setattr(exc, _WIRE_ATTR, info)


def wire_of(exc: BaseException) -> WireInfo:
    """The :class:`WireInfo` attached to ``exc`` (an empty one when none was attached)."""
    info = getattr(exc, _WIRE_ATTR, None)
    return info if isinstance(info, WireInfo) else WireInfo(sent=not never_sent(exc))


def never_sent(exc: BaseException) -> bool:
    """True when the exception chain shows the connection itself could not be made.

    Connection refused, name resolution and connect timeouts happen before a byte of the
    request is written. A connection dropped *after* connecting is not in this set: the
    exchange may have read and executed the request.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(
            e,
            urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.ConnectTimeoutError
            | requests.exceptions.ConnectTimeout,
        ):
            return True
        if isinstance(e, urllib3.exceptions.MaxRetryError):
            stack.append(e.reason)
        stack.extend([e.__cause__, e.__context__])
        stack.extend(a for a in e.args if isinstance(a, BaseException))
    return False


_QUERY = re.compile(r"\?\S*")


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Class: message`` for logs, with URL query strings (timestamps, signatures) removed.

    A ``UnicodeError`` shows its reason only: its text quotes the offending character and
    position of the string being encoded, which can be a credential (a secret read from
    the environment with undecodable bytes fails when a request is signed).
    """
    if isinstance(exc, UnicodeError):
        reason = getattr(exc, "reason", "")
        return f"{type(exc).__name__}: {reason} (text withheld)"
    text = _QUERY.sub("?…", str(exc)).replace("\n", " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"{type(exc).__name__}: {text}"


def _refusal(exc: BaseException, code: str | None, venue: Venue) -> Reason | None:
    """The reason for a *definite* refusal, or None when the exception is not one."""
    if code is not None:
        if code in venue.duplicate_codes:
            return Reason.DUPLICATE
        if code in venue.would_trigger_codes:
            return Reason.WOULD_TRIGGER
        if code in venue.reduce_only_codes:
            return Reason.REDUCE_ONLY
        if code in venue.insufficient_codes:
            return Reason.INSUFFICIENT_FUNDS
    if isinstance(exc, ccxt.OrderImmediatelyFillable):
        return Reason.WOULD_TRIGGER
    if isinstance(exc, ccxt.InsufficientFunds):
        return Reason.INSUFFICIENT_FUNDS
    if isinstance(exc, ccxt.AuthenticationError):  # PermissionDenied, AccountSuspended
        return Reason.AUTH
    if isinstance(exc, ccxt.BadSymbol):
        return Reason.BAD_SYMBOL
    if isinstance(exc, ccxt.MarketClosed):
        return Reason.MARKET_CLOSED
    if isinstance(exc, ccxt.OrderNotFillable):
        return Reason.NOT_FILLABLE
    if isinstance(
        exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.NotSupported
    ):
        return Reason.INVALID
    if isinstance(exc, ccxt.OperationRejected):
        return Reason.REFUSED
    return None


def _backoff(exc: BaseException, info: WireInfo, venue: Venue) -> Reason | None:
    """The reason when the exchange refused *for now* and asks us to come back later."""
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded) or info.http_status in (
        418,
        429,
    ):
        return Reason.RATE_LIMITED
    if (
        info.code is not None
        and info.code in venue.busy_codes
        and not isinstance(exc, ccxt.RequestTimeout)
    ):
        # Bybit's 10016 is "System error" (nothing done) or "Request timeout" (the order may
        # be placed): ccxt reads the second as RequestTimeout, an unknown outcome.
        return Reason.BUSY
    if isinstance(exc, ccxt.InvalidNonce):
        return Reason.CLOCK_SKEW
    if not info.sent:
        return Reason.UNREACHABLE
    return None


def _unknown_reason(exc: BaseException, info: WireInfo, venue: Venue) -> str:
    if (
        info.code is not None
        and info.code in venue.unknown_codes
        and info.code not in venue.timeout_codes
    ):
        return str(Reason.EXCHANGE_UNKNOWN)
    if isinstance(exc, ccxt.RequestTimeout):
        return str(Reason.TIMEOUT)
    if isinstance(exc, ccxt.ExchangeNotAvailable):  # OnMaintenance too
        return str(Reason.UNAVAILABLE)
    if isinstance(exc, ccxt.NetworkError):
        return str(Reason.NETWORK)
    return f"error:{type(exc).__name__}"


def local_reason(exc: BaseException) -> str:
    """``local:<Class>``: the reason of a call that failed before its request left."""
    return f"{Reason.LOCAL}:{type(exc).__name__}"


def classify(
    op: Op,
    exc: BaseException,
    venue: Venue,
    default_retry_after: float,
    *,
    left: bool = True,
) -> OrderReply:
    """Map an exception raised by one ccxt call to the port's reply (table in module doc).

    ``left``: whether the call entered ccxt's ``fetch`` (a request may have gone out).
    False makes a place a definite REJECTED ``local:<Class>`` (never re-sent blindly, never
    looked up), and any other call UNKNOWN with that reason.

    ``OrderReply.reason == Reason.DUPLICATE`` with ``ACCEPTED`` tells the adapter that the
    order is already on the exchange: it then looks it up to fill in the status.
    """
    if isinstance(exc, RateBudgetExhausted):
        # The account's limiter kept it back: nothing was sent, try again after the wait.
        result = CallResult.REJECTED if op is Op.PLACE else CallResult.UNKNOWN
        return OrderReply(result, str(Reason.RATE_LIMITED), retry_after=exc.retry_after)
    if not left:
        result = CallResult.REJECTED if op is Op.PLACE else CallResult.UNKNOWN
        why = str(Reason.LEASE_LAPSED) if isinstance(exc, LeaseLapsed) else local_reason(exc)
        return OrderReply(result, why)
    info = wire_of(exc)
    code = info.code
    retry_after = info.retry_after if info.retry_after is not None else default_retry_after

    backoff = _backoff(exc, info, venue)
    if op is Op.PLACE:
        if backoff is not None:
            return OrderReply(CallResult.REJECTED, str(backoff), retry_after=retry_after)
        if code is not None and code in venue.unknown_codes:
            return OrderReply(CallResult.UNKNOWN, _unknown_reason(exc, info, venue))
        refusal = _refusal(exc, code, venue)
        if refusal is Reason.DUPLICATE:
            return OrderReply(CallResult.ACCEPTED, str(Reason.DUPLICATE))
        if refusal is not None:
            rejection = Rejection.WOULD_TRIGGER if refusal is Reason.WOULD_TRIGGER else None
            return OrderReply(CallResult.REJECTED, str(refusal), rejection=rejection)
        if (
            isinstance(exc, ccxt.ExchangeError)
            and code is not None
            and info.http_status is not None
            and 400 <= info.http_status < 500
        ):
            # The exchange answered with an error code we have no name for: a refusal.
            return OrderReply(CallResult.REJECTED, f"exchange_error:{code}")
        return OrderReply(CallResult.UNKNOWN, _unknown_reason(exc, info, venue))

    if op is Op.MARKET and isinstance(exc, ccxt.BadSymbol):
        return OrderReply(CallResult.REJECTED, str(Reason.BAD_SYMBOL))
    if op is not Op.MARKET and isinstance(exc, ccxt.OrderNotFound):
        return OrderReply(CallResult.NOT_FOUND, str(Reason.NOT_FOUND))
    if backoff is not None:
        return OrderReply(CallResult.UNKNOWN, str(backoff), retry_after=retry_after)
    refusal = _refusal(exc, code, venue)
    if refusal is not None:
        return OrderReply(CallResult.UNKNOWN, str(refusal))
    return OrderReply(CallResult.UNKNOWN, _unknown_reason(exc, info, venue))
