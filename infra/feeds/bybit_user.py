"""The private stream of one Bybit account: auth, order updates to the actors, resync.

:class:`BybitUserStream` connects to ``<ws_url>`` (Bybit: ``wss://stream.bybit.com/v5/private``),
authenticates with the ``auth`` op and subscribes ``order``, ``execution`` and ``position``
(:class:`~infra.feeds.bybit_session.BybitSession`; no listen key on Bybit). Each frame is
parsed by :func:`~infra.feeds.parsing.parse_bybit_private` into the messages the Binance
user stream delivers (:class:`~infra.feeds.user_stream.UserDataStream`):

* an ``order`` row → :class:`~actors.messages.OrderUpdate` (client id ``orderLinkId``,
  status, cumulative ``cumExecQty``, ``avgPrice``, exchange id ``orderId``), told with
  ``sink.tell`` in arrival order — the supervisor starts the symbol's actor if there is none
  (S7), so nothing is dropped for a position that is still opening. A stop keeps its id and
  client id from ``Untriggered`` to ``Filled``, so its fills need no linking;
* a liquidation / ADL order or execution, and a position row in ``Liq`` / ``Adl`` state,
  request a sync of the account;
* ``execution``, ``position`` (``Normal``) and ``wallet`` rows carry nothing the ``order`` row
  does not: counted as ``ignored``.

Each connection whose subscriptions are all confirmed asks for a sync of the account — the
first ``"stream connected"`` (closes the start-up gap), every later one ``"stream
reconnect"`` (events may have been missed while it was down). The request is made once the
subscriptions are confirmed, not when the socket opens: events before that are not sent.

Refused ``auth`` or ``subscribe`` (a bad key, a missing permission), no reply to either within
``reply_timeout_s``, or no answer to the application ping (``{"op": "ping"}`` every
``ping_interval_s``) within ``pong_timeout_s``: a log line, the metric
(``feed_parse_error(name, reason)``), and a reconnect with the runner's backoff. The API
secret is used only to sign the ``auth`` request (never logged, never in a URL).

Threads: the runner thread parses and tells (and runs the session's timers from
``on_drained``, which the runner calls before every socket read: at least every ``poll_s``);
``start``/``stop`` from any thread. Nothing raises into the runner: a bad frame or row is
refused with a throttled log line and a counted reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from infra.backoff import Backoff
from infra.feeds.account_stream import AccountStream
from infra.feeds.bybit_session import BybitCredentials, BybitSession, Step
from infra.feeds.metrics import FeedMetrics
from infra.feeds.parsing import (
    AccountEvent,
    OpReply,
    OrderEvent,
    Refusal,
    parse_bybit_private,
)
from infra.feeds.sink import FeedSink, SyncRequest
from infra.feeds.ws_client import Connect, ReconnectingWebSocket

__all__ = ["PRIVATE_TOPICS", "BybitUserStream"]

log = logging.getLogger(__name__)

PRIVATE_TOPICS = ("order", "execution", "position")


class BybitUserStream(AccountStream):
    """One Bybit account's private stream (see the module docstring)."""

    def __init__(
        self,
        account: str,
        ws_url: str,
        credentials: BybitCredentials,
        sink: FeedSink,
        *,
        request_sync: SyncRequest | None = None,
        name: str | None = None,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 10.0,
        reply_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        metrics: FeedMetrics | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 0.25,
        hard_max_frame_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        super().__init__(
            name or f"{account}:user",
            metrics,
            log,
            account=account,
            sink=sink,
            request_sync=request_sync,
            clock=clock,
            frame_kind="private-stream",
        )
        self.url = ws_url.rstrip("/")
        self.session = BybitSession(
            self.name,
            PRIVATE_TOPICS,
            credentials,
            ping_interval_s=ping_interval_s,
            pong_timeout_s=pong_timeout_s,
            reply_timeout_s=reply_timeout_s,
            clock=clock,
        )
        self.readies = 0
        self._leaving = False
        self.runner = ReconnectingWebSocket(
            self.name,
            lambda: Connect(self.url),
            self._on_frame,
            on_open=self._on_open,
            on_drained=self._idle,
            backoff=backoff,
            ping_interval_s=None,  # the application ping (Bybit's op) watches the line
            metrics=self.metrics,
            poll_s=poll_s,
            hard_max_frame_bytes=hard_max_frame_bytes,
        )

    def start(self) -> None:
        """Connect on the stream's own thread (returns at once; idempotent)."""
        self.runner.start()

    # -- runner thread ---------------------------------------------------------------------

    def _send(self, payload: str) -> bool:
        return self.runner.send_text(payload)

    def _on_open(self, n: int) -> None:
        self.runner.outbox.clear()  # a request queued for the last connection is stale
        self._leaving = False
        self.session.opened(n, self._send)

    def _idle(self) -> None:
        if self.runner.connected.is_set() and not self._leaving:
            self._step(self.session.idle(self._send), b"")

    def _step(self, step: Step, data: bytes) -> None:
        if step.refusal is not None:
            self._refuse(step.refusal, data)
        if step.ready:
            self.readies += 1
            self._sync("stream connected" if self.readies == 1 else "stream reconnect")
        if step.reconnect is not None and not self._leaving:
            self._leaving = True  # this connection is ending: no second verdict on it
            log.warning("%s: %s; reconnecting", self.name, step.reconnect)
            self.runner.reconnect(step.reconnect)

    def _on_frame(self, data: bytes, binary: bool) -> None:
        if binary:
            self._refuse(Refusal("binary_frame"), data)
            return
        events, bad = parse_bybit_private(data)
        for ev in events:
            if isinstance(ev, OrderEvent):
                self._order(ev)
            elif isinstance(ev, OpReply):
                self._step(self.session.reply(ev, self._send), data)
            elif isinstance(ev, AccountEvent):
                log.warning(
                    "%s: position of %s changed by the exchange (%s): requesting a sync",
                    self.name,
                    ",".join(ev.symbols[:10]),
                    ev.reason[:40] or "?",
                )
                self._sync("account update")
            else:
                self.ignored += 1
        for r in bad:
            self._refuse(r, data)

    def _order(self, ev: OrderEvent) -> None:
        # A stop keeps its ids from Untriggered to Filled: no linking as on Binance.
        self._deliver(ev, ev.client_id, ev.order_id)
