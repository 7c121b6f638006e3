"""A small threaded HTTP/1.1 server with WebSocket upgrade (exchange and signal feed share it).

One thread per TCP connection (``ThreadingHTTPServer``), keep-alive, TCP_NODELAY (without
it each reply stalls ~44 ms on Nagle + delayed ACK). Each request becomes a ``Request``
handed to an ``App``; the app returns a ``Response`` (which may ask to hold the reply,
drop the connection without reply, or run hooks before/after the bytes are written) or,
for an upgrade, a ``WsAccept`` with callbacks.

``HttpServer.stop()`` closes the listener, drops every open connection and joins every
thread it started, so tests leave nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from sim.websocket import WsConnection, handshake_response

log = logging.getLogger(__name__)

REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    418: "I'm a teapot",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Request:
    """One HTTP request. ``params`` merges the query string and a form-encoded body."""

    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    #: The query string as received (undecoded): what a signature over the query covers.
    raw_query: str = ""

    @property
    def params(self) -> dict[str, str]:
        """Query and form parameters (body wins on a clash)."""
        out = dict(self.query)
        ctype = self.headers.get("Content-Type", "") or ""
        if self.body and "json" not in ctype:
            with contextlib.suppress(UnicodeDecodeError):
                out.update(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        return out

    def json(self) -> Any:
        """The body parsed as JSON ({} when empty). ValueError on bad JSON."""
        if not self.body:
            return {}
        return json.loads(self.body)


@dataclass
class Response:
    """What to send back.

    ``hold_s`` delays the reply (woken early by server stop); ``drop`` closes the
    connection without any reply; ``before_write`` runs just before the bytes are
    written, ``after_write`` just after.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    hold_s: float = 0.0
    drop: bool = False
    before_write: Callable[[], None] | None = None
    after_write: Callable[[], None] | None = None

    @classmethod
    def of_json(cls, data: Any, status: int = 200, **kw: Any) -> Response:
        """A JSON response."""
        return cls(status=status, body=json.dumps(data, separators=(",", ":")).encode(), **kw)


@dataclass
class WsAccept:
    """Accept a WebSocket upgrade: callbacks run on the connection's handler thread."""

    on_open: Callable[[WsConnection], None] | None = None
    on_message: Callable[[WsConnection, str | bytes], None] | None = None
    on_close: Callable[[WsConnection], None] | None = None


class App(Protocol):
    """What an ``HttpServer`` serves."""

    def handle(self, req: Request) -> Response:
        """Answer a plain HTTP request. Called on the connection's thread."""

    def websocket(self, req: Request) -> WsAccept | Response:
        """Accept an upgrade (``WsAccept``) or refuse it with an HTTP response."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        req = Request(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=self.headers,
            body=body,
            raw_query=split.query,
        )
        app = self.server.app
        if (self.headers.get("Upgrade") or "").lower() == "websocket":
            self._upgrade(app, req)
            return
        try:
            resp = app.handle(req)
        except Exception:
            log.exception("handler failed for %s %s", req.method, req.path)
            resp = Response.of_json({"code": -1000, "msg": "An unknown error occurred."}, 500)
        self._send(resp)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _send(self, resp: Response) -> None:
        if resp.hold_s > 0:
            self.server.stopping.wait(resp.hold_s)
        if resp.drop or self.server.stopping.is_set():
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        reason = REASONS.get(resp.status, "Unknown")
        head = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Content-Type: {resp.content_type}",
            f"Content-Length: {len(resp.body)}",
        ]
        head.extend(f"{k}: {v}" for k, v in resp.headers)
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body
        if resp.before_write is not None:
            resp.before_write()
        try:
            self.wfile.write(raw)
        except OSError:
            self.close_connection = True
        if resp.after_write is not None:
            resp.after_write()

    def _upgrade(self, app: App, req: Request) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if not key or self.headers.get("Sec-WebSocket-Version", "13") != "13":
            self._send(Response.of_json({"error": "bad websocket handshake"}, 400))
            self.close_connection = True
            return
        try:
            accept = app.websocket(req)
        except Exception:
            log.exception("websocket accept failed for %s", req.path)
            accept = Response.of_json({"error": "internal"}, 500)
        if isinstance(accept, Response):
            self._send(accept)
            self.close_connection = True
            return
        self.close_connection = True
        conn = WsConnection(self.connection, self.rfile, path=self.path)  # type: ignore[arg-type]
        # The 101 reply is the first thing the writer sends: a stream registered by on_open
        # below may publish at once, and its frames must follow the handshake.
        conn.send_frame(handshake_response(key))
        self.server.ws_opened(conn)
        try:
            if accept.on_open is not None:
                accept.on_open(conn)
            conn.run_reader(accept.on_message)
        finally:
            conn.abort()
            self.server.ws_closed(conn)
            if accept.on_close is not None:
                try:
                    accept.on_close(conn)
                except Exception:
                    log.exception("ws on_close failed")
            conn.join_writer()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], app: App) -> None:
        self.app = app
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._sim_threads: set[threading.Thread] = set()
        self.websockets: set[WsConnection] = set()
        super().__init__(addr, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(
            target=self._run_request, args=(request, client_address), daemon=True, name="sim-http"
        )
        with self._lock:
            self._sim_threads.add(t)
        t.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished (reset, broken pipe: a killed process) is routine, logged
        at debug; anything else is logged with its traceback (not printed to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            log.debug("client %s went away: %r", client_address, exc)
            return
        log.exception("sim: request from %s failed", client_address)

    def _run_request(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._sim_threads.discard(threading.current_thread())

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.add(sock)
        if self.stopping.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)

    def ws_opened(self, conn: WsConnection) -> None:
        with self._lock:
            self.websockets.add(conn)

    def ws_closed(self, conn: WsConnection) -> None:
        with self._lock:
            self.websockets.discard(conn)

    def close_all(self) -> None:
        with self._lock:
            socks = list(self._socks)
            conns = list(self.websockets)
        for conn in conns:
            conn.abort()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def join_all(self, timeout: float) -> None:
        with self._lock:
            threads = list(self._sim_threads)
        for t in threads:
            t.join(timeout)


class HttpServer:
    """Serves an ``App`` on ``host:port`` (0 = any free port) from a background thread.

    ``start()`` binds and returns at once; ``stop()`` is idempotent and joins everything.
    """

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, name: str = "sim") -> None:
        self._server = _Server((host, port), app)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start accepting connections."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self._name}-accept",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, drop every connection, join every thread. Idempotent."""
        srv = self._server
        if srv.stopping.is_set():
            return
        srv.stopping.set()
        if self._thread is not None:
            srv.shutdown()
            self._thread.join(timeout)
        srv.server_close()
        srv.close_all()
        srv.join_all(timeout)

    @property
    def websockets(self) -> list[WsConnection]:
        """Open WebSocket connections (a snapshot)."""
        with self._server._lock:
            return list(self._server.websockets)
