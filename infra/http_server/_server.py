"""The bounded server itself: :class:`BoundedHttpServer` (one selector loop thread, a fixed
pool of workers, read and write deadlines, a connection cap). The design, the bounds and the
answers to rude clients are described in :mod:`infra.http_server`.

Threads: the loop thread owns every connection; the workers only build answers (through
:meth:`BoundedHttpServer.handle`) and hand them back through a queue and a wake-up socket;
``start``/``stop``/``stats`` from any thread.

Why over 400 lines in one module: it is one state machine (accept, read, hand to a worker,
write, expire, close) over one connection table and one set of counters, and each step keeps
the bounds of the others; the parts that need no socket (the HTTP text, the log throttle) are
in ``_wire`` and ``_logwindow``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
from typing import TypedDict

from infra.http_server._wire import (
    HttpRequest,
    HttpResponse,
    parse_request,
    peer_name,
    render_response,
    request_size,
)
from infra.logs import LogWindows

__all__ = ["OUTCOMES", "BindError", "BoundedHttpServer", "HttpBounds"]

log = logging.getLogger("infra.http_server")  # the package's name, as before the split

OUTCOMES = ("served", "timeout", "write_timeout", "closed_early", "evicted", "refused")
"""Connection outcomes counted by :meth:`BoundedHttpServer.stats`."""


class BindError(RuntimeError):
    """The server's address cannot be bound. The message names the address and the
    configuration key that set it; no traceback is worth printing for it."""


class HttpBounds(TypedDict, total=False):
    """The bounds a subclass's constructor passes on to :class:`BoundedHttpServer` as
    ``**bounds``: what a caller leaves out takes the server's default, written only there."""

    read_timeout_s: float
    write_timeout_s: float
    max_connections: int
    max_request_bytes: int
    workers: int


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


class BoundedHttpServer:
    """The server; see :mod:`infra.http_server`. Subclasses implement :meth:`handle`.

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
        self._log_windows = LogWindows(10.0)
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
            c = _Conn(sock, peer_name(addr), now, now + self.read_timeout_s)
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
            size = request_size(c.inbuf, self.max_request_bytes, self.max_body_bytes)
            if size is None:
                return
            if isinstance(size, HttpResponse):  # refused by its head: answered at once
                if size.status == 431:
                    self._note(
                        "bad_request",
                        "%s: request head over %d bytes",
                        self.label,
                        self.max_request_bytes,
                    )
                sel.unregister(c.sock)
                self._answer(sel, c, render_response(size.status, size.body))
                return
            c.need = size
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
        suppressed = self._log_windows.admit(kind)
        if suppressed is None:
            return
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
        """The failed answer's traceback, at most one line per 10 s (worker thread)."""
        if self._log_windows.admit("error") is not None:
            self.log.error("%s: building an answer failed", self.label, exc_info=True)

    def _respond(self, raw: bytes, peer: str) -> bytes:
        """Parse one request (head and body) and answer it (worker thread)."""
        req = parse_request(raw, peer, self.methods)
        if isinstance(req, HttpResponse):  # refused before handle: the whole answer
            return render_response(req.status, req.body, req.content_type, False, req.headers)
        resp = self.handle(req)
        return render_response(
            resp.status, resp.body, resp.content_type, req.method == "HEAD", resp.headers
        )
