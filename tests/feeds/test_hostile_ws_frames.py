"""Hostile frames against the real websocket-client runner: huge messages, in one frame or in
many fragments, cost neither the memory nor the connection; framing violations end it before
their payload is read.

A raw server (``tests.feeds.rawserver``) completes the handshake and writes prebuilt frames;
the runner underneath is the real websocket-client. Memory is measured with ``tracemalloc``
(every Python allocation of every thread, the received ``bytes`` included).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from infra.feeds import Connect, CountingFeedMetrics, ReconnectingWebSocket
from sim.websocket import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, encode_frame, read_frame
from tests.feeds.conftest import FAST, wait_until
from tests.feeds.rawserver import RawServer, server

pytestmark = pytest.mark.timeout(60)

KIB = 1024
MIB = 1024 * KIB
LIMIT = MIB
"""The signal feed's ``hard_max_frame_bytes``."""


class Received:
    """What ``on_frame`` got: lengths and the small payloads (a huge one is never kept)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sizes: list[int] = []
        self.small: list[bytes] = []

    def __call__(self, data: bytes, binary: bool) -> None:
        with self.lock:
            self.sizes.append(len(data))
            if len(data) <= 64 * KIB:
                self.small.append(data)

    def has(self, payload: bytes) -> bool:
        with self.lock:
            return payload in self.small


def runner(
    url: str, received: Received, metrics: CountingFeedMetrics, **kw: object
) -> ReconnectingWebSocket:
    options: dict[str, object] = {
        "backoff": FAST,
        "poll_s": 0.02,
        "hard_max_frame_bytes": LIMIT,
        "ping_interval_s": None,
        "metrics": metrics,
    }
    options.update(kw)
    return ReconnectingWebSocket("hostile", lambda: Connect(url), received, **options)  # type: ignore[arg-type]


def fragmented(total: int, fragment: int, opcode: int = OP_TEXT) -> Iterator[bytes]:
    """One message of ``total`` bytes in frames of ``fragment`` bytes; the frames are built
    once and reused (the server holds three fragments, never the message)."""
    chunk = b"x" * fragment
    first = encode_frame(opcode, chunk, fin=False)
    middle = encode_frame(OP_CONT, chunk, fin=False)
    last = encode_frame(OP_CONT, chunk, fin=True)
    n = total // fragment
    yield first
    for _ in range(n - 2):
        yield middle
    yield last


def first_connection_only(s: RawServer, talk: object) -> None:
    """Run ``talk`` on the first connection; keep later ones open and silent."""

    def behaviour(conn: socket.socket) -> None:
        if s.accepted == 1:
            talk(conn)  # type: ignore[operator]
        s.silent_until_stopped(conn)

    s.behaviour = behaviour


@contextlib.contextmanager
def traced() -> Iterator[list[int]]:
    """Trace allocations; yields ``[baseline]``; the peak growth is appended on exit."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = [tracemalloc.get_traced_memory()[0]]
        yield out
        out.append(tracemalloc.get_traced_memory()[1] - out[0])
    finally:
        tracemalloc.stop()


def test_a_64_mib_message_in_512_kib_fragments_is_dropped_in_bounded_memory() -> None:
    total = 64 * MIB
    frames = list(fragmented(total, 512 * KIB))  # built before the baseline
    after = encode_frame(OP_TEXT, b'{"after": 1}')
    sent = threading.Event()

    def talk(conn: socket.socket) -> None:
        for frame in frames:
            conn.sendall(frame)
        conn.sendall(after)
        sent.set()

    metrics = CountingFeedMetrics()
    received = Received()
    with server() as s:
        first_connection_only(s, talk)
        r = runner(s.url, received, metrics)
        with traced() as growth:
            started = time.monotonic()
            r.start()
            try:
                wait_until(lambda: received.has(b'{"after": 1}'), 30.0, "the frame after it")
                elapsed = time.monotonic() - started
                stats = r.stats()
            finally:
                assert r.stop(5.0)
    assert sent.is_set()
    assert growth[1] < 8 * MIB, f"peak growth {growth[1] / MIB:.1f} MiB receiving 64 MiB"
    assert elapsed < 20.0, f"the feed thread was held {elapsed:.1f}s"
    assert received.sizes == [len(b'{"after": 1}')]  # the big one never reached on_frame
    assert stats.oversized == 1 and metrics.errors_of("hostile") == {"oversized": 1}
    assert stats.connections == 1 and stats.ends == {}, stats  # the connection was kept


