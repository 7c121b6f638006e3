"""The patches of websocket-client's internals: buffered reads, messages bounded as they arrive.

websocket-client 1.9.2 (pinned in constraints.txt) joins the fragments of a message without
limit (``continuous_frame.add``: ``bytes +=``, quadratic) and reads a frame's whole payload
before anyone sees its length. So the feeds' runner (:mod:`infra.feeds.ws_client`) does not
use ``recv_data_frame``: it reads frames with ``WebSocket.recv_frame`` and joins messages
itself (:class:`BoundedMessages`), and :func:`install` patches one ``WebSocket`` object's
``frame_buffer`` (never the class) in two places:

* ``frame_buffer.recv``: :class:`BufferedRecv` (every byte of the connection is read there);
* ``frame_buffer.recv_length``: after the original has read the length (the header is in
  ``frame_buffer.header``, the mask and payload are still on the wire), a header check that
  may raise before a byte of the payload is read.

At most ``limit`` bytes of a message (the sum of its fragments) are ever held: a message over
it, in one frame or in many, is read in 256 KiB chunks and dropped as it arrives
(:data:`EV_OVERSIZED`). A violation of the WebSocket framing (RFC 6455: reserved bits or
opcodes, a control frame over 125 bytes or split, a continuation outside a message, a new
message inside a split one) raises ``WebSocketProtocolException`` before its payload is read.

Everything here runs on the runner thread of one connection. This is the only module that
touches websocket-client's private attributes (``WebSocket._recv``, ``frame_buffer``'s
``recv``, ``recv_length``, ``recv_mask``, ``needs_mask``, ``clear``, ``header``, ``length``,
``recv_buffer``): tests/feeds/test_ws_client.py::test_the_websocket_client_internals_we_rely_on
pins them against the pinned version, and :func:`check_websocket_client` lets the runner refuse
to start when they are gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import websocket

__all__ = [
    "DISCARD_CHUNK",
    "EV_OVERSIZED",
    "EV_PROGRESS",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "BoundedMessages",
    "BufferedRecv",
    "check_websocket_client",
    "install",
]


class BufferedRecv:
    """Serves websocket-client's small reads (2-byte header, length, payload) from one large
    ``recv`` of up to ``size`` bytes: one system call per batch of frames instead of two or
    three per frame (the receive path's main cost after the UTF-8 check). Keeps an offset into
    the last chunk, so serving a frame copies only that frame. Never returns more than asked
    (websocket-client's ``recv_strict`` relies on it to leave nothing in its own buffer).
    ``before_recv`` runs before each real ``recv``, i.e. when every byte received so far has
    been consumed. Runner thread only."""

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


OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
EV_PROGRESS = -1
"""``BoundedMessages.next``: bytes arrived, no message completed (a fragment, a discard)."""
EV_OVERSIZED = -2
"""``BoundedMessages.next``: a message over the limit ended; its bytes were discarded."""
DISCARD_CHUNK = 256 * 1024
_DISCARD_STEP = 4 * 1024 * 1024
"""Bytes discarded per ``BoundedMessages.next`` call (then the runner looks at stop, sends,
pings)."""


def check_websocket_client() -> str | None:
    """What is missing of the websocket-client internals this module patches, or None.

    Called by the runner's constructor (any thread); a name like ``frame_buffer.recv_length``."""
    fb = getattr(websocket, "_abnf", None)
    cls = getattr(fb, "frame_buffer", None)
    if cls is None:
        return "websocket._abnf.frame_buffer"
    for name in ("recv_length", "recv_mask", "needs_mask", "clear", "recv_frame"):
        if not callable(getattr(cls, name, None)):
            return f"frame_buffer.{name}"
    if not callable(getattr(websocket.WebSocket, "recv_frame", None)):
        return "WebSocket.recv_frame"
    return None


class _Skip(Exception):
    """Internal: the frame whose header was just read is discarded (its message is too big)."""


class BoundedMessages:
    """Whole messages from one connection, at most ``limit`` bytes held; runner thread only.

    Its constructor patches ``ws.frame_buffer.recv_length`` to run the header check; build it
    with :func:`install`, which installs the buffered read first.

    :meth:`next` returns ``(kind, payload)``: a data message ``(OP_TEXT|OP_BINARY, bytes)``
    (the fragments joined), a control frame ``(OP_PING|OP_PONG|OP_CLOSE, payload)`` (a ping
    is answered here, a close acknowledged), ``(EV_PROGRESS, None)`` when bytes arrived but
    no message completed, or ``(EV_OVERSIZED, None)`` when a message whose fragments add up
    to more than ``limit`` bytes ended (:attr:`last_size` bytes, :attr:`last_binary`). Such a
    message is never held: from the frame that crosses the limit on, its payload bytes are
    read in chunks of 256 KiB and dropped, at most 4 MiB per call. It raises websocket-client's
    exceptions: ``WebSocketTimeoutException`` when no byte came within the socket timeout
    (what was read so far is kept: call again), ``WebSocketProtocolException`` for a framing
    violation (the stream cannot be trusted: end the connection), connection errors.
    """

    __slots__ = (
        "_discarding",
        "_fb",
        "_opcode",
        "_parts",
        "_read",
        "_size",
        "_skip",
        "_skip_fin",
        "_ws",
        "last_binary",
        "last_size",
        "limit",
    )

    def __init__(self, ws: Any, limit: int) -> None:
        self._ws = ws
        fb = ws.frame_buffer
        self._fb = fb
        self._read: Callable[[int], bytes] = fb.recv
        self.limit = limit
        self._opcode = 0  # the opcode of the message being received; 0: none
        self._parts: list[bytes] = []
        self._size = 0  # its bytes so far (announced lengths, kept or discarded)
        self._discarding = False
        self._skip = -1  # payload bytes of the discarded frame still to drop; -1: none
        self._skip_fin = False
        self.last_size = 0
        self.last_binary = False
        original = fb.recv_length

        def recv_length() -> None:
            original()
            self._check_header()

        fb.recv_length = recv_length

    def at_boundary(self) -> bool:
        """True between frames (a polite close may read the peer's frames)."""
        return self._skip < 0 and self._fb.header is None

    def _check_header(self) -> None:
        """Inside ``recv_frame``, the header and length read, nothing more: refuse a framing
        violation, or raise :class:`_Skip` for a data frame whose message goes over the limit."""
        fin, rsv1, rsv2, rsv3, opcode, _mask, _ = self._fb.header
        length: int = self._fb.length
        if rsv1 or rsv2 or rsv3:
            raise websocket.WebSocketProtocolException("reserved bits set")
        if opcode >= OP_CLOSE:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise websocket.WebSocketProtocolException(f"invalid opcode {opcode}")
            if length > 125 or not fin:
                raise websocket.WebSocketProtocolException("control frame over 125 bytes or split")
            return
        if opcode == OP_CONT:
            if not self._opcode:
                raise websocket.WebSocketProtocolException("continuation frame outside a message")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._opcode:
                raise websocket.WebSocketProtocolException("new message inside a split one")
        else:
            raise websocket.WebSocketProtocolException(f"invalid opcode {opcode}")
        if self._discarding or self._size + length > self.limit:
            raise _Skip

    def next(self) -> tuple[int, bytes | None]:
        """The next event (see the class docstring)."""
        if self._skip >= 0:
            return self._discard()
        try:
            frame = self._ws.recv_frame()
        except _Skip:
            fb = self._fb
            fin, opcode, length = fb.header[0], fb.header[4], fb.length
            if opcode != OP_CONT:
                self._opcode = opcode
            self._parts = []
            self._discarding = True
            self._size += length
            self._skip = length
            self._skip_fin = bool(fin)
            return self._discard()
        opcode = frame.opcode
        data: bytes = frame.data
        if opcode in (OP_TEXT, OP_BINARY):
            if frame.fin:  # the usual case: one frame, one message
                return opcode, data
            self._opcode = opcode
            self._parts.append(data)
            self._size = len(data)
            return EV_PROGRESS, None
        if opcode == OP_CONT:
            self._parts.append(data)
            self._size += len(data)
            return self._end() if frame.fin else (EV_PROGRESS, None)
        if opcode == OP_PING:
            self._ws.pong(data)
        elif opcode == OP_CLOSE:
            with contextlib.suppress(Exception):
                self._ws.send_close()
        return opcode, data

    def _discard(self) -> tuple[int, bytes | None]:
        """Drop up to ``_DISCARD_STEP`` payload bytes of the frame being discarded."""
        fb = self._fb
        if fb.needs_mask():
            fb.recv_mask()  # servers do not mask; a peer that does gets its 4 bytes read
        if fb.recv_buffer:  # not with BufferedRecv (it never over-reads): to be safe
            held = b"".join(fb.recv_buffer)
            take = min(len(held), self._skip)
            fb.recv_buffer = [held[take:]] if take < len(held) else []
            self._skip -= take
        budget = _DISCARD_STEP
        read = self._read
        while self._skip > 0 and budget > 0:
            n = len(read(min(self._skip, DISCARD_CHUNK)))  # raises on a timeout: resumable
            if n <= 0:
                raise websocket.WebSocketConnectionClosedException("connection closed")
            self._skip -= n
            budget -= n
        if self._skip > 0:
            return EV_PROGRESS, None
        self._skip = -1
        fb.clear()
        return self._end() if self._skip_fin else (EV_PROGRESS, None)

    def _end(self) -> tuple[int, bytes | None]:
        """The message's last fragment is in: the joined message, or the oversized event."""
        opcode, parts = self._opcode, self._parts
        self.last_size, self.last_binary = self._size, opcode == OP_BINARY
        discarded = self._discarding
        self._opcode, self._parts, self._size, self._discarding = 0, [], 0, False
        if discarded:
            return EV_OVERSIZED, None
        return opcode, parts[0] if len(parts) == 1 else b"".join(parts)


def install(ws: Any, limit: int) -> tuple[BoundedMessages, BufferedRecv]:
    """Patch one ``websocket.WebSocket`` (see the module docstring) before it connects: its
    reads buffered, its messages bounded to ``limit`` bytes. The patches live on this object
    only. Returns the message reader and the buffered read (whose ``before_recv`` the runner
    sets)."""
    fb = ws.frame_buffer
    reader = BufferedRecv(ws._recv)
    fb.recv = reader
    return BoundedMessages(ws, limit), reader
