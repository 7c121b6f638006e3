"""A reconnecting websocket-client runner: one thread, backoff with jitter, silence watchdog.

:class:`ReconnectingWebSocket` owns one thread that connects, reads frames and hands each data
frame to ``on_frame``, then reconnects after any failure until :meth:`stop`. It uses
websocket-client's low-level :class:`websocket.WebSocket` rather than ``WebSocketApp`` so that
the loop is ours: a read timeout drives the watchdog and the stop check, a normal close is not
an error, and nothing runs on a second thread.

Threads:

* the runner thread calls ``prepare``, ``on_open``, ``on_frame``, ``on_drained`` and
  ``on_close`` (never two at once) and the metrics;
* :meth:`start`, :meth:`stop` and :meth:`reconnect` may be called from any thread.

Failure handling: an exception from a callback is logged (throttled) and counted as
``handler_error`` (``on_frame``) or ends the attempt (``prepare``: ``prepare_failed``); it
never ends the thread. Every ending of a connection (or failed attempt) schedules the next one
after :meth:`infra.backoff.Backoff.delay`; the attempt counter resets once a connection stayed
up ``stable_after_s``, unless it ended refused (handshake, or a feed's ``reconnect`` with
``auth_refused`` / ``subscribe_refused``: Bybit's requests), which keeps backing off.
Repeated warnings go through :class:`infra.logs.LogThrottle`.

Liveness: every frame (data, ping, pong) counts as life. After ``ping_interval_s`` without
any frame a ping is sent; no frame within ``pong_timeout_s`` after it ends the connection
(``ping_timeout``). Independently, no *data* frame for ``silence_timeout_s`` ends it
(``silence``): for streams that must tick (mark prices).

Batches: reads are buffered (one ``recv`` of up to 256 KiB serves websocket-client's small
reads), and ``on_drained`` runs whenever every frame received so far has gone to
``on_frame`` and the runner is about to wait for more data, and once more when a connection
ends. A feed may coalesce frames of one batch there (the mark-price feed delivers one tick per
symbol per batch).

Messages: ``on_frame`` gets each data message (its fragments joined) as bytes and whether it
was binary. UTF-8 is not validated by websocket-client (``skip_utf8_validation=True``, its
pure-Python check is the receive bottleneck). Frames are read and messages bounded by
:mod:`infra.feeds.ws_patches` (the one module patching websocket-client's internals): a
message over ``hard_max_frame_bytes`` (the sum of its fragments) is dropped as it arrives,
never reaches ``on_frame``, and is counted and logged as ``oversized``
(``feed_parse_error(name, "oversized")``, :attr:`RunnerStats.oversized`); the connection stays
up. Only a violation of the WebSocket framing ends it (``protocol_error``, logged and counted
as ``feed_parse_error(name, "protocol_error")``): the stream cannot be read on after that.

Sending: :meth:`ReconnectingWebSocket.send_text` queues a text frame from any thread (never
blocking); the runner thread writes the queue between reads, so within ``poll_s`` when the
line is quiet. What the connection could not take stays queued for the next one. A full
queue (``outbox_max``) refuses the frame (counted in ``outbox.refused``, an
:class:`~infra.feeds.outbox.Outbox`). A write that fails ends the connection (``send_failed``).

Secrets: the URL and headers (listen key, bearer token) are never logged; log lines use
``name`` only. Do not enable ``websocket.enableTrace`` in production: it prints headers.

Size: about 500 lines for one job, keeping one connection alive (connect, read with the
watchdogs, write the queue, reconnect). The read loop is every feed's hot path: its state
(watchdog times, counters, the queue) stays in local variables of one method on purpose, so it
is not split into objects; the parts with a job of their own live elsewhere (the frame reading
in :mod:`infra.feeds.ws_patches`, the send queue in :mod:`infra.feeds.outbox`, the delay rule
in :mod:`infra.backoff`, the log throttle in :mod:`infra.logs`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import websocket

from infra.backoff import Backoff
from infra.feeds.metrics import FeedMetrics, NullFeedMetrics
from infra.feeds.outbox import Outbox
from infra.feeds.ws_patches import (
    EV_OVERSIZED,
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    BoundedMessages,
    check_websocket_client,
    install,
)
from infra.logs import LogThrottle

__all__ = [
    "Connect",
    "ReconnectingWebSocket",
    "RunnerStats",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Connect:
    """Where to connect: what ``prepare`` returns before each attempt."""

    url: str
    headers: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """A snapshot of one runner's counters."""

    connections: int
    attempts: int
    frames: int
    connected: bool
    ends: dict[str, int] = field(default_factory=dict)
    oversized: int = 0
    """Messages over ``hard_max_frame_bytes``, discarded (the connection kept)."""


