"""Mark prices: one WebSocket connection per exchange URL, ticks told with conflation.

:class:`MarkPriceFeed` subscribes to ``<symbol>@markPrice[@1s]`` for every symbol of every
account it serves (combined ``/stream?streams=…``), or to ``!markPrice@arr[@1s]`` filtered
locally when there are more than ``max_streams`` symbols.

Prices are delivered once per batch: what one read of the socket brought (up to 256 KiB,
see ``on_drained`` in :class:`~infra.feeds.ws_client.ReconnectingWebSocket`), as soon as it
is parsed, or what was parsed in ``max_hold_s`` (2 ms) when the read is longer (a reader
that fell behind); a reader that keeps up delivers small batches, and nothing waits for
more frames to arrive (``max_batch_s`` > 0 would hold a batch back while
more data waits, at most that long: it trades a tick's latency for fewer wake-ups, and the
stop guard's latency is what matters; the supervisor's per-symbol slot conflates anyway).
Per symbol, the newest price (by event time) goes out with the lowest and highest price of
the batch and the receive time of the batch's first frame for it, as one
:class:`~actors.messages.MarkPriceTick` per account that trades the symbol, with
``sink.tell_tick``; the slot conflates further while the actor is behind. So a burst wakes
each actor at most once per batch and the stop guard still sees every extreme, while a tick
arriving alone (the normal case: Binance sends one per symbol a second) is delivered as soon
as it is parsed. The stream's lag (``ws_lag``) is sampled: at most ``lag_every_s`` apart,
for the newest frame of a batch (observing a histogram costs as much as parsing a frame).

What differs by venue is a :class:`MarkPriceWire`: the URL, the requests to send when a
connection opens (and on the runner's idle polls), and the parse of a frame into prices.
The default, :class:`BinanceMarkPrices`, needs no request (the streams are in the URL);
:class:`infra.feeds.bybit_market.BybitTickers` subscribes ``tickers.<symbol>`` and merges
each delta into its snapshot.

Threads: the runner thread (``feed-<name>``) parses and tells; ``start``/``stop`` from any
thread. Failure: a bad frame or item is refused with a throttled log line and a counted reason;
nothing raises into the runner. A reconnect asks for a sync of every account served (when
``request_sync`` is given), since a stop may have triggered while nobody watched.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from actors.messages import MarkPriceTick
from actors.model import Key
from infra.backoff import Backoff
from infra.feeds.metrics import FeedMetrics
from infra.feeds.parsing import MarkPrice, Refusal, parse_mark_prices
from infra.feeds.runner_feed import RunnerFeed
from infra.feeds.sink import FeedSink, SyncRequest
from infra.feeds.ws_client import Connect, ReconnectingWebSocket

__all__ = ["BinanceMarkPrices", "MarkPriceFeed", "MarkPriceWire", "WireFactory"]

log = logging.getLogger(__name__)


Send = Callable[[str], object]


class MarkPriceWire(Protocol):
    """One venue's mark-price stream, as :class:`MarkPriceFeed` drives it (runner thread).

    ``parse`` returns the prices of a frame and a refusal per bad item (reported and counted
    by the feed), and may answer with requests (``send``); ``opened`` sends what a new
    connection needs; ``idle`` (``None``: nothing to do; else called at least every
    ``poll_s`` while connected) sends what is due and returns a refusal to report and a
    reason to reconnect, when there is one."""

    url: str

    def opened(self, n: int, send: Send) -> None: ...

    def parse(self, data: bytes, send: Send) -> tuple[list[MarkPrice], list[Refusal]]: ...

    @property
    def idle(self) -> Callable[[Send], tuple[Refusal | None, str | None]] | None: ...


WireFactory = Callable[[str, Sequence[str]], MarkPriceWire]
"""``factory(ws_url, symbols)``: the wire of a feed (symbols sorted, each once)."""


class BinanceMarkPrices:
    """Binance USD-M's ``markPriceUpdate`` streams: combined ``<symbol>@markPrice[@1s]``
    streams in the URL, or ``!markPrice@arr[@1s]`` beyond ``max_streams`` symbols."""

    def __init__(
        self, ws_url: str, symbols: Sequence[str], speed: str = "1s", max_streams: int = 200
    ) -> None:
        if speed not in ("", "1s"):
            raise ValueError("speed must be '' (3 s) or '1s'")
        suffix = "@1s" if speed else ""
        base = ws_url.rstrip("/")
        if len(symbols) > max_streams:
            self.url = f"{base}/ws/!markPrice@arr{suffix}"
        else:
            streams = "/".join(f"{s.lower()}@markPrice{suffix}" for s in symbols)
            self.url = f"{base}/stream?streams={streams}"

    def opened(self, n: int, send: Send) -> None:
        pass

    def parse(self, data: bytes, send: Send) -> tuple[list[MarkPrice], list[Refusal]]:
        return parse_mark_prices(data)

    idle = None  # nothing to send on a quiet line: the streams are in the URL


class MarkPriceFeed(RunnerFeed):
    """Mark prices of ``symbols`` (account → symbol ids) from ``ws_url`` to ``sink``.

    ``wire``: the venue's stream (default :class:`BinanceMarkPrices` with ``speed`` and
    ``max_streams``)."""

    def __init__(
        self,
        ws_url: str,
        symbols: Mapping[str, Iterable[str]],
        sink: FeedSink,
        *,
        request_sync: SyncRequest | None = None,
        name: str = "market",
        speed: str = "1s",
        max_streams: int = 200,
        silence_timeout_s: float | None = 30.0,
        ping_interval_s: float | None = 20.0,
        backoff: Backoff | None = None,
        metrics: FeedMetrics | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 0.25,
        max_batch_s: float = 0.0,
        max_hold_s: float = 0.002,
        lag_every_s: float = 0.1,
        wire: WireFactory | None = None,
    ) -> None:
        routes: dict[str, list[Key]] = {}
        for account, syms in symbols.items():
            for s in syms:
                routes.setdefault(s, []).append(Key(account, s))
        if not routes:
            raise ValueError("no symbols to subscribe")
        super().__init__(name, metrics, log)
        self.accounts = tuple(sorted(symbols))
        self._routes: dict[str, tuple[Key, ...]] = {s: tuple(k) for s, k in routes.items()}
        self._sink = sink
        self._request_sync = request_sync
        self._clock = clock
        syms = sorted(self._routes)
        if wire is None:
            self.wire: MarkPriceWire = BinanceMarkPrices(ws_url, syms, speed, max_streams)
        else:
            self.wire = wire(ws_url, syms)
        self.url = self.wire.url
        self._parse = self.wire.parse  # bound once: the hot path
        self._send_fn: Send = self._send
        self._idle = self.wire.idle
        self.max_batch_s = max_batch_s
        self.max_hold_s = max_hold_s
        self._batch_started = 0.0
        self._lag: float | None = None  # the newest frame's lag, not observed yet
        self.lag_every_s = lag_every_s
        self._lag_at = 0.0
        self.ticks = 0
        self.delivered = 0
        self._pending: dict[str, list[float]] = {}
        self.refused: Counter[str] = Counter()
        self._leaving = False
        self.runner = ReconnectingWebSocket(
            name,
            lambda: Connect(self.url),
            self._on_frame,
            on_open=self._on_open,
            on_drained=self._flush if self._idle is None else self._drained,
            on_close=lambda reason: self._flush(force=True),
            backoff=backoff,
            silence_timeout_s=silence_timeout_s,
            ping_interval_s=ping_interval_s,
            metrics=self.metrics,
            poll_s=poll_s,
        )

    def start(self) -> None:
        """Connect on the feed's own thread (returns at once)."""
        log.info("%s: mark prices of %d symbols", self.name, len(self._routes))
        self.runner.start()

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self._routes)

    @property
    def pending(self) -> int:
        """Symbols parsed but not yet delivered (the batch in progress; 0 when idle)."""
        return len(self._pending)

    # -- runner thread --------------------------------------------------------------------

    def _send(self, payload: str) -> bool:
        return self.runner.send_text(payload)

    def _on_open(self, n: int) -> None:
        self.runner.outbox.clear()  # a request queued for the last connection is stale
        self._leaving = False
        try:
            self.wire.opened(n, self._send)
        except Exception:
            log.exception("%s: could not prepare the connection's requests", self.name)
        if n > 1 and self._request_sync is not None:
            for account in self.accounts:
                try:
                    self._request_sync(account, "stream reconnect")
                except Exception:
                    log.exception("%s: sync request failed", self.name)

    def _on_frame(self, data: bytes, binary: bool) -> None:
        now = self._clock()
        if binary:
            self._refuse(Refusal("binary_frame"), data)
            return
        prices, bad = self._parse(data, self._send_fn)
        routes = self._routes
        pending = self._pending
        if not pending:
            self._batch_started = time.monotonic()
        for mp in prices:
            if mp.symbol not in routes:
                continue  # !markPrice@arr carries every symbol of the exchange
            old = pending.get(mp.symbol)
            p = mp.price
            if old is None:
                pending[mp.symbol] = [p, mp.event_time, now, p, p]
            else:
                if mp.event_time >= old[1]:
                    old[0], old[1] = p, mp.event_time
                if p < old[3]:
                    old[3] = p
                elif p > old[4]:
                    old[4] = p
            self.ticks += 1
        if prices:
            self._lag = now - prices[-1].event_time
        for r in bad:
            self._refuse(r, data)
        if pending and time.monotonic() - self._batch_started >= self.max_hold_s:
            self._flush(force=True)  # behind: do not let parsed ticks wait for the whole read

    def _drained(self) -> None:
        self._flush()
        idle = self._idle
        if idle is not None and self.runner.connected.is_set() and not self._leaving:
            refusal, reconnect = idle(self._send_fn)
            if refusal is not None:
                self._refuse(refusal, b"")
            if reconnect is not None:
                self._leaving = True  # this connection is ending: no second verdict on it
                log.warning("%s: %s; reconnecting", self.name, reconnect)
                self.runner.reconnect(reconnect)

    def _flush(self, force: bool = False) -> None:
        """Deliver the batch: one tick per (account, symbol) with the batch's extremes.

        Unless ``force`` (the connection ended), wait while more frames are already waiting on
        the socket and the batch is younger than ``max_batch_s``."""
        pending = self._pending
        lag = self._lag
        if lag is not None:
            mono = time.monotonic()
            if mono - self._lag_at >= self.lag_every_s or force:
                self._lag, self._lag_at = None, mono
                try:  # noqa: SIM105 (hot path: cheaper than contextlib.suppress)
                    self.metrics.ws_lag(self.name, lag)
                except Exception:
                    pass
        if not pending:
            return
        if (
            not force
            and self.max_batch_s > 0
            and time.monotonic() - self._batch_started < self.max_batch_s
            and self.runner.data_waiting()
        ):
            return  # more frames are already here: keep coalescing (at most max_batch_s)
        self._pending = {}
        routes = self._routes
        tell_tick = self._sink.tell_tick
        for sym, (price, event_time, received_at, low, high) in pending.items():
            lo = None if low == price else low
            hi = None if high == price else high
            for key in routes[sym]:
                tell_tick(MarkPriceTick(key, price, event_time, lo, hi, received_at))
        self.delivered += len(pending)

    def _refuse(self, r: Refusal, data: bytes) -> None:
        self.report_refusal(f"{self.name}: refused mark-price frame", r, data)
        self.refused[r.reason] += 1  # last: a counted frame has been wholly handled
