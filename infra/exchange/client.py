"""The ccxt client of one account: its class with the adapter's hooks, and its settings.

Who calls: :class:`~infra.exchange.pool.ClientPool` builds clients with :func:`new_client`
(one per calling thread, see there); the hooks then run on that thread inside every ccxt
call. The pure helpers (:func:`request_cost`, :func:`retry_after`, :func:`error_code`) are
used by the hooks and the tests.

The hooks (:func:`client_class`):

* ``get_exceptions_by_url``: the venue's error table is forced (linear futures);
* ``sign``: reserves the request's cost on the account's limiter before anything leaves
  (raises :class:`~infra.exchange.limits.RateBudgetExhausted` when the wait would exceed
  the call's bound), and signs the request again when it waited (over
  :data:`RESIGN_AFTER_S`): the timestamp a request carries is the time it leaves, not the
  time it began to wait, so a wait in the limiter never makes the exchange refuse it as
  older than ``recvWindow`` (Binance -1021, Bybit 10002), and a fenced call's lease is
  asked again with the new stamp;
* ``fetch``: marks ``ps_sent`` and attaches the wire info
  (:class:`~infra.exchange.errors.WireInfo`) to any exception;
* ``on_rest_response``: every reply corrects the limiter's usage (Binance's ``X-MBX-*``
  headers; Bybit's ``X-Bapi-Limit`` / ``X-Bapi-Limit-Status`` on an order reply,
  :func:`order_usage`); a refusal for the rate (:func:`rate_limited`: HTTP 418/429, Bybit's
  10006 or 403) stops the account's requests for its back-off (:func:`backoff_of`:
  ``Retry-After``, or the time to Bybit's reset timestamp); an ``exchangeInfo`` reply sets
  the exchange's own limits (:func:`configure_limits`);
* ``nonce``: the lease fence of a place or cancel (I7, below).

Per call, the caller sets ``ps_priority`` and ``ps_max_wait`` (the limiter's priority and
wait bound), whether the call is fenced, and clears ``ps_sent`` (:func:`arm`); one client per
thread, so no race.

The lease fence (I7): a place or cancel is stamped with the time its signature carries
(``nonce``, the exchange's ``timestamp``) and only then is the lease asked how long it
stays valid (``ps_lease``, set by the pool). With none left, :class:`LeaseLapsed` is
raised and the request never exists. So the signed timestamp is never later than a
moment the lease was valid, and the exchange refuses the request once ``recvWindow`` (no
more than the lease's fence margin, :func:`supervision.wiring.wire_infra`) has passed since
then: a process held up anywhere between the worker's gate and the socket cannot have an
order executed after its lease may have expired and another process took the account.

Failure: a hook never swallows an exception; ccxt never retries on its own
(``maxRetriesOnFailure`` forced to 0: an order sent twice could fill twice).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ccxt

from infra.exchange.errors import LeaseLapsed, WireInfo, attach_wire, never_sent
from infra.exchange.limits import AccountLimiter, Cost, Priority, limits_from_exchange_info
from infra.exchange.venues import Credentials, Venue, VenueConfig

__all__ = [
    "RESIGN_AFTER_S",
    "api_path",
    "arm",
    "backoff_of",
    "client_class",
    "configure_limits",
    "error_code",
    "new_client",
    "order_usage",
    "rate_limited",
    "request_cost",
    "reset_after",
    "retry_after",
]

log = logging.getLogger(__name__)

RESIGN_AFTER_S = 0.1
"""A request that waited longer than this in the limiter is signed again before it leaves."""


def api_path(venue: Venue, url: str) -> str:
    """The path of ``url`` from the venue's API root on (``/fapi/v1/order``)."""
    path = urlsplit(url).path
    for root in venue.api_roots:
        i = path.find(root)
        if i >= 0:
            return path[i:]
    return path


