"""The exchange's HTTP front: fault pipeline, REST dispatch, control API, stream upgrades.

Implements ``sim.httpserver.App`` for ``SimExchange``. Called on HTTP connection threads.
Order of a REST request:

0. the account: the one the ``X-MBX-APIKEY`` header's key acts on (the default account for
   any other key, or -2015 with ``strict_keys``);
1. order-placing requests are written to the order log on receipt, cancels to the cancel
   log, each with its account and API key; every ``/fapi`` request is counted against the
   limits (``sim.limits``; one budget for the whole sim, not per account): over a limit,
   when enforced, it is answered 429 with ``Retry-After`` and nothing else happens; every
   reply carries the usage headers;
2. faults that act *before* anything happens: latency, 429, 502, ``error_code`` (unless
   ``act``), -2019 rejection, not-found lookups; ``lag_open_orders`` sets the moment the
   open-order lists are answered for;
3. timestamp check (-1102 missing, -1021 outside recvWindow) for signed endpoints;
4. the route runs under the exchange lock; its user-stream events are queued on the
   sockets while the lock is held;
5. faults that act *after*: 503/-1007, ``error_code`` with ``act``, ``bad_response``,
   timeout (hold or close without reply);
6. the reply is written after the events reached the sockets (``user_events_first``),
   or the events are queued after the reply was written.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from sim import errors
from sim.control import ControlApi
from sim.errors import BinanceError
from sim.faults import ORDER_CANCEL, ORDER_CREATE
from sim.httpserver import Request, Response, WsAccept
from sim.matching import now_ms
from sim.rest import (
    DEFAULT_ACCOUNT,
    NO_TIMESTAMP,
    PUBLIC,
    Context,
    Outcome,
    RawJson,
    RestApi,
    Route,
)
from sim.streams import stream_kind
from sim.websocket import WsConnection

if TYPE_CHECKING:
    from sim.exchange import OrderLogEntry, SimExchange

log = logging.getLogger(__name__)

BAD_GATEWAY = (
    b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
)


BAD_RESPONSE = '{"avgPrice":"x"}'
"""The ``bad_response`` fault's default body: JSON ccxt's ``parse_order`` raises on."""


def _error(exc: BinanceError) -> Response:
    return Response.of_json(exc.body(), exc.status)


class Gateway:
    """HTTP/WebSocket entry point of one ``SimExchange``."""

    def __init__(self, ex: SimExchange) -> None:
        self.ex = ex
        self.rest = RestApi(ex)
        self.control = ControlApi(ex)

    # ------------------------------------------------------------------ HTTP

    def handle(self, req: Request) -> Response:
        """Answer one HTTP request (see the module docstring for the order of steps)."""
        if req.path.startswith("/_sim/") or req.path == "/_sim":
            return self.control.handle(req)
        method, path = req.method, req.path
        params = req.params
        api_key = req.headers.get("X-MBX-APIKEY") or ""
        account = self.ex.account_of_key(api_key)
        if account is None:
            if (method, path) not in PUBLIC:
                return _error(BinanceError(-2015, errors.MESSAGES[-2015], 401))
            account = DEFAULT_ACCOUNT  # market data: the key is not checked
        entry: OrderLogEntry | None = None
        if (method, path) in ORDER_CREATE:
            entry = self.ex.log_order_request(
                path.rsplit("/", 1)[-1], params, account=account, api_key=api_key
            )
        elif (method, path) in ORDER_CANCEL:
            entry = self.ex.log_order_request(
                path.rsplit("/", 1)[-1], params, account=account, api_key=api_key, cancel=True
            )
        if not path.startswith("/fapi/"):
            return self._serve(req, params, entry, account, api_key)
        charge = self.ex.limits.charge(method, path, params, now_ms())
        if charge.refused is not None:
            self._note(entry, "rate_limit", outcome="not_executed")
            return Response.of_json(
                charge.body(),
                429,
                headers=[("Retry-After", str(charge.retry_after_s)), *charge.headers],
            )
        resp = self._serve(req, params, entry, account, api_key)
        resp.headers.extend(charge.headers)
        return resp

    def _serve(
        self,
        req: Request,
        params: dict[str, str],
        entry: OrderLogEntry | None,
        account: str,
        api_key: str,
    ) -> Response:
        """Steps 2 to 6 of the module docstring for one request within the limits."""
        method, path = req.method, req.path
        faults = self.ex.faults
        symbol = params.get("symbol")
        cid = entry.client_id if entry is not None else None  # faults armed by client id
        ts_error = self._check_timestamp(method, path, params)

        lat = faults.take("latency", method, path, symbol, cid)
        if lat is not None:
            self._note(entry, "latency")
            self.ex.stopping.wait(lat.delay(faults.rng))
        f429 = faults.take("http_429", method, path, symbol, cid)
        if f429 is not None:
            self._note(entry, "http_429", outcome="not_executed")
            return Response.of_json(
                errors.too_many_requests().body(),
                429,
                headers=[("Retry-After", str(f429.retry_after_s))],
            )
        fbusy = faults.take("busy", method, path, symbol, cid)
        if fbusy is not None:
            self._note(entry, "busy", outcome="rejected", code=-1008)
            return Response.of_json(
                errors.server_busy().body(),
                503,
                headers=[("Retry-After", str(fbusy.retry_after_s))],
            )
        if faults.take("http_502", method, path, symbol, cid) is not None:
            self._note(entry, "http_502", outcome="not_executed")
            return Response(502, BAD_GATEWAY, content_type="text/html")
        ferr = faults.take("error_code", method, path, symbol, cid)
        if ferr is not None and not ferr.act:
            self._note(entry, "error_code", outcome="rejected", code=ferr.code)
            return _error(errors.injected(ferr.code, ferr.status, ferr.msg))
        route = self.rest.routes.get((method, path))
        if route is None:
            self._note(entry, None, outcome="rejected", code=-5000)
            # -5000 is in no ccxt table: ExchangeError, not a retryable NetworkError
            return Response.of_json(
                {"code": -5000, "msg": f"sim: no endpoint {method} {path}"}, 404
            )
        if ts_error is not None:
            self._note(entry, None, outcome="rejected", code=ts_error.code)
            return _error(ts_error)
        if entry is not None and faults.take("reject_2019", method, path, symbol, cid) is not None:
            self._note(entry, "reject_2019", outcome="rejected", code=-2019)
            return _error(errors.insufficient_margin())
        if faults.take("not_found", method, path, symbol, cid) is not None:
            return _error(errors.order_not_found())
        ctx = request_context(self.ex, entry, req, symbol, account, api_key)
        sent: list[tuple[WsConnection, int]] = []
        outcome: Outcome | None = None
        try:
            outcome, sent = run_route(self.ex, route, params, ctx, entry)
            if isinstance(outcome.payload, RawJson):
                resp = Response(body=outcome.payload.text.encode())
            else:
                resp = Response.of_json(outcome.payload)
            self._note(entry, None, outcome="accepted", order_id=outcome.order_id)
        except BinanceError as exc:
            resp = _error(exc)
            self._note(entry, None, outcome="rejected", code=exc.code)
        for fn in outcome.later if outcome is not None else []:
            fn()

        f503 = faults.take("http_503", method, path, symbol, cid)
        if f503 is not None:
            self._note(entry, "http_503")
            resp = _error(errors.backend_timeout())
        if ferr is not None and ferr.act:
            self._note(entry, "error_code")
            resp = _error(errors.injected(ferr.code, ferr.status, ferr.msg))
        return finish_reply(self.ex, entry, req, symbol, resp, outcome, account, sent, BAD_RESPONSE)

    def _check_timestamp(self, method: str, path: str, p: dict[str, str]) -> BinanceError | None:
        if (method, path) in NO_TIMESTAMP or not path.startswith("/fapi/"):
            return None
        raw = p.get("timestamp")
        if not raw:
            return errors.mandatory_missing("timestamp")
        try:
            ts = int(raw)
            window = int(p.get("recvWindow") or 5000)
        except ValueError:
            return errors.mandatory_missing("timestamp")
        now = now_ms()
        if ts > now + 1000 or now - ts > window:
            return errors.timestamp_outside()
        return None

    def _note(
        self,
        entry: OrderLogEntry | None,
        fault: str | None,
        *,
        outcome: str | None = None,
        code: int | None = None,
        order_id: int | None = None,
    ) -> None:
        note_order(self.ex, entry, fault, outcome=outcome, code=code, order_id=order_id)

    # ------------------------------------------------------------------ WebSocket

    def websocket(self, req: Request) -> WsAccept | Response:
        """Accept ``/ws/<streams>`` and ``/stream?streams=`` (400 for an unknown stream)."""
        if req.path.startswith("/ws"):
            tail = req.path[3:].strip("/")
            names = [s for s in tail.split("/") if s]
            combined = False
        elif req.path == "/stream":
            names = [s for s in req.query.get("streams", "").split("/") if s]
            combined = True
        else:
            return Response.of_json({"code": -1000, "msg": "unknown websocket path"}, 404)
        streams: list[str] = []
        for name in names:
            norm = self._normalize(name)
            if norm is None:
                return Response.of_json({"code": -1121, "msg": f"Invalid stream {name!r}."}, 400)
            streams.append(norm)
        hub = self.ex.hub

        def on_open(conn: WsConnection) -> None:
            hub.attach(conn, streams, combined=combined)

        def on_close(conn: WsConnection) -> None:
            hub.detach(conn)

        return WsAccept(on_open=on_open, on_message=self._on_message, on_close=on_close)

    def _normalize(self, name: str) -> str | None:
        kind = stream_kind(name, self.ex.is_listen_key)
        if kind == "market" and not name.startswith("!"):
            sym, _, suffix = name.partition("@")
            if sym.upper() not in self.ex.specs:
                return None
            return sym.lower() + "@" + suffix
        return name if kind is not None else None

    def _on_message(self, conn: WsConnection, message: str | bytes) -> None:
        """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS requests on an open stream."""
        try:
            req: Any = json.loads(message)
            method = req["method"]
            req_id = req.get("id")
            params = req.get("params") or []
        except (ValueError, KeyError, TypeError):
            conn.send_text(json.dumps({"error": {"code": 2, "msg": "Invalid request"}}))
            return
        result: Any = None
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            streams = [self._normalize(str(s)) for s in params]
            if any(s is None for s in streams):
                conn.send_text(
                    json.dumps({"error": {"code": 2, "msg": "Invalid stream"}, "id": req_id})
                )
                return
            good = [s for s in streams if s is not None]
            if method == "SUBSCRIBE":
                self.ex.hub.subscribe(conn, good)
            else:
                self.ex.hub.unsubscribe(conn, good)
        elif method == "LIST_SUBSCRIPTIONS":
            result = self.ex.hub.streams_of(conn)
        else:
            conn.send_text(
                json.dumps({"error": {"code": 2, "msg": "Unknown method"}, "id": req_id})
            )
            return
        conn.send_text(json.dumps({"result": result, "id": req_id}))


def note_order(
    ex: SimExchange,
    entry: OrderLogEntry | None,
    fault: str | None,
    *,
    outcome: str | None = None,
    code: int | None = None,
    order_id: int | None = None,
) -> None:
    """Record on an order-log ``entry`` (None: not an order request) a fault that fired, its
    outcome (the first one sticks), the exchange's code and the order id. Both venues' fronts
    call it; any thread (under the exchange lock)."""
    if entry is None:
        return
    with ex.lock:
        if fault is not None:
            entry.faults.append(fault)
        if outcome is not None and entry.outcome == "pending":
            entry.outcome = outcome
        if code is not None:
            entry.code = code
        if order_id is not None:
            entry.order_id = order_id


def request_context(
    ex: SimExchange,
    entry: OrderLogEntry | None,
    req: Request,
    symbol: str | None,
    account: str,
    api_key: str,
) -> Context:
    """The route's :class:`Context` for one request on either venue's front: the account and
    key, and what the faults armed for it set (``lag_open_orders``: lists as of ``lag_s``
    ago; ``partial_fill``: the order fills in ``parts``)."""
    faults, method, path = ex.faults, req.method, req.path
    cid = entry.client_id if entry is not None else None
    ctx = Context(account=account, api_key=api_key)
    lag = faults.take("lag_open_orders", method, path, symbol, cid)
    if lag is not None:
        ctx.as_of_ms = now_ms() - round(lag.lag_s * 1000)
    partial = faults.take("partial_fill", method, path, symbol, cid)
    if partial is not None:
        note_order(ex, entry, "partial_fill")
        ctx.parts = max(2, partial.parts)
        ctx.part_interval_s = partial.part_interval_s
    return ctx


def run_route(
    ex: SimExchange,
    route: Route,
    params: dict[str, str],
    ctx: Context,
    entry: OrderLogEntry | None,
) -> tuple[Outcome, list[tuple[WsConnection, int]]]:
    """Run ``route`` under the exchange lock, stamp the order-log ``entry`` done, and queue
    the outcome's user events before the reply when ``ex.user_events_first`` (the sockets
    they went to, for :func:`finish_reply`). The venue's refusal propagates (nothing queued)."""
    with ex.lock:
        try:
            outcome = route(params, ctx)
        finally:
            if entry is not None:
                entry.done_at = time.time()
        sent = ex.enqueue_user_events(outcome.events, ctx.account) if ex.user_events_first else []
    return outcome, sent


