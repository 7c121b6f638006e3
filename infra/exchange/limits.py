"""The account's request limiter: the exchange's own limits, modelled, protection first.

Binance USD-M limits every account to a request *weight* per minute and to a number of
*orders* per 10 s and per minute; it publishes them in ``exchangeInfo.rateLimits``, reports
the usage in reply headers (``X-MBX-USED-WEIGHT-1M``, ``X-MBX-ORDER-COUNT-10S``,
``X-MBX-ORDER-COUNT-1M``) and answers 429 with ``Retry-After`` beyond them (repeated 429s
lead to an IP ban, 418). ccxt's own throttle knows none of this: it spaces *every* request
by ``rateLimit`` × cost (a Binance order: 50 ms × 4), so a stop-loss waits 200 ms behind the
entry before it, and a burst the exchange would take at once is spread over seconds.

Bybit v5 limits each account per endpoint per second (``/v5/order/create`` 10/s) and each
IP to 600 requests per 5 s; modelled here as an ``ORDERS`` limit of 10 per 1 s counting the
order creations and a ``REQUEST_WEIGHT`` limit of 600 per 5 s counting every request (the
venue's :attr:`~infra.exchange.venues.Venue.rate_limits`). An order reply states the
endpoint's limit and what is left (``X-Bapi-Limit``, ``X-Bapi-Limit-Status``:
:meth:`AccountLimiter.correct`); over it, retCode 10006 in an HTTP 200 reply with
``X-Bapi-Limit-Reset-Timestamp`` (HTTP 403 for the IP limit).

:class:`AccountLimiter` replaces it for one account (one per
:class:`~infra.exchange.pool.ClientPool`, i.e. per adapter, shared by the account's threads
and every call their clients make, the user stream's listen key included):

* **The limits** are the venue's published defaults until the exchange's ``exchangeInfo``
  is read (:meth:`AccountLimiter.configure`, called when the markets load).
* **Each request** reserves its cost (:class:`Cost`: weight, orders) before it leaves, in a
  sliding window per limit. A sliding window that never exceeds the limit keeps every
  fixed window of the exchange under it too; the window is counted a little longer than
  the exchange's (``slack_s``, 0.25 s) so that network jitter cannot squeeze more than a
  window's worth into one of the exchange's. A request that fits goes at once: a burst the
  limits allow is not spread.
* **Protection first.** Callers give a :class:`Priority`. Stop-losses, take-profits, closes
  and cancels (``PROTECT``) may use the whole budget; the sync's reads (``READ``)
  ``1 - 2 * reserve`` of each limit (60 %), everything else ``1 - reserve`` (80 %), so a
  stop finds room however many entries, lookups or sync reads came first, and a storm of
  sync rounds (every recovering actor asks for one) cannot starve the lookups that resolve
  entries of unknown outcome. Waiting requests are served in priority order (then
  first come, first served) on every limit they share.
* **Corrected by the exchange.** Each reply's usage headers say how much the exchange has
  counted in its current window; if that is more than this limiter holds in its window
  (another process on the same account or IP, a weight we estimated too low), the
  difference is added as usage now. A 429 or 418 (Bybit: a 10006, a 403) stops *every*
  request until its ``Retry-After`` (Bybit: its reset timestamp) has passed (sending on
  would turn 429s into a ban).
* **Bounded waits.** A request that could not go within its ``max_wait_s`` is refused at
  once with :class:`RateBudgetExhausted` (nothing sent; the adapter reports
  ``rate_limited`` with the expected wait as ``retry_after``).

Thread-safe: one lock and condition; requests wait outside nothing else. Never raises but
:class:`RateBudgetExhausted`.

One job (the limiter and its vocabulary: limits, costs, priorities, stats), kept whole at
about 400 lines; splitting the windows from the waiters would only spread one lock's
invariants over two modules.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "AccountLimiter",
    "Cost",
    "Limit",
    "Priority",
    "RateBudgetExhausted",
    "limits_from_exchange_info",
]

log = logging.getLogger(__name__)

_INTERVAL_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
_HEADER_RE = re.compile(r"^x-mbx-(used-weight|order-count)-(\d+)([smhd])$")
_LETTER_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Priority(enum.IntEnum):
    """Who waits for whom when the budget is short (lower goes first)."""

    PROTECT = 0  # stop-loss, take-profit, close, cancel, lookups of those
    RESOLVE = 1  # lookups of entries of unknown outcome, an entry's reference price
    READ = 2  # the sync's reads, the markets
    ENTRY = 3  # placing an entry


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: ``kind`` ``REQUEST_WEIGHT`` or ``ORDERS``, ``limit`` per ``window_s``."""

    kind: str
    window_s: float
    limit: int

    @property
    def header(self) -> str:
        """The usage header that reports it, lower case (``x-mbx-used-weight-1m``)."""
        what = "used-weight" if self.kind == "REQUEST_WEIGHT" else "order-count"
        for unit, letter in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
            if self.window_s % letter == 0:
                return f"x-mbx-{what}-{int(self.window_s // letter)}{unit}"
        return f"x-mbx-{what}-{int(self.window_s)}s"


