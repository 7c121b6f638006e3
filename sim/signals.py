"""``SignalFeed``: a local WebSocket server pushing trading signals, one JSON text frame each.

Clients connect to ``url`` (``ws://host:port/signals``). With a ``token``, the handshake
must carry ``Authorization: Bearer <token>`` or ``?token=<token>``, otherwise the reply
is HTTP 401 and no connection is made. Every frame goes to every connected client.

Clients answer each signal with an acknowledgement, a text frame ``{"ack": <signal_id>,
"outcome": …, …}``: :attr:`SignalFeed.acks` keeps the last answer per id. With
``redeliver=True`` the feed behaves like a strategy server that loses nothing: every signal
stays pending until some client acknowledges its id, and a client that connects first gets
every pending signal again, in the order they were sent (:attr:`SignalFeed.redelivered`
counts them).

Methods may be called from any thread; sending never blocks on a slow client (frames
are queued per connection). ``stop()`` (or leaving the ``with`` block) closes every
connection and joins every thread the feed started.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from sim.httpserver import HttpServer, Request, Response, WsAccept
from sim.sources import Signal, SignalSources
from sim.websocket import OP_BINARY, OP_TEXT, WsConnection, encode_frame

_KEEP = 100_000
"""Received messages and acknowledgements kept (the oldest half goes beyond)."""


class _FeedApp:
    def __init__(self, feed: SignalFeed) -> None:
        self.feed = feed

    def handle(self, req: Request) -> Response:
        if req.path == "/health":
            return Response.of_json({"ok": True, "clients": self.feed.client_count()})
        if req.path == "/send" and req.method == "POST":
            try:
                body = req.json()
                signals = [dict(x) for x in body["signals"]]
                rate = body.get("rate_per_s")
                times = self.feed.send_paced(
                    signals, float(rate) if rate else None, stamp=bool(body.get("stamp"))
                )
            except (ValueError, KeyError, TypeError) as exc:
                return Response.of_json({"error": str(exc)}, 400)
            return Response.of_json({"sent": len(times), "times": times})
        if req.path == "/acks" and req.method == "GET":
            try:
                since = int(req.query.get("since", "0"))
            except ValueError:
                return Response.of_json({"error": "since must be an integer"}, 400)
            return Response.of_json(self.feed.ack_log(since))
        if req.path == self.feed.path:
            return Response.of_json({"error": "WebSocket upgrade required"}, 400)
        return Response.of_json({"error": "not found"}, 404)

    def websocket(self, req: Request) -> WsAccept | Response:
        feed = self.feed
        if req.path != feed.path:
            return Response.of_json({"error": "not found"}, 404)
        if not feed.authorized(req):
            return Response.of_json(
                {"error": "unauthorized"}, 401, headers=[("WWW-Authenticate", "Bearer")]
            )
        return WsAccept(on_open=feed._opened, on_message=feed._received, on_close=feed._closed)


class SignalFeed:
    """WebSocket signal server on ``host:port`` (0 = free port), path ``/signals``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        path: str = "/signals",
        redeliver: bool = False,
    ) -> None:
        self.host = host
        self.token = token
        self.path = path
        self.redeliver = redeliver
        #: The last acknowledgement per signal id (the decoded frame).
        self.acks: dict[str, dict[str, Any]] = {}
        #: Signals sent and not acknowledged yet (with ``redeliver``): id -> encoded frame.
        self._pending: dict[str, bytes] = {}
        #: Signals sent again to a client that connected (with ``redeliver``).
        self.redelivered = 0
        #: Every acknowledgement with the ``time.time()`` it was read (bounded like acks).
        self._ack_log: list[tuple[float, dict[str, Any]]] = []
        self._ack_base = 0  # index of _ack_log[0] in the whole log
        self._stopped = threading.Event()
        self._cond = threading.Condition()
        self._clients: set[WsConnection] = set()
        #: ``time.monotonic()`` of every accepted client connection, in order.
        self.opened_at: list[float] = []
        self.received: list[str | bytes] = []
        self.sent_signals: list[Signal] = []
        self._sources: SignalSources | None = None
        self._server = HttpServer(_FeedApp(self), host, port, name="sim-signals")
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SignalFeed:
        """Start serving (returns self)."""
        if not self._started:
            self._started = True
            self._server.start()
        return self

    def stop(self) -> None:
        """Stop the sources, close every connection, join every thread. Idempotent."""
        self._stopped.set()
        self.stop_sources()
        self._server.stop()

    def __enter__(self) -> SignalFeed:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        return self._server.port

    @property
    def url(self) -> str:
        """``ws://host:port/signals`` (without the token)."""
        return f"ws://{self.host}:{self._server.port}{self.path}"

    # ------------------------------------------------------------------ clients

    def authorized(self, req: Request) -> bool:
        """Does the handshake carry the token (header or query)? Always True without one."""
        if self.token is None:
            return True
        header = req.headers.get("Authorization") or ""
        offered = header[7:].strip() if header.lower().startswith("bearer ") else ""
        offered = offered or req.query.get("token", "")
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _opened(self, conn: WsConnection) -> None:
        with self._cond:
            self._clients.add(conn)
            self.opened_at.append(time.monotonic())
            again = list(self._pending.values()) if self.redeliver else []
            self.redelivered += len(again)
            self._cond.notify_all()
        for frame in again:
            conn.send_frame(frame)

    def _closed(self, conn: WsConnection) -> None:
        with self._cond:
            self._clients.discard(conn)
            self._cond.notify_all()

    def _received(self, conn: WsConnection, message: str | bytes) -> None:
        ack = _ack_of(message)
        at = time.time()
        with self._cond:
            if ack is not None:
                self._ack_log.append((at, ack))
                if len(self._ack_log) > _KEEP:
                    drop = _KEEP // 2
                    del self._ack_log[:drop]
                    self._ack_base += drop
            self.received.append(message)
            if len(self.received) > _KEEP:  # a long demo: keep the newest
                del self.received[: _KEEP // 2]
            if ack is not None:
                self.acks.pop(ack["ack"], None)
                self.acks[ack["ack"]] = ack
                if len(self.acks) > _KEEP:
                    for old in list(self.acks)[: _KEEP // 2]:
                        del self.acks[old]
                self._pending.pop(ack["ack"], None)
            self._cond.notify_all()

    def pending(self) -> list[str]:
        """Ids of signals sent and not acknowledged (tracked with ``redeliver`` only)."""
        with self._cond:
            return list(self._pending)

    def wait_for_ack(self, signal_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
        """Block until ``signal_id`` is acknowledged; its acknowledgement, or None."""
        with self._cond:
            self._cond.wait_for(lambda: signal_id in self.acks, timeout)
            return self.acks.get(signal_id)

    def ack_log(self, since: int = 0) -> dict[str, Any]:
        """Acknowledgements read since position ``since`` of the log, with the time each was
        read: ``{"next": position to ask from next, "acks": [[time, ack], ...]}``."""
        with self._cond:
            start = max(0, since - self._ack_base)
            rows = [[t, a] for t, a in self._ack_log[start:]]
            return {"next": self._ack_base + len(self._ack_log), "acks": rows}

    def client_count(self) -> int:
        """Connected clients."""
        with self._cond:
            return len(self._clients)

    def wait_for_clients(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` clients are connected; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._clients) >= n, timeout)

    def wait_for_no_clients(self, timeout: float = 5.0) -> bool:
        """Block until every client is gone; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._clients, timeout)

    def wait_for_received(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Block until clients have sent at least ``n`` messages in total."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, timeout)

    def drop_connections(self) -> int:
        """Drop every client without a close frame (a network failure); returns how many."""
        with self._cond:
            clients = list(self._clients)
        for conn in clients:
            conn.abort()
        return len(clients)

    # ------------------------------------------------------------------ sending

    def _broadcast(self, frame: bytes) -> int:
        with self._cond:
            clients = list(self._clients)
        return sum(1 for conn in clients if conn.send_frame(frame))

    def send_signal(self, signal: dict[str, Any]) -> int:
        """Send one signal as a JSON text frame to every client; returns how many got it queued."""
        frame = encode_frame(OP_TEXT, json.dumps(signal).encode("utf-8"))
        with self._cond:
            self.sent_signals.append(dict(signal))
            sid = signal.get("signal_id")
            if self.redeliver and isinstance(sid, str):
                self._pending.pop(sid, None)  # a replay goes to the end, in sending order
                self._pending[sid] = frame
        return self._broadcast(frame)

    def send_paced(
        self,
        signals: Sequence[dict[str, Any]],
        rate_per_s: float | None = None,
        *,
        stamp: bool = False,
    ) -> list[float]:
        """Send ``signals`` in order, ``rate_per_s`` a second (sleeping between them, never
        spinning; None: all at once). ``stamp``: set each one's ``created_at`` to the moment
        it is sent. Returns the ``time.time()`` each was queued at. Ends early when the feed
        stops. (Also ``POST /send {"signals", "rate_per_s", "stamp"}`` on the feed's port.)"""
        times: list[float] = []
        t0 = time.perf_counter()
        for i, sig in enumerate(signals):
            if rate_per_s:
                delay = t0 + i / rate_per_s - time.perf_counter()
                if delay > 0 and self._stopped.wait(delay):
                    break
            now = time.time()
            times.append(now)
            self.send_signal({**sig, "created_at": now} if stamp else sig)
        return times

    def send_raw(self, data: str | bytes, binary: bool = False) -> int:
        """Send anything as one frame (text frames may carry invalid UTF-8; any size)."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        return self._broadcast(encode_frame(OP_BINARY if binary else OP_TEXT, payload))

    def send_frame_bytes(self, raw: bytes) -> int:
        """Write raw bytes on every connection (malformed frames, split frames, ...)."""
        return self._broadcast(raw)

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every queued frame has been written to the sockets."""
        with self._cond:
            clients = list(self._clients)
        return all(conn.flush(timeout) for conn in clients)

    # ------------------------------------------------------------------ demo sources

    def start_sources(
        self,
        symbols: Sequence[str],
        price_of: Callable[[str], float],
        accounts: Sequence[str] = ("main",),
        rate_per_s: float = 2.0,
        *,
        burst_prob: float = 0.5,
        replay_prob: float = 0.1,
        seed: int | None = None,
    ) -> SignalSources:
        """Start the four demo sources (see ``sim.sources``); replaces running ones."""
        self.stop_sources()
        self._sources = SignalSources(
            self.send_signal,
            symbols,
            price_of,
            accounts=accounts,
            rate_per_s=rate_per_s,
            burst_prob=burst_prob,
            replay_prob=replay_prob,
            seed=seed,
        )
        self._sources.start()
        return self._sources

    def stop_sources(self) -> None:
        """Stop the demo sources (no-op if none)."""
        if self._sources is not None:
            self._sources.stop()
            self._sources = None


def _ack_of(message: str | bytes) -> dict[str, Any] | None:
    """The acknowledgement a client sent, or None when the message is not one."""
    try:
        obj = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("ack"), str):
        return obj
    return None
