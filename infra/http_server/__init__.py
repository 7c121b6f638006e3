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

The modules behind this list: ``_wire`` (the HTTP/1.1 text: requests, answers, their
parsing and rendering, no sockets), ``_server`` (the loop, the workers and the bounds; its
log lines are throttled by :class:`infra.logs.LogWindows`).
"""

from infra.http_server._server import OUTCOMES, BindError, BoundedHttpServer, HttpBounds
from infra.http_server._wire import (
    TEXT,
    HttpRequest,
    HttpResponse,
    parse_request,
    peer_name,
    render_response,
    request_size,
)

__all__ = [
    "OUTCOMES",
    "TEXT",
    "BindError",
    "BoundedHttpServer",
    "HttpBounds",
    "HttpRequest",
    "HttpResponse",
    "parse_request",
    "peer_name",
    "render_response",
    "request_size",
]
