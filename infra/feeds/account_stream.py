"""What an account's private stream does with what it parsed, on every venue.

:class:`AccountStream` is the base of :class:`~infra.feeds.user_stream.UserDataStream`
(Binance's user-data stream) and :class:`~infra.feeds.bybit_user.BybitUserStream` (Bybit's
private stream). A venue's stream parses its own wire; the base delivers the result the same
way for both: an order update told to the sink in arrival order (the supervisor starts the
symbol's actor if there is none: nothing is dropped while a position opens, S7), a sync of
the account asked for, a refused frame counted and logged.

Threads: the methods run on the stream's runner thread (safe from any). Nothing raises: a
sync request or a metric that fails is logged or ignored; an update the sink did not take is
counted as ``undelivered`` with a throttled warning.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable

from actors.messages import OrderUpdate
from actors.model import Key
from infra.feeds.metrics import FeedMetrics
from infra.feeds.parsing import OrderEvent, Refusal
from infra.feeds.runner_feed import RunnerFeed
from infra.feeds.sink import FeedSink, SyncRequest

__all__ = ["AccountStream"]


class AccountStream(RunnerFeed):
    """One account's private stream: delivery, sync requests and refusals (see the module
    docstring). ``frame_kind`` names the stream in refusal lines ("user-stream")."""

    def __init__(
        self,
        name: str,
        metrics: FeedMetrics | None,
        logger: logging.Logger,
        *,
        account: str,
        sink: FeedSink,
        request_sync: SyncRequest | None,
        clock: Callable[[], float],
        frame_kind: str,
    ) -> None:
        super().__init__(name, metrics, logger)
        self.account = account
        self._sink = sink
        self._request_sync = request_sync
        self._clock = clock
        self._frame_kind = frame_kind
        self.updates = 0
        self.undelivered = 0
        self.ignored = 0
        self.refused: Counter[str] = Counter()

    def _sync(self, reason: str) -> None:
        """Ask for a sync of the account (``reason`` goes to the sync's log and metric)."""
        if self._request_sync is None:
            return
        try:
            self._request_sync(self.account, reason)
        except Exception:
            self._log.exception("%s: sync request failed", self.name)

    def _deliver(self, ev: OrderEvent, client_id: str, exchange_id: str | None) -> None:
        """Tell the update of order ``client_id`` (``exchange_id``) that ``ev`` reports to the
        sink; a status no order of ours acts on is counted ``ignored`` (the core would ignore
        it too)."""
        if ev.status is None:
            self.ignored += 1
            return
        upd = OrderUpdate(
            Key(self.account, ev.symbol),
            client_id,
            ev.status,
            ev.filled_qty,
            ev.avg_price,
            ev.event_time,
            exchange_id,
        )
        with contextlib.suppress(Exception):
            self.metrics.ws_lag(self.name, self._clock() - ev.event_time)
        self.updates += 1
        if not self._sink.tell(upd):
            self.undelivered += 1
            self.throttled.warning(
                "undelivered",
                "%s: order update %s %s not delivered",
                self.name,
                upd.key,
                client_id[:40],
            )

    def _refuse(self, r: Refusal, data: bytes) -> None:
        self.report_refusal(f"{self.name}: refused {self._frame_kind} frame", r, data)
        self.refused[r.reason] += 1  # last: a counted frame has been wholly handled
