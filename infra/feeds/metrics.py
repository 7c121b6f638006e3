"""What the feeds report: a five-method interface, a null sink and a counting one.

:class:`FeedMetrics` is structural: :class:`infra.metrics.PrometheusMetrics` already has these
five methods (``ps_feed_messages_total``, ``ps_feed_parse_errors_total``,
``ps_ws_reconnects_total``, ``ps_ws_lag_seconds``, ``ps_feed_up``), so it can be passed as is.

Threads: every method is called on the feed's own thread (the reader or the listen-key
keep-alive thread). Implementations must be cheap, thread-safe and never raise; the feeds still
guard each call, so a raising implementation costs a log line, never a frame.

``feed`` names one stream: ``market`` (or ``<account>:market``), ``<account>:user``, ``signals``.
``reason`` is a short label from a closed set (see ``infra.feeds.parsing``): never a value
taken from a frame, so the label cardinality stays bounded.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Protocol

__all__ = ["CountingFeedMetrics", "FeedMetrics", "NullFeedMetrics"]


class FeedMetrics(Protocol):
    """Counters and gauges of the feeds (see the module docstring)."""

    def feed_message(self, feed: str) -> None:
        """One data frame received (counted before parsing)."""
        ...

    def feed_parse_error(self, feed: str, reason: str) -> None:
        """One frame (or one item of a frame) refused, by reason."""
        ...

    def ws_reconnect(self, feed: str) -> None:
        """One connection ended (or failed to open) and a new attempt is scheduled."""
        ...

    def ws_lag(self, feed: str, seconds: float) -> None:
        """Handling time minus event time (exchange ``E``, or a signal's ``created_at``)."""
        ...

    def feed_up(self, feed: str, up: bool) -> None:
        """1 while connected and not silent, 0 otherwise."""
        ...


class NullFeedMetrics:
    """Metrics that go nowhere."""

    def feed_message(self, feed: str) -> None:
        pass

    def feed_parse_error(self, feed: str, reason: str) -> None:
        pass

    def ws_reconnect(self, feed: str) -> None:
        pass

    def ws_lag(self, feed: str, seconds: float) -> None:
        pass

    def feed_up(self, feed: str, up: bool) -> None:
        pass


class CountingFeedMetrics:
    """Thread-safe in-memory counters (tests, tools, the ingest measurement)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: Counter[str] = Counter()
        self.parse_errors: Counter[tuple[str, str]] = Counter()
        self.reconnects: Counter[str] = Counter()
        self.lags: dict[str, list[float]] = {}
        self.up: dict[str, bool] = {}

    def feed_message(self, feed: str) -> None:
        with self._lock:
            self.messages[feed] += 1

    def feed_parse_error(self, feed: str, reason: str) -> None:
        with self._lock:
            self.parse_errors[(feed, reason)] += 1

    def ws_reconnect(self, feed: str) -> None:
        with self._lock:
            self.reconnects[feed] += 1

    def ws_lag(self, feed: str, seconds: float) -> None:
        with self._lock:
            lags = self.lags.setdefault(feed, [])
            if len(lags) < 100_000:
                lags.append(seconds)

    def feed_up(self, feed: str, up: bool) -> None:
        with self._lock:
            self.up[feed] = up

    def errors_of(self, feed: str) -> Counter[str]:
        """Parse errors of one feed, by reason."""
        with self._lock:
            return Counter({r: n for (f, r), n in self.parse_errors.items() if f == feed})
