"""The HTTP/1.1 text of :class:`infra.http_server.BoundedHttpServer`: no sockets, no threads.

:class:`HttpRequest` and :class:`HttpResponse` are what a server's ``handle`` takes and
returns; :func:`request_size` tells how many bytes make the request being read (or refuses
it by its head); :func:`parse_request` turns the bytes of one complete request into an
:class:`HttpRequest` (or the refusal to answer instead); :func:`render_response` writes an
answer that closes the connection. Pure functions, called by the server's loop thread
(``request_size``, ``render_response``) and its workers; they never raise on a client's
bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "TEXT",
    "HttpRequest",
    "HttpResponse",
    "parse_request",
    "peer_name",
    "render_response",
    "request_size",
]

TEXT = "text/plain; charset=utf-8"

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


def peer_name(addr: object) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of a socket address, for the log lines."""
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


def request_size(buf: bytes | bytearray, max_head: int, max_body: int) -> int | HttpResponse | None:
    """The bytes of head and body that make the request starting ``buf``, once its head is
    complete; ``None`` while the head is incomplete and within ``max_head`` bytes; else the
    refusal to answer at once: ``431`` for a head over ``max_head``, and when the server takes
    bodies (``max_body`` > 0) ``400`` for a bad ``Content-Length``, ``411`` for a chunked body,
    ``413`` for a body over ``max_body``. A server without bodies ignores their headers."""
    end = buf.find(b"\r\n\r\n")
    if end < 0 and len(buf) <= max_head:
        return None
    if end < 0 or end > max_head:
        return HttpResponse(431, b"request too large\n")
    need = end + 4
    if max_body > 0:
        length, refused = _content_length(bytes(buf[:end]))
        if refused is None and length > max_body:
            refused = 413
        if refused is not None:
            body = {
                400: b"bad Content-Length\n",
                411: b"send a Content-Length (no chunked body)\n",
                413: f"body over {max_body} bytes\n".encode(),
            }[refused]
            return HttpResponse(refused, body)
        need += length
    return need


def parse_request(raw: bytes, peer: str, methods: tuple[str, ...]) -> HttpRequest | HttpResponse:
    """The request in ``raw`` (a complete head, ``\\r\\n\\r\\n``, then the body), or the
    refusal to send instead: ``400`` for a request line that is not HTTP/1.x or a bad header
    line, ``405`` (with ``Allow``) for a method not in ``methods``."""
    end = raw.find(b"\r\n\r\n")
    head, body = raw[:end], raw[end + 4 :]
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return HttpResponse(400, b"bad request\n")
    try:
        method = parts[0].decode("ascii")
        target = parts[1].decode("ascii")
    except UnicodeDecodeError:
        return HttpResponse(400, b"bad request\n")
    if method not in methods:
        allow = ", ".join(methods)
        return HttpResponse(405, f"{allow} only\n".encode(), headers=(("Allow", allow),))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return HttpResponse(400, b"bad header line\n")
        headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
    path, _, query = target.partition("?")
    return HttpRequest(method, path, query, headers, body, peer)
