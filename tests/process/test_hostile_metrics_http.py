"""The metrics/health HTTP server against rude, idle and slow clients (real sockets, urllib).

Clients that close early print nothing on stderr (their errors go to the module logger at
DEBUG, throttled); idle clients hold no thread and cannot lock a scrape out; a request that
does not complete within the read timeout is answered 408 and closed.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from infra.metrics import HealthChecks, MetricsServer, PrometheusMetrics
from testkit.waiting import poll

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    m = PrometheusMetrics()
    s = MetricsServer(m.registry, HealthChecks(m), port=0)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _accounted(server: MetricsServer) -> int:
    stats = server.stats()
    return sum(v for k, v in stats.items() if k not in ("open", "reading"))


def _server_side_open(port: int) -> int:
    """Connections to ``port`` the server side has not closed yet, accepted or not (Linux:
    ``/proc/net/tcp``, states ESTABLISHED and CLOSE_WAIT of local port ``port``)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if int(r[1].split(":")[1], 16) == port and r[3] in ("01", "08"))


def _rude_clients(port: int, n: int) -> None:
    """``n`` clients that go away early: connect and close; send a request and reset the
    connection before the answer; send half a request and reset."""
    for i in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            if i % 3 == 1:
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            elif i % 3 == 2:
                c.sendall(b"GET /metr")
            if i % 3:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _scrape(server: MetricsServer, path: str = "/metrics") -> tuple[int, str, float]:
    started = time.monotonic()
    with urllib.request.urlopen(server.url + path, timeout=5) as r:
        body = r.read().decode()
        return r.status, body, time.monotonic() - started


def test_clients_that_close_early_print_nothing(
    server: MetricsServer, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()  # the start line
    _rude_clients(server.port, 300)
    poll(lambda: _server_side_open(server.port) == 0, 10.0, "every connection closed")
    code, body, _ = _scrape(server)
    assert code == 200
    err = capfd.readouterr().err
    assert err == "", f"{err.count(chr(10))} lines on stderr, starting: {err[:300]}"
    # the server counts each connection once (a reset one may be read last): all 300 and
    # the scrape, still nothing on stderr
    poll(lambda: _accounted(server) >= 301, 10.0, "every connection accounted")
    err = capfd.readouterr().err
    assert err == "", f"{err.count(chr(10))} lines on stderr, starting: {err[:300]}"
    stats = server.stats()  # (closed before the server read them: evicted at the cap)
    assert stats["closed_early"] + stats["served"] + stats["evicted"] >= 300, stats
    assert stats["closed_early"] >= 1 and stats["timeout"] == 0, stats
    assert 'ps_http_connections_total{outcome="closed_early"}' in body


def test_early_closes_are_logged_at_debug_throttled_without_tracebacks(
    server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="infra.metrics"):
        _rude_clients(server.port, 150)
        poll(lambda: _server_side_open(server.port) == 0, 10.0, "every connection closed")
        assert [r for r in caplog.records if r.name == "infra.metrics"], "nothing logged"
        poll(lambda: _accounted(server) >= 150, 10.0, "every connection accounted")
    ours = [r for r in caplog.records if r.name == "infra.metrics"]
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in ours)
    assert len(ours) <= 4, [r.getMessage() for r in ours]  # one per kind per 10 s


def test_idle_clients_hold_no_thread_and_do_not_lock_out_a_scrape(server: MetricsServer) -> None:
    threads = threading.active_count()
    idle: list[socket.socket] = []
    try:
        for _ in range(200):  # connect, send nothing
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        code, body, elapsed = _scrape(server)  # accepted after the 200 idle ones
        assert code == 200
        assert elapsed < 1.0, f"a scrape took {elapsed:.2f}s next to 200 idle clients"
        extra = threading.active_count() - threads
        assert extra == 0, f"{extra} more threads with 200 idle clients"
        assert server.stats()["open"] <= server.max_connections
        assert server.stats()["evicted"] >= 200 - server.max_connections
        code, body, elapsed = _scrape(server, "/healthz")
        assert (code, body) == (200, "ok\n") and elapsed < 1.0
        assert threading.active_count() == threads
    finally:
        for c in idle:
            c.close()


def _until_closed(c: socket.socket, limit_s: float, trickle: bool = False) -> tuple[bytes, float]:
    """Read until the server closes (or resets); with ``trickle``, send one more byte every
    0.1 s while waiting. Returns what was read and when the close came (after ``limit_s``:
    failure). ``select`` paces the trickle; the server's close ends the wait."""
    started = time.monotonic()
    data = b""
    while time.monotonic() - started < limit_s:
        ready, _, _ = select.select([c], [], [], 0.1)
        if not ready:
            if trickle:
                try:
                    c.sendall(b"a")
                except (BrokenPipeError, ConnectionResetError):  # the server closed
                    return data, time.monotonic() - started
            continue
        try:
            chunk = c.recv(4096)
        except ConnectionResetError:  # closed with our trickled bytes unread: a reset
            chunk = b""
        if not chunk:
            return data, time.monotonic() - started
        data += chunk
    raise AssertionError(f"still open after {limit_s}s; read {data[:80]!r}")


@pytest.mark.parametrize("trickle", [False, True], ids=["partial", "trickling"])
def test_an_incomplete_request_is_dropped_after_the_read_timeout(trickle: bool) -> None:
    m = PrometheusMetrics()
    server = MetricsServer(m.registry, HealthChecks(m), port=0, read_timeout_s=0.5)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
            data, elapsed = _until_closed(c, 5.0, trickle)
        if not trickle:  # (a trickling client may see a reset instead of the answer)
            assert data.startswith(b"HTTP/1.1 408 "), data[:80]
        assert 0.4 <= elapsed < 2.5, elapsed
        assert server.stats()["timeout"] == 1
    finally:
        server.stop()


def test_bad_requests_get_an_answer_and_the_server_goes_on(server: MetricsServer) -> None:
    def ask(raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
            c.sendall(raw)
            data, _ = _until_closed(c, 5.0)
            return data

    assert ask(b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert ask(b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert ask(b"GET /" + b"x" * 10_000).startswith(b"HTTP/1.1 431 ")
    head = ask(b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert _scrape(server)[0] == 200


def test_over_the_cap_with_every_connection_busy_a_client_gets_503_at_once() -> None:
    m = PrometheusMetrics()
    health = HealthChecks(m)
    release = threading.Event()
    health.register("slow", lambda: None if release.wait(10.0) else "never released")
    server = MetricsServer(m.registry, health, port=0, max_connections=3, workers=1)
    server.start()
    busy = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        for c in busy:
            c.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        poll(lambda: server.stats()["open"] == 3 and server.stats()["reading"] == 0, 5.0, "busy")
        threads = threading.active_count()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as late:
            data, elapsed = _until_closed(late, 2.0)
        assert data.startswith(b"HTTP/1.1 503 ") and elapsed < 1.0, (data[:80], elapsed)
        assert server.stats()["refused"] == 1 and threading.active_count() == threads
        release.set()
        for c in busy:
            data, _ = _until_closed(c, 5.0)
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok\n"), data[-40:]
    finally:
        release.set()
        for c in busy:
            c.close()
        server.stop()
