"""The user-data stream of one account: listen key, keep-alive, order updates to the actors.

:class:`UserDataStream` gets a listen key (``POST /fapi/v1/listenKey``, from its
:class:`ListenKeySource`: the account's exchange adapter) before every connection, connects
to ``<ws_url>/ws/<listenKey>`` and turns each event into messages:

* ``ORDER_TRADE_UPDATE`` → :class:`~actors.messages.OrderUpdate` (client id ``c``, status
  ``X`` lower-cased, cumulative filled ``z``, average price ``ap``, event time ``E``, order
  id ``i``), told with ``sink.tell`` in arrival order — the supervisor starts the symbol's
  actor if there is none (S7), so nothing is dropped for a position that is still opening;
* ``ALGO_UPDATE`` (stop and take-profit orders) → ``OrderUpdate`` with the client algo id
  ``caid`` (exchange id = algo id). The market order a triggered stop becomes is reported by
  ``ORDER_TRADE_UPDATE`` too; it is matched to the stop by ``ai`` ↔ ``i`` (remembered from
  ``ALGO_UPDATE``) as well as by ``c``, so the stop's client id is used either way;
* ``ACCOUNT_UPDATE`` with a reason other than ``ORDER`` that changes positions (ADL,
  insurance clear, an admin adjustment …), and order updates of the exchange's own liquidation
  orders (``autoclose-…``, ``adl_autoclose``), request a sync of the account;
* ``listenKeyExpired`` → reconnect with a new key.

A keep-alive thread (``feed-<name>-keepalive``) sends ``PUT /fapi/v1/listenKey`` every
``keepalive_interval_s`` (Binance: keys expire 60 minutes after the last one); "listen key
does not exist" (-1125) makes the stream reconnect with a new key. Every connection after the
first asks for a sync of the account (``"stream reconnect"``), since events may have been
missed; the first asks too (``"stream connected"``) to close the start-up gap.

The listen key is a bearer credential for the account's private events: only its first
characters are logged; the stream URL is never logged. The key is not deleted at stop (another
consumer of the same account, e.g. a monitoring tool, would lose its stream); it expires.

Threads: the runner thread parses and tells; the keep-alive thread only calls REST and
:meth:`ReconnectingWebSocket.reconnect`; ``start``/``stop`` from any thread. Nothing raises
into the runner: a bad frame is refused with a throttled log line and a counted reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from infra.backoff import Backoff
from infra.feeds.account_stream import AccountStream
from infra.feeds.metrics import FeedMetrics
from infra.feeds.parsing import (
    AccountEvent,
    ListenKeyExpired,
    OrderEvent,
    Refusal,
    parse_user_event,
)
from infra.feeds.sink import FeedSink, SyncRequest
from infra.feeds.ws_client import Connect, ReconnectingWebSocket

__all__ = [
    "ListenKeyError",
    "ListenKeyMissing",
    "ListenKeySource",
    "UserDataStream",
    "key_prefix",
]

log = logging.getLogger(__name__)

_LIQUIDATION_PREFIXES = ("autoclose-", "adl_autoclose", "settlement_autoclose-")


def key_prefix(key: str | None) -> str:
    """What may be logged of a listen key: its first 6 characters."""
    return "-" if not key else f"{key[:6]}…"


class ListenKeyError(Exception):
    """A listen-key call failed. ``status``: HTTP status (None: no reply); ``code``: Binance's."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ListenKeyMissing(ListenKeyError):
    """-1125: the listen key does not exist (expired or deleted): create a new one."""


@runtime_checkable
class ListenKeySource(Protocol):
    """Where the stream gets its listen key: the account's exchange adapter
    (:attr:`infra.exchange.CcxtExchange.listen_keys`, through the account's ccxt client and
    limiter). Blocking; called on the runner thread (create) and the keep-alive thread.

    Both raise :class:`ListenKeyError` on failure (the runner retries with its backoff, a
    failed keep-alive is logged), :class:`ListenKeyMissing` when the key no longer exists
    (the stream reconnects with a new one).
    """

    def create(self) -> str:
        """A listen key (the account's active one, extended, or a new one)."""
        ...

    def keepalive(self) -> None:
        """Extend the active key."""
        ...


