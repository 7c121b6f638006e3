"""A small HTTP/1.1 server bounded against slow, idle and rude clients.

Shared by the metrics/probe endpoint (:class:`infra.metrics.MetricsServer`) and the operator's
control endpoint (:mod:`supervision.control`): one design, one implementation.

Threads: one loop thread (``<name>-http``) accepts, reads requests and writes answers
without blocking (a selector); ``workers`` threads (``<name>-http-worker``) build the answers
by calling :meth:`BoundedHttpServer.handle`. So the threads are ``1 + workers`` whatever the
clients do, and a client that sends nothing holds no thread.

Per connection: the request head (at most ``max_request_bytes``, else ``431``) and, when the
server takes bodies (``max_body_bytes`` > 0), a body of ``Content-Length`` bytes (more:
``413``; chunked: ``411``) must arrive within ``read_timeout_s`` of the accept (else ``408``
and close: also a client trickling bytes); the answer must be taken within
``write_timeout_s``; one request per connection (``Connection: close``). At most
``max_connections`` are open: a new one beyond that closes the oldest still waiting for its
request (idle clients cannot lock others out), or, when every open one is being answered, is
answered ``503`` and closed at once. A method the server does not serve is ``405`` (with
``Allow``), a request line that is not HTTP/1.x ``400``.

Client misbehaviour (early close, reset, timeout) is counted (:meth:`stats`) and logged at
DEBUG through the logger given, at most one line per kind per 10 s; nothing is printed on
stderr. An exception in :meth:`handle` is logged (throttled, with its traceback) and answered
``500``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "OUTCOMES",
    "TEXT",
    "BindError",
    "BoundedHttpServer",
    "HttpRequest",
    "HttpResponse",
    "render_response",
]

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
OUTCOMES = ("served", "timeout", "write_timeout", "closed_early", "evicted", "refused")
"""Connection outcomes counted by :meth:`BoundedHttpServer.stats`."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class BindError(RuntimeError):
    """The server's address cannot be bound. The message names the address and the
    configuration key that set it; no traceback is worth printing for it."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One parsed request. ``headers``: names lower-cased (a repeated header keeps its last
    value); ``path`` without the query; ``peer``: ``host:port`` of the client."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    peer: str


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """An answer. ``headers`` are added to the standard ones (type, length, close)."""

    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = field(default=())


def render_response(
    status: int,
    body: bytes,
    content_type: str = TEXT,
    head_only: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n" + extra + "\r\n"
    ).encode("latin-1", "replace")
    return head if head_only else head + body


class _Conn:
    """One client connection (the loop thread owns it)."""

    __slots__ = ("accepted", "deadline", "inbuf", "need", "out", "peer", "phase", "sock")

    def __init__(self, sock: socket.socket, peer: str, now: float, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.accepted = now
        self.deadline = deadline
        self.inbuf = bytearray()
        self.need: int | None = None  # bytes of head and body, once the head is complete
        self.out: memoryview | None = None
        self.phase = "read"  # read -> busy (a worker builds the answer) -> write


def _peer(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)


def _content_length(head: bytes) -> tuple[int, int | None]:
    """``(length, None)`` of the body the head announces, or ``(0, status)`` of the answer
    that refuses it (411 for a chunked body, 400 for a bad length)."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return 0, 411
        if name == b"content-length":
            v = value.strip()
            if not v.isdigit() or len(v) > 12:
                return 0, 400
            length = int(v)
    return length, None