def order_usage(
    venue: Venue, method: str, url: str, headers: Mapping[str, str] | None
) -> tuple[int, int] | None:
    """``(limit, used)`` of an order endpoint's own limit, from its reply's headers
    (:attr:`Venue.order_usage_headers`; Bybit: ``X-Bapi-Limit`` and ``X-Bapi-Limit-Status``,
    what is left), or None (another endpoint, no such headers, unreadable values)."""
    spec = venue.order_usage_headers
    if spec is None or not headers:
        return None
    if (method.upper(), api_path(venue, url)) not in venue.order_endpoints:
        return None
    try:
        limit = int(str(headers[spec[0]]).strip())
        left = int(str(headers[spec[1]]).strip())
    except (KeyError, ValueError):
        return None
    if limit <= 0 or left < 0:
        return None
    return limit, max(0, limit - left)


def request_cost(venue: Venue, method: str, url: str, body: object) -> Cost:
    """What one request counts against the venue's limits (weight; orders for placements).

    The path is taken from the URL from the venue's API root on (``/fapi/v1/order``); the
    ``symbol`` parameter from the query string or a form-encoded body.
    """
    parts = urlsplit(url)
    path = api_path(venue, url)
    method = method.upper()
    weights = venue.request_weights.get((method, path))
    if weights is None:
        weight = 1
    else:
        params = parse_qs(parts.query)
        if body and "symbol" not in params:
            text = body.decode("latin-1") if isinstance(body, bytes) else str(body)
            params = parse_qs(text)
        weight = weights[0] if "symbol" in params else weights[1]
    orders = 1 if (method, path) in venue.order_endpoints else 0
    return Cost(weight, orders)