class UserDataStream(AccountStream):
    """One account's user-data stream (see the module docstring)."""

    def __init__(
        self,
        account: str,
        ws_url: str,
        listen_keys: ListenKeySource,
        sink: FeedSink,
        *,
        request_sync: SyncRequest | None = None,
        name: str | None = None,
        keepalive_interval_s: float = 1800.0,
        ping_interval_s: float | None = 20.0,
        pong_timeout_s: float = 10.0,
        silence_timeout_s: float | None = None,
        backoff: Backoff | None = None,
        metrics: FeedMetrics | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 0.25,
        algo_memory: int = 10_000,
    ) -> None:
        super().__init__(
            name or f"{account}:user",
            metrics,
            log,
            account=account,
            sink=sink,
            request_sync=request_sync,
            clock=clock,
            frame_kind="user-stream",
        )
        self._ws_url = ws_url.rstrip("/")
        self.listen_keys = listen_keys
        self.keepalive_interval_s = keepalive_interval_s
        self._key: str | None = None
        self._algo_of_order: OrderedDict[str, str] = OrderedDict()
        self._algo_memory = algo_memory
        self.keepalives = 0
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        self.runner = ReconnectingWebSocket(
            self.name,
            self._prepare,
            self._on_frame,
            on_open=self._on_open,
            backoff=backoff,
            silence_timeout_s=silence_timeout_s,
            ping_interval_s=ping_interval_s,
            pong_timeout_s=pong_timeout_s,
            metrics=self.metrics,
            poll_s=poll_s,
        )

    # -- lifecycle (any thread) ------------------------------------------------------------

    def start(self) -> None:
        """Start the stream and its keep-alive thread (returns at once; idempotent)."""
        if self._keepalive is not None:
            return
        self._stop.clear()
        self.runner.start()
        self._keepalive = threading.Thread(
            target=self._keepalive_loop, name=f"feed-{self.name}-keepalive", daemon=True
        )
        self._keepalive.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads (bounded by ``timeout`` plus one REST timeout); idempotent."""
        self._stop.set()
        self.runner.stop(timeout)
        t = self._keepalive
        if t is not None:
            t.join(timeout)
        if self.running:
            log.warning("%s: feed threads still running after %.1fs", self.name, timeout)

    @property
    def running(self) -> bool:
        """True while the stream's or the keep-alive thread is alive."""
        t = self._keepalive
        return self.runner.running or (t is not None and t.is_alive())

    @property
    def listen_key_prefix(self) -> str:
        return key_prefix(self._key)

    # -- runner thread ---------------------------------------------------------------------

    def _prepare(self) -> Connect:
        key = self.listen_keys.create()
        if key != self._key:
            log.info("%s: listen key %s", self.name, key_prefix(key))
        self._key = key
        return Connect(f"{self._ws_url}/ws/{key}")

    def _on_open(self, n: int) -> None:
        self._sync("stream reconnect" if n > 1 else "stream connected")

    def _on_frame(self, data: bytes, binary: bool) -> None:
        if binary:
            self._refuse(Refusal("binary_frame"), data)
            return
        ev = parse_user_event(data)
        if isinstance(ev, OrderEvent):
            self._order(ev)
        elif isinstance(ev, Refusal):
            self._refuse(ev, data)
        elif isinstance(ev, AccountEvent):
            if ev.reason != "ORDER" and ev.symbols:
                log.warning(
                    "%s: positions of %s changed (%s): requesting a sync",
                    self.name,
                    ",".join(ev.symbols[:10]),
                    ev.reason[:32] or "?",
                )
                self._sync("account update")
        elif isinstance(ev, ListenKeyExpired):
            log.warning(
                "%s: listen key %s expired; reconnecting", self.name, self.listen_key_prefix
            )
            self.runner.reconnect("listen_key_expired")
        else:
            self.ignored += 1

    def _order(self, ev: OrderEvent) -> None:
        if ev.algo:
            client_id, exchange_id = ev.client_id, ev.order_id
            if ev.actual_order_id:
                memo = self._algo_of_order
                memo[ev.actual_order_id] = ev.client_id
                if len(memo) > self._algo_memory:
                    memo.popitem(last=False)
        else:
            linked = self._algo_of_order.get(ev.order_id) if ev.order_id else None
            client_id = linked or ev.client_id
            exchange_id = None if linked else ev.order_id
            if client_id.startswith(_LIQUIDATION_PREFIXES):
                log.warning("%s: exchange order %s on %s", self.name, client_id[:40], ev.symbol)
                self._sync("liquidation order")
        self._deliver(ev, client_id, exchange_id)

    # -- keep-alive thread -----------------------------------------------------------------

    def _keepalive_loop(self) -> None:
        while not self._stop.wait(self.keepalive_interval_s):
            if self._key is None:
                continue
            try:
                self.listen_keys.keepalive()
                self.keepalives += 1
            except ListenKeyMissing:
                log.warning(
                    "%s: listen key %s no longer exists; reconnecting with a new one",
                    self.name,
                    self.listen_key_prefix,
                )
                self._key = None
                self.runner.reconnect("listen_key_expired")
            except Exception as exc:
                log.warning("%s: listen key keep-alive failed: %s", self.name, exc)