class ReconnectingWebSocket:
    """Keeps one WebSocket connection alive on its own thread. See the module docstring.

    ``hard_max_frame_bytes`` bounds one whole message (all its fragments): a bigger one is
    discarded as it arrives (``oversized``), the connection kept. Raises ``RuntimeError`` when
    the installed websocket-client lacks the internals the receive path patches, and
    ``ValueError`` for a ``backoff`` without a pause (``min_s`` = 0).
    """

    def __init__(
        self,
        name: str,
        prepare: Callable[[], Connect],
        on_frame: Callable[[bytes, bool], None],
        *,
        on_open: Callable[[int], None] | None = None,
        on_close: Callable[[str], None] | None = None,
        on_drained: Callable[[], None] | None = None,
        backoff: Backoff | None = None,
        silence_timeout_s: float | None = None,
        ping_interval_s: float | None = 20.0,
        pong_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        poll_s: float = 0.25,
        hard_max_frame_bytes: int = 16 * 1024 * 1024,
        metrics: FeedMetrics | None = None,
        rng: random.Random | None = None,
        outbox_max: int = 65536,
    ) -> None:
        missing = check_websocket_client()
        if missing is not None:
            raise RuntimeError(
                f"websocket-client {getattr(websocket, '__version__', '?')} has no {missing}: "
                "the receive path relies on it to bound messages; install the version pinned "
                "in constraints.txt"
            )
        self.name = name
        self._prepare = prepare
        self._on_frame = on_frame
        self._on_open = on_open
        self._on_close = on_close
        self._on_drained = on_drained
        self.backoff = backoff or Backoff()
        if self.backoff.min_s <= 0:
            raise ValueError("a feed's backoff needs min_s > 0 (no reconnect loop without pause)")
        self.silence_timeout_s = silence_timeout_s
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.poll_s = max(0.01, poll_s)
        self.hard_max_frame_bytes = hard_max_frame_bytes
        self.metrics: FeedMetrics = metrics or NullFeedMetrics()
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: Any = None
        self._ws_lock = threading.Lock()
        self._reconnect_reason: str | None = None
        self._throttle = LogThrottle(log)
        self.connected = threading.Event()
        self._cond = threading.Condition()
        self.connections = 0
        self.attempts = 0
        self.frames = 0
        self.oversized = 0
        self._ends: dict[str, int] = {}
        self.outbox = Outbox(outbox_max)

    # -- any thread -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the runner thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"feed-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Close the connection and end the thread; True when the thread ended. Idempotent.

        The runner notices within ``poll_s`` and closes politely (close frame); after half of
        ``timeout`` the socket is shut down to wake it from any blocking read.
        """
        self._stop.set()
        t = self._thread
        if t is None:
            return True
        t.join(timeout / 2)
        if t.is_alive():
            self._abort()
            t.join(timeout / 2)
        return not t.is_alive()

    def send_text(self, payload: str) -> bool:
        """Queue ``payload`` as one text frame (any thread, never blocks); False when the
        queue is full and the frame was refused."""
        return self.outbox.offer(payload)

    def outbox_size(self) -> int:
        """Frames queued and not yet written."""
        return len(self.outbox.frames)

    def reconnect(self, reason: str) -> None:
        """End the current connection and connect again (e.g. the listen key expired)."""
        self._reconnect_reason = reason
        self._abort()

    def data_waiting(self) -> bool:
        """True when bytes are already waiting on the socket (runner thread; from
        ``on_drained``): the next read will not block."""
        with self._ws_lock:
            ws = self._ws
        sock = getattr(ws, "sock", None)
        if sock is None:
            return False
        try:
            pending = getattr(sock, "pending", None)  # TLS: decrypted bytes already buffered
            if pending is not None and pending() > 0:
                return True
            ready, _, _ = select.select([sock], [], [], 0)
            return bool(ready)
        except (OSError, ValueError):
            return False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> RunnerStats:
        with self._cond:
            ends = dict(self._ends)
        return RunnerStats(
            self.connections,
            self.attempts,
            self.frames,
            self.connected.is_set(),
            ends,
            self.oversized,
        )

    def wait_connected(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` connections were opened and one is up (for tests)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.connections >= n and self.connected.is_set(), timeout
            )

    def _abort(self) -> None:
        with self._ws_lock:
            ws = self._ws
        if ws is not None:
            sock = getattr(ws, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # -- the runner thread ----------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.attempts += 1
            started = time.monotonic()
            reason = self._one_connection()
            if self._stop.is_set():
                break
            with self._cond:
                self._ends[reason] = self._ends.get(reason, 0) + 1
            if time.monotonic() - started >= self.backoff.stable_after_s and reason not in (
                "connect_failed",
                "unauthorized",
                "handshake_rejected",
                "prepare_failed",
                "auth_refused",
                "subscribe_refused",
            ):
                attempt = 0
            delay = self.backoff.delay(attempt, self._rng.random())
            attempt += 1
            self._guard(self.metrics.ws_reconnect, self.name)
            log.info("%s: connection ended (%s); reconnecting in %.2fs", self.name, reason, delay)
            self._stop.wait(delay)
        log.info("%s: stopped", self.name)

    def _one_connection(self) -> str:
        """Connect, read until the connection ends; returns why it ended."""
        try:
            target = self._prepare()
        except Exception as exc:
            self._throttle.warning(
                "prepare", "%s: could not prepare the connection: %s", self.name, _describe(exc)
            )
            return "prepare_failed"
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        messages, reader = install(ws, self.hard_max_frame_bytes)
        if self._on_drained is not None:
            reader.before_recv = self._drained
        with self._ws_lock:
            self._ws = ws
        self._reconnect_reason = None
        try:
            if self._stop.is_set():
                return "stopped"
            try:
                ws.connect(  # type: ignore[no-untyped-call]
                    target.url,
                    header=list(target.headers),
                    timeout=self.connect_timeout_s,
                    suppress_origin=True,
                )
            except websocket.WebSocketBadStatusException as exc:
                status = getattr(exc, "status_code", 0)
                kind = "unauthorized" if status in (401, 403) else "handshake_rejected"
                self._throttle.warning(
                    kind, "%s: handshake refused with HTTP %s", self.name, status
                )
                return kind
            except Exception as exc:
                self._throttle.warning(
                    "connect", "%s: connect failed: %s", self.name, _describe(exc)
                )
                return "connect_failed"
            ws.settimeout(self.poll_s)
            with self._cond:
                self.connections += 1
                self.connected.set()
                self._cond.notify_all()
            self._guard(self.metrics.feed_up, self.name, True)
            log.info("%s: connected (connection %d)", self.name, self.connections)
            if self._on_open is not None:
                try:
                    self._on_open(self.connections)
                except Exception:
                    log.exception("%s: on_open failed", self.name)
            reason = self._read(ws, messages)
            self._drained()
        finally:
            self.connected.clear()
            self._guard(self.metrics.feed_up, self.name, False)
            with self._ws_lock:
                self._ws = None
            self._close(ws, messages.at_boundary())
        if self._on_close is not None:
            try:
                self._on_close(reason)
            except Exception:
                log.exception("%s: on_close failed", self.name)
        return reason

    def _read(self, ws: Any, messages: BoundedMessages) -> str:
        on_frame = self._on_frame
        receive = messages.next
        metrics = self.metrics
        name = self.name
        monotonic = time.monotonic
        stop = self._stop
        last_rx = last_data = monotonic()
        ping_sent: float | None = None
        outbox = self.outbox.frames
        while True:
            if outbox and not self._write_outbox(ws):
                return "send_failed"
            try:
                opcode, data = receive()
            except websocket.WebSocketTimeoutException:
                opcode, data = 0, None
            except websocket.WebSocketConnectionClosedException:
                return self._reconnect_reason or ("stopped" if stop.is_set() else "dropped")
            except (
                websocket.WebSocketProtocolException,
                websocket.WebSocketPayloadException,
            ) as exc:
                self._throttle.warning(
                    "protocol", "%s: WebSocket protocol violation: %s; reconnecting", name, exc
                )
                self._guard(metrics.feed_parse_error, name, "protocol_error")
                return "protocol_error"
            except (OSError, websocket.WebSocketException):
                return self._reconnect_reason or ("stopped" if stop.is_set() else "dropped")
            now = monotonic()
            if opcode in (OP_TEXT, OP_BINARY):
                last_rx = last_data = now
                ping_sent = None
                self.frames += 1
                try:  # noqa: SIM105 (hot path: cheaper than contextlib.suppress)
                    metrics.feed_message(name)
                except Exception:
                    pass
                try:
                    on_frame(data, opcode == OP_BINARY)  # type: ignore[arg-type]
                except Exception as exc:
                    self._throttle.warning("handler", "%s: frame handler failed: %r", name, exc)
                    self._guard(metrics.feed_parse_error, name, "handler_error")
                if self._reconnect_reason is not None:
                    return self._reconnect_reason
                if stop.is_set():
                    return "stopped"
                continue
            if opcode == OP_CLOSE:
                return "closed"
            if opcode == EV_OVERSIZED:
                self.oversized += 1
                self._guard(metrics.feed_parse_error, name, "oversized")
                self._throttle.warning(
                    "oversized",
                    "%s: refused a %s message of %d bytes (over %d): discarded unread",
                    name,
                    "binary" if messages.last_binary else "text",
                    messages.last_size,
                    self.hard_max_frame_bytes,
                )
            if opcode:  # ping, pong, part of a message: the peer is alive
                last_rx = now
                ping_sent = None
            if stop.is_set():
                return "stopped"
            if self._reconnect_reason is not None:
                return self._reconnect_reason
            silence = self.silence_timeout_s
            if silence is not None and now - last_data > silence:
                self._throttle.warning(
                    "silence", "%s: no data for %.1fs; reconnecting", name, now - last_data
                )
                return "silence"
            if ping_sent is not None:
                if now - ping_sent > self.pong_timeout_s:
                    self._throttle.warning(
                        "pong", "%s: no pong within %.1fs; reconnecting", name, self.pong_timeout_s
                    )
                    return "ping_timeout"
            elif self.ping_interval_s is not None and now - last_rx >= self.ping_interval_s:
                try:
                    ws.ping()
                except Exception:
                    return "dropped"
                ping_sent = now

    def _write_outbox(self, ws: Any) -> bool:
        """Write the queued frames; False (the frame kept for the next connection) when a
        write fails."""
        try:
            self.outbox.write(ws.send)
        except Exception as exc:
            self._throttle.warning("send", "%s: send failed: %s", self.name, _describe(exc))
            return False
        return True

    def _drained(self) -> None:
        """Run ``on_drained`` (guarded: it is called from inside websocket-client's reads)."""
        cb = self._on_drained
        if cb is None:
            return
        try:
            cb()
        except Exception as exc:
            self._throttle.warning("drained", "%s: batch handler failed: %r", self.name, exc)
            self._guard(self.metrics.feed_parse_error, self.name, "handler_error")

    def _close(self, ws: Any, at_boundary: bool) -> None:
        """Polite close (close frame, a short wait for the reply when the stream is between
        frames), then drop the socket."""
        try:
            if getattr(ws, "connected", False):
                ws.close(timeout=0.2 if at_boundary else 0)
        except Exception:
            pass
        with contextlib.suppress(Exception):
            ws.shutdown()

    def _guard(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.debug("%s: metrics call failed", self.name, exc_info=True)


def _describe(exc: BaseException) -> str:
    """An exception as ``Type: message`` cut short (messages may echo URLs: keep them short)."""
    text = str(exc)
    for marker in ("/ws/", "listenKey", "token"):
        i = text.find(marker)
        if i >= 0:
            text = text[:i] + "<redacted>"
    return f"{type(exc).__name__}: {text[:160]}"
