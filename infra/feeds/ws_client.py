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
after ``Backoff.delay``; the attempt counter resets once a connection stayed up
``stable_after_s``.

Liveness: every frame (data, ping, pong) counts as life. After ``ping_interval_s`` without
any frame a ping is sent; no frame within ``pong_timeout_s`` after it ends the connection
(``ping_timeout``). Independently, no *data* frame for ``silence_timeout_s`` ends it
(``silence``): for streams that must tick (mark prices).

Batches: reads are buffered (one ``recv`` of up to 256 KiB serves websocket-client's small
reads), and ``on_drained`` runs whenever every frame received so far has gone to
``on_frame`` and the runner is about to wait for more data (after every frame if buffering is
unavailable), and once more when a connection ends. A feed may coalesce frames of one batch
there (the mark-price feed delivers one tick per symbol per batch).

Frames: UTF-8 is not validated by websocket-client (``skip_utf8_validation=True``, its
pure-Python check is the receive bottleneck); ``on_frame`` gets the payload bytes and whether
the frame was binary. A frame announcing more than ``hard_max_frame_bytes`` ends the connection
before its payload is read (``frame_too_large``), so a hostile peer cannot make us buffer it.

Sending: :meth:`ReconnectingWebSocket.send_text` queues a text frame from any thread (never
blocking); the runner thread writes the queue between reads, so within ``poll_s`` when the
line is quiet. What the connection could not take stays queued for the next one. A full
queue (``outbox_max``) refuses the frame (counted in :attr:`ReconnectingWebSocket.
outbox_refused`). A write that fails ends the connection (``send_failed``).

Secrets: the URL and headers (listen key, bearer token) are never logged; log lines use
``name`` only. Do not enable ``websocket.enableTrace`` in production: it prints headers.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import websocket

from infra.feeds.metrics import FeedMetrics, NullFeedMetrics

__all__ = [
    "Backoff",
    "Connect",
    "LogThrottle",
    "ReconnectingWebSocket",
    "RunnerStats",
]

log = logging.getLogger(__name__)

