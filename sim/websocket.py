"""Minimal RFC 6455 WebSocket server side: handshake, framing, and one connection object.

``WsConnection`` wraps an upgraded socket. Threads:

- the HTTP handler thread that upgraded the socket calls ``run_reader`` and stays in it
  until the connection ends (it answers pings, echoes close frames, hands text/binary
  messages to a callback);
- one writer thread per connection drains an outbound queue, so a slow client never
  blocks the thread that publishes (a client more than ``max_queue`` frames behind is
  disconnected, as Binance drops slow consumers);
- any thread may call ``send_*``, ``close``, ``abort``.

Client frames must be masked (a protocol error closes with 1002). Fragmented messages
are reassembled. Nothing here raises into publishers: a dead connection just drops frames.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import logging
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import BinaryIO

log = logging.getLogger(__name__)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
CONTROL_OPS = frozenset({OP_CLOSE, OP_PING, OP_PONG})
DATA_OPS = frozenset({OP_TEXT, OP_BINARY})

_conn_ids = itertools.count(1)


class ProtocolError(Exception):
    """A client broke the protocol; ``code`` is the close status to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_response(key: str) -> bytes:
    """The complete ``101 Switching Protocols`` reply for a handshake with ``key``."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
        "\r\n"
    ).encode("ascii")


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame on the wire. Servers send unmasked frames (``mask`` is for tests/faults)."""
    head = bytearray()
    head.append((0x80 if fin else 0) | (opcode & 0x0F))
    mask_bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if mask is not None:
        head += mask
        payload = _unmask(payload, mask)
    return bytes(head) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """Payload of a close frame."""
    return struct.pack("!H", code) + reason.encode("utf-8")[:120]


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


def _read_exact(rfile: BinaryIO, n: int) -> bytes:
    data = rfile.read(n)
    if data is None or len(data) < n:
        raise EOFError("connection closed mid-frame")
    return data


def read_frame(rfile: BinaryIO, max_size: int) -> tuple[bool, int, bytes]:
    """Read one client frame: (fin, opcode, unmasked payload). EOFError on a closed socket."""
    b0, b1 = _read_exact(rfile, 2)
    fin = bool(b0 & 0x80)
    if b0 & 0x70:
        raise ProtocolError(1002, "reserved bits set")
    opcode = b0 & 0x0F
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _read_exact(rfile, 8))
    if opcode in CONTROL_OPS and (n > 125 or not fin):
        raise ProtocolError(1002, "bad control frame")
    if n > max_size:
        raise ProtocolError(1009, "frame too big")
    if not masked:
        raise ProtocolError(1002, "client frames must be masked")
    mask = _read_exact(rfile, 4)
    return fin, opcode, _unmask(_read_exact(rfile, n), mask)


MessageCallback = Callable[["WsConnection", "str | bytes"], None]