def limits_from_exchange_info(rate_limits: object) -> tuple[Limit, ...]:
    """The ``REQUEST_WEIGHT`` and ``ORDERS`` limits of ``exchangeInfo.rateLimits``.

    Other types (``RAW_REQUESTS``) are ignored. Raises ``ValueError`` when the list is not
    a list of well-formed entries or holds no usable limit.
    """
    if not isinstance(rate_limits, list):
        raise ValueError("rateLimits is not a list")
    out: list[Limit] = []
    for item in rate_limits:
        if not isinstance(item, Mapping):
            raise ValueError(f"rateLimits entry is not an object: {item!r:.80}")
        kind = item.get("rateLimitType")
        if kind not in ("REQUEST_WEIGHT", "ORDERS"):
            continue
        interval = _INTERVAL_S.get(str(item.get("interval")))
        num = item.get("intervalNum")
        limit = item.get("limit")
        if (
            interval is None
            or not isinstance(num, int)
            or not isinstance(limit, int)
            or num < 1
            or limit < 1
        ):
            raise ValueError(f"malformed rateLimits entry: {dict(item)!r:.120}")
        out.append(Limit(str(kind), interval * num, limit))
    if not out:
        raise ValueError("rateLimits holds no REQUEST_WEIGHT or ORDERS limit")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Cost:
    """What one request counts against the limits."""

    weight: int = 1
    orders: int = 0

    def of(self, limit: Limit) -> int:
        return self.weight if limit.kind == "REQUEST_WEIGHT" else self.orders


class RateBudgetExhausted(Exception):
    """The request could not go within its wait bound; nothing was sent.

    ``retry_after``: seconds until it is expected to fit.
    """

    def __init__(self, retry_after: float, detail: str) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(slots=True)
class _Window:
    """Sliding-window usage of one limit: (monotonic time, amount) entries and their sum."""

    limit: Limit
    span_s: float
    entries: deque[tuple[float, int]] = field(default_factory=deque)
    used: int = 0

    def expire(self, now: float) -> None:
        horizon = now - self.span_s
        entries = self.entries
        while entries and entries[0][0] <= horizon:
            self.used -= entries.popleft()[1]

    def add(self, now: float, amount: int) -> None:
        self.entries.append((now, amount))
        self.used += amount

    def free_at(self, now: float, need: int, cap: int) -> float:
        """Earliest time ``need`` more fits under ``cap`` (``now`` if it fits already)."""
        excess = self.used + need - cap
        if excess <= 0:
            return now
        if need > cap:
            return math.inf
        for t, amount in self.entries:
            excess -= amount
            if excess <= 0:
                return t + self.span_s
        return now  # pragma: no cover - the entries sum to ``used``


@dataclass(order=True, slots=True)
class _Waiter:
    priority: int
    seq: int
    cost: Cost = field(compare=False)


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """Counters since start (for logs, metrics and the benchmarks)."""

    requests: int
    waited: int
    waited_s: float
    max_wait_s: float
    refused: int
    blocked: int
    corrected: int
    usage: Mapping[str, int]


