"""The HTTP text of the bounded server, without sockets: parsing, framing, the log window."""

from __future__ import annotations

from infra.http_server import (
    HttpRequest,
    HttpResponse,
    parse_request,
    peer_name,
    render_response,
    request_size,
)
from infra.logs import LogWindows

GET = ("GET", "HEAD")


def test_a_request_is_parsed_with_lowercase_headers_query_and_body() -> None:
    raw = b"POST /close?key=main:BTCUSDT HTTP/1.1\r\nHost: x\r\nX-Token:  t \r\n\r\nbody"
    req = parse_request(raw, "127.0.0.1:5", ("POST",))
    assert req == HttpRequest(
        "POST", "/close", "key=main:BTCUSDT", {"host": "x", "x-token": "t"}, b"body", "127.0.0.1:5"
    )


def test_refusals_before_handle() -> None:
    assert parse_request(b"GET / HTTP/2\r\n\r\n", "p", GET) == HttpResponse(400, b"bad request\n")
    assert parse_request(b"GET /\r\n\r\n", "p", GET) == HttpResponse(400, b"bad request\n")
    assert parse_request(b"G\xffT / HTTP/1.1\r\n\r\n", "p", GET) == HttpResponse(
        400, b"bad request\n"
    )
    bad_header = parse_request(b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", "p", GET)
    assert bad_header == HttpResponse(400, b"bad header line\n")
    refused = parse_request(b"DELETE / HTTP/1.1\r\n\r\n", "p", GET)
    assert refused == HttpResponse(405, b"GET, HEAD only\n", headers=(("Allow", "GET, HEAD"),))


def test_request_size_frames_head_and_body() -> None:
    head = b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"
    assert request_size(head[:-2], 64, 100) is None  # the head is not complete yet
    assert request_size(head, 64, 100) == len(head) + 12
    assert request_size(head, 64, 0) == len(head)  # a server without bodies ignores the length
    assert request_size(b"GET / HTTP/1.1\r\n\r\n", 64, 100) == 18
    too_large = HttpResponse(431, b"request too large\n")
    assert request_size(b"x" * 65, 64, 0) == too_large  # no end of head within the limit
    assert request_size(b"GET /" + b"x" * 64 + b" HTTP/1.1\r\n\r\n", 64, 0) == too_large


def test_request_size_refuses_bodies_it_cannot_take() -> None:
    def refused(header: bytes) -> object:
        return request_size(b"POST / HTTP/1.1\r\n" + header + b"\r\n\r\n", 8192, 100)

    assert refused(b"Content-Length: -1") == HttpResponse(400, b"bad Content-Length\n")
    assert refused(b"Content-Length: 1234567890123") == HttpResponse(400, b"bad Content-Length\n")
    chunked = HttpResponse(411, b"send a Content-Length (no chunked body)\n")
    assert refused(b"Transfer-Encoding: chunked") == chunked
    assert refused(b"Content-Length: 101") == HttpResponse(413, b"body over 100 bytes\n")
    assert (
        refused(b"Content-Length: 100") == len(b"POST / HTTP/1.1\r\nContent-Length: 100") + 4 + 100
    )


def test_rendered_answer_closes_and_head_only_drops_the_body() -> None:
    full = render_response(405, b"no\n", headers=(("Allow", "GET"),))
    assert full == (
        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 3\r\nConnection: close\r\nAllow: GET\r\n\r\nno\n"
    )
    assert render_response(405, b"no\n", head_only=True, headers=(("Allow", "GET"),)) == full[:-3]
    assert render_response(299, b"").startswith(b"HTTP/1.1 299 Error\r\n")


def test_peer_names() -> None:
    assert peer_name(("10.0.0.1", 80)) == "10.0.0.1:80"
    assert peer_name(("::1", 80, 0, 0)) == "[::1]:80"
    assert peer_name("/tmp/sock") == "/tmp/sock"


def test_log_window_passes_one_line_per_kind_per_interval_and_counts_the_rest() -> None:
    now = [100.0]
    w = LogWindows(10.0, clock=lambda: now[0])
    assert w.admit("timeout") == 0
    assert w.admit("timeout") is None
    assert w.admit("evicted") == 0  # windows are per kind
    now[0] = 109.9
    assert w.admit("timeout") is None
    now[0] = 110.0
    assert w.admit("timeout") == 2  # the two held back since the last line
    assert w.admit("timeout") is None