class WsConnection:
    """One accepted WebSocket connection (server side). See the module docstring for threads."""

    def __init__(
        self,
        sock: socket.socket,
        rfile: BinaryIO,
        *,
        path: str = "",
        max_queue: int = 200_000,
        max_message: int = 1 << 20,
    ) -> None:
        self.id = next(_conn_ids)
        self.path = path
        self.sock = sock
        self.rfile = rfile
        self.max_queue = max_queue
        self.max_message = max_message
        self.closed = threading.Event()
        self.tags: set[str] = set()
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._queued_seq = 0
        self._written_seq = 0
        self._closing = False
        self._close_sent = False
        self._writer = threading.Thread(
            target=self._write_loop, name=f"ws-writer-{self.id}", daemon=True
        )
        self._writer.start()

    # ------------------------------------------------------------ sending

    def send_text(self, text: str) -> int:
        """Queue a text frame; returns its sequence number (0 if the connection is closed)."""
        return self.send_frame(encode_frame(OP_TEXT, text.encode("utf-8")))

    def send_bytes(self, data: bytes, *, binary: bool = True) -> int:
        """Queue ``data`` as one binary frame (or a text frame with unchecked bytes)."""
        return self.send_frame(encode_frame(OP_BINARY if binary else OP_TEXT, data))

    def send_frame(self, raw: bytes) -> int:
        """Queue already-encoded wire bytes (any frame, even a malformed one).

        Returns the frame's sequence number, or 0 if the connection is closed or was just
        dropped for being too slow (more than ``max_queue`` frames behind).
        """
        with self._cond:
            if self._closing or self.closed.is_set():
                return 0
            if len(self._queue) < self.max_queue:
                self._queue.append(raw)
                self._queued_seq += 1
                self._cond.notify()
                return self._queued_seq
            backlog = len(self._queue)
            self._closing = True
            self._cond.notify_all()
        log.warning("ws %s: client too slow (%d frames queued), dropping it", self.id, backlog)
        self.abort()
        return 0

    def wait_written(self, seq: int, timeout: float) -> bool:
        """Block until frame ``seq`` has been handed to the socket (or the connection died)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._written_seq >= seq or self.closed.is_set(), timeout
            )

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything queued so far has been written."""
        with self._cond:
            seq = self._queued_seq
        return self.wait_written(seq, timeout)

    def pending(self) -> int:
        """Frames queued but not yet written."""
        with self._cond:
            return len(self._queue)

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: bool(self._queue) or self._closing or self.closed.is_set()
                )
                if self.closed.is_set() or (self._closing and not self._queue):
                    return
                batch = list(self._queue)
                self._queue.clear()
                seq = self._queued_seq
            try:
                self.sock.sendall(b"".join(batch))
            except OSError:
                self._mark_closed()
                return
            with self._cond:
                self._written_seq = seq
                self._cond.notify_all()

    # ------------------------------------------------------------ closing

    def close(self, code: int = 1000, reason: str = "", timeout: float = 2.0) -> None:
        """Polite close: queue a close frame, wait briefly for the client, then drop."""
        with self._cond:
            if self._close_sent or self.closed.is_set():
                send = False
            else:
                self._close_sent = True
                self._queue.append(encode_frame(OP_CLOSE, close_payload(code, reason)))
                self._queued_seq += 1
                seq = self._queued_seq
                self._cond.notify()
                send = True
        if send:
            self.wait_written(seq, timeout)
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self.closed.wait(timeout)
        self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close frame (a network failure)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._mark_closed()

    def _mark_closed(self) -> None:
        with self._cond:
            self.closed.set()
            self._closing = True
            self._cond.notify_all()

    def join_writer(self, timeout: float = 2.0) -> None:
        """Wait for the writer thread to end (after the connection closed)."""
        self._writer.join(timeout)

    # ------------------------------------------------------------ reading

    def run_reader(self, on_message: MessageCallback | None = None) -> None:
        """Read client frames until the connection ends. Runs on the upgrading thread.

        Pings are answered, a close frame is echoed, data messages go to ``on_message``
        (exceptions from it are logged and ignored). Returns when the connection is closed.
        """
        parts: list[bytes] = []
        part_op = 0
        try:
            while not self.closed.is_set():
                fin, op, payload = read_frame(self.rfile, self.max_message)
                if op == OP_PING:
                    self.send_frame(encode_frame(OP_PONG, payload))
                elif op == OP_PONG:
                    continue
                elif op == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
                    with self._cond:
                        already = self._close_sent
                        self._close_sent = True
                    if not already:
                        self.send_frame(encode_frame(OP_CLOSE, close_payload(code)))
                        self.flush(1.0)
                    break
                elif op in DATA_OPS or op == OP_CONT:
                    if op != OP_CONT:
                        if parts:
                            raise ProtocolError(1002, "new message inside a fragmented one")
                        part_op = op
                    elif not parts:
                        raise ProtocolError(1002, "continuation without a start")
                    parts.append(payload)
                    if sum(len(p) for p in parts) > self.max_message:
                        raise ProtocolError(1009, "message too big")
                    if fin:
                        data = b"".join(parts)
                        parts = []
                        self._deliver(on_message, part_op, data)
                else:
                    raise ProtocolError(1002, f"unknown opcode {op}")
        except ProtocolError as exc:
            self.send_frame(encode_frame(OP_CLOSE, close_payload(exc.code, exc.reason)))
            self.flush(1.0)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            self.abort()

    def _deliver(self, on_message: MessageCallback | None, op: int, data: bytes) -> None:
        if on_message is None:
            return
        message: str | bytes
        if op == OP_TEXT:
            try:
                message = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(1007, "invalid utf-8") from None
        else:
            message = data
        try:
            on_message(self, message)
        except Exception:
            log.exception("ws %s: message handler failed", self.id)
