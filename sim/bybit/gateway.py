"""The Bybit front: signature check, limits, faults, REST dispatch, control API, streams.

Implements ``sim.httpserver.App`` for ``BybitExchange``. Called on HTTP connection threads.
Order of a REST request (the same steps as Binance's front, ``sim.gateway``, in Bybit's
terms):

0. ``/_sim/...`` goes to the control API; anything but ``/v5/...`` is HTTP 404;
1. the account: the one the ``X-BAPI-API-KEY`` header's key acts on (the default account
   for any other key; retCode 10003 with ``strict_keys``, or without a key on a private
   route); order creations are written to the order log on receipt, cancels to the cancel
   log; every request is counted against Bybit's limits (``sim.bybit.limits``): over the
   endpoint's limit, when enforced, retCode 10006 with the limit headers, over the IP limit
   HTTP 403, and nothing else happens;
2. faults that act *before* anything happens: latency, ``http_429`` (retCode 10006 here),
   ``busy`` (10016 "System error"), ``http_502``, ``error_code`` (unless ``act``; ``code``
   is a Bybit retCode), ``reject_2019`` (110007), ``not_found`` (a lookup by id answers an
   empty list); ``lag_open_orders`` sets the moment open-order lists are answered for;
3. authentication of private routes: ``X-BAPI-TIMESTAMP`` within ``X-BAPI-RECV-WINDOW``
   (server time - recv_window <= timestamp < server time + 1 s, else 10002), and
   ``X-BAPI-SIGN`` = HMAC-SHA256(secret, timestamp + key + recv_window + payload), the
   payload being the raw query string (GET) or the raw JSON body (POST), else 10004;
4. the route runs under the exchange lock; its private-stream messages are queued on the
   sockets while the lock is held;
5. faults that act *after*: ``http_503`` (10016 "Request timeout": the order IS placed),
   ``error_code`` with ``act``, ``bad_response``, ``timeout``;
6. the reply (HTTP 200, envelope ``{retCode, retMsg, result, retExtInfo, time}``) is
   written after the messages reached the sockets (``user_events_first``), or they are
   queued after it.

Streams: ``/v5/public/linear`` (``subscribe`` to ``tickers.<symbol>``: a snapshot, then a
delta per price move) and ``/v5/private`` (``auth`` with ``[apiKey, expires, signature]``,
signature = HMAC-SHA256(secret, "GET/realtime" + expires); then ``subscribe`` to
``order``, ``execution``, ``position``, ``wallet``); ``ping`` on both.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.bybit import errors
from sim.bybit.errors import BybitError
from sim.bybit.rest import PUBLIC, BybitRest
from sim.control import ControlApi
from sim.faults import BYBIT_ORDER_CANCEL, BYBIT_ORDER_CREATE
from sim.gateway import finish_reply, note_order, request_context, run_route
from sim.httpserver import Request, Response, WsAccept
from sim.matching import now_ms
from sim.rest import DEFAULT_ACCOUNT, Outcome
from sim.websocket import WsConnection

if TYPE_CHECKING:
    from sim.bybit.exchange import BybitExchange
    from sim.exchange import OrderLogEntry

BAD_GATEWAY = (
    b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
)
BAD_RESPONSE = '{"retCode":0,"retMsg":"OK","result":{"orderId":"x","qty":"1","cumExecQty":"x"}}'
"""The ``bad_response`` fault's default body on this front: ccxt's parse_order raises
ValueError on it (a body cut short is no error to ccxt's bybit: it parses an empty order)."""

PUBLIC_WS = "/v5/public/linear"
PRIVATE_WS = "/v5/private"
PRIVATE_TOPICS = frozenset({"order", "execution", "position", "wallet"})


def envelope(result: Any, code: int = 0, msg: str = "OK") -> dict[str, Any]:
    """Bybit's reply: ``{retCode, retMsg, result, retExtInfo, time}``."""
    return {
        "retCode": code,
        "retMsg": msg,
        "result": result if result is not None else {},
        "retExtInfo": {},
        "time": now_ms(),
    }


def _refusal(exc: BybitError, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response.of_json(
        envelope({}, exc.ret_code, exc.ret_msg), exc.status, headers=list(headers or [])
    )


def _text(value: Any) -> str:
    """A JSON body value as the routes read it (booleans lower-case, as in a query)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


@dataclass
class _WsState:
    """One stream connection: which endpoint, and the account once authenticated."""

    private: bool
    conn_id: str
    account: str | None = None


class BybitGateway:
    """HTTP/WebSocket entry point of one ``BybitExchange``."""

    def __init__(self, ex: BybitExchange) -> None:
        self.ex = ex
        self.rest = BybitRest(ex)
        self.control = ControlApi(ex)
        self._lock = threading.Lock()
        self._ws: dict[WsConnection, _WsState] = {}

    # ------------------------------------------------------------------ HTTP

    def handle(self, req: Request) -> Response:
        """Answer one HTTP request (see the module docstring for the order of steps)."""
        if req.path.startswith("/_sim/") or req.path == "/_sim":
            return self.control.handle(req)
        method, path = req.method, req.path
        if not path.startswith("/v5/"):
            return Response.of_json(envelope({}, 10017, f"sim: no endpoint {method} {path}"), 404)
        try:
            params, payload = self._params(req)
        except BybitError as exc:
            return _refusal(exc)
        api_key = req.headers.get("X-BAPI-API-KEY") or ""
        public = (method, path) in PUBLIC
        account = self.ex.account_of_key(api_key) if api_key else None
        if account is None:
            if not public:
                return _refusal(errors.error(errors.BAD_KEY))
            account = DEFAULT_ACCOUNT
        entry: OrderLogEntry | None = None
        if (method, path) in BYBIT_ORDER_CREATE:
            entry = self.ex.log_order_request("order/create", params, account, api_key)
        elif (method, path) in BYBIT_ORDER_CANCEL:
            entry = self.ex.log_order_request("order/cancel", params, account, api_key, cancel=True)
        charge = self.ex.bybit_limits.charge_request(account, method, path, now_ms())
        if charge.refused == "ip":
            self._note(entry, "rate_limit", outcome="not_executed")
            return Response(403, b"access too frequent", content_type="text/plain")
        if charge.refused is not None:
            self._note(entry, "rate_limit", outcome="not_executed")
            return _refusal(errors.error(errors.RATE_LIMIT), charge.headers)
        resp = self._serve(req, params, payload, entry, account, api_key, public)
        given = {name.lower() for name, _ in resp.headers}  # a fault's own limit headers win
        resp.headers.extend(h for h in charge.headers if h[0].lower() not in given)
        resp.headers.append(("Timenow", str(now_ms())))
        resp.headers.append(("Traceid", uuid.uuid4().hex))
        return resp

    @staticmethod
    def _params(req: Request) -> tuple[dict[str, str], str]:
        """The request's parameters as strings, and the text its signature covers."""
        if req.method == "GET":
            return dict(req.query), req.raw_query
        text = req.body.decode("utf-8", errors="replace")
        if not text:
            return {}, ""
        try:
            body = json.loads(text)
        except ValueError:
            raise errors.params("request body is not JSON") from None
        if not isinstance(body, dict):
            raise errors.params("request body must be a JSON object")
        return {str(k): _text(v) for k, v in body.items()}, text

    def _auth(self, req: Request, api_key: str, payload: str) -> BybitError | None:
        raw_ts = req.headers.get("X-BAPI-TIMESTAMP") or ""
        raw_window = req.headers.get("X-BAPI-RECV-WINDOW") or "5000"
        try:
            ts = int(raw_ts)
            window = int(raw_window)
        except ValueError:
            return errors.params("X-BAPI-TIMESTAMP or X-BAPI-RECV-WINDOW invalid")
        now = now_ms()
        if not now - window <= ts < now + 1000:
            return BybitError(
                errors.EXPIRED,
                f"{errors.MESSAGES[errors.EXPIRED]}. req_timestamp[{ts}],"
                f"server_timestamp[{now}],recv_window[{window}]",
            )
        signature = req.headers.get("X-BAPI-SIGN") or ""
        if not self.ex.signature_ok(api_key, raw_ts + api_key + raw_window + payload, signature):
            return errors.error(errors.BAD_SIGN)
        return None

    def _serve(
        self,
        req: Request,
        params: dict[str, str],
        payload: str,
        entry: OrderLogEntry | None,
        account: str,
        api_key: str,
        public: bool,
    ) -> Response:
        """Steps 2 to 6 of the module docstring for one request within the limits."""
        method, path = req.method, req.path
        faults = self.ex.faults
        symbol = params.get("symbol")
        cid = entry.client_id if entry is not None else None  # faults armed by client id

        lat = faults.take("latency", method, path, symbol, cid)
        if lat is not None:
            self._note(entry, "latency")
            self.ex.stopping.wait(lat.delay(faults.rng))
        f429 = faults.take("http_429", method, path, symbol, cid)
        if f429 is not None:
            self._note(entry, "http_429", outcome="not_executed")
            reset = now_ms() + 1000 * f429.retry_after_s
            limit = self.ex.bybit_limits.per_endpoint.get((method, path), 0)
            headers = [
                ("X-Bapi-Limit", str(limit)),
                ("X-Bapi-Limit-Status", "0"),
                ("X-Bapi-Limit-Reset-Timestamp", str(reset)),
            ]
            return _refusal(errors.error(errors.RATE_LIMIT), headers)
        if faults.take("busy", method, path, symbol, cid) is not None:
            self._note(entry, "busy", outcome="rejected", code=errors.SYSTEM_BUSY)
            return _refusal(errors.error(errors.SYSTEM_BUSY))
        if faults.take("http_502", method, path, symbol, cid) is not None:
            self._note(entry, "http_502", outcome="not_executed")
            return Response(502, BAD_GATEWAY, content_type="text/html")
        ferr = faults.take("error_code", method, path, symbol, cid)
        if ferr is not None and not ferr.act:
            self._note(entry, "error_code", outcome="rejected", code=ferr.code)
            return _refusal(self._injected(ferr.code, ferr.status, ferr.msg))
        route = self.rest.routes.get((method, path))
        if route is None:
            self._note(entry, None, outcome="rejected", code=10017)
            return Response.of_json(envelope({}, 10017, f"sim: no endpoint {method} {path}"), 404)
        if not public:
            auth_error = self._auth(req, api_key, payload)
            if auth_error is not None:
                self._note(entry, None, outcome="rejected", code=auth_error.ret_code)
                return _refusal(auth_error)
        if entry is not None and faults.take("reject_2019", method, path, symbol, cid) is not None:
            self._note(entry, "reject_2019", outcome="rejected", code=errors.INSUFFICIENT)
            return _refusal(errors.error(errors.INSUFFICIENT))
        by_id = bool(params.get("orderId") or params.get("orderLinkId"))
        if by_id and method == "GET" and faults.take("not_found", method, path, symbol, cid):
            empty = {"category": "linear", "list": [], "nextPageCursor": ""}
            return Response.of_json(envelope(empty))
        ctx = request_context(self.ex, entry, req, symbol, account, api_key)
        sent: list[tuple[WsConnection, int]] = []
        outcome: Outcome | None = None
        try:
            outcome, sent = run_route(self.ex, route, params, ctx, entry)
            resp = Response.of_json(envelope(outcome.payload))
            self._note(entry, None, outcome="accepted", order_id=outcome.order_id)
        except BybitError as exc:
            resp = _refusal(exc)
            self._note(entry, None, outcome="rejected", code=exc.ret_code)
        for fn in outcome.later if outcome is not None else []:
            fn()

        if faults.take("http_503", method, path, symbol, cid) is not None:
            self._note(entry, "http_503")
            resp = _refusal(BybitError(errors.SYSTEM_BUSY, errors.REQUEST_TIMEOUT_MSG))
        if ferr is not None and ferr.act:
            self._note(entry, "error_code")
            resp = _refusal(self._injected(ferr.code, ferr.status, ferr.msg))
        return finish_reply(self.ex, entry, req, symbol, resp, outcome, account, sent, BAD_RESPONSE)

    @staticmethod
    def _injected(code: int, status: int, msg: str | None) -> BybitError:
        """The ``error_code`` fault on this front: ``code`` is a retCode; ``status`` is the
        HTTP status only when not the fault's default (400): Bybit answers refusals 200."""
        return errors.error(code, msg, 200 if status == 400 else status)

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

    def connections(self) -> list[WsConnection]:
        """Open stream connections (tagged "public" or "private")."""
        with self._lock:
            return list(self._ws)

    def websocket(self, req: Request) -> WsAccept | Response:
        """Accept ``/v5/public/linear`` and ``/v5/private`` (404 for any other path)."""
        if req.path not in (PUBLIC_WS, PRIVATE_WS):
            return Response.of_json({"success": False, "ret_msg": "unknown websocket path"}, 404)
        private = req.path == PRIVATE_WS
        hub = self.ex.hub

        def on_open(conn: WsConnection) -> None:
            conn.tags.add("private" if private else "public")
            with self._lock:
                self._ws[conn] = _WsState(private, str(uuid.uuid4()))
            hub.attach(conn, [], combined=False)

        def on_close(conn: WsConnection) -> None:
            hub.detach(conn)
            with self._lock:
                self._ws.pop(conn, None)

        return WsAccept(on_open=on_open, on_message=self._on_message, on_close=on_close)

    def _on_message(self, conn: WsConnection, message: str | bytes) -> None:
        """``auth`` / ``subscribe`` / ``unsubscribe`` / ``ping`` requests."""
        with self._lock:
            state = self._ws.get(conn)
        if state is None:
            return
        try:
            req: Any = json.loads(message)
            op = req["op"]
            args = req.get("args") or []
            if not isinstance(args, list):
                raise TypeError("args")
        except (ValueError, KeyError, TypeError):
            conn.send_text(
                json.dumps(
                    {
                        "success": False,
                        "ret_msg": "error:request not json or invalid",
                        "conn_id": state.conn_id,
                    }
                )
            )
            return
        req_id = req.get("req_id")
        if op == "ping":
            self._pong(conn, state, req_id)
        elif op == "auth" and state.private:
            self._authenticate(conn, state, args, req_id)
        elif op in ("subscribe", "unsubscribe"):
            self._subscribe(conn, state, op, [str(a) for a in args], req_id)
        else:
            conn.send_text(
                json.dumps(
                    {
                        "success": False,
                        "ret_msg": f"error:invalid op {op}",
                        "conn_id": state.conn_id,
                        "request": {"op": op, "args": args},
                    }
                )
            )

    @staticmethod
    def _reply(state: _WsState, op: str, req_id: Any, ok: bool, msg: str = "") -> str:
        out: dict[str, Any] = {"success": ok, "ret_msg": msg, "conn_id": state.conn_id}
        if req_id is not None:
            out["req_id"] = req_id
        out["op"] = op
        return json.dumps(out)

    def _pong(self, conn: WsConnection, state: _WsState, req_id: Any) -> None:
        if state.private:
            out: dict[str, Any] = {"op": "pong", "args": [str(now_ms())], "conn_id": state.conn_id}
            if req_id is not None:
                out = {"req_id": req_id, **out}
            conn.send_text(json.dumps(out))
        else:
            conn.send_text(self._reply(state, "ping", req_id, True, "pong"))

    def _authenticate(
        self, conn: WsConnection, state: _WsState, args: list[Any], req_id: Any
    ) -> None:
        if len(args) != 3:
            conn.send_text(self._reply(state, "auth", req_id, False, "Params Error"))
            return
        api_key, expires, signature = (str(a) for a in args)
        account = self.ex.account_of_key(api_key)
        try:
            expires_ms = int(expires)
        except ValueError:
            expires_ms = 0
        if account is None:
            conn.send_text(self._reply(state, "auth", req_id, False, "Invalid apikey"))
        elif expires_ms <= now_ms():
            conn.send_text(self._reply(state, "auth", req_id, False, "Params Error"))
        elif not self.ex.signature_ok(api_key, "GET/realtime" + expires, signature):
            conn.send_text(self._reply(state, "auth", req_id, False, "Invalid apikey or signature"))
        else:
            with self._lock:
                state.account = account
            conn.send_text(self._reply(state, "auth", req_id, True))

    def _subscribe(
        self, conn: WsConnection, state: _WsState, op: str, topics: list[str], req_id: Any
    ) -> None:
        hub = self.ex.hub
        if state.private:
            if state.account is None:
                conn.send_text(self._reply(state, op, req_id, False, "Request not authorized"))
                return
            bad = [t for t in topics if t not in PRIVATE_TOPICS]
            streams = [f"{state.account}|{t}" for t in topics]
        else:
            bad = [
                t
                for t in topics
                if not (t.startswith("tickers.") and t[len("tickers.") :] in self.ex.specs)
            ]
            streams = list(topics)
        if bad:
            conn.send_text(
                self._reply(state, op, req_id, False, f"error:handler not found,topic:{bad[0]}")
            )
            return
        with self.ex.lock:  # price moves publish under it: the snapshot comes first
            if op == "subscribe":
                hub.subscribe(conn, streams)
            else:
                hub.unsubscribe(conn, streams)
            conn.send_text(self._reply(state, op, req_id, True))
            if op == "subscribe" and not state.private:
                for topic in topics:
                    conn.send_text(self.ex.ticker_snapshot(topic[len("tickers.") :]))
