"""``CcxtExchange``: the :class:`actors.ports.ExchangePort` of one account, over ccxt (sync).

Who calls: the account's :class:`~actors.workers.ExchangeWorkers` threads (place, cancel,
lookup) and the sync thread (:meth:`CcxtExchange.fetch_account`), several at once.

Thread safety: **one ccxt client per calling thread** (``threading.local``). A ccxt sync
client is not safe to share: it holds a ``requests.Session``, mutates ``options`` and
per-request state (``last_http_response``, the limiter's timestamp) during a call. A lock
around one shared client would be safe too, but it would serialise the account's calls, so
one slow order (1-3 s on a busy exchange, S6) would hold up every lookup and stop-loss of the
other symbols - exactly what the per-account worker pool exists to avoid. What the clients
share is read-only or locked: the markets (loaded once, lazily, with retry, by one client
and handed to the others with ``set_markets_from_exchange``) and the rate limiter (one
per account, :class:`~infra.exchange.limits.AccountLimiter`), so ``enable_rate_limit``
keeps the account as a whole under the exchange's limits, protective orders first.

Failure: the order methods never raise for exchange or network errors; the mapping lives
in :mod:`infra.exchange.errors` (UNKNOWN whenever the order may have reached the exchange).
Whether a request left is recorded, not guessed: the client subclass sets ``ps_sent`` when a
call enters ccxt's ``fetch``; an exception raised before that (building or validating the
request) is a local failure, REJECTED for a place and never looked up or re-sent blindly.

Market rules: every order's quantity and price go through the market's own filters before
anything is sent (:meth:`CcxtExchange.place_order`); the rules come from the markets, loaded
once, and are cached per symbol (:meth:`CcxtExchange.market_rules`).
Nothing here retries an order call: Binance checks client ids only among *open* orders, so
a filled market order sent again fills again. ccxt's own ``maxRetriesOnFailure`` is forced
to 0 for the same reason. :meth:`CcxtExchange.fetch_account` raises
:class:`AccountFetchError` (the sync treats it as "no observation this round").

Logs never carry credentials: the key pair stays inside the ccxt clients, exception texts
are logged through :func:`~infra.exchange.errors.describe` (URL query strings removed).
"""

from __future__ import annotations

import copy
import decimal
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ccxt

from actors.messages import CallResult
from actors.model import (
    QTY_EPS,
    ExchangeOrder,
    ExchangePosition,
    Key,
    MarketRules,
    OrderKind,
    Side,
)
from actors.ports import (
    AccountView,
    Clock,
    MarketReply,
    OrderReply,
    OrderRequest,
    SystemClock,
)
from actors.state import parse_client_id
from infra.exchange.errors import (
    Op,
    Reason,
    WireInfo,
    attach_wire,
    classify,
    describe,
    local_reason,
    never_sent,
)
from infra.exchange.limits import (
    AccountLimiter,
    Cost,
    Limit,
    Priority,
    limits_from_exchange_info,
)
from infra.exchange.venues import Venue, VenueConfig

__all__ = [
    "AccountFetchError",
    "CcxtExchange",
    "MarketsUnavailable",
    "UnknownSymbol",
    "quantize_qty",
    "rules_of_market",
]

log = logging.getLogger(__name__)

_ORDER_TYPE = "market"


class MarketsUnavailable(Exception):
    """The venue's markets could not be loaded (after the configured attempts)."""


class UnknownSymbol(KeyError):
    """An exchange symbol id (or unified symbol) that the loaded markets do not have."""


class AccountFetchError(Exception):
    """``fetch_account`` failed; the message is safe to log (no query strings)."""


def request_cost(venue: Venue, method: str, url: str, body: object) -> Cost:
    """What one request counts against the venue's limits (weight; orders for placements).

    The path is taken from the URL from the venue's API root on (``/fapi/v1/order``); the
    ``symbol`` parameter from the query string or a form-encoded body.
    """
    parts = urlsplit(url)
    path = parts.path
    for root in venue.api_roots:
        i = path.find(root)
        if i >= 0:
            path = path[i:]
            break
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


def _retry_after(headers: Mapping[str, str] | None, name: str) -> float | None:
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


def _error_code(body: object) -> str | None:
    if not isinstance(body, str) or not body.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return None if code is None else str(code)


_CLASSES: dict[str, type[Any]] = {}
_CLASSES_LOCK = threading.Lock()


def _client_class(venue: Venue) -> type[Any]:
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
                if limiter is not None:
                    retry = _retry_after(response_headers, self.ps_retry_header)
                    limiter.observe(
                        code,
                        response_headers,
                        self.ps_default_retry_after if retry is None else retry,
                    )
                    if code == 200 and url.split("?", 1)[0].endswith("/exchangeInfo"):
                        _configure_limits(limiter, response_body)
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
                if limiter is not None and self.ps_venue is not None:
                    # Raises RateBudgetExhausted before anything is sent.
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
                        info = WireInfo(
                            http_status=status,
                            retry_after=_retry_after(resp_headers, self.ps_retry_header),
                            code=_error_code(resp_body),
                        )
                    attach_wire(exc, info)
                    raise

        Client.__name__ = Client.__qualname__ = f"Ps{venue.ccxt_class}"
        _CLASSES[venue.name] = Client
        return Client


