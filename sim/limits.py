"""Binance USD-M request limits: request weight per minute, order counts per 10 s and minute.

Pure bookkeeping, thread-safe (one lock); the gateway calls :meth:`LimitBook.charge` for every
``/fapi`` request before anything else happens.

The model (Binance's documentation for USD-M futures, "Limits"):

* the limits are the ``rateLimits`` that ``exchangeInfo`` publishes (:data:`BINANCE_USDM`:
  ``REQUEST_WEIGHT`` 2,400 per minute, ``ORDERS`` 300 per 10 seconds and 1,200 per minute);
* every request costs its endpoint's weight (:func:`weight_of`: Binance's published weights,
  e.g. 1 for a lookup or a cancel, 5 for ``positionRisk``, 40 for ``openOrders`` without a
  symbol); placing an order (``POST /fapi/v1/order``, ``POST /fapi/v1/algoOrder``) costs 0
  weight and counts 1 against each ``ORDERS`` limit;
* counters are per fixed window, aligned to the clock (``[k·W, (k+1)·W)``), and reset when
  the next window starts (so one account — the sim has one — sees one set of counters);
* a request that would take a counter over its limit is refused *before* it is processed,
  HTTP 429 with ``Retry-After`` (whole seconds until that window ends) and Binance's body
  (-1003 for weight, -1015 for orders), and is not counted;
* every ``/fapi`` reply carries ``X-MBX-USED-WEIGHT-1M`` (the weight used in the current
  minute, this request included); order placements also ``X-MBX-ORDER-COUNT-10S`` and
  ``X-MBX-ORDER-COUNT-1M``.

Enforcement is a switch (``SimExchange(enforce_rate_limits=True)``, ``python -m sim
--rate-limits``, control ``/_sim/config``): without it the counters and headers are the same
but nothing is refused, so tests that poll fast keep working. Binance's 418 IP ban after
repeated 429s is not modelled.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BINANCE_USDM",
    "Charge",
    "LimitBook",
    "RateLimit",
    "order_endpoint",
    "weight_of",
]

_INTERVAL_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_LETTER = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}


@dataclass(frozen=True)
class RateLimit:
    """One entry of ``exchangeInfo.rateLimits``."""

    kind: str  # "REQUEST_WEIGHT" or "ORDERS"
    interval: str  # "SECOND", "MINUTE", "HOUR", "DAY"
    interval_num: int
    limit: int

    def __post_init__(self) -> None:
        if self.kind not in ("REQUEST_WEIGHT", "ORDERS"):
            raise ValueError(f"unknown rate limit type {self.kind!r}")
        if self.interval not in _INTERVAL_MS:
            raise ValueError(f"unknown interval {self.interval!r}")
        if self.interval_num < 1 or self.limit < 1:
            raise ValueError("interval_num and limit must be >= 1")

    @property
    def window_ms(self) -> int:
        return _INTERVAL_MS[self.interval] * self.interval_num

    @property
    def header(self) -> str:
        """``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S``."""
        what = "USED-WEIGHT" if self.kind == "REQUEST_WEIGHT" else "ORDER-COUNT"
        return f"X-MBX-{what}-{self.interval_num}{_LETTER[self.interval]}"

    def to_json(self) -> dict[str, Any]:
        """As ``exchangeInfo`` publishes it."""
        return {
            "rateLimitType": self.kind,
            "interval": self.interval,
            "intervalNum": self.interval_num,
            "limit": self.limit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RateLimit:
        return cls(
            str(data["rateLimitType"]),
            str(data["interval"]),
            int(data["intervalNum"]),
            int(data["limit"]),
        )


BINANCE_USDM: tuple[RateLimit, ...] = (
    RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 2400),
    RateLimit("ORDERS", "MINUTE", 1, 1200),
    RateLimit("ORDERS", "SECOND", 10, 300),
)
"""What Binance USD-M publishes (and enforces per account)."""

# (method, path) -> (weight with a symbol, weight without one); Binance's USD-M weights.
_WEIGHTS: dict[tuple[str, str], tuple[int, int]] = {
    ("GET", "/fapi/v1/ping"): (1, 1),
    ("GET", "/fapi/v1/time"): (1, 1),
    ("GET", "/fapi/v1/exchangeInfo"): (1, 1),
    ("GET", "/fapi/v1/premiumIndex"): (1, 10),
    ("GET", "/fapi/v1/ticker/price"): (1, 2),
    ("GET", "/fapi/v1/ticker/24hr"): (1, 40),
    ("GET", "/fapi/v1/depth"): (2, 2),
    ("GET", "/fapi/v1/userTrades"): (5, 5),
    ("GET", "/fapi/v1/allOrders"): (5, 5),
    ("GET", "/fapi/v1/symbolConfig"): (5, 5),
    ("GET", "/fapi/v1/commissionRate"): (20, 20),
    ("POST", "/fapi/v1/marginType"): (1, 1),
    ("POST", "/fapi/v1/positionSide/dual"): (1, 1),
    ("GET", "/fapi/v1/positionSide/dual"): (30, 30),
    ("GET", "/fapi/v1/multiAssetsMargin"): (30, 30),
    ("POST", "/fapi/v1/order"): (0, 0),
    ("GET", "/fapi/v1/order"): (1, 1),
    ("DELETE", "/fapi/v1/order"): (1, 1),
    ("GET", "/fapi/v1/openOrders"): (1, 40),
    ("DELETE", "/fapi/v1/allOpenOrders"): (1, 1),
    ("POST", "/fapi/v1/algoOrder"): (0, 0),
    ("GET", "/fapi/v1/algoOrder"): (1, 1),
    ("DELETE", "/fapi/v1/algoOrder"): (1, 1),
    ("GET", "/fapi/v1/openAlgoOrders"): (1, 40),
    ("DELETE", "/fapi/v1/algoOpenOrders"): (1, 1),
    ("GET", "/fapi/v1/leverageBracket"): (1, 1),
    ("POST", "/fapi/v1/leverage"): (1, 1),
    ("GET", "/fapi/v2/positionRisk"): (5, 5),
    ("GET", "/fapi/v3/positionRisk"): (5, 5),
    ("GET", "/fapi/v2/account"): (5, 5),
    ("GET", "/fapi/v3/account"): (5, 5),
    ("GET", "/fapi/v2/balance"): (5, 5),
    ("GET", "/fapi/v3/balance"): (5, 5),
    ("POST", "/fapi/v1/listenKey"): (1, 1),
    ("PUT", "/fapi/v1/listenKey"): (1, 1),
    ("DELETE", "/fapi/v1/listenKey"): (1, 1),
}

_ORDER_ENDPOINTS = frozenset({("POST", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder")})


def weight_of(method: str, path: str, params: dict[str, str]) -> int:
    """The request weight of one request (1 for an endpoint not in the table)."""
    with_symbol, without = _WEIGHTS.get((method, path), (1, 1))
    return with_symbol if params.get("symbol") else without


def order_endpoint(method: str, path: str) -> bool:
    """True for the requests that count against the ``ORDERS`` limits."""
    return (method, path) in _ORDER_ENDPOINTS


@dataclass(frozen=True)
class Charge:
    """What :meth:`LimitBook.charge` decided for one request.

    ``refused``: the limit that would be exceeded (the request must be answered 429 and
    not processed), else None. ``headers``: the usage headers for the reply.
    """

    headers: list[tuple[str, str]]
    refused: RateLimit | None = None
    retry_after_s: int = 0

    def body(self) -> dict[str, object]:
        """Binance's 429 body for the refused limit."""
        lim = self.refused
        assert lim is not None
        if lim.kind == "ORDERS":
            span = {10_000: "TEN_SECONDS", 60_000: "MINUTE"}.get(lim.window_ms, lim.interval)
            return {
                "code": -1015,
                "msg": f"Too many new orders; current limit is {lim.limit} orders per {span}.",
            }
        return {
            "code": -1003,
            "msg": (
                f"Too many requests; current limit is {lim.limit} requests per minute."
                " Please use the websocket for live updates to avoid polling the API."
            ),
        }