_OP_TEXT = 0x1
_OP_BINARY = 0x2
_OP_CLOSE = 0x8


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``min(max_s, min_s·2ⁿ)·(1 + U(0,1)·jitter)`` for attempt ``n`` ≥ 0.

    The first attempt after a connection that stayed up ``stable_after_s`` uses ``n = 0``.
    """

    min_s: float = 0.1
    max_s: float = 30.0
    jitter: float = 0.2
    stable_after_s: float = 10.0

    def __post_init__(self) -> None:
        if not (0 < self.min_s <= self.max_s) or self.jitter < 0 or self.stable_after_s < 0:
            raise ValueError("need 0 < min_s <= max_s, jitter >= 0, stable_after_s >= 0")

    def delay(self, attempt: int, rand: float) -> float:
        """The delay before attempt ``attempt`` (0-based); ``rand`` in [0, 1)."""
        base = min(self.max_s, self.min_s * 2.0 ** min(max(attempt, 0), 60))
        return base * (1.0 + rand * self.jitter)


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


class LogThrottle:
    """At most ``burst`` lines per key per ``interval_s``; then one summary of what it dropped.

    For log lines that a flood of bad frames would repeat thousands of times a second.
    Called from one thread (the feed's), but safe from several.
    """

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._clock = clock
        self._burst = burst
        self._interval = interval_s
        self._windows: dict[str, list[float]] = {}  # key -> [window start, count, suppressed]
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = self._clock()
        with self._lock:
            w = self._windows.get(key)
            if w is None or now - w[0] >= self._interval:
                suppressed = int(w[2]) if w is not None else 0
                w = self._windows[key] = [now, 0.0, 0.0]
                if len(self._windows) > 1000:
                    self._windows = {key: w}
            else:
                suppressed = 0
            w[1] += 1
            emit = w[1] <= self._burst
            if not emit:
                w[2] += 1
        if suppressed:
            self._log.warning(
                "%d more like %r suppressed in the last %.0fs", suppressed, key, self._interval
            )
        if emit:
            self._log.warning(msg, *args)


class _FrameTooLarge(Exception):
    pass


class _Ended(Exception):
    """Internal: the connection ends with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _guard_frame_size(ws: Any, limit: int) -> None:
    """Refuse a frame by its announced length before its payload is read (if possible)."""
    fb = getattr(ws, "frame_buffer", None)
    original = getattr(fb, "recv_length", None)
    if fb is None or original is None:
        log.debug("websocket-client has no frame_buffer.recv_length: no frame size guard")
        return

    def recv_length() -> None:
        original()
        if fb.length is not None and fb.length > limit:
            raise _FrameTooLarge(f"frame of {fb.length} bytes > {limit}")

    fb.recv_length = recv_length


class _BufferedRecv:
    """Serves websocket-client's small reads (2-byte header, length, payload) from one large
    ``recv`` of up to ``size`` bytes: one system call per batch of frames instead of two or
    three per frame (the receive path's main cost after the UTF-8 check). Keeps an offset into
    the last chunk, so serving a frame copies only that frame. ``before_recv`` runs before
    each real ``recv``, i.e. when every byte received so far has been consumed. Runner thread
    only."""

    __slots__ = ("_buf", "_pos", "_recv", "_size", "before_recv")

    def __init__(self, recv: Callable[[int], bytes], size: int = 262144) -> None:
        self._recv = recv
        self._size = size
        self._buf = b""
        self._pos = 0
        self.before_recv: Callable[[], None] | None = None

    def __call__(self, n: int) -> bytes:
        buf, pos = self._buf, self._pos
        left = len(buf) - pos
        if left <= 0:
            if self.before_recv is not None:
                self.before_recv()
            buf = self._recv(max(n, self._size))  # raises on timeout or a closed socket
            if len(buf) <= n:
                self._buf, self._pos = b"", 0
                return buf
            pos, left = 0, len(buf)
            self._buf = buf
        if n >= left:
            self._buf, self._pos = b"", 0
            return buf[pos:] if pos else buf
        self._pos = pos + n
        return buf[pos : pos + n]


def _buffer_reads(ws: Any) -> _BufferedRecv | None:
    """Install :class:`_BufferedRecv` under websocket-client's frame parser (if it has one)."""
    fb = getattr(ws, "frame_buffer", None)
    recv = getattr(ws, "_recv", None)
    if fb is None or recv is None or not hasattr(fb, "recv"):
        log.debug("websocket-client has no frame_buffer.recv: unbuffered reads")
        return None
    reader = _BufferedRecv(recv)
    fb.recv = reader
    return reader


class ReconnectingWebSocket:
    """Keeps one WebSocket connection alive on its own thread. See the module docstring."""

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
        self.name = name
        self._prepare = prepare
        self._on_frame = on_frame
        self._on_open = on_open
        self._on_close = on_close
        self._on_drained = on_drained
        self._drain_each_frame = False
        self.backoff = backoff or Backoff()
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
        self._ends: dict[str, int] = {}
        self._outbox: deque[str] = deque()
        self._outbox_lock = threading.Lock()
        self.outbox_max = outbox_max
        self.outbox_refused = 0

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
        with self._outbox_lock:
            if len(self._outbox) >= self.outbox_max:
                self.outbox_refused += 1
                return False
            self._outbox.append(payload)
        return True

    def outbox_size(self) -> int:
        """Frames queued and not yet written."""
        return len(self._outbox)

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
            self.connections, self.attempts, self.frames, self.connected.is_set(), ends
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
        _guard_frame_size(ws, self.hard_max_frame_bytes)
        reader = _buffer_reads(ws)
        if self._on_drained is not None:
            if reader is not None:
                reader.before_recv = self._drained
            self._drain_each_frame = reader is None
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
            reason = self._read(ws)
            self._drained()
        finally:
            self.connected.clear()
            self._guard(self.metrics.feed_up, self.name, False)
            with self._ws_lock:
                self._ws = None
            self._close(ws)
        if self._on_close is not None:
            try:
                self._on_close(reason)
            except Exception:
                log.exception("%s: on_close failed", self.name)
        return reason

    def _read(self, ws: Any) -> str:
        on_frame = self._on_frame
        metrics = self.metrics
        name = self.name
        monotonic = time.monotonic
        stop = self._stop
        last_rx = last_data = monotonic()
        ping_sent: float | None = None
        outbox = self._outbox
        while True:
            if outbox and not self._write_outbox(ws):
                return "send_failed"
            try:
                opcode, frame = ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                opcode, frame = 0, None
            except _FrameTooLarge as exc:
                self._throttle.warning("too_large", "%s: %s; reconnecting", name, exc)
                self._guard(metrics.feed_parse_error, name, "frame_too_large")
                return "frame_too_large"
            except websocket.WebSocketConnectionClosedException:
                return self._reconnect_reason or ("stopped" if stop.is_set() else "dropped")
            except (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException):
                return "protocol_error"
            except (OSError, websocket.WebSocketException):
                return self._reconnect_reason or ("stopped" if stop.is_set() else "dropped")
            now = monotonic()
            if opcode in (_OP_TEXT, _OP_BINARY):
                last_rx = last_data = now
                ping_sent = None
                self.frames += 1
                try:  # noqa: SIM105 (hot path: cheaper than contextlib.suppress)
                    metrics.feed_message(name)
                except Exception:
                    pass
                try:
                    on_frame(frame.data, opcode == _OP_BINARY)
                except Exception as exc:
                    self._throttle.warning("handler", "%s: frame handler failed: %r", name, exc)
                    self._guard(metrics.feed_parse_error, name, "handler_error")
                if self._drain_each_frame:
                    self._drained()
                if self._reconnect_reason is not None:
                    return self._reconnect_reason
                if stop.is_set():
                    return "stopped"
                continue
            if opcode == _OP_CLOSE:
                return "closed"
            if frame is not None:  # ping or pong
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
        while True:
            with self._outbox_lock:
                if not self._outbox:
                    return True
                payload = self._outbox[0]
            try:
                ws.send(payload)
            except Exception as exc:
                self._throttle.warning("send", "%s: send failed: %s", self.name, _describe(exc))
                return False
            with self._outbox_lock:
                self._outbox.popleft()

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

    def _close(self, ws: Any) -> None:
        """Polite close (close frame, short wait for the reply), then drop the socket."""
        try:
            if getattr(ws, "connected", False):
                ws.close(timeout=0.2)
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
