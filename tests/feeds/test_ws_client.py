"""The reconnecting runner against small raw servers that misbehave on purpose.

A raw server here completes the WebSocket handshake (``sim.websocket`` helpers) and then does
one thing: stays silent and answers no ping, sends frames then a normal close, or sends a
frame split in fragments. The runner is the real websocket-client underneath.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from infra.feeds import Backoff, Connect, CountingFeedMetrics, ReconnectingWebSocket
from sim.websocket import (
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