def _configure_limits(limiter: AccountLimiter, body: str) -> None:
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


def _first(info: Mapping[str, Any], fields: Iterable[str]) -> Any:
    for name in fields:
        value = info.get(name)
        if value is not None and value != "":
            return value
    return None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_TICK_SIZE = 4  # ccxt.base.decimal_to_precision.TICK_SIZE
_DECIMAL_PLACES = 2  # ccxt.base.decimal_to_precision.DECIMAL_PLACES
_SNAP = decimal.Decimal(repr(QTY_EPS))


def _positive(value: Any) -> float | None:
    """A finite number > 0, or None (ccxt's ``None``, Binance's ``"0"`` for "no limit")."""
    number = _float(value)
    if number is None or not math.isfinite(number) or number <= 0:
        return None
    return number


def _size(value: Any, precision_mode: int) -> float | None:
    """A ccxt ``precision`` entry as an increment (tick or step size)."""
    if precision_mode == _TICK_SIZE:
        return _positive(value)
    if precision_mode == _DECIMAL_PLACES:
        places = _float(value)
        return None if places is None else 10.0 ** -round(places)
    return None  # significant digits: no fixed increment


def rules_of_market(market: Mapping[str, Any], precision_mode: int) -> MarketRules:
    """The :class:`MarketRules` of one ccxt market structure (pure).

    Market orders obey Binance's ``MARKET_LOT_SIZE`` filter, which ccxt exposes only as
    ``limits["market"]`` (bounds) and not at all for the step: the step, minimum and maximum
    quantity come from that filter when it states them (> 0), else from ``LOT_SIZE``
    (``precision["amount"]``, ``limits["amount"]``). ``precision["price"]`` is the tick size
    in ccxt's TICK_SIZE mode (binanceusdm's); a bound of 0 means "none" (Binance publishes
    ``maxPrice: "0"`` for some symbols).
    """
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    info = market.get("info") or {}
    filters: dict[str, Mapping[str, Any]] = {}
    raw_filters = info.get("filters") if isinstance(info, Mapping) else None
    for f in raw_filters if isinstance(raw_filters, list) else []:
        if isinstance(f, Mapping) and isinstance(f.get("filterType"), str):
            filters[f["filterType"]] = f
    market_lot = filters.get("MARKET_LOT_SIZE", {})
    market_limits = limits.get("market") or {}
    amount_limits = limits.get("amount") or {}
    price_limits = limits.get("price") or {}
    cost_limits = limits.get("cost") or {}
    return MarketRules(
        tick_size=_size(precision.get("price"), precision_mode),
        step_size=_positive(market_lot.get("stepSize"))
        or _size(precision.get("amount"), precision_mode),
        min_qty=_positive(market_limits.get("min")) or _positive(amount_limits.get("min")),
        max_qty=_positive(market_limits.get("max")) or _positive(amount_limits.get("max")),
        min_notional=_positive(cost_limits.get("min")),
        min_price=_positive(price_limits.get("min")),
        max_price=_positive(price_limits.get("max")),
    )


def quantize_qty(qty: float, step: float) -> decimal.Decimal:
    """``qty`` as a whole number of ``step`` s, never more than asked beyond float noise.

    A quantity within a relative :data:`~actors.model.QTY_EPS` of a whole number of steps
    is that number (``0.7 - 0.4 = 0.29999999999999993`` with step 0.1 is 0.3, not 0.2);
    anything else is truncated (0.35 is 0.3). Exact decimal arithmetic on the shortest
    representation of both floats. ``qty`` and ``step`` must be finite and > 0.
    """
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        q = decimal.Decimal(repr(qty))
        s = decimal.Decimal(repr(step))
        n = q / s
        nearest = n.to_integral_value(rounding=decimal.ROUND_HALF_EVEN)
        if nearest > 0 and abs(n - nearest) <= nearest * _SNAP:
            steps = nearest
        else:
            steps = n.to_integral_value(rounding=decimal.ROUND_FLOOR)
        return (steps * s).normalize() if steps else decimal.Decimal(0)