def test_a_single_5_mb_frame_costs_the_message_not_the_connection() -> None:
    big = encode_frame(OP_BINARY, b"y" * (5 * 1000 * 1000))
    small = encode_frame(OP_TEXT, b"next")

    def talk(conn: socket.socket) -> None:
        conn.sendall(big)
        conn.sendall(small)

    metrics = CountingFeedMetrics()
    received = Received()
    with server() as s:
        first_connection_only(s, talk)
        r = runner(s.url, received, metrics)
        with traced() as growth:
            r.start()
            try:
                wait_until(lambda: received.has(b"next"), 10.0, "the frame after the big one")
                stats = r.stats()
            finally:
                assert r.stop(5.0)
    assert received.sizes == [4]
    assert stats.oversized == 1 and stats.connections == 1 and stats.ends == {}, stats
    assert growth[1] < 2 * MIB, f"peak growth {growth[1] / MIB:.1f} MiB for a 5 MB frame"


def test_the_limit_counts_the_whole_message_and_is_inclusive() -> None:
    half = 512 * KIB
    at_limit = encode_frame(OP_TEXT, b"a" * half, fin=False) + encode_frame(
        OP_CONT, b"b" * half, fin=True
    )
    # crosses the limit in its last fragment: the first fragment was kept, then dropped
    over = encode_frame(OP_TEXT, b"c" * half, fin=False) + encode_frame(
        OP_CONT, b"d" * (half + 1), fin=True
    )
    # a ping between fragments of a discarded message is still answered
    split_over = (
        encode_frame(OP_BINARY, b"e" * (LIMIT + 1), fin=False)
        + encode_frame(OP_PING, b"alive?")
        + encode_frame(OP_CONT, b"f" * 10, fin=False)
        + encode_frame(OP_CONT, b"", fin=True)
    )
    pongs: list[bytes] = []

    def talk(conn: socket.socket) -> None:
        conn.sendall(at_limit + over + split_over + encode_frame(OP_TEXT, b"end"))
        with conn.makefile("rb") as rfile:
            _fin, opcode, payload = read_frame(rfile, 1024)
        if opcode == OP_PONG:
            pongs.append(payload)

    metrics = CountingFeedMetrics()
    received = Received()
    with server() as s:
        first_connection_only(s, talk)
        r = runner(s.url, received, metrics)
        r.start()
        try:
            wait_until(lambda: received.has(b"end"), 10.0, "the last frame")
            wait_until(lambda: pongs, 5.0, "the pong")
            stats = r.stats()
        finally:
            assert r.stop(5.0)
    assert received.sizes == [LIMIT, 3]
    assert pongs == [b"alive?"]
    assert stats.oversized == 2 and metrics.errors_of("hostile") == {"oversized": 2}
    assert stats.connections == 1 and stats.ends == {}, stats


def _header(opcode: int, length: int, fin: bool = True, rsv: int = 0) -> bytes:
    """A frame header announcing ``length`` bytes (no payload follows)."""
    return bytes([(0x80 if fin else 0) | rsv | opcode, 127]) + struct.pack("!Q", length)


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (_header(OP_PING, 1 << 40), "a ping announcing 1 TiB"),
        (_header(0x3, 1 << 40), "a reserved opcode"),
        (_header(OP_TEXT, 1 << 40, rsv=0x40), "a reserved bit"),
        (_header(OP_CONT, 10), "a continuation outside a message"),
        (encode_frame(OP_TEXT, b"a", fin=False) + _header(OP_TEXT, 1 << 40), "a message inside"),
        (encode_frame(OP_PING, b"", fin=False), "a split ping"),
    ],
    ids=["huge_ping", "reserved_opcode", "reserved_bit", "stray_cont", "nested", "split_ping"],
)
def test_a_framing_violation_ends_the_connection_before_its_payload(wire: bytes, why: str) -> None:
    done = threading.Event()

    def talk(conn: socket.socket) -> None:
        conn.sendall(wire)  # and nothing more: reading the announced payload would hang
        done.set()

    metrics = CountingFeedMetrics()
    received = Received()
    with server() as s:
        first_connection_only(s, talk)
        r = runner(s.url, received, metrics)
        r.start()
        try:
            wait_until(lambda: r.stats().ends.get("protocol_error"), 5.0, why)
            assert r.wait_connected(2, 5.0), "no reconnect after the violation"
        finally:
            assert r.stop(5.0)
    assert done.is_set() and received.sizes == []
    assert metrics.errors_of("hostile")["protocol_error"] >= 1
