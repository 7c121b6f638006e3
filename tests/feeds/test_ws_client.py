"""The reconnecting runner against small raw servers that misbehave on purpose.

A raw server here completes the WebSocket handshake (``sim.websocket`` helpers) and then does
one thing: stays silent and answers no ping, sends frames then a normal close, or sends a
frame split in fragments. The runner is the real websocket-client underneath.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import struct
import threading
from pathlib import Path

import pytest
import websocket

from infra.feeds import Backoff, Connect, CountingFeedMetrics, ReconnectingWebSocket, ws_patches
from sim.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    close_payload,
    encode_frame,
)
from tests.feeds.conftest import FAST, wait_until
from tests.feeds.rawserver import server

pytestmark = pytest.mark.timeout(30)


def runner(url: str, frames: list[tuple[bytes, bool]], **kw: object) -> ReconnectingWebSocket:
    options: dict[str, object] = {"backoff": FAST, "poll_s": 0.02}
    options.update(kw)
    return ReconnectingWebSocket(
        "test",
        lambda: Connect(url),
        lambda data, binary: frames.append((data, binary)),
        **options,  # type: ignore[arg-type]
    )


def test_a_peer_that_answers_no_ping_is_dropped() -> None:
    metrics = CountingFeedMetrics()
    with server() as s:
        r = runner(s.url, [], ping_interval_s=0.1, pong_timeout_s=0.1, metrics=metrics)
        r.start()
        try:
            assert r.wait_connected(2, 5.0), "no reconnect after a missing pong"
            assert r.stats().ends.get("ping_timeout", 0) >= 1
            assert metrics.reconnects["test"] >= 1
        finally:
            assert r.stop(5.0)
    assert metrics.up["test"] is False


def test_frames_then_a_normal_close_then_reconnect() -> None:
    def talk(conn: socket.socket) -> None:
        conn.sendall(encode_frame(OP_TEXT, b'{"n":1}'))
        conn.sendall(encode_frame(OP_TEXT, b"\xff not utf-8"))  # delivered as is
        # one message in three fragments
        conn.sendall(
            encode_frame(OP_TEXT, b"ab", fin=False) + encode_frame(OP_CONT, b"c", fin=False)
        )
        conn.sendall(encode_frame(OP_CONT, b"d", fin=True))
        conn.sendall(encode_frame(OP_CLOSE, close_payload(1000, "bye")))
        with contextlib.suppress(OSError):
            conn.recv(100)  # the client's close reply

    frames: list[tuple[bytes, bool]] = []
    with server(talk) as s:
        r = runner(s.url, frames, ping_interval_s=None)
        r.start()
        try:
            wait_until(lambda: r.stats().ends.get("closed", 0) >= 2, 5.0, "two normal closes")
            assert frames[:3] == [(b'{"n":1}', False), (b"\xff not utf-8", False), (b"abcd", False)]
        finally:
            assert r.stop(5.0)


def test_a_failing_frame_handler_costs_one_frame_not_the_feed() -> None:
    seen: list[bytes] = []

    def handle(data: bytes, binary: bool) -> None:
        if data == b"boom":
            raise RuntimeError("handler bug")
        seen.append(data)

    def talk(conn: socket.socket) -> None:
        for payload in (b"1", b"boom", b"2"):
            conn.sendall(encode_frame(OP_TEXT, payload))
        with contextlib.suppress(OSError):
            conn.recv(100)

    metrics = CountingFeedMetrics()
    with server(talk) as s:
        r = ReconnectingWebSocket(
            "h", lambda: Connect(s.url), handle, backoff=FAST, poll_s=0.02, metrics=metrics
        )
        r.start()
        try:
            wait_until(lambda: len(seen) >= 2, 5.0, "frames after the failing one")
            assert seen[:2] == [b"1", b"2"]
            assert metrics.errors_of("h") == {"handler_error": 1}
            assert r.connections == 1
        finally:
            assert r.stop(5.0)


def test_a_feed_refuses_a_backoff_without_pause() -> None:
    """``Backoff(min_s=0)`` is a restart policy's "at once"; for a feed it would be a
    reconnect loop hammering the server."""
    with pytest.raises(ValueError, match="min_s > 0"):
        ReconnectingWebSocket(
            "x", lambda: Connect("ws://127.0.0.1:1/"), lambda d, b: None, backoff=Backoff(0.0)
        )


def test_stop_is_prompt_even_while_backing_off() -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    r = ReconnectingWebSocket(
        "refused",
        lambda: Connect(f"ws://127.0.0.1:{port}/"),
        lambda d, b: None,
        backoff=Backoff(min_s=0.05, max_s=30.0, jitter=0.0, stable_after_s=60.0),
    )
    r.start()
    wait_until(lambda: r.stats().ends.get("connect_failed", 0) >= 4, 10.0, "failed attempts")
    assert r.connections == 0
    done = threading.Event()

    def stop() -> None:
        r.stop(5.0)
        done.set()

    t = threading.Thread(target=stop)
    t.start()
    assert done.wait(1.0), "stop waited for the backoff"
    t.join()
    assert not r.running


def test_prepare_failures_back_off_and_recover() -> None:
    calls = [0]
    with server() as s:

        def prepare() -> Connect:
            calls[0] += 1
            if calls[0] <= 2:
                raise OSError("listen key service down")
            return Connect(s.url)

        r = ReconnectingWebSocket("p", prepare, lambda d, b: None, backoff=FAST, poll_s=0.02)
        r.start()
        try:
            assert r.wait_connected(1, 5.0)
            assert r.stats().ends == {"prepare_failed": 2}
        finally:
            assert r.stop(5.0)


# --- the websocket-client internals the receive path patches ----------------------------------


class _Wire:
    """Bytes for websocket-client's frame parser, served at most ``step`` at a time; a
    ``websocket`` timeout when nothing is left (as a quiet socket). Counts what it served."""

    def __init__(self, data: bytes = b"", step: int = 1 << 30) -> None:
        self.data = data
        self.step = step
        self.served = 0
        self.asked: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.asked.append(n)
        if self.served >= len(self.data):
            raise websocket.WebSocketTimeoutException("quiet")
        out = self.data[self.served : self.served + min(n, self.step)]
        self.served += len(out)
        return out


def _messages(wire: _Wire, limit: int = 1000) -> ws_patches.BoundedMessages:
    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws._recv = wire  # type: ignore[method-assign]  # what _install wraps: the socket read
    messages, _ = ws_patches.install(ws, limit)
    return messages


def _drain(m: ws_patches.BoundedMessages) -> list[tuple[int, bytes | None]]:
    """Every event until the wire is quiet (timeouts resume, as the runner does)."""
    out: list[tuple[int, bytes | None]] = []
    quiet = 0
    while quiet < 3:
        try:
            out.append(m.next())
            quiet = 0
        except websocket.WebSocketTimeoutException:
            quiet += 1
    return [e for e in out if e[0] != ws_patches.EV_PROGRESS]


def test_the_websocket_client_internals_we_rely_on() -> None:
    """Pins websocket-client's internals and behaviour under ws_patches (see its docstring).

    Fails when an upgrade renames or inlines ``frame_buffer.recv_length``, reads a payload
    before the length check, changes the header tuple, over-reads, or stops keeping a
    partial frame across a read timeout.
    """
    pinned = next(
        line.split("==", 1)[1].strip()
        for line in (Path(__file__).parents[2] / "constraints.txt").read_text().splitlines()
        if line.lower().startswith("websocket-client==")
    )
    assert websocket.__version__ == pinned, "re-check these internals for the new version"
    assert ws_patches.check_websocket_client() is None

    # what ws_patches calls, replaces or reads, with the signatures it relies on
    def params(fn: object) -> list[str]:
        return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]

    fb_cls = websocket._abnf.frame_buffer
    assert params(fb_cls.__init__) == ["self", "recv_fn", "skip_utf8_validation"]
    for name in ("recv_length", "recv_mask", "needs_mask", "clear", "recv_frame"):
        assert params(getattr(fb_cls, name)) == ["self"], name
    assert params(websocket.WebSocket._recv) == ["self", "bufsize"]
    assert params(websocket.WebSocket.recv_frame) == ["self"]
    assert params(websocket.WebSocket.pong)[:2] == ["self", "payload"]
    assert params(websocket.WebSocket.send_close)[0] == "self"
    plain = websocket.WebSocket(skip_utf8_validation=True)
    fb = plain.frame_buffer
    assert (fb.header, fb.length, fb.recv_buffer) == (None, None, [])
    assert fb.recv == plain._recv  # the socket read: what install wraps

    # the patches take effect on one object, never on the class
    patched = websocket.WebSocket(skip_utf8_validation=True)
    _, reader = ws_patches.install(patched, 10)
    assert patched.frame_buffer.recv is reader
    assert "recv_length" in vars(patched.frame_buffer)
    assert "recv_length" not in vars(fb) and fb.recv == plain._recv

    # a header announcing 1 TiB: the check runs after the length, before any payload byte
    huge = bytes([0x81, 127]) + struct.pack("!Q", 1 << 40)
    wire = _Wire(huge)
    m = _messages(wire)
    with pytest.raises(websocket.WebSocketTimeoutException):
        m.next()
    assert wire.served == len(huge)  # nothing of the payload was there, and nothing hung
    assert max(wire.asked) <= ws_patches.DISCARD_CHUNK
    assert not m.at_boundary()

    # messages, fragments, an oversized one (masked: its mask is read), a ping: all served
    # byte by byte with a timeout between bytes, and all at once: the same events
    stream = b"".join(
        [
            encode_frame(OP_TEXT, b"one"),
            encode_frame(OP_TEXT, b"t", fin=False),
            encode_frame(OP_CONT, b"w", fin=False),
            encode_frame(OP_CONT, b"o", fin=True),
            encode_frame(OP_BINARY, b"z" * 600, fin=False, mask=b"abcd"),
            encode_frame(OP_CONT, b"z" * 600, fin=True),
            encode_frame(OP_TEXT, b"three"),
        ]
    )
    want = [(OP_TEXT, b"one"), (OP_TEXT, b"two"), (ws_patches.EV_OVERSIZED, None)]
    want.append((OP_TEXT, b"three"))
    for step in (1 << 30, 1, 7):
        trickle = _Wire(stream, step)
        m = _messages(trickle)
        assert _drain(m) == want, step
        assert m.last_size == 1200 and m.last_binary
        assert trickle.served == len(stream) and m.at_boundary()

    with pytest.raises(websocket.WebSocketProtocolException):
        _messages(_Wire(encode_frame(OP_CONT, b"x"))).next()
