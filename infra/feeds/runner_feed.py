"""What the feeds share: a lifecycle over one runner, and the report of a refused frame.

:class:`RunnerFeed` is the base of :class:`~infra.feeds.market.MarkPriceFeed`,
:class:`~infra.feeds.signals.SignalFeedClient` and, through
:class:`~infra.feeds.account_stream.AccountStream`, the accounts' private streams. A subclass
calls ``__init__`` first (it sets ``name``, ``metrics`` and the log throttle on the subclass's
own logger, so log lines keep their module's logger name), then builds its
:class:`~infra.feeds.ws_client.ReconnectingWebSocket` as ``runner``. A feed with a thread of
its own besides the runner's (the user-data stream's keep-alive) overrides
:meth:`RunnerFeed.stop` and :attr:`RunnerFeed.running`.

Threads: :meth:`RunnerFeed.stop` and :attr:`RunnerFeed.running` from any thread;
:meth:`RunnerFeed.report_refusal` on the feed's runner thread (safe from any). Nothing here
raises: a failing metric is ignored, a log line is throttled per reason.
"""

from __future__ import annotations

import contextlib
import logging

from infra.feeds.metrics import FeedMetrics, NullFeedMetrics
from infra.feeds.parsing import Refusal, preview
from infra.feeds.ws_client import ReconnectingWebSocket
from infra.logs import LogThrottle

__all__ = ["RunnerFeed"]


class RunnerFeed:
    """A feed running on one :class:`ReconnectingWebSocket` (see the module docstring).

    ``throttled`` is the feed's :class:`~infra.logs.LogThrottle` (on its module's logger),
    for its other repeated warnings too.
    """

    runner: ReconnectingWebSocket

    def __init__(self, name: str, metrics: FeedMetrics | None, logger: logging.Logger) -> None:
        self.name = name
        self.metrics: FeedMetrics = metrics or NullFeedMetrics()
        self._log = logger
        self.throttled = LogThrottle(logger)

    def stop(self, timeout: float = 5.0) -> None:
        """Close and join the thread (bounded by ``timeout``, idempotent); see :attr:`running`."""
        if not self.runner.stop(timeout):
            self._log.warning("%s: feed thread still running after %.1fs", self.name, timeout)

    @property
    def running(self) -> bool:
        """True while the feed's thread is alive."""
        return self.runner.running

    def report_refusal(self, prefix: str, r: Refusal, data: bytes) -> None:
        """Count a refused frame (or item) in the metrics by reason and log it, throttled per
        reason: ``<prefix>: <reason> (<detail>) preview=<start of the frame, escaped>``. The
        feed counts it in its own statistics."""
        with contextlib.suppress(Exception):
            self.metrics.feed_parse_error(self.name, r.reason)
        self.throttled.warning(
            r.reason,
            "%s: %s%s preview=%s",
            prefix,
            r.reason,
            f" ({r.detail})" if r.detail else "",
            preview(data),
        )
