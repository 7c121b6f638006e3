"""Everything exchange-specific about a ccxt venue, in one place.

A :class:`Venue` is pure data: which ccxt class to build, which options it needs, how a base
URL becomes ccxt's ``urls["api"]`` table, which of ccxt's exception tables to force, the
parameter names that carry client ids, trigger prices and flags, the raw reply fields that
hold status / fill / ids, and the exchange error codes that the outcome mapping
(:mod:`infra.exchange.errors`) treats specially. :class:`VenueConfig` is what one account
configures on top (base URL, rate limit, timeouts, credentials' environment names).

Adding a ccxt exchange means adding one more :class:`Venue` value to :data:`VENUES` (and, if
its replies differ, new field names here): the adapter reads nothing else. Two are known:
:data:`BINANCE_USDM` (Binance USD-M futures) and :data:`BYBIT_LINEAR` (Bybit v5, linear USDT
perpetuals; what its wire looks like through ccxt 4.5.90 is in ``sim/BYBIT_WIRE.md``).
Nothing here does I/O except :meth:`VenueConfig.credentials`, which reads the environment
(through :func:`infra.config.read_credentials`, the one rule for an account's key pair). An
unusable configuration raises :class:`infra.config.ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from actors.model import ExchangeStatus
from infra.config import ConfigError, env_prefix, read_credentials

__all__ = [
    "BINANCE_USDM",
    "BYBIT_LINEAR",
    "VENUES",
    "ConfigError",
    "Credentials",
    "Venue",
    "VenueConfig",
]


_K = TypeVar("_K")
_V = TypeVar("_V")


def _ro(d: Mapping[_K, _V]) -> Mapping[_K, _V]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True, slots=True)
class Venue:
    """The exchange-specific parameters of one ccxt exchange (see the module docstring)."""

    name: str
    ccxt_class: str
    #: ccxt constructor options (``options`` key). Merged under the adapter's own settings.
    options: Mapping[str, object]
    #: ``urls["api"]`` key -> path appended to the configured base URL. The adapter *replaces*
    #: ``urls["api"]`` with exactly these keys, so any other API section fails at once.
    url_paths: Mapping[str, str]
    #: Which of ccxt's per-market exception tables to force whatever the URL (``None``: ccxt's
    #: own choice; binanceusdm chooses by URL prefix, which fails for local URLs, bybit maps
    #: its ``retCode`` whatever the URL).
    error_table: str | None
    #: Markets we trade: ccxt ``type`` and the ``linear`` flag.
    market_type: str = "swap"
    linear: bool = True
    #: ``client.has`` entries forced on every client the adapter builds (Bybit:
    #: ``fetchCurrencies`` False, else ``load_markets`` asks a private coin endpoint first).
    has_overrides: Mapping[str, object] = field(default_factory=lambda: _ro({}))
    #: ccxt param names. ``client_id_param`` carries the client id on a placement, a lookup
    #: and a cancel alike.
    client_id_param: str = "clientOrderId"
    reduce_only_param: str = "reduceOnly"
    stop_loss_param: str = "stopLossPrice"
    #: What a "close the whole position" stop carries (instead of ``reduce_only_param``),
    #: and the amount handed to ccxt for it (None: no amount; Bybit: 0 with ``qty "0"``).
    close_position_params: Mapping[str, object] = field(
        default_factory=lambda: _ro({"closePosition": True})
    )
    close_position_amount: float | None = None
    #: Added to a lookup or an open-order list of conditional orders, and to their cancel.
    trigger_flag: Mapping[str, object] = field(default_factory=lambda: _ro({"trigger": True}))
    cancel_trigger_flag: Mapping[str, object] = field(
        default_factory=lambda: _ro({"trigger": True})
    )
    #: Added to the open-order list of plain orders (Bybit lists every kind without one).
    plain_orders_filter: Mapping[str, object] = field(default_factory=lambda: _ro({}))
    market_order_params: Mapping[str, object] = field(default_factory=lambda: _ro({}))
    stop_order_params: Mapping[str, object] = field(default_factory=lambda: _ro({}))
    #: The order lookup by client id: ccxt calls tried in turn, each with extra params, until
    #: one finds the order. A method whose name ends in ``_orders`` returns a list (called
    #: ``(symbol, None, None, params)`` and searched for the client id); any other is called
    #: ``(None, symbol, params)`` and raises ``OrderNotFound`` when it finds nothing.
    lookup_calls: tuple[tuple[str, Mapping[str, object]], ...] = (("fetch_order", _ro({})),)
    #: Open-order lists come in pages of this size (None: one request lists everything),
    #: the next page named by ``list_cursor``: (field of the last order's ``info``, param).
    list_page_size: int | None = None
    list_cursor: tuple[str, str] | None = None
    #: Position lists come in pages of this size (None: one request lists every position),
    #: the next page named by ``list_cursor`` too. A list read short would make the sync
    #: see open positions as flat: every page is read, or the read fails.
    positions_page_size: int | None = None
    #: The ccxt method whose reply carries ``markPrice`` for one symbol.
    mark_price_call: str = "fetch_mark_price"
    #: A placement's reply states no status (Bybit: only the ids): a market order is looked
    #: up once after it was accepted, so the reply carries its fill.
    lookup_after_place: bool = False
    #: Path in the raw market (``market["info"]``) of the market-order maximum quantity
    #: (Binance's comes from its ``MARKET_LOT_SIZE`` filter, read by ``rules_of_market``).
    market_max_qty_path: tuple[str, ...] = ()
    #: Raw reply fields (``order["info"]``), first present wins.
    status_fields: tuple[str, ...] = ("status",)
    filled_fields: tuple[str, ...] = ("executedQty",)
    avg_price_fields: tuple[str, ...] = ("avgPrice",)
    id_fields: tuple[str, ...] = ("orderId",)
    time_fields: tuple[str, ...] = ("updateTime",)
    #: Raw order-type fields, and the type our stop-loss orders have: a duplicate client id
    #: is accepted as ours only when the order holding it has that type.
    order_type_fields: tuple[str, ...] = ("orderType", "type")
    stop_loss_type: str = "STOP_MARKET"
    #: Raw status (upper case) -> the lower-case name the state machine knows.
    statuses: Mapping[str, ExchangeStatus] = field(default_factory=lambda: _ro({}))
    #: Fields of a JSON reply body holding the exchange's error code, first present wins.
    error_code_fields: tuple[str, ...] = ("code",)
    #: Exchange error codes (strings, as the reply carries them).
    #: ``duplicate_codes``: the client id is taken. Binance: by an *open* order; Bybit: by
    #: any order the account ever had. Either way the adapter looks the holder up.
    duplicate_codes: frozenset[str] = frozenset()
    would_trigger_codes: frozenset[str] = frozenset()
    reduce_only_codes: frozenset[str] = frozenset()
    insufficient_codes: frozenset[str] = frozenset()
    #: Codes that say "not processed, try later" (overload, request-rate limits). A reply
    #: ccxt reads as a timeout (``RequestTimeout``) is never "busy", whatever its code.
    busy_codes: frozenset[str] = frozenset()
    #: Codes that say "execution status unknown" whatever class ccxt gives them; of those,
    #: the ones reported as ``timeout`` rather than ``exchange_unknown``.
    unknown_codes: frozenset[str] = frozenset()
    timeout_codes: frozenset[str] = frozenset()
    #: Replies that say "over the request limit": every request of the account then waits
    #: for the back-off (HTTP statuses, and codes in a 200 reply).
    rate_limit_statuses: frozenset[int] = frozenset({418, 429})
    rate_limit_codes: frozenset[str] = frozenset()
    #: Header of a refusal that says how long to back off (seconds).
    retry_after_header: str = "Retry-After"
    #: Back-off (seconds) of a refusal by HTTP status when no header says how long (Bybit:
    #: a 403 is an IP ban; "wait for at least 10 minutes", Bybit's v5 rate-limit page).
    status_backoff_s: Mapping[int, float] = field(default_factory=lambda: _ro({}))
    #: Header holding the time (epoch ms) when a refused caller may retry (Bybit's
    #: ``X-Bapi-Limit-Reset-Timestamp``), read against ``server_time_header`` (epoch ms)
    #: when the reply has it, else the local clock.
    reset_header: str | None = None
    server_time_header: str | None = None
    #: Headers of an order endpoint's reply (:attr:`order_endpoints`) stating its limit and
    #: what is left of it, and that limit's window in seconds: the ``ORDERS`` limit of that
    #: window takes the stated limit and usage (Bybit: ``X-Bapi-Limit``,
    #: ``X-Bapi-Limit-Status``, 1 s). None: usage headers of Binance's kind only.
    order_usage_headers: tuple[str, str, float] | None = None
    #: The limits the venue publishes (``exchangeInfo.rateLimits``): (type, window s, limit).
    #: The account's limiter starts from these and takes the exchange's own once read.
    rate_limits: tuple[tuple[str, float, int], ...] = ()
    #: Request weights by (method, path), path from the API root (``/fapi/v1/order``):
    #: (weight with a ``symbol`` parameter, weight without one). Unlisted: 1.
    request_weights: Mapping[tuple[str, str], tuple[int, int]] = field(
        default_factory=lambda: _ro({})
    )
    #: Requests that count 1 against the ``ORDERS`` limits.
    order_endpoints: frozenset[tuple[str, str]] = frozenset()
    #: Path segments where the API root starts in a request URL (after the base URL).
    api_roots: tuple[str, ...] = ("/fapi/", "/futures/")
    #: The user stream's listen key: ccxt's implicit methods (create, keep alive) and the
    #: code of "no such key". None: the venue has none (Bybit's private stream signs an
    #: ``auth`` message with the key pair instead).
    listen_key_calls: tuple[str, str] | None = None
    listen_key_missing_code: int | None = None

    def api_urls(self, base_url: str) -> dict[str, str]:
        """The ``urls["api"]`` table for a base URL such as ``http://127.0.0.1:8765``."""
        base = base_url.rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise ConfigError(
                "base_url", f"must be http(s)://host[:port][/prefix], got {base_url!r}"
            )
        return {key: base + path for key, path in self.url_paths.items()}

    def normalize_status(self, raw: str | None) -> ExchangeStatus | None:
        """The state machine's lower-case status for a raw exchange status (None: unknown)."""
        if raw is None:
            return None
        return self.statuses.get(raw.upper())