class _Refusal(Exception):
    """A request the market's rules refuse; raised before anything is sent."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_UNIFIED_STATUS = {
    "open": "new",
    "closed": "filled",
    "canceled": "canceled",
    "expired": "expired",
    "rejected": "rejected",
}


class CcxtExchange:
    """One account's exchange through ccxt. Implements :class:`actors.ports.ExchangePort`.

    ``account``: the account name (credentials' environment names derive from it, see
    :class:`~infra.exchange.venues.VenueConfig`). ``clock``: the time stamped on
    observations (``observed_at``: when :meth:`fetch_account` *started*) and on replies that
    carry no exchange time; use the supervisor's clock. ``environ``: where credentials are
    read (default ``os.environ``).

    Blocking; called on the account's worker threads and the sync thread, several at once
    (one ccxt client per thread; see the module docstring). Call :meth:`close` at shutdown.
    """

    def __init__(
        self,
        account: str,
        venue_config: VenueConfig | None = None,
        *,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.account = account
        self.config = venue_config or VenueConfig()
        self.venue = self.config.resolve_venue()
        self._credentials = self.config.credentials(account, environ)
        if self.config.base_url is not None:
            self.venue.api_urls(self.config.base_url)  # validate early
        self._clock = clock or SystemClock()
        self._cls = _client_class(self.venue)
        #: The account's request limiter (None with ``enable_rate_limit=False``).
        self.limiter: AccountLimiter | None = (
            AccountLimiter(
                [Limit(kind, window, limit) for kind, window, limit in self.venue.rate_limits],
                reserve=self.config.limiter_reserve,
            )
            if self.config.enable_rate_limit and self.venue.rate_limits
            else None
        )
        self._local = threading.local()
        self._lock = threading.Lock()  # the client registry
        self._markets_lock = threading.Lock()
        self._source: Any = None  # the client that loaded the markets (never used after)
        self._clients: dict[int, tuple[threading.Thread, Any]] = {}
        self._to_unified: dict[str, str] = {}
        self._to_id: dict[str, str] = {}
        self._rules: dict[str, MarketRules] = {}  # by exchange symbol id; markets never reload

    def __repr__(self) -> str:
        return (
            f"CcxtExchange({self.account!r}, venue={self.venue.name!r},"
            f" base_url={self.config.base_url!r})"
        )

    # -- clients and markets ------------------------------------------------------------

    def _new_client(self) -> Any:
        cfg = self.config
        options: dict[str, Any] = copy.deepcopy(dict(self.venue.options))
        options.update(copy.deepcopy(dict(cfg.extra_options)))
        # Never let ccxt re-send a request on its own (an order could be placed twice).
        options["maxRetriesOnFailure"] = 0
        options["maxRetriesOnFailureDelay"] = 0
        if cfg.recv_window_ms is not None:
            options["recvWindow"] = cfg.recv_window_ms
        client = self._cls(
            {
                "apiKey": self._credentials.api_key,
                "secret": self._credentials.secret,
                # ccxt's throttle spaces every request by rateLimit x cost: the account's
                # limiter (self.limiter) models the exchange's real limits instead.
                "enableRateLimit": False,
                "timeout": max(1, round(cfg.timeout_s * 1000)),
                "options": options,
            }
        )
        if cfg.base_url is not None:
            client.urls["api"] = self.venue.api_urls(cfg.base_url)
        client.ps_error_table = self.venue.error_table
        client.ps_limiter = self.limiter
        client.ps_venue = self.venue
        client.ps_default_retry_after = cfg.retry_after_s
        client.ps_max_wait = cfg.timeout_s
        client.ps_retry_header = self.venue.retry_after_header
        return client

    def load_markets(self) -> None:
        """Load the venue's markets once (idempotent, thread-safe).

        Tries ``markets_attempts`` times with a doubling delay; raises
        :class:`MarketsUnavailable` when every attempt failed (the next call tries again).
        """
        if self._source is not None:
            return
        with self._markets_lock:
            if self._source is not None:
                return
            cfg = self.config
            attempts = max(1, cfg.markets_attempts)
            last: Exception | None = None
            for attempt in range(attempts):
                client = self._new_client()
                try:
                    client.load_markets()
                except Exception as exc:
                    last = exc
                    client.close()
                    log.warning(
                        "account %s: loading markets failed (attempt %d/%d): %s",
                        self.account,
                        attempt + 1,
                        attempts,
                        describe(exc),
                    )
                    if attempt + 1 < attempts:
                        time.sleep(cfg.markets_retry_delay_s * 2**attempt)
                    continue
                self._index_markets(client.markets)
                self._source = client
                log.info(
                    "account %s: %d %s markets loaded",
                    self.account,
                    len(self._to_unified),
                    self.venue.name,
                )
                return
            detail = describe(last) if last is not None else "no attempt"
            raise MarketsUnavailable(f"{self.venue.name} markets: {detail}") from last

    def _index_markets(self, markets: Mapping[str, Mapping[str, Any]]) -> None:
        to_unified: dict[str, str] = {}
        for symbol, m in markets.items():
            if m.get("type") != self.venue.market_type:
                continue
            if bool(m.get("linear")) is not self.venue.linear:
                continue
            to_unified[str(m["id"])] = symbol
        self._to_unified = to_unified
        self._to_id = {v: k for k, v in to_unified.items()}

    def _client(self) -> Any:
        """This thread's ccxt client (created on first use, with the shared markets)."""
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        self.load_markets()
        client = self._new_client()
        client.set_markets_from_exchange(self._source)
        self._local.client = client
        me = threading.current_thread()
        with self._lock:
            dead = [i for i, (t, _) in self._clients.items() if not t.is_alive()]
            for i in dead:
                _, old = self._clients.pop(i)
                old.close()
            self._clients[id(me)] = (me, client)
        return client

    def close(self) -> None:
        """Close every client's HTTP session (pooled connections) and refuse the requests
        waiting for the limiter. Safe to call twice."""
        if self.limiter is not None:
            self.limiter.close()
        with self._lock:
            clients = [c for _, c in self._clients.values()]
            self._clients.clear()
        if self._source is not None:
            clients.append(self._source)
        for c in clients:
            try:
                c.close()
            except Exception:  # pragma: no cover - closing is best effort
                log.debug("closing a ccxt client failed", exc_info=True)
        self._local = threading.local()

    # -- symbols ------------------------------------------------------------------------

    @property
    def symbols(self) -> frozenset[str]:
        """Exchange symbol ids of the venue's markets (loads markets if needed)."""
        self.load_markets()
        return frozenset(self._to_unified)

    def unified(self, symbol_id: str) -> str:
        """``BTCUSDT`` -> ``BTC/USDT:USDT`` (raises :class:`UnknownSymbol`)."""
        self.load_markets()
        try:
            return self._to_unified[symbol_id]
        except KeyError:
            raise UnknownSymbol(symbol_id) from None

    def exchange_id(self, unified: str) -> str:
        """``BTC/USDT:USDT`` -> ``BTCUSDT`` (raises :class:`UnknownSymbol`)."""
        self.load_markets()
        try:
            return self._to_id[unified]
        except KeyError:
            raise UnknownSymbol(unified) from None

    # -- the port -----------------------------------------------------------------------

    def cached_market_rules(self, symbol_id: str) -> MarketRules | None:
        """The market's rules for ``symbol_id`` when the markets are loaded already, else
        None; never does I/O (any thread, e.g. a feed's). The same rules
        :meth:`market_rules` and :meth:`fetch_market` give."""
        rules = self._rules.get(symbol_id)
        if rules is not None or self._source is None:
            return rules
        try:
            return self.market_rules(symbol_id)
        except Exception:  # an unknown symbol: the actor asks (and is told) as usual
            return None

    def market_rules(self, symbol_id: str) -> MarketRules:
        """The market's rules for ``BTCUSDT`` (see :func:`rules_of_market`), cached.

        The rules come from the markets, which are loaded once per adapter; a change of a
        symbol's filters on the exchange is picked up by a restart. Raises
        :class:`MarketsUnavailable` or :class:`UnknownSymbol`.
        """
        rules = self._rules.get(symbol_id)
        if rules is not None:
            return rules
        unified = self.unified(symbol_id)
        client = self._client()
        rules = rules_of_market(client.market(unified), int(client.precisionMode))
        self._rules[symbol_id] = rules  # same value from any thread: no lock needed
        return rules

    def order_params(self, req: OrderRequest) -> dict[str, Any]:
        """The ccxt ``params`` for ``req`` (exchange-specific names from the venue).

        The trigger price is put in as given; :meth:`place_order` replaces it with the
        market's rounding. Raises :class:`ValueError` for a trigger order without a price.
        """
        v = self.venue
        params: dict[str, Any] = {v.client_id_param: req.client_id}
        if req.kind.trigger:
            if req.trigger_price is None:
                raise ValueError(f"{req.kind.value} order without trigger_price")
            params[self._price_param(req.kind)] = req.trigger_price
            params.update(v.stop_order_params)
            if req.close_position:
                params[v.close_position_param] = True
            else:
                # A protective order never opens or increases a position.
                params[v.reduce_only_param] = True
            return params
        params.update(v.market_order_params)
        if req.reduce_only or req.close_position or req.kind is OrderKind.CLOSE:
            params[v.reduce_only_param] = True
        return params

    def _price_param(self, kind: OrderKind) -> str:
        v = self.venue
        return v.stop_loss_param if kind is OrderKind.STOP_LOSS else v.take_profit_param

    def _amount(self, client: Any, symbol: str, qty: float, rules: MarketRules) -> float:
        """``qty`` on the market's step, checked against its bounds (raises :class:`_Refusal`).

        :func:`quantize_qty` on the market-order step, then ccxt's ``amount_to_precision``
        (which truncates); the result is never more than asked (beyond float noise).
        """
        if not math.isfinite(qty) or qty <= 0:
            raise _Refusal(Reason.INVALID_AMOUNT, f"quantity {qty!r} is not a positive number")
        if rules.max_qty is not None and qty > rules.max_qty * (1.0 + QTY_EPS):
            raise _Refusal(Reason.INVALID_AMOUNT, f"quantity {qty!r} above max {rules.max_qty}")
        snapped = quantize_qty(qty, rules.step_size) if rules.step_size else None
        if snapped is not None and snapped <= 0:
            raise _Refusal(
                Reason.INVALID_AMOUNT, f"quantity {qty!r} is below one step {rules.step_size}"
            )
        try:
            text = str(
                client.amount_to_precision(symbol, qty if snapped is None else float(snapped))
            )
        except ccxt.InvalidOrder:  # truncated to zero
            raise _Refusal(
                Reason.INVALID_AMOUNT, f"quantity {qty!r} rounds to zero on this market"
            ) from None
        amount = float(text)
        if not amount > 0:
            raise _Refusal(Reason.INVALID_AMOUNT, f"quantity {qty!r} rounds to {text}")
        if rules.min_qty is not None and amount < rules.min_qty * (1.0 - QTY_EPS):
            raise _Refusal(
                Reason.INVALID_AMOUNT, f"quantity {qty!r} ({text}) below min {rules.min_qty}"
            )
        if rules.max_qty is not None and amount > rules.max_qty * (1.0 + QTY_EPS):
            raise _Refusal(
                Reason.INVALID_AMOUNT, f"quantity {qty!r} ({text}) above max {rules.max_qty}"
            )
        return amount

    @staticmethod
    def _price(client: Any, symbol: str, price: float | None, rules: MarketRules) -> str:
        """``price`` on the market's tick (ccxt's ``price_to_precision``), within its bounds.

        Raises :class:`_Refusal`; a price the bounds cannot judge (no ``max_price`` stated)
        may still make ccxt raise (``decimal`` errors for absurd values): a local failure.
        """
        if price is None or not math.isfinite(price) or price <= 0:
            raise _Refusal(Reason.INVALID_PRICE, f"price {price!r} is not a positive number")
        if rules.max_price is not None and price > rules.max_price:
            raise _Refusal(Reason.INVALID_PRICE, f"price {price!r} above max {rules.max_price}")
        try:
            text = str(client.price_to_precision(symbol, price))
        except ccxt.InvalidOrder:  # rounded to zero
            raise _Refusal(
                Reason.INVALID_PRICE, f"price {price!r} rounds to zero on this market"
            ) from None
        rounded = float(text)
        if not rounded > 0:
            raise _Refusal(Reason.INVALID_PRICE, f"price {price!r} rounds to {text}")
        if rules.min_price is not None and rounded < rules.min_price:
            raise _Refusal(Reason.INVALID_PRICE, f"price {price!r} ({text}) below min")
        if rules.max_price is not None and rounded > rules.max_price:
            raise _Refusal(Reason.INVALID_PRICE, f"price {price!r} ({text}) above max")
        return text

    def _request(
        self, client: Any, symbol: str, req: OrderRequest, rules: MarketRules
    ) -> tuple[float | None, dict[str, Any]]:
        """The amount and params ccxt gets for ``req``, on the market's rules.

        A ``closePosition`` stop sends no quantity (the exchange closes whatever is open),
        so its ``qty`` is not checked. Raises :class:`_Refusal`.
        """
        try:
            params = self.order_params(req)
        except ValueError as exc:
            raise _Refusal(Reason.INVALID_PRICE, str(exc)) from None
        if req.kind.trigger:
            params[self._price_param(req.kind)] = self._price(
                client, symbol, req.trigger_price, rules
            )
            if req.close_position:
                return None, params
        return self._amount(client, symbol, req.qty, rules), params

    def place_order(self, req: OrderRequest) -> OrderReply:
        """Send one order with its deterministic client id; never re-sent here.

        Market entry and close (reduce-only) go to the plain order endpoint; stop-loss and
        take-profit (``closePosition`` when ``req.close_position``) to the conditional one.

        Before anything is sent the request goes through the market's rules
        (:meth:`market_rules`): the quantity onto the market-order step (:func:`quantize_qty`,
        then ccxt's ``amount_to_precision``) and within min/max quantity, the trigger price
        onto the tick (``price_to_precision``) and within min/max price. A request they
        refuse is REJECTED ``invalid:amount`` / ``invalid:price`` without being sent; an
        exception raised before the request left (ccxt's local checks, ``decimal`` errors,
        ``TypeError`` ...) is REJECTED ``local:<Class>``. Exchange outcomes:
        :mod:`infra.exchange.errors`.

        A duplicate client id (-4116) means an open order holds the id: it is looked up and
        accepted as ours (ACCEPTED ``duplicate``, with its status) only when its symbol, side
        and (for stops) order type are the request's; another order is REJECTED
        ``duplicate_id_mismatch`` (logged as an error); when the lookup cannot tell, the
        outcome is UNKNOWN ``duplicate_unverified`` (the actor looks it up again).
        """
        try:
            client = self._client()
            symbol = self.unified(req.key.symbol)
            rules = self.market_rules(req.key.symbol)
        except MarketsUnavailable as exc:
            log.warning("%s place %s: %s", req.key, req.client_id, exc)
            return OrderReply(
                CallResult.REJECTED,
                str(Reason.MARKETS_UNAVAILABLE),
                retry_after=self.config.retry_after_s,
            )
        except UnknownSymbol:
            return OrderReply(CallResult.REJECTED, str(Reason.BAD_SYMBOL))
        except Exception as exc:  # reading the market's rules: nothing was sent
            log.error("%s place %s: no market rules (%s)", req.key, req.client_id, describe(exc))
            return OrderReply(CallResult.REJECTED, local_reason(exc))
        self._budget(client, req.kind is OrderKind.ENTRY)
        client.ps_sent = False
        try:
            amount, params = self._request(client, symbol, req, rules)
            order = client.create_order(symbol, _ORDER_TYPE, req.side, amount, None, params)
        except _Refusal as refusal:
            log.warning(
                "%s place %s %s refused before sending: %s (%s)",
                req.key,
                req.kind.value,
                req.client_id,
                refusal.reason,
                refusal.detail,
            )
            return OrderReply(CallResult.REJECTED, str(refusal.reason))
        except Exception as exc:
            sent = bool(client.ps_sent)
            reply = classify(Op.PLACE, exc, self.venue, self.config.retry_after_s, left=sent)
            if reply.result is CallResult.ACCEPTED and reply.reason == Reason.DUPLICATE:
                return self._duplicate(client, symbol, req)
            if not sent:
                level = logging.ERROR
            elif reply.result is CallResult.UNKNOWN:
                level = logging.WARNING
            else:
                level = logging.INFO
            log.log(
                level,
                "%s place %s %s: %s %s (%s)",
                req.key,
                req.kind.value,
                req.client_id,
                reply.result.value,
                reply.reason,
                describe(exc),
            )
            return reply
        return self._reply(CallResult.ACCEPTED, order)

    def _budget(self, client: Any, entry: bool) -> None:
        """The limiter's priority and wait bound for an order placement on ``client``."""
        cfg = self.config
        client.ps_priority = Priority.ENTRY if entry else Priority.PROTECT
        client.ps_max_wait = cfg.entry_max_wait_s if entry else cfg.timeout_s

    def _duplicate(self, client: Any, symbol: str, req: OrderRequest) -> OrderReply:
        """-4116 for ``req``: is the open order holding its client id ours? (see place_order)"""
        found, order = self._lookup(client, symbol, req.key, req.client_id, req.kind.trigger)
        if found.result is not CallResult.FOUND or order is None:
            log.warning(
                "%s place %s: client id in use on the exchange, but the lookup says %s (%s)",
                req.key,
                req.client_id,
                found.result.value,
                found.reason,
            )
            return OrderReply(
                CallResult.UNKNOWN,
                str(Reason.DUPLICATE_UNVERIFIED),
                retry_after=found.retry_after,
            )
        mismatch = self._mismatch(symbol, req, order)
        if mismatch:
            log.error(
                "%s place %s %s %s: client id already used by another order (%s); refused",
                req.key,
                req.kind.value,
                req.side,
                req.client_id,
                mismatch,
            )
            return OrderReply(CallResult.REJECTED, str(Reason.DUPLICATE_ID_MISMATCH))
        log.info("%s place %s: already on the exchange (duplicate id)", req.key, req.client_id)
        return replace(found, result=CallResult.ACCEPTED, reason=str(Reason.DUPLICATE))

    def _mismatch(self, symbol: str, req: OrderRequest, order: Mapping[str, Any]) -> str:
        """What differs between ``req`` and the ccxt ``order`` holding its id ('' if nothing)."""
        v = self.venue
        info = order.get("info") or {}
        problems: list[str] = []
        if order.get("symbol") != symbol:
            problems.append(f"symbol {order.get('symbol')!r}")
        side = str(order.get("side") or _first(info, ("side",)) or "").lower()
        if side != req.side.lower():
            problems.append(f"side {side!r}")
        if req.kind.trigger:
            expected = v.stop_loss_type if req.kind is OrderKind.STOP_LOSS else v.take_profit_type
            found_type = str(_first(info, v.order_type_fields) or "").upper()
            if found_type != expected:
                problems.append(f"type {found_type!r}, not {expected!r}")
        return ", ".join(problems)

    def _lookup(
        self, client: Any, symbol: str, key: Key, client_id: str, trigger: bool
    ) -> tuple[OrderReply, Mapping[str, Any] | None]:
        """One lookup by client id: the port's reply and the ccxt order (when FOUND)."""
        params: dict[str, Any] = {self.venue.client_id_param: client_id}
        if trigger:
            params.update(self.venue.trigger_flag)
        client.ps_sent = False
        try:
            order = client.fetch_order(None, symbol, params)
        except Exception as exc:
            sent = bool(client.ps_sent)
            reply = classify(Op.LOOKUP, exc, self.venue, self.config.retry_after_s, left=sent)
            if reply.result is CallResult.UNKNOWN:
                log.log(
                    logging.WARNING if sent else logging.ERROR,
                    "%s lookup %s: %s (%s)",
                    key,
                    client_id,
                    reply.reason,
                    describe(exc),
                )
            return reply, None
        return self._reply(CallResult.FOUND, order), order

    def lookup_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        """Ask for the order by client id: FOUND (with status), NOT_FOUND or UNKNOWN.

        One NOT_FOUND right after placement is not proof (a busy exchange answers "not
        found" for a moment); the state machine decides how long to keep asking. A lookup
        that failed before its request left is UNKNOWN ``local:<Class>``.
        """
        try:
            client = self._client()
            symbol = self.unified(key.symbol)
        except MarketsUnavailable:
            return OrderReply(CallResult.UNKNOWN, str(Reason.MARKETS_UNAVAILABLE))
        except UnknownSymbol:
            return OrderReply(CallResult.UNKNOWN, str(Reason.BAD_SYMBOL))
        parsed = parse_client_id(client_id)
        entry = parsed is not None and parsed[1] is OrderKind.ENTRY
        client.ps_priority = Priority.RESOLVE if entry else Priority.PROTECT
        client.ps_max_wait = self.config.resolve_max_wait_s if entry else self.config.timeout_s
        reply, _ = self._lookup(client, symbol, key, client_id, trigger)
        return reply

    def cancel_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        """Cancel by client id: ACCEPTED (status ``canceled``), NOT_FOUND or UNKNOWN.

        A 429 is UNKNOWN with the exchange's ``Retry-After``; a cancel that failed before
        its request left is UNKNOWN ``local:<Class>``.
        """
        try:
            client = self._client()
            symbol = self.unified(key.symbol)
        except MarketsUnavailable:
            return OrderReply(CallResult.UNKNOWN, str(Reason.MARKETS_UNAVAILABLE))
        except UnknownSymbol:
            return OrderReply(CallResult.UNKNOWN, str(Reason.BAD_SYMBOL))
        params: dict[str, Any] = {self.venue.client_id_param: client_id}
        if trigger:
            params.update(self.venue.trigger_flag)
        client.ps_priority = Priority.PROTECT
        client.ps_max_wait = self.config.timeout_s
        client.ps_sent = False
        try:
            order = client.cancel_order(None, symbol, params)
        except Exception as exc:
            sent = bool(client.ps_sent)
            reply = classify(Op.CANCEL, exc, self.venue, self.config.retry_after_s, left=sent)
            if reply.result is CallResult.UNKNOWN:
                log.log(
                    logging.WARNING if sent else logging.ERROR,
                    "%s cancel %s: %s (%s)",
                    key,
                    client_id,
                    reply.reason,
                    describe(exc),
                )
            return reply
        reply = self._reply(CallResult.ACCEPTED, order)
        if reply.status is None:
            reply = replace(reply, status="canceled")
        return reply

    def fetch_account(self, account: str) -> AccountView:
        """Positions (one-way) and open orders (plain and conditional) by exchange symbol id.

        ``observed_at`` is the clock's time when the fetch *started*. Raises
        :class:`AccountFetchError` on any failure (nothing partial is returned).
        """
        if account != self.account:
            raise ValueError(f"this adapter serves account {self.account!r}, not {account!r}")
        started = self._clock.now()
        try:
            client = self._client()
            client.ps_priority = Priority.READ
            client.ps_max_wait = self.config.timeout_s
            raw_positions = client.fetch_positions()
            plain = client.fetch_open_orders()
            conditional = client.fetch_open_orders(None, None, None, dict(self.venue.trigger_flag))
        except Exception as exc:
            raise AccountFetchError(f"account {account}: {describe(exc)}") from None
        positions: dict[str, ExchangePosition] = {}
        for p in raw_positions:
            sid = self._to_id.get(p.get("symbol") or "")
            contracts = _float(p.get("contracts")) or 0.0
            size = contracts * (_float(p.get("contractSize")) or 1.0)
            if sid is None or size <= 0:
                continue
            side = Side.SHORT if p.get("side") == "short" else Side.LONG
            positions[sid] = ExchangePosition(side, size, _float(p.get("entryPrice")) or 0.0)
        orders: dict[str, list[ExchangeOrder]] = {}
        for o, is_trigger in [(o, False) for o in plain] + [(o, True) for o in conditional]:
            sid = self._to_id.get(o.get("symbol") or "")
            if sid is None:
                continue
            info = o.get("info") or {}
            orders.setdefault(sid, []).append(
                ExchangeOrder(
                    client_id=str(o.get("clientOrderId") or ""),
                    side=str(o.get("side") or "").lower(),
                    qty=_float(o.get("amount")) or 0.0,
                    trigger=is_trigger,
                    trigger_price=_float(o.get("triggerPrice")),
                    reduce_only=bool(o.get("reduceOnly"))
                    or str(info.get("closePosition")).lower() == "true",
                    exchange_id=None if o.get("id") is None else str(o.get("id")),
                )
            )
        return AccountView(
            account,
            positions,
            {s: tuple(v) for s, v in orders.items()},
            started,
            frozenset(self._to_unified),
        )

    def fetch_market(self, key: Key) -> MarketReply:
        """The symbol's mark price (one request) and market rules (cached, see market_rules).

        ``at`` is this adapter's clock when the request was about to be sent: the price is at
        least that fresh. Never raises: FOUND with ``mark_price`` and ``rules``; REJECTED
        ``bad_symbol`` for a symbol the venue does not trade; otherwise UNKNOWN with the
        reason of :func:`~infra.exchange.errors.classify` (``rate_limited`` with the
        exchange's ``retry_after``, ``markets_unavailable``, ``local:<Class>`` ...) or
        ``bad_mark_price`` for a reply without a positive finite mark price.
        """
        at = self._clock.now()
        try:
            client = self._client()
            symbol = self.unified(key.symbol)
            rules = self.market_rules(key.symbol)
        except MarketsUnavailable as exc:
            log.warning("%s market: %s", key, exc)
            return MarketReply(
                CallResult.UNKNOWN,
                at=at,
                reason=str(Reason.MARKETS_UNAVAILABLE),
                retry_after=self.config.retry_after_s,
            )
        except UnknownSymbol:
            return MarketReply(CallResult.REJECTED, at=at, reason=str(Reason.BAD_SYMBOL))
        except Exception as exc:  # reading the market's rules: nothing was sent
            log.error("%s market: no market rules (%s)", key, describe(exc))
            return MarketReply(CallResult.UNKNOWN, at=at, reason=local_reason(exc))
        client.ps_priority = Priority.RESOLVE
        client.ps_max_wait = self.config.resolve_max_wait_s
        at = self._clock.now()
        client.ps_sent = False
        try:
            ticker = client.fetch_mark_price(symbol)
        except Exception as exc:
            sent = bool(client.ps_sent)
            reply = classify(Op.MARKET, exc, self.venue, self.config.retry_after_s, left=sent)
            log.log(
                logging.WARNING if sent else logging.ERROR,
                "%s market: %s %s (%s)",
                key,
                reply.result.value,
                reply.reason,
                describe(exc),
            )
            return MarketReply(
                reply.result, at=at, reason=reply.reason, retry_after=reply.retry_after
            )
        price = _positive(ticker.get("markPrice")) if isinstance(ticker, Mapping) else None
        if price is None:
            log.warning("%s market: reply without a usable mark price: %.200r", key, ticker)
            return MarketReply(CallResult.UNKNOWN, at=at, reason=str(Reason.BAD_MARK_PRICE))
        return MarketReply(CallResult.FOUND, mark_price=price, rules=rules, at=at)

    # -- replies ------------------------------------------------------------------------

    def _reply(self, result: CallResult, order: Mapping[str, Any]) -> OrderReply:
        """An :class:`OrderReply` from a ccxt order structure (raw fields first)."""
        v = self.venue
        try:
            info = order.get("info") or {}
            raw_status = _first(info, v.status_fields)
            status = v.normalize_status(None if raw_status is None else str(raw_status))
            if status is None:
                if raw_status is not None:
                    log.warning("unknown %s order status %r", v.name, raw_status)
                status = _UNIFIED_STATUS.get(str(order.get("status")))
            filled = _float(_first(info, v.filled_fields))
            if filled is None:
                filled = _float(order.get("filled")) or 0.0
            avg = _float(_first(info, v.avg_price_fields))
            if avg is None or avg <= 0:
                avg = _float(order.get("average"))
            avg = avg if avg is not None and avg > 0 else None
            oid = _first(info, v.id_fields)
            if oid is None:
                oid = order.get("id")
            ms = _float(_first(info, v.time_fields))
            event_time = ms / 1000.0 if ms else self._clock.now()
            return OrderReply(
                result,
                status=status,
                filled_qty=filled,
                avg_price=avg,
                exchange_id=None if oid is None else str(oid),
                event_time=event_time,
            )
        except Exception:  # the call succeeded; a malformed reply must not turn it into UNKNOWN
            log.exception("could not read a %s order reply", v.name)
            return OrderReply(result)