class BoundedHttpServer:
    """The server; see the module docstring. Subclasses implement :meth:`handle`.

    ``start()`` binds (port 0 picks a free port, see :attr:`port`) and serves; ``stop()``
    closes every connection and joins every thread it started. Any thread may call them.
    An address that cannot be bound raises :class:`BindError` naming the address and
    ``address_key``. ``name`` names the threads, ``label`` starts the log lines (``metrics
    HTTP: …``), ``logger`` takes them. ``methods``: the methods served (``HEAD`` is
    answered like ``GET`` without the body).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        name: str = "http",
        label: str = "HTTP",
        logger: logging.Logger | None = None,
        read_timeout_s: float = 5.0,
        write_timeout_s: float = 5.0,
        max_connections: int = 32,
        max_request_bytes: int = 8192,
        max_body_bytes: int = 0,
        workers: int = 2,
        methods: tuple[str, ...] = ("GET", "HEAD"),
        address_key: str = "",
    ) -> None:
        if max_connections < 1 or workers < 1 or read_timeout_s <= 0 or write_timeout_s <= 0:
            raise ValueError("need max_connections >= 1, workers >= 1 and positive timeouts")
        self.host = host
        self._port = port
        self.name = name
        self.label = label
        self.log = logger or log
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s
        self.max_connections = max_connections
        self.max_request_bytes = max_request_bytes
        self.max_body_bytes = max_body_bytes
        self.workers = workers
        self.methods = methods
        self.address_key = address_key
        self._server: socket.socket | None = None  # the listening socket
        self._bound_port = 0
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._jobs: queue.SimpleQueue[_Conn | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Conn, bytes]] = queue.SimpleQueue()
        self._conns: dict[int, _Conn] = {}  # fileno -> connection, in accept order
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._open = 0
        self._reading = 0
        self._log_windows: dict[str, list[float]] = {}
        self._accept_paused_until: float | None = None

    # -- what subclasses provide (worker threads) ----------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        """The answer to one request (a worker thread; may block briefly). An exception is
        answered ``500`` and logged."""
        return HttpResponse(404, b"not found\n")

    def on_start(self) -> None:
        """Called by :meth:`start` once bound, before the threads start."""

    def on_stop(self) -> None:
        """Called by :meth:`stop` once the threads are joined."""

    # -- the surface ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._bound_port if self._server is not None else self._port

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stats(self) -> dict[str, int]:
        """Connections by outcome (``served``, ``timeout``, ``write_timeout``,
        ``closed_early``, ``evicted``, ``refused``); ``open`` now, and of those ``reading``
        (still waiting for their request). Any thread."""
        with self._lock:
            out = dict(self._counts)
            out["open"] = self._open
            out["reading"] = self._reading
        return out

    def start(self) -> None:
        """Bind and start the loop and worker threads (idempotent). Raises
        :class:`BindError` when the address cannot be bound (in use, not an address of this
        machine, a privileged port), naming it and :attr:`address_key`."""
        if self._server is not None:
            return
        try:
            listener = socket.create_server(
                (self.host, self._port),
                family=socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                backlog=128,
            )
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise BindError(
                f"cannot listen on {self.host}:{self._port} (set by {self.address_key}): "
                f"{why[:1].lower() + why[1:]}"
            ) from None
        listener.setblocking(False)
        self._server = listener
        self._bound_port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping.clear()
        self.on_start()
        self._threads = [threading.Thread(target=self._loop, name=f"{self.name}-http", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"{self.name}-http-worker", daemon=True)
            for _ in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Close the listener and every connection; join the threads (idempotent)."""
        if self._server is None:
            return
        self._stopping.set()
        self._wake()
        for _ in range(self.workers):
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=5)
        self.on_stop()
        for sock in (self._server, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._server = self._wake_r = self._wake_w = None
        self._threads = []

    # -- the loop thread -----------------------------------------------------------------

    def _loop(self) -> None:
        listener, wake = self._server, self._wake_r
        assert listener is not None and wake is not None
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, "accept")
        sel.register(wake, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                paused = self._accept_paused_until
                if paused is not None and now >= paused:
                    self._accept_paused_until = paused = None
                    sel.register(listener, selectors.EVENT_READ, "accept")
                timeout = min(
                    (c.deadline for c in self._conns.values() if c.phase != "busy"),
                    default=now + 1.0,
                )
                if paused is not None:
                    timeout = min(timeout, paused)
                for key, events in sel.select(max(0.0, min(timeout - now, 1.0))):
                    what = key.data
                    if what == "accept":
                        self._accept(sel, listener)
                    elif what == "wake":
                        self._drain_done(sel, wake)
                    elif events & selectors.EVENT_READ:
                        self._read(sel, what)
                    else:
                        self._write(sel, what)
                self._expire(sel, time.monotonic())
        except Exception:  # a bug here must not kill the endpoint silently
            self.log.exception("%s loop failed; the endpoint is down", self.label)
        finally:
            for c in list(self._conns.values()):
                self._close(sel, c, None)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, listener: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: pause accepting for 0.1 s
                self._note("accept", "%s: accept failed: %s", self.label, exc)
                sel.unregister(listener)
                self._accept_paused_until = time.monotonic() + 0.1
                return
            sock.setblocking(False)
            now = time.monotonic()
            if len(self._conns) >= self.max_connections:
                oldest = next((c for c in self._conns.values() if c.phase == "read"), None)
                if oldest is None:
                    self._count("refused")
                    self._note(
                        "refused",
                        "%s: %d connections busy; refused one",
                        self.label,
                        len(self._conns),
                    )
                    self._send_now(sock, render_response(503, b"busy\n"))
                    sock.close()
                    continue
                self._note(
                    "evicted",
                    "%s: connection limit reached; dropped the oldest idle one",
                    self.label,
                )
                self._close(sel, oldest, "evicted")
            c = _Conn(sock, _peer(addr), now, now + self.read_timeout_s)
            self._conns[sock.fileno()] = c
            with self._lock:
                self._open += 1
                self._reading += 1
            sel.register(sock, selectors.EVENT_READ, c)

    def _read(self, sel: selectors.BaseSelector, c: _Conn) -> None:
        try:
            chunk = c.sock.recv(65536 if c.need is not None else 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._note("closed_early", "%s: client gone before its request: %s", self.label, exc)
            self._close(sel, c, "closed_early")
            return
        if not chunk:
            self._note("closed_early", "%s: client closed before its request", self.label)
            self._close(sel, c, "closed_early")
            return
        c.inbuf += chunk
        if c.need is None:
            end = c.inbuf.find(b"\r\n\r\n")
            if end < 0 and len(c.inbuf) <= self.max_request_bytes:
                return
            if end < 0 or end > self.max_request_bytes:
                self._note(
                    "bad_request",
                    "%s: request head over %d bytes",
                    self.label,
                    self.max_request_bytes,
                )
                sel.unregister(c.sock)
                self._answer(sel, c, render_response(431, b"request too large\n"))
                return
            need = end + 4
            if self.max_body_bytes > 0:
                length, refused = _content_length(bytes(c.inbuf[:end]))
                if refused is None and length > self.max_body_bytes:
                    refused = 413
                if refused is not None:
                    sel.unregister(c.sock)
                    body = {
                        400: b"bad Content-Length\n",
                        411: b"send a Content-Length (no chunked body)\n",
                        413: f"body over {self.max_body_bytes} bytes\n".encode(),
                    }[refused]
                    self._answer(sel, c, render_response(refused, body))
                    return
                need += length
            c.need = need
        if len(c.inbuf) < c.need:
            return
        del c.inbuf[c.need :]
        sel.unregister(c.sock)
        self._set_phase(c, "busy")
        self._jobs.put(c)

    def _drain_done(self, sel: selectors.BaseSelector, wake: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while wake.recv(4096):
                pass
        while True:
            try:
                c, data = self._done.get_nowait()
            except queue.Empty:
                return
            if c.sock.fileno() >= 0:
                self._answer(sel, c, data)

    def _answer(self, sel: selectors.BaseSelector, c: _Conn, data: bytes) -> None:
        self._set_phase(c, "write")
        c.out = memoryview(data)
        c.deadline = time.monotonic() + self.write_timeout_s
        sel.register(c.sock, selectors.EVENT_WRITE, c)
        self._write(sel, c)

    def _write(self, sel: selectors.BaseSelector, c: _Conn) -> None:
        out = c.out
        assert out is not None
        try:
            n = c.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._note("closed_early", "%s: client gone before the answer: %s", self.label, exc)
            self._close(sel, c, "closed_early")
            return
        c.out = out[n:]
        if not c.out:
            self._close(sel, c, "served")

    def _expire(self, sel: selectors.BaseSelector, now: float) -> None:
        for c in [c for c in self._conns.values() if c.phase != "busy" and c.deadline <= now]:
            if c.phase == "read":
                self._note(
                    "timeout",
                    "%s: no complete request within %.1fs",
                    self.label,
                    self.read_timeout_s,
                )
                self._send_now(c.sock, render_response(408, b"request timeout\n"))
                self._close(sel, c, "timeout")
            else:
                self._note(
                    "write_timeout",
                    "%s: answer not taken within %.1fs",
                    self.label,
                    self.write_timeout_s,
                )
                self._close(sel, c, "write_timeout")

    def _close(self, sel: selectors.BaseSelector, c: _Conn, outcome: str | None) -> None:
        """Forget and close ``c``; ``outcome`` counted (None: the server is stopping) before
        the client can see the close."""
        fd = c.sock.fileno()
        if fd < 0:
            return
        if c.phase != "busy":
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(c.sock)
        self._conns.pop(fd, None)
        with self._lock:
            self._open -= 1
            if c.phase == "read":
                self._reading -= 1
            if outcome is not None:
                self._counts[outcome] += 1
        c.sock.close()

    def _set_phase(self, c: _Conn, phase: str) -> None:
        if c.phase == "read":
            with self._lock:
                self._reading -= 1
        c.phase = phase

    @staticmethod
    def _send_now(sock: socket.socket, data: bytes) -> None:
        """Best effort, never blocks: a short answer into an empty send buffer."""
        with contextlib.suppress(OSError):
            sock.send(data)

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _count(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] += 1

    def _note(self, kind: str, msg: str, *args: object) -> None:
        """A DEBUG line, at most one per ``kind`` per 10 s (with what was suppressed)."""
        if not self.log.isEnabledFor(logging.DEBUG):
            return
        now = time.monotonic()
        w = self._log_windows.setdefault(kind, [-1e9, 0.0])
        if now - w[0] < 10.0:
            w[1] += 1
            return
        suppressed, w[0], w[1] = int(w[1]), now, 0.0
        self.log.debug(
            msg + (" (%d more like it)" if suppressed else ""),
            *args,
            *([suppressed] if suppressed else []),
        )

    # -- worker threads ------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            c = self._jobs.get()
            if c is None:
                return
            try:
                data = self._respond(bytes(c.inbuf), c.peer)
            except Exception:
                self._error()
                data = render_response(500, b"internal error\n")
            self._done.put((c, data))
            self._wake()

    def _error(self) -> None:
        with self._lock:
            w = self._log_windows.setdefault("error", [-1e9, 0.0])
            emit = time.monotonic() - w[0] >= 10.0
            if emit:
                w[0] = time.monotonic()
        if emit:
            self.log.error("%s: building an answer failed", self.label, exc_info=True)

    def _respond(self, raw: bytes, peer: str) -> bytes:
        """Parse one request (head and body) and answer it (worker thread)."""
        end = raw.find(b"\r\n\r\n")
        head, body = raw[:end], raw[end + 4 :]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return render_response(400, b"bad request\n")
        try:
            method = parts[0].decode("ascii")
            target = parts[1].decode("ascii")
        except UnicodeDecodeError:
            return render_response(400, b"bad request\n")
        if method not in self.methods:
            allow = ", ".join(self.methods)
            return render_response(405, f"{allow} only\n".encode(), headers=(("Allow", allow),))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                return render_response(400, b"bad header line\n")
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        path, _, query = target.partition("?")
        req = HttpRequest(method, path, query, headers, body, peer)
        resp = self.handle(req)
        return render_response(
            resp.status, resp.body, resp.content_type, method == "HEAD", resp.headers
        )