class LimitBook:
    """Fixed-window counters of one account (thread-safe). See the module docstring."""

    def __init__(self, limits: tuple[RateLimit, ...] = BINANCE_USDM, enforce: bool = False) -> None:
        self._lock = threading.Lock()
        self.limits = tuple(limits)
        self.enforce = enforce
        self._window: dict[RateLimit, int] = {}
        self._used: dict[RateLimit, int] = {}
        #: 429 answers given, by limit header name; peak usage per window by header name.
        self.refused: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.requests = 0
        self.orders = 0
        #: Requests counted, by "METHOD /path".
        self.by_path: dict[str, int] = {}

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._used.clear()
            self.refused.clear()
            self.peak.clear()
            self.by_path.clear()
            self.requests = 0
            self.orders = 0

    def _current(self, lim: RateLimit, now_ms: int) -> int:
        start = now_ms // lim.window_ms * lim.window_ms
        if self._window.get(lim) != start:
            self._window[lim] = start
            self._used[lim] = 0
        return self._used[lim]

    def charge(self, method: str, path: str, params: dict[str, str], now_ms: int) -> Charge:
        """Count one request (or refuse it, when enforcing and it would exceed a limit)."""
        weight = weight_of(method, path, params)
        orders = 1 if order_endpoint(method, path) else 0
        with self._lock:
            costs: list[tuple[RateLimit, int]] = []
            for lim in self.limits:
                cost = weight if lim.kind == "REQUEST_WEIGHT" else orders
                costs.append((lim, cost))
                used = self._current(lim, now_ms)
                if self.enforce and cost > 0 and used + cost > lim.limit:
                    self.refused[lim.header] = self.refused.get(lim.header, 0) + 1
                    ends = (now_ms // lim.window_ms + 1) * lim.window_ms
                    retry = max(1, math.ceil((ends - now_ms) / 1000))
                    return Charge(self._headers(orders > 0), lim, retry)
            self.requests += 1
            self.orders += orders
            route = f"{method} {path}"
            self.by_path[route] = self.by_path.get(route, 0) + 1
            for lim, cost in costs:
                self._used[lim] += cost
                used = self._used[lim]
                if used > self.peak.get(lim.header, 0):
                    self.peak[lim.header] = used
            return Charge(self._headers(orders > 0))

    def _headers(self, order: bool) -> list[tuple[str, str]]:
        return [
            (lim.header, str(self._used.get(lim, 0)))
            for lim in self.limits
            if lim.kind == "REQUEST_WEIGHT" or order
        ]

    def snapshot(self) -> dict[str, Any]:
        """Counters for the control API: enforce, limits, 429s, peaks, totals."""
        with self._lock:
            return {
                "enforce": self.enforce,
                "limits": [lim.to_json() for lim in self.limits],
                "refused": dict(self.refused),
                "refused_total": sum(self.refused.values()),
                "peak": dict(self.peak),
                "requests": self.requests,
                "orders": self.orders,
                "by_path": dict(self.by_path),
            }