_BINANCE_STATUSES = {
    # plain orders (/fapi/v1/order)
    "NEW": ExchangeStatus.NEW,
    "PARTIALLY_FILLED": ExchangeStatus.PARTIALLY_FILLED,
    "FILLED": ExchangeStatus.FILLED,
    "CANCELED": ExchangeStatus.CANCELED,
    "CANCELLED": ExchangeStatus.CANCELED,
    "EXPIRED": ExchangeStatus.EXPIRED,
    "EXPIRED_IN_MATCH": ExchangeStatus.EXPIRED,
    "REJECTED": ExchangeStatus.REJECTED,
    "PENDING_CANCEL": ExchangeStatus.NEW,
    # conditional orders (/fapi/v1/algoOrder, algoStatus)
    "TRIGGERING": ExchangeStatus.TRIGGERED,
    "TRIGGERED": ExchangeStatus.TRIGGERED,
    "FINISHED": ExchangeStatus.FINISHED,
}

BINANCE_USDM = Venue(
    name="binanceusdm",
    ccxt_class="binanceusdm",
    options=_ro(
        {
            "defaultType": "swap",
            "fetchCurrencies": False,
            "fetchMarkets": {"types": ["linear"]},
            "warnOnFetchOpenOrdersWithoutSymbol": False,
            "fetchOpenOrders": {"warnWithoutSymbol": False},
        }
    ),
    url_paths=_ro(
        {
            "fapiPublic": "/fapi/v1",
            "fapiPrivate": "/fapi/v1",
            "fapiPublicV2": "/fapi/v2",
            "fapiPrivateV2": "/fapi/v2",
            "fapiPublicV3": "/fapi/v3",
            "fapiPrivateV3": "/fapi/v3",
            "fapiData": "/futures/data",
        }
    ),
    error_table="linear",
    market_order_params=_ro({"newOrderRespType": "RESULT"}),
    # Stops trigger on the mark price (what the local stop guard watches too).
    stop_order_params=_ro({"workingType": "MARK_PRICE"}),
    status_fields=("status", "algoStatus", "strategyStatus"),
    filled_fields=("executedQty", "cumQty"),
    avg_price_fields=("avgPrice",),
    id_fields=("orderId", "algoId"),
    time_fields=("updateTime", "transactTime", "createTime"),
    statuses=_ro(_BINANCE_STATUSES),
    duplicate_codes=frozenset({"-4116"}),
    would_trigger_codes=frozenset({"-2021"}),
    reduce_only_codes=frozenset({"-2022"}),
    insufficient_codes=frozenset({"-2019", "-2018"}),
    busy_codes=frozenset({"-1003", "-1008", "-1015"}),
    unknown_codes=frozenset({"-1000", "-1001", "-1006", "-1007"}),
    timeout_codes=frozenset({"-1007"}),
    rate_limits=(
        ("REQUEST_WEIGHT", 60.0, 2400),
        ("ORDERS", 60.0, 1200),
        ("ORDERS", 10.0, 300),
    ),
    # Binance's documented weights (USD-M "Limits" and each endpoint's "Weight").
    request_weights=_ro(
        {
            ("GET", "/fapi/v1/exchangeInfo"): (1, 1),
            ("GET", "/fapi/v1/premiumIndex"): (1, 10),
            ("GET", "/fapi/v1/ticker/price"): (1, 2),
            ("GET", "/fapi/v1/ticker/24hr"): (1, 40),
            ("GET", "/fapi/v1/userTrades"): (5, 5),
            ("GET", "/fapi/v1/allOrders"): (5, 5),
            ("GET", "/fapi/v1/commissionRate"): (20, 20),
            ("GET", "/fapi/v1/symbolConfig"): (5, 5),
            ("GET", "/fapi/v1/positionSide/dual"): (30, 30),
            ("GET", "/fapi/v1/multiAssetsMargin"): (30, 30),
            ("POST", "/fapi/v1/order"): (0, 0),
            ("POST", "/fapi/v1/algoOrder"): (0, 0),
            ("GET", "/fapi/v1/openOrders"): (1, 40),
            ("GET", "/fapi/v1/openAlgoOrders"): (1, 40),
            ("GET", "/fapi/v2/positionRisk"): (5, 5),
            ("GET", "/fapi/v3/positionRisk"): (5, 5),
            ("GET", "/fapi/v2/account"): (5, 5),
            ("GET", "/fapi/v3/account"): (5, 5),
            ("GET", "/fapi/v2/balance"): (5, 5),
            ("GET", "/fapi/v3/balance"): (5, 5),
        }
    ),
    order_endpoints=frozenset({("POST", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder")}),
    listen_key_calls=("fapiPrivatePostListenKey", "fapiPrivatePutListenKey"),
    listen_key_missing_code=-1125,
)

_BYBIT_STATUSES = {
    # Bybit v5 ``orderStatus`` (upper-cased); plain and conditional orders alike.
    "CREATED": ExchangeStatus.NEW,
    "NEW": ExchangeStatus.NEW,
    "ACTIVE": ExchangeStatus.NEW,
    "PENDINGCANCEL": ExchangeStatus.NEW,
    "PARTIALLYFILLED": ExchangeStatus.PARTIALLY_FILLED,
    # a conditional order waiting for its trigger, then triggered (same id to the fill)
    "UNTRIGGERED": ExchangeStatus.NEW,
    "TRIGGERED": ExchangeStatus.TRIGGERED,
    "FILLED": ExchangeStatus.FILLED,
    "CANCELLED": ExchangeStatus.CANCELED,
    "CANCELED": ExchangeStatus.CANCELED,
    # a conditional order cancelled before its trigger
    "DEACTIVATED": ExchangeStatus.CANCELED,
    # the rest of a partly filled order cancelled (a market order's IOC remainder)
    "PARTIALLYFILLEDCANCELED": ExchangeStatus.CANCELED,
    "REJECTED": ExchangeStatus.REJECTED,
}

#: Bybit's v5 base URL paths: every ccxt API section is the host itself (paths are
#: ``/v5/...``), and these five are all ccxt's bybit has.
_BYBIT_API_KEYS = ("spot", "futures", "v2", "public", "private")

BYBIT_LINEAR = Venue(
    name="bybit",
    ccxt_class="bybit",
    # Issue 17's options: linear markets only, and a unified account (UTA 2.0) declared so
    # ccxt asks neither /v5/user/query-api nor /v5/account/info before the first order.
    options=_ro(
        {
            "defaultType": "swap",
            "defaultSubType": "linear",
            "defaultSettle": "USDT",
            "fetchMarkets": {"types": ["linear"]},
            "enableUnifiedAccount": True,
            "enableUnifiedMargin": False,
            "unifiedMarginStatus": 6,
        }
    ),
    url_paths=_ro({key: "" for key in _BYBIT_API_KEYS}),
    error_table=None,
    has_overrides=_ro({"fetchCurrencies": False}),
    # ccxt's bybit forwards unknown params as they are: the wire's names throughout.
    client_id_param="orderLinkId",
    reduce_only_param="reduceOnly",
    # ccxt turns stopLossPrice into triggerPrice + triggerDirection (2 for a sell, 1 for a
    # buy) + reduceOnly; the stop triggers on the mark price, as the local guard watches.
    stop_loss_param="stopLossPrice",
    stop_order_params=_ro({"triggerBy": "MarkPrice"}),
    # Bybit's closePosition: qty "0" + reduceOnly + closeOnTrigger (ccxt leaves qty out for
    # an amount of 0, so it goes in as a param).
    close_position_params=_ro({"qty": "0", "reduceOnly": True, "closeOnTrigger": True}),
    close_position_amount=0.0,
    trigger_flag=_ro({"trigger": True}),
    # /v5/order/cancel serves plain and conditional orders alike (ccxt would send the flag).
    cancel_trigger_flag=_ro({}),
    plain_orders_filter=_ro({"orderFilter": "Order"}),
    # fetch_order on a unified account sees only the last 500 orders (and needs
    # acknowledged=True): open orders first, the latest closed ones (real time), then the
    # order history (every order, but Bybit says it may lag behind). Open first: an order
    # only ever goes from open to closed, so one that closes between two calls is still
    # found by the second (closed first could miss it; it would save a request per fill).
    lookup_calls=(
        ("fetch_open_orders", _ro({})),
        ("fetch_open_orders", _ro({"openOnly": 1})),
        ("fetch_canceled_and_closed_orders", _ro({})),
    ),
    list_page_size=50,
    list_cursor=("nextPageCursor", "cursor"),
    # /v5/position/list: at most 200 a page (ccxt asks limit=200), nextPageCursor after.
    positions_page_size=200,
    mark_price_call="fetch_ticker",
    lookup_after_place=True,
    market_max_qty_path=("lotSizeFilter", "maxMktOrderQty"),
    status_fields=("orderStatus",),
    filled_fields=("cumExecQty",),
    avg_price_fields=("avgPrice",),
    id_fields=("orderId",),
    time_fields=("updatedTime", "createdTime"),
    order_type_fields=("stopOrderType",),
    stop_loss_type="STOP",
    statuses=_ro(_BYBIT_STATUSES),
    error_code_fields=("retCode", "ret_code"),
    duplicate_codes=frozenset({"110072"}),
    would_trigger_codes=frozenset({"110092", "110093"}),
    reduce_only_codes=frozenset({"110017"}),
    insufficient_codes=frozenset(
        {"110004", "110006", "110007", "110012", "110044", "110045", "110051", "110052"}
    ),
    # 10016 "System error" (ccxt: ExchangeError; its "Request timeout" twin is ccxt's
    # RequestTimeout: unknown), 10429 system-level frequency protection, 10006/10018 rate.
    busy_codes=frozenset({"10006", "10016", "10018", "10429"}),
    # "Server Timeout": whether the request was executed is not known.
    unknown_codes=frozenset({"10000", "5004"}),
    rate_limit_statuses=frozenset({403, 429}),
    status_backoff_s=_ro({403: 600.0}),
    rate_limit_codes=frozenset({"10006", "10018"}),
    retry_after_header="Retry-After",
    reset_header="X-Bapi-Limit-Reset-Timestamp",
    server_time_header="Timenow",
    # Bybit v5 "Rate Limit": 600 requests per 5 s per IP (every request counts 1), and per
    # UID per endpoint per second: /v5/order/create 10 (the ORDERS limit here), cancel 10,
    # the order, position and wallet queries 50 each (not modelled: a 10006 on them
    # is honoured by its reset timestamp).
    rate_limits=(
        ("REQUEST_WEIGHT", 5.0, 600),
        ("ORDERS", 1.0, 10),
    ),
    order_endpoints=frozenset({("POST", "/v5/order/create")}),
    order_usage_headers=("X-Bapi-Limit", "X-Bapi-Limit-Status", 1.0),
    api_roots=("/v5/",),
)

VENUES: Mapping[str, Venue] = MappingProxyType(
    {BINANCE_USDM.name: BINANCE_USDM, BYBIT_LINEAR.name: BYBIT_LINEAR}
)
"""Known venues by name (``VenueConfig.venue``)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key pair. Its repr never shows the secret (nor the whole key)."""

    api_key: str
    secret: str

    def __repr__(self) -> str:
        shown = self.api_key[:4] + "…" if len(self.api_key) > 8 else "…"
        return f"Credentials(api_key={shown}, secret=***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class VenueConfig:
    """One account's exchange configuration.

    ``venue``: a key of :data:`VENUES` (``binanceusdm``, ``bybit``; an account's
    ``exchange`` in the configuration).
    ``base_url``: ``None`` keeps ccxt's production URLs; ``http://127.0.0.1:<port>`` points at
    ``sim/`` (``sim.bybit`` for ``bybit``); ``https://testnet.binancefuture.com`` at Binance's
    futures testnet, ``https://api-testnet.bybit.com`` at Bybit's. The adapter
    replaces ``urls["api"]`` with :attr:`Venue.url_paths` under that base.

    Credentials: ``api_credentials`` when given (the process wiring passes the pair the
    configuration resolved), else from the environment: ``<prefix>_API_KEY`` and
    ``<prefix>_API_SECRET`` with ``prefix = credentials_env_prefix`` or ``PS_<ACCOUNT>``
    (``PS_MAIN_API_KEY`` for account ``main``). With ``require_credentials=False`` (tests,
    the demo against ``sim/``) missing variables give the dummy pair
    (:data:`infra.config.DUMMY_API_KEY`) instead of an error.

    ``enable_rate_limit``: the account's limiter (:mod:`infra.exchange.limits`): the
    exchange's own limits (request weight, order counts; read from ``exchangeInfo``,
    corrected by its usage headers, a 429's ``Retry-After`` honoured), shared by all threads
    of the account, protective orders first; ``limiter_reserve`` is the share of each limit
    kept for them. A request waits at most ``entry_max_wait_s`` (entries),
    ``resolve_max_wait_s`` (lookups of entries, reference prices) or ``timeout_s`` (the
    rest) for room, else it is refused ``rate_limited`` without being sent. ccxt's own
    throttle (``rateLimit`` × cost between any two requests) is never used. False: no
    limiter at all (tests against ``sim/``). ``timeout_s`` bounds each HTTP request;
    a request that runs out is an UNKNOWN outcome, never re-sent. ``retry_after_s`` is the
    back-off reported when the exchange asked to slow down without saying how long.
    """

    venue: str = BINANCE_USDM.name
    base_url: str | None = None
    enable_rate_limit: bool = True
    limiter_reserve: float = 0.2
    entry_max_wait_s: float = 3.0
    resolve_max_wait_s: float = 5.0
    timeout_s: float = 10.0
    recv_window_ms: int | None = None
    markets_attempts: int = 3
    markets_retry_delay_s: float = 0.5
    retry_after_s: float = 1.0
    credentials_env_prefix: str | None = None
    require_credentials: bool = True
    extra_options: Mapping[str, object] = field(default_factory=dict)
    api_credentials: Credentials | None = field(default=None, repr=False)

    def resolve_venue(self) -> Venue:
        try:
            return VENUES[self.venue]
        except KeyError:
            raise ConfigError(
                "venue", f"unknown venue {self.venue!r}; known: {sorted(VENUES)}"
            ) from None

    def credentials(self, account: str, environ: Mapping[str, str] | None = None) -> Credentials:
        """The account's key pair: :attr:`api_credentials`, else read from the environment
        (names in the class docstring; :func:`infra.config.read_credentials`)."""
        if self.api_credentials is not None:
            return self.api_credentials
        prefix = self.credentials_env_prefix or env_prefix(account)
        key, secret = read_credentials(
            f"{prefix}_API_KEY",
            f"{prefix}_API_SECRET",
            os.environ if environ is None else environ,
            where=f"account {account!r}",
            required=self.require_credentials,
        )
        return Credentials(key, secret)
