"""Fault injection: what can go wrong, where, and how many times.

A ``Fault`` is armed on a ``FaultBoard`` (from Python or the control API) and fires on
matching requests until its ``count`` runs out (``None`` = until cleared). The board is
thread-safe: HTTP handler threads ``take`` faults concurrently with test threads arming
and clearing them. The exchange decides what each kind does (see ``sim/README.md``).
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

KINDS = {
    "latency": "delay the request before acting (latency_s, or uniform latency_s..latency_max_s)",
    "http_502": "reply HTTP 502 before acting (nothing happens)",
    "http_503": "act, then reply HTTP 503 {code: -1007}: the order IS placed",
    "http_429": "reply HTTP 429 with Retry-After before acting",
    "busy": (
        "reply HTTP 503 {code: -1008} (server overloaded) with Retry-After: retry_after_s"
        " before acting (nothing happens)"
    ),
    "timeout": "act, then hold the reply hold_s seconds, or close without reply if close=true",
    "reject_2019": "reject an order with -2019 (margin insufficient) without acting",
    "not_found": "order lookups by id/client id answer -2013 although the order exists",
    "partial_fill": (
        "market orders fill in `parts` parts; the REST reply shows the first,"
        " the rest follow on the user stream every part_interval_s"
    ),
    "error_code": (
        "answer Binance error `code` with HTTP `status` (default 400) and `msg` (default: the"
        " code's Binance message) without acting, or after acting with act=true"
    ),
    "bad_response": (
        "act, then answer HTTP 200 with `msg` as the body (default: JSON that ccxt's"
        " parse_order raises ValueError on)"
    ),
    "lag_open_orders": (
        "open-order lists (GET openOrders / openAlgoOrders) answer the state of lag_s seconds"
        " ago: orders placed since are missing, orders ended since still listed"
    ),
    "reject_on_trigger": (
        "the next conditional order whose trigger is crossed (of `symbol`, if given) is"
        " REJECTED instead of executing (ALGO_UPDATE X=REJECTED, rm=msg); the position stays"
    ),
    "ws_duplicate": "user-stream events are each sent twice (count = events affected)",
    "ws_reorder": "the user-stream events of one operation go out reversed (count = operations)",
}
"""Every fault kind and what it does."""

ORDER_CREATE = (("POST", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder"))
ORDER_LOOKUP = (("GET", "/fapi/v1/order"), ("GET", "/fapi/v1/algoOrder"))
ORDER_CANCEL = (("DELETE", "/fapi/v1/order"), ("DELETE", "/fapi/v1/algoOrder"))
OPEN_ORDER_LISTS = (("GET", "/fapi/v1/openOrders"), ("GET", "/fapi/v1/openAlgoOrders"))
CANCEL_PATHS = ["/fapi/v1/order", "/fapi/v1/algoOrder"]
"""``path`` for faults on both cancel endpoints (with ``method="DELETE"``)."""

# The same roles on the Bybit v5 front (sim.bybit): one endpoint places market and
# conditional orders alike; lookups are the order lists filtered by id.
BYBIT_ORDER_CREATE = (("POST", "/v5/order/create"),)
BYBIT_ORDER_LOOKUP = (("GET", "/v5/order/realtime"), ("GET", "/v5/order/history"))
BYBIT_ORDER_CANCEL = (("POST", "/v5/order/cancel"),)
BYBIT_OPEN_ORDER_LISTS = (("GET", "/v5/order/realtime"),)

DEFAULT_SCOPE: dict[str, tuple[tuple[str, str], ...]] = {
    "reject_2019": ORDER_CREATE + BYBIT_ORDER_CREATE,
    "error_code": ORDER_CREATE + BYBIT_ORDER_CREATE,
    "busy": ORDER_CREATE + BYBIT_ORDER_CREATE,
    "bad_response": ORDER_CREATE + BYBIT_ORDER_CREATE,
    "not_found": ORDER_LOOKUP + BYBIT_ORDER_LOOKUP,
    "partial_fill": (("POST", "/fapi/v1/order"), *BYBIT_ORDER_CREATE),
    "lag_open_orders": OPEN_ORDER_LISTS + BYBIT_OPEN_ORDER_LISTS,
}

EVENT_KINDS = frozenset({"ws_duplicate", "ws_reorder", "reject_on_trigger"})
"""Faults that fire on engine or stream events rather than on a REST request."""
"""Where a fault applies when armed without ``path``/``method`` (others: every /fapi request,
or every /v5 request on the Bybit front)."""


@dataclass
class Fault:
    """One armed fault.

    ``path`` is an exact path or a prefix ending in ``*``, or a list of them (any matches);
    ``method`` an HTTP method; ``symbol`` the request's ``symbol`` parameter (or, for
    ``reject_on_trigger``, the triggered order's symbol); ``client_id`` a shell-style pattern
    (``ps*s*``) of the client order id of a request that places or cancels an order (the
    order log's entry): a fault with one never fires on another request. On Bybit, where one
    endpoint places entries, stops and closes alike, it is how a fault aims at one kind.
    """

    kind: str
    path: str | list[str] | None = None
    method: str | None = None
    symbol: str | None = None
    client_id: str | None = None
    count: int | None = 1
    latency_s: float = 0.0
    latency_max_s: float | None = None
    retry_after_s: int = 1
    hold_s: float = 30.0
    close: bool = False
    parts: int = 2
    part_interval_s: float = 0.02
    code: int = -1000
    status: int = 400
    msg: str | None = None
    act: bool = False
    lag_s: float = 3.0
    id: int = 0
    fired: int = field(default=0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(KINDS)}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1 or None")
        if self.method is not None:
            self.method = self.method.upper()
        if isinstance(self.path, tuple):
            self.path = list(self.path)
        if self.lag_s < 0:
            raise ValueError("lag_s must be >= 0")

    def matches(
        self, method: str, path: str, symbol: str | None = None, client_id: str | None = None
    ) -> bool:
        """Does this fault apply to a ``method`` ``path`` request (for ``symbol``, placing or
        cancelling ``client_id``)?"""
        if self.method is not None and self.method != method:
            return False
        if self.symbol is not None and self.symbol != symbol:
            return False
        if self.client_id is not None and (
            client_id is None or not fnmatch.fnmatchcase(client_id, self.client_id)
        ):
            return False
        if self.path is not None:
            patterns = [self.path] if isinstance(self.path, str) else self.path
            return any(path.startswith(p[:-1]) if p.endswith("*") else path == p for p in patterns)
        scope = DEFAULT_SCOPE.get(self.kind)
        if scope is not None:
            return (method, path) in scope
        return path.startswith(("/fapi/", "/v5/"))

    def delay(self, rng: random.Random) -> float:
        """The latency to apply for a ``latency`` fault."""
        if self.latency_max_s is not None and self.latency_max_s > self.latency_s:
            return rng.uniform(self.latency_s, self.latency_max_s)
        return self.latency_s

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Build from a dict (control API); unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)} - {"id", "fired"}
        extra = set(data) - names
        if extra:
            raise ValueError(f"unknown fault fields {sorted(extra)}")
        return cls(**data)


class FaultBoard:
    """The armed faults of one exchange. Thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 0
        self.rng = random.Random(seed)

    def add(self, fault: Fault) -> int:
        """Arm ``fault``; returns its id."""
        with self._lock:
            self._next_id += 1
            fault.id = self._next_id
            self._faults.append(fault)
            return fault.id

    def clear(self, kind: str | None = None, fault_id: int | None = None) -> int:
        """Disarm faults (all, of one kind, or one id); returns how many were removed."""
        with self._lock:
            keep = [
                f
                for f in self._faults
                if not ((kind is None or f.kind == kind) and (fault_id is None or f.id == fault_id))
            ]
            removed = len(self._faults) - len(keep)
            self._faults = keep
            return removed

    def list(self) -> list[Fault]:
        """Armed faults (copies)."""
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    def take(
        self,
        kind: str,
        method: str,
        path: str,
        symbol: str | None = None,
        client_id: str | None = None,
    ) -> Fault | None:
        """Fire the first armed ``kind`` fault matching the request, or return None.

        Firing counts down ``count``; a spent fault is removed. Returns a copy.
        """
        with self._lock:
            for f in self._faults:
                if f.kind == kind and f.matches(method, path, symbol, client_id):
                    return self._fire(f)
        return None

    def take_stream(self, kind: str, symbol: str | None = None) -> Fault | None:
        """Fire the first armed event fault (``ws_*``, ``reject_on_trigger``) of ``kind``.

        A fault armed with a ``symbol`` fires only for events of that symbol.
        """
        with self._lock:
            for f in self._faults:
                if f.kind == kind and (f.symbol is None or f.symbol == symbol):
                    return self._fire(f)
        return None

    def _fire(self, f: Fault) -> Fault:
        f.fired += 1
        if f.count is not None:
            f.count -= 1
            if f.count <= 0:
                self._faults.remove(f)
        return Fault(**asdict(f)) if f.count is None or f.count > 0 else f