def retry_after(headers: Mapping[str, str] | None, name: str) -> float | None:
    """The seconds of the ``name`` header (e.g. ``Retry-After``); None if absent or bad."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def reset_after(
    headers: Mapping[str, str] | None, name: str, server_time: str | None
) -> float | None:
    """Seconds until the time (epoch ms) the ``name`` header states (Bybit's
    ``X-Bapi-Limit-Reset-Timestamp``), counted from the reply's own server time (the
    ``server_time`` header, epoch ms) when it has one, else from the local clock; 0 when that
    time has passed; None if the header is absent or bad."""
    if not headers:
        return None
    try:
        reset_ms = float(headers[name])
    except (KeyError, TypeError, ValueError):
        return None
    now_ms = time.time() * 1000.0
    if server_time is not None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            now_ms = float(headers[server_time])
    if not math.isfinite(reset_ms) or not math.isfinite(now_ms):
        return None
    return max(0.0, (reset_ms - now_ms) / 1000.0)


def backoff_of(
    venue: Venue, headers: Mapping[str, str] | None, status: int | None = None
) -> float | None:
    """How long a refused reply says to wait: the venue's ``Retry-After`` header (seconds),
    else the venue's back-off for the HTTP ``status`` (:attr:`Venue.status_backoff_s`:
    Bybit's 403 IP ban, whatever an endpoint's reset timestamp says), else its
    reset-timestamp header (:func:`reset_after`); None when none of them applies."""
    seconds = retry_after(headers, venue.retry_after_header)
    if seconds is None and status is not None:
        seconds = venue.status_backoff_s.get(status)
    if seconds is None and venue.reset_header is not None:
        seconds = reset_after(headers, venue.reset_header, venue.server_time_header)
    return seconds


def error_code(body: object, fields: tuple[str, ...] = ("code",)) -> str | None:
    """The exchange's error code of a JSON reply body (``'-2019'``; Bybit's ``retCode``
    with ``fields=("retCode",)``), or None."""
    if not isinstance(body, str) or not body.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for name in fields:
        code = data.get(name)
        if code is not None:
            return str(code)
    return None


def rate_limited(venue: Venue, status: int, code: str | None) -> bool:
    """Does a reply say "over the request limit" (:attr:`Venue.rate_limit_statuses`, or a
    :attr:`Venue.rate_limit_codes` code in its body)?"""
    return status in venue.rate_limit_statuses or (
        code is not None and code in venue.rate_limit_codes
    )


def configure_limits(limiter: AccountLimiter, body: str) -> None:
    """Take the exchange's own limits from an ``exchangeInfo`` reply (kept as they were,
    with a warning, when they cannot be read)."""
    try:
        data = json.loads(body)
        limits = limits_from_exchange_info(data.get("rateLimits"))
    except (ValueError, AttributeError) as exc:
        log.warning("exchangeInfo: rate limits not usable (%s); keeping %s", exc, limiter.limits)
        return
    if limits != limiter.limits:
        log.info(
            "exchange rate limits: %s",
            ", ".join(f"{lim.kind} {lim.limit}/{lim.window_s:g}s" for lim in limits),
        )
        limiter.configure(limits)


_CLASSES: dict[str, type[Any]] = {}
_CLASSES_LOCK = threading.Lock()


def client_class(venue: Venue) -> type[Any]:
    """The ccxt class of ``venue`` with the adapter's hooks (one class per venue)."""
    with _CLASSES_LOCK:
        cls = _CLASSES.get(venue.name)
        if cls is not None:
            return cls
        base = getattr(ccxt, venue.ccxt_class)

        class Client(base):  # type: ignore[misc,valid-type]
            """ccxt client hooks: forced error table, wire info on errors, the account's
            limiter (every request reserves its cost before it leaves; every reply corrects
            the usage; the exchange's rate limits come from ``exchangeInfo``)."""

            ps_error_table: str | None = None
            ps_limiter: AccountLimiter | None = None
            ps_venue: Venue | None = None
            #: Priority and wait bound of the call in progress (set by the adapter).
            ps_priority: Priority = Priority.READ
            ps_max_wait: float = 10.0
            ps_default_retry_after: float = 1.0
            ps_retry_header: str = "Retry-After"
            ps_reply: tuple[int, Mapping[str, str], str] | None = None
            #: Set when a call enters ``fetch`` (a request may leave from here on); the
            #: adapter clears it before each call. One client per thread: no race.
            ps_sent: bool = False
            #: The lease's seconds of validity left (None: not held), asked by a fenced
            #: call as it stamps its request; None here: no lease (tools, tests).
            ps_lease: Callable[[], float | None] | None = None
            #: Set by :func:`arm` for a place or cancel.
            ps_fenced: bool = False
            #: The request just signed has its cost reserved (``fetch`` does not again).
            ps_reserved: bool = False

            def nonce(self) -> Any:
                stamp = super().nonce()
                lease = self.ps_lease
                if self.ps_fenced and lease is not None:
                    left = lease()
                    if left is None or left <= 0:
                        raise LeaseLapsed("the account's lease has no validity left")
                return stamp

            def sign(self, *args: Any, **kwargs: Any) -> Any:
                signed = super().sign(*args, **kwargs)
                limiter, venue = self.ps_limiter, self.ps_venue
                if limiter is None or venue is None:
                    return signed
                # Raises RateBudgetExhausted before anything is sent.
                waited = limiter.acquire(
                    request_cost(venue, signed["method"], signed["url"], signed.get("body")),
                    self.ps_priority,
                    self.ps_max_wait,
                )
                self.ps_reserved = True
                if waited > RESIGN_AFTER_S:
                    signed = super().sign(*args, **kwargs)
                return signed

            def get_exceptions_by_url(self, url: str | None, exact_or_broad: str) -> Any:
                table = self.ps_error_table
                if table is None:
                    return super().get_exceptions_by_url(url, exact_or_broad)
                return self.safe_dict(
                    self.safe_dict(self.exceptions, table, {}), exact_or_broad, {}
                )

            def on_rest_response(
                self,
                code: int,
                reason: str,
                url: str,
                method: str,
                response_headers: Mapping[str, str],
                response_body: str,
                request_headers: Any,
                request_body: Any,
            ) -> Any:
                self.ps_reply = (code, response_headers, response_body)
                limiter = self.ps_limiter
                venue = self.ps_venue
                if limiter is not None and venue is not None:
                    # A refusal is a short envelope: no need to parse a market list twice.
                    short = venue.rate_limit_codes and len(response_body or "") < 4096
                    refused = rate_limited(
                        venue,
                        code,
                        error_code(response_body, venue.error_code_fields) if short else None,
                    )
                    retry = backoff_of(venue, response_headers, code) if refused else None
                    limiter.observe(
                        code,
                        response_headers,
                        self.ps_default_retry_after if retry is None else retry,
                        rate_limited=refused,
                    )
                    # A refusal's "nothing left" is the back-off's to honour, not usage.
                    usage = None if refused else order_usage(venue, method, url, response_headers)
                    if usage is not None and venue.order_usage_headers is not None:
                        window = venue.order_usage_headers[2]
                        limiter.correct("ORDERS", window, usage[1], limit=usage[0])
                    if code == 200 and url.split("?", 1)[0].endswith("/exchangeInfo"):
                        configure_limits(limiter, response_body)
                return super().on_rest_response(
                    code,
                    reason,
                    url,
                    method,
                    response_headers,
                    response_body,
                    request_headers,
                    request_body,
                )

            def fetch(
                self, url: str, method: str = "GET", headers: Any = None, body: Any = None
            ) -> Any:
                limiter = self.ps_limiter
                if self.ps_reserved:
                    self.ps_reserved = False  # reserved as it was signed
                elif limiter is not None and self.ps_venue is not None:
                    # A request that was not signed first: reserved here.
                    limiter.acquire(
                        request_cost(self.ps_venue, method, url, body),
                        self.ps_priority,
                        self.ps_max_wait,
                    )
                self.ps_sent = True
                self.ps_reply = None
                try:
                    return super().fetch(url, method, headers, body)
                except Exception as exc:
                    reply = self.ps_reply
                    if reply is None:
                        info = WireInfo(sent=not never_sent(exc))
                    else:
                        status, resp_headers, resp_body = reply
                        venue = self.ps_venue
                        fields = ("code",) if venue is None else venue.error_code_fields
                        code = error_code(resp_body, fields)
                        # Retry-After wherever it is sent; a reset timestamp (on every
                        # Bybit reply) only when the reply says "over the limit".
                        backoff = retry_after(resp_headers, self.ps_retry_header)
                        if (
                            backoff is None
                            and venue is not None
                            and rate_limited(venue, status, code)
                        ):
                            backoff = backoff_of(venue, resp_headers, status)
                        info = WireInfo(http_status=status, retry_after=backoff, code=code)
                    attach_wire(exc, info)
                    raise

        Client.__name__ = Client.__qualname__ = f"Ps{venue.ccxt_class}"
        _CLASSES[venue.name] = Client
        return Client


