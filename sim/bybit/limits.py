"""Bybit v5 request limits: per account (UID) and endpoint per second, and the IP limit.

Pure bookkeeping, thread-safe (one lock); the Bybit gateway calls
:meth:`BybitLimitBook.charge` for every ``/v5`` request before anything else happens.

The model (Bybit's v5 documentation, "Rate Limit"):

* each private endpoint has a limit per UID per second over a rolling window
  (:data:`BYBIT_V5`: ``/v5/order/create`` and ``/v5/order/cancel`` 10/s for linear,
  ``/v5/order/realtime``, ``/v5/order/history``, ``/v5/position/list``,
  ``/v5/execution/list`` 50/s, ``/v5/account/wallet-balance`` 50/s); public market data has
  none of its own;
* every ``/v5`` request counts against the IP limit, 600 requests per rolling 5 s;
* every reply of a limited endpoint carries ``X-Bapi-Limit`` (the endpoint's limit),
  ``X-Bapi-Limit-Status`` (what is left, this request included) and
  ``X-Bapi-Limit-Reset-Timestamp`` (when a refused caller may retry; otherwise now);
* over an endpoint's limit, when enforced, the request is refused before it is processed:
  HTTP 200 with ``retCode`` 10006 "Too many visits!" (ccxt RateLimitExceeded), not counted;
  over the IP limit: HTTP 403 "access too frequent" (Bybit then bans the IP for 10 minutes:
  not modelled, the next window is served).

Enforcement is the same switch as Binance's (``enforce``; control ``/_sim/config``).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from sim.limits import LimitBook

__all__ = ["BYBIT_V5", "IP_LIMIT", "IP_WINDOW_MS", "BybitCharge", "BybitLimitBook"]

BYBIT_V5: dict[tuple[str, str], int] = {
    ("POST", "/v5/order/create"): 10,
    ("POST", "/v5/order/cancel"): 10,
    ("POST", "/v5/order/amend"): 10,
    ("POST", "/v5/order/cancel-all"): 10,
    ("GET", "/v5/order/realtime"): 50,
    ("GET", "/v5/order/history"): 50,
    ("GET", "/v5/execution/list"): 50,
    ("GET", "/v5/position/list"): 50,
    ("POST", "/v5/position/set-leverage"): 10,
    ("GET", "/v5/account/wallet-balance"): 50,
    ("GET", "/v5/account/info"): 50,
}
"""Requests per second per account of each limited endpoint (Bybit's default tier)."""

IP_LIMIT = 600
IP_WINDOW_MS = 5_000
WINDOW_MS = 1_000


@dataclass(frozen=True)
class BybitCharge:
    """What :meth:`BybitLimitBook.charge` decided for one request.

    ``refused``: "endpoint" (retCode 10006) or "ip" (HTTP 403), else None.
    ``headers``: the usage headers for the reply.
    """

    headers: list[tuple[str, str]]
    refused: str | None = None


class BybitLimitBook(LimitBook):
    """Rolling-window counters per (account, endpoint), and the IP window (thread-safe).

    A :class:`sim.limits.LimitBook` to the control API (``enforce``, ``snapshot``, ``reset``),
    with Bybit's model inside.
    """

    def __init__(
        self, limits: dict[tuple[str, str], int] | None = None, enforce: bool = False
    ) -> None:
        super().__init__((), enforce)
        self.per_endpoint = dict(limits if limits is not None else BYBIT_V5)
        self._block = threading.Lock()
        self._hits: dict[tuple[str, str, str], deque[int]] = {}
        self._ip: deque[int] = deque()
        self.refused_by: dict[str, int] = {}
        self.peak_by: dict[str, int] = {}

    def reset(self) -> None:
        super().reset()
        with self._block:
            self._hits.clear()
            self._ip.clear()
            self.refused_by.clear()
            self.peak_by.clear()

    def charge_request(self, account: str, method: str, path: str, now_ms: int) -> BybitCharge:
        """Count one request of ``account`` (or refuse it, when enforcing)."""
        limit = self.per_endpoint.get((method, path))
        route = f"{method} {path}"
        with self._block:
            while self._ip and self._ip[0] <= now_ms - IP_WINDOW_MS:
                self._ip.popleft()
            hits: deque[int] | None = None
            if limit is not None:
                hits = self._hits.setdefault((account, method, path), deque())
                while hits and hits[0] <= now_ms - WINDOW_MS:
                    hits.popleft()
            if self.enforce and len(self._ip) >= IP_LIMIT:
                self.refused_by["ip"] = self.refused_by.get("ip", 0) + 1
                return BybitCharge([], "ip")
            if hits is not None and limit is not None and self.enforce and len(hits) >= limit:
                self.refused_by[route] = self.refused_by.get(route, 0) + 1
                reset = hits[0] + WINDOW_MS
                return BybitCharge(self._usage_headers(limit, 0, reset), "endpoint")
            self._ip.append(now_ms)
            self.requests += 1
            self.by_path[route] = self.by_path.get(route, 0) + 1
            if path == "/v5/order/create":
                self.orders += 1
            if hits is None or limit is None:
                return BybitCharge([])
            hits.append(now_ms)
            if len(hits) > self.peak_by.get(route, 0):
                self.peak_by[route] = len(hits)
            return BybitCharge(self._usage_headers(limit, max(0, limit - len(hits)), now_ms))

    @staticmethod
    def _usage_headers(limit: int, left: int, reset_ms: int) -> list[tuple[str, str]]:
        return [
            ("X-Bapi-Limit", str(limit)),
            ("X-Bapi-Limit-Status", str(left)),
            ("X-Bapi-Limit-Reset-Timestamp", str(reset_ms)),
        ]

    def snapshot(self) -> dict[str, Any]:
        """Counters for the control API: enforce, limits, refusals, peaks, totals."""
        with self._block:
            return {
                "enforce": self.enforce,
                "limits": {f"{m} {p}": n for (m, p), n in self.per_endpoint.items()},
                "ip_limit": {"requests": IP_LIMIT, "window_ms": IP_WINDOW_MS},
                "refused": dict(self.refused_by),
                "refused_total": sum(self.refused_by.values()),
                "peak": dict(self.peak_by),
                "requests": self.requests,
                "orders": self.orders,
                "by_path": dict(self.by_path),
            }