def finish_reply(
    ex: SimExchange,
    entry: OrderLogEntry | None,
    req: Request,
    symbol: str | None,
    resp: Response,
    outcome: Outcome | None,
    account: str,
    sent: list[tuple[WsConnection, int]],
    bad_body: str,
) -> Response:
    """The last steps of a REST request, the same on both venues' fronts: the faults that act
    on the reply (``bad_response`` with the venue's ``bad_body``, ``timeout``: hold or close
    without a reply), then the user-stream events of ``outcome``, before the reply is
    written (``user_events_first``) or after it."""
    faults = ex.faults
    method, path = req.method, req.path
    cid = entry.client_id if entry is not None else None
    fbad = faults.take("bad_response", method, path, symbol, cid)
    if fbad is not None:
        note_order(ex, entry, "bad_response")
        resp = Response(200, (fbad.msg or bad_body).encode())
    ftimeout = faults.take("timeout", method, path, symbol, cid)
    if ftimeout is not None:
        note_order(ex, entry, "timeout")
        if ftimeout.close:
            resp.drop = True
        else:
            resp.hold_s = ftimeout.hold_s

    if outcome is not None and outcome.events:
        if ex.user_events_first:
            resp.before_write = lambda: ex.wait_written(sent)
        else:
            events = outcome.events

            def publish_after() -> None:
                with ex.lock:
                    ex.enqueue_user_events(events, account)

            if resp.drop or resp.hold_s > 0:
                publish_after()
            else:
                resp.after_write = publish_after
    return resp