def arm(client: Any, priority: Priority, max_wait: float, *, fenced: bool = False) -> None:
    """Before a call on a hooked ``client`` (on its own thread): the limiter's priority and
    wait bound for the call's requests, whether its requests are fenced by the lease
    (``fenced``: a place or cancel, see the module docstring), and the client's mark of a
    request that left (``ps_sent``) cleared."""
    client.ps_priority = priority
    client.ps_max_wait = max_wait
    client.ps_fenced = fenced
    client.ps_sent = False
    client.ps_reserved = False


def new_client(
    venue: Venue,
    config: VenueConfig,
    credentials: Credentials,
    limiter: AccountLimiter | None,
) -> Any:
    """A new hooked ccxt client of ``venue`` for one account (markets not loaded).

    ccxt's own throttle is off (the account's ``limiter`` models the exchange's real limits)
    and it never re-sends a request on its own; ``config.base_url`` replaces the venue's
    URLs (the sim, a testnet).
    """
    options: dict[str, Any] = copy.deepcopy(dict(venue.options))
    options.update(copy.deepcopy(dict(config.extra_options)))
    # Never let ccxt re-send a request on its own (an order could be placed twice).
    options["maxRetriesOnFailure"] = 0
    options["maxRetriesOnFailureDelay"] = 0
    if config.recv_window_ms is not None:
        options["recvWindow"] = config.recv_window_ms
    client = client_class(venue)(
        {
            "apiKey": credentials.api_key,
            "secret": credentials.secret,
            # ccxt's throttle spaces every request by rateLimit x cost: the account's
            # limiter models the exchange's real limits instead.
            "enableRateLimit": False,
            "timeout": max(1, round(config.timeout_s * 1000)),
            "options": options,
        }
    )
    client.has = {**client.has, **venue.has_overrides}
    if config.base_url is not None:
        client.urls["api"] = venue.api_urls(config.base_url)
    client.ps_error_table = venue.error_table
    client.ps_limiter = limiter
    client.ps_venue = venue
    client.ps_default_retry_after = config.retry_after_s
    client.ps_max_wait = config.timeout_s
    client.ps_retry_header = venue.retry_after_header
    return client