class AccountLimiter:
    """The limiter of one account (see the module docstring). Any thread."""

    def __init__(
        self,
        limits: Iterable[Limit],
        *,
        reserve: float = 0.2,
        slack_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= reserve < 1.0:
            raise ValueError("reserve must be in [0, 1)")
        self.reserve = reserve
        self.slack_s = slack_s
        self._clock = clock
        self._cv = threading.Condition(threading.Lock())
        self._windows: list[_Window] = []
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()
        self._blocked_until = 0.0
        self._requests = 0
        self._waited = 0
        self._waited_s = 0.0
        self._max_wait_s = 0.0
        self._refused = 0
        self._blocked = 0
        self._corrected = 0
        self._closed = False
        self.configure(limits)

    # -- configuration ---------------------------------------------------------------------

    @property
    def limits(self) -> tuple[Limit, ...]:
        return tuple(w.limit for w in self._windows)

    def configure(self, limits: Iterable[Limit]) -> None:
        """Use ``limits`` from now on (the exchange's own, read from ``exchangeInfo``). The
        usage already counted carries over to a limit of the same kind and window."""
        new = tuple(limits)
        if not new:
            raise ValueError("no limits")
        with self._cv:
            old = {(w.limit.kind, w.limit.window_s): w for w in self._windows}
            windows: list[_Window] = []
            for lim in new:
                span = lim.window_s + self.slack_s
                prev = old.get((lim.kind, lim.window_s))
                w = _Window(lim, span)
                if prev is not None:
                    w.entries, w.used = prev.entries, prev.used
                windows.append(w)
            self._windows = windows
            self._cv.notify_all()

    def _cap(self, limit: Limit, priority: int) -> int:
        """How much of ``limit`` a request of ``priority`` may use: protection all of it,
        reads (the sync) ``1 - 2 * reserve``, the rest ``1 - reserve``."""
        if priority == Priority.PROTECT:
            return limit.limit
        share = 1.0 - (2.0 if priority == Priority.READ else 1.0) * self.reserve
        return max(1, math.floor(limit.limit * max(share, 0.0)))

    # -- the request path -------------------------------------------------------------------

    def acquire(self, cost: Cost, priority: Priority, max_wait_s: float) -> float:
        """Reserve ``cost`` for one request about to leave; returns the seconds waited.

        Waits (bounded by ``max_wait_s``) while it does not fit, a request of higher
        priority (or an older one of the same) waits for a limit it also needs, or a
        ``Retry-After`` is running. Raises :class:`RateBudgetExhausted` when it cannot go
        within the bound (decided at once when the expected wait is longer).
        """
        t0 = self._clock()
        with self._cv:
            me = _Waiter(int(priority), next(self._seq), cost)
            self._waiting.append(me)
            self._waiting.sort()
            deadline = t0 + max_wait_s
            held = False  # waited for the budget (not just for a turn at the lock)
            try:
                while True:
                    if self._closed:
                        raise RateBudgetExhausted(1.0, "the exchange adapter is closed")
                    now = self._clock()
                    go_at = self._go_at(me, now)
                    if go_at <= now and self._first_in_line(me, now):
                        self._take(cost, now)
                        break
                    if go_at > deadline or now >= deadline:
                        self._refused += 1
                        wait = max(go_at - now, 0.5)
                        raise RateBudgetExhausted(
                            wait if math.isfinite(wait) else 60.0,
                            f"request budget exhausted for {wait:.1f}s (priority"
                            f" {Priority(me.priority).name.lower()}, bound {max_wait_s:.1f}s)",
                        )
                    # Fits but waits its turn: the one ahead notifies when it goes or leaves.
                    held = held or go_at > now
                    wake = deadline if go_at <= now else min(go_at, deadline)
                    self._cv.wait(max(0.0005, wake - now))
            finally:
                self._waiting.remove(me)
                self._cv.notify_all()
            waited = self._clock() - t0
            self._requests += 1
            if held:
                self._waited += 1
                self._waited_s += waited
                self._max_wait_s = max(self._max_wait_s, waited)
            return waited

    def _go_at(self, me: _Waiter, now: float) -> float:
        """When ``me`` fits on its own: after any Retry-After and every limit has room."""
        at = max(now, self._blocked_until)
        for w in self._windows:
            need = me.cost.of(w.limit)
            if need <= 0:
                continue
            w.expire(now)
            at = max(at, w.free_at(now, need, self._cap(w.limit, me.priority)))
        return at

    def _first_in_line(self, me: _Waiter, now: float) -> bool:
        """No waiter ahead of ``me`` needs a limit ``me`` needs (it would be overtaken)."""
        for other in self._waiting:
            if other is me:
                return True
            for w in self._windows:
                if me.cost.of(w.limit) > 0 and other.cost.of(w.limit) > 0:
                    return False
        return True  # pragma: no cover - ``me`` is in the list

    def _take(self, cost: Cost, now: float) -> None:
        for w in self._windows:
            amount = cost.of(w.limit)
            if amount > 0:
                w.add(now, amount)

    def close(self) -> None:
        """Refuse every waiting and later request at once (the adapter is shutting down)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    # -- what the exchange said --------------------------------------------------------------

    def observe(
        self,
        status: int,
        headers: Mapping[str, str] | None,
        retry_after: float,
        *,
        rate_limited: bool | None = None,
    ) -> None:
        """A reply arrived: correct the usage from its headers; after a refusal for the
        request rate stop every request for ``retry_after`` seconds (the exchange's
        ``Retry-After``, or the time to Bybit's reset timestamp).

        ``rate_limited``: whether the reply is such a refusal, as the venue's rules read it
        (Bybit: retCode 10006 in a 200 reply, or HTTP 403); None: HTTP 418 or 429."""
        now = self._clock()
        refused = status in (418, 429) if rate_limited is None else rate_limited
        with self._cv:
            if refused:
                self._blocked += 1
                until = now + max(0.0, retry_after)
                self._blocked_until = max(self._blocked_until, until)
                log.warning(
                    "exchange refused a request (HTTP %d) for its rate: every request waits %.1fs",
                    status,
                    retry_after,
                )
            if headers:
                for name, value in headers.items():
                    m = _HEADER_RE.match(name.lower())
                    if m is None:
                        continue
                    try:
                        counted = int(str(value).strip())
                    except ValueError:
                        continue
                    kind = "REQUEST_WEIGHT" if m.group(1) == "used-weight" else "ORDERS"
                    span = int(m.group(2)) * _LETTER_S[m.group(3)]
                    self._raise_used(kind, span, counted, now)
            self._cv.notify_all()

    def correct(self, kind: str, window_s: float, counted: int, limit: int | None = None) -> None:
        """The exchange says it has counted ``counted`` against the ``kind`` limit of
        ``window_s`` in its current window (Bybit: ``X-Bapi-Limit`` minus
        ``X-Bapi-Limit-Status`` on an order reply): usage below that is raised to it. A
        ``limit`` other than the one held (the account's tier on the exchange) replaces it.
        Unknown kinds and windows are ignored."""
        if limit is not None and limit > 0:
            current = self.limits
            new = tuple(
                Limit(lim.kind, lim.window_s, limit)
                if (lim.kind, lim.window_s) == (kind, window_s)
                else lim
                for lim in current
            )
            if new != current:
                log.info("exchange states the %s limit: %d per %gs", kind, limit, window_s)
                self.configure(new)
        now = self._clock()
        with self._cv:
            self._raise_used(kind, window_s, counted, now)
            self._cv.notify_all()

    def _raise_used(self, kind: str, window_s: float, counted: int, now: float) -> None:
        """Raise the usage of the ``kind`` window of ``window_s`` to ``counted``, what the
        exchange says it counted (never lowered: our own count may be ahead of its reply).
        Called with ``self._cv`` held, from :meth:`observe` and :meth:`correct`."""
        for w in self._windows:
            if w.limit.kind == kind and w.limit.window_s == window_s:
                w.expire(now)
                if counted > w.used:
                    self._corrected += 1
                    w.add(now, counted - w.used)

    # -- inspection ---------------------------------------------------------------------------

    def stats(self) -> LimiterStats:
        now = self._clock()
        with self._cv:
            usage: dict[str, int] = {}
            for w in self._windows:
                w.expire(now)
                usage[w.limit.header] = w.used
            return LimiterStats(
                self._requests,
                self._waited,
                self._waited_s,
                self._max_wait_s,
                self._refused,
                self._blocked,
                self._corrected,
                usage,
            )
