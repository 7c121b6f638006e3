"""The operator's control endpoint and live view, served by the running process.

HTTP on ``[control] address`` (loopback by default), started only while the token variable
(``PS_CONTROL_TOKEN``, ``control.token_env``) is set. JSON in and out:

* ``POST /control/close``         ``{"symbols": [...], "account": null, "reason": "...",
  "all": false, "timeout_s": 10}``: close each symbol's open position at market (``all``:
  every open position of the account(s): flatten);
* ``POST /control/pause``         new entries refused ``paused`` on the symbols (none given:
  every symbol of the account(s)); protection, trailing stops and closes go on;
* ``POST /control/resume``        entries taken again (none given: every symbol);
* ``POST /control/unquarantine``  lift the quarantine of the symbols (``all``: of every
  quarantined one);
* ``GET /api/view``               the live view as JSON;
* ``GET /``                       the live view (HTML, reloading itself; no script).

Every request carries ``Authorization: Bearer <token>`` (compared in constant time); the
page also takes HTTP Basic with the token as password (what a browser can send). On a
loopback address the page is served without a token to a client that names a loopback host
(``Host: 127.0.0.1:…``, ``localhost``; a DNS-rebinding page names another); anywhere else it
needs the token like the rest. A refused request is answered ``401`` with a JSON reason,
logged at WARNING (address, method, path and why; never the token; at most one line per
reason per 10 s) and counted in ``ps_control_requests_total{command,result="unauthorized"}``.

Each command becomes one message per symbol to its actor (:class:`~actors.messages.
CloseRequest`, :class:`~actors.messages.PauseRequest`, :class:`~actors.messages.
UnquarantineRequest`) with ``by="operator"`` and the reason given, which the actor journals.
The request waits (up to ``timeout_s``, at most 60 s) for each actor's decision (its
:class:`~actors.state.ControlOutcome`, through ``Supervisor.control_listeners``) and, for a
close, for the position to be closed; the answer lists each symbol's outcome and says what
is still pending when the time is up (``"done": false``). The waits run on the server's
worker threads (4): a stop of the server ends them at once.

Threads: the server's (see :mod:`infra.http_server`); the outcome listener runs on actor
threads and only sets events.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.messages import CloseRequest, Message, PauseRequest, UnquarantineRequest
from actors.model import CloseReason, Key, Status
from actors.state import ControlOutcome, Position
from infra.config import Config
from infra.http_server import BoundedHttpServer, HttpRequest, HttpResponse, LogWindows
from supervision.live_view import ViewSource, build_view, render_page, view_json
from supervision.supervisor import Supervisor, SupervisorStats

__all__ = ["COMMANDS", "ControlCollector", "ControlServer", "ControlStats"]

log = logging.getLogger(__name__)

COMMANDS = ("close", "pause", "resume", "unquarantine")
MAX_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 10.0
MAX_REASON = 200
_SYMBOL = re.compile(r"^[A-Z0-9]{2,32}$")
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_FIELDS = {"account", "symbols", "all", "reason", "timeout_s"}
_PAGE_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
_API_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))
#: What the actor's outcome means for the command: the asked-for end state holds.
_DONE = {
    "pause": {"paused", "already_paused"},
    "resume": {"resumed", "not_paused"},
    "unquarantine": {"unquarantined", "not_quarantined"},
    "close": {"no_position", "closed", "failed"},
}
_WORDS = {
    "paused": "paused: new signals are refused `paused`",
    "already_paused": "paused already",
    "resumed": "resumed: new signals are decided again",
    "not_paused": "not paused",
    "unquarantined": "quarantine lifted: new signals are decided again",
    "not_quarantined": "not quarantined",
    "no_position": "no open position: nothing to close",
    "store_unavailable": "not done: the database did not answer (nothing changed)",
}


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Waiter:
    event: threading.Event = field(default_factory=threading.Event)
    outcome: ControlOutcome | None = None


class ControlStats:
    """Requests by command and result (``ps_control_requests_total``). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def count(self, command: str, result: str) -> None:
        with self._lock:
            self._counts[(command, result)] = self._counts.get((command, result), 0) + 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


class ControlCollector(Collector):
    """``ps_control_requests_total{command,result}`` and ``ps_symbol_paused{account,symbol}``
    at scrape time. Registered by the app whether the endpoint runs or not: a pause stored
    by an earlier run is in force (and shown) without it."""

    def __init__(self, stats: ControlStats, supervisor: Callable[[], SupervisorStats]) -> None:
        self._stats = stats
        self._supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "ps_control_requests",
            "Requests to the control endpoint by command (close, pause, resume, unquarantine,"
            " view, page) and result (ok, pending, failed, bad_request, unauthorized).",
            labels=["command", "result"],
        )
        for (command, result), n in sorted(self._stats.snapshot().items()):
            c.add_metric([command, result], float(n))
        yield c
        g = GaugeMetricFamily(
            "ps_symbol_paused",
            "1 for each account and symbol an operator paused (no new entries).",
            labels=["account", "symbol"],
        )
        try:
            paused = self._supervisor().paused
        except Exception:
            log.exception("supervisor stats unavailable")
            paused = ()
        for key in paused:
            account, _, symbol = key.partition(":")
            g.add_metric([account, symbol], 1.0)
        yield g


def _json(
    status: int, doc: Mapping[str, Any], headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    body = (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode()
    return HttpResponse(status, body, _JSON, _API_HEADERS + headers)


def _loopback_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str | None) -> str:
    """The host part of a ``Host`` header (``127.0.0.1:9491`` → ``127.0.0.1``)."""
    h = (host_header or "").strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rpartition(":")[0] if ":" in h else h


def _printable(text: str) -> bool:
    return text.isprintable() and not any(c in text for c in "\r\n\t")


class ControlServer(BoundedHttpServer):
    """The endpoint (see the module docstring). ``accounts``: the accounts this process
    manages (an account configured but owned by another process is refused ``409``);
    ``store``: where the live view reads journal, signals and stored controls (``None``:
    positions and health only); ``health``: the readiness checks to show; ``marks``: the last
    mark price of each symbol (else the actors' own, which ticks inside their band do not
    update)."""

    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        accounts: Sequence[str],
        health: Callable[[], Mapping[str, str | None]],
        stats: ControlStats,
        store: ViewSource | None = None,
        *,
        marks: Mapping[Key, float] | None = None,
        workers: int = 4,
    ) -> None:
        cc = config.control
        if cc.token is None:
            raise ValueError("the control endpoint needs a token")
        super().__init__(
            cc.host,
            cc.port,
            name="control",
            label="control HTTP",
            logger=log,
            max_body_bytes=65536,
            workers=workers,
            methods=("GET", "HEAD", "POST"),
            address_key="control.address",
        )
        self._config = config
        self._sup = supervisor
        self._accounts = tuple(accounts)
        self._health = health
        self._stats = stats
        self._store = store
        self._marks = marks
        self._token = cc.token.encode("utf-8")
        self._refresh_s = cc.refresh_s
        self._loopback = _loopback_address(cc.host)
        self._allowed = {name: frozenset(a.symbols) for name, a in config.accounts.items()}
        self._waiters: dict[str, _Waiter] = {}
        self._lock = threading.Lock()
        self._refusals = LogWindows(10.0)  # one warning per reason per 10 s

    # -- lifecycle -------------------------------------------------------------------------

    def on_start(self) -> None:
        self._sup.control_listeners.append(self._on_outcome)
        log.info(
            "control endpoint on %s (live view at %s/, commands at %s/control/...)",
            self.url,
            self.url,
            self.url,
        )
        if not self._loopback:
            log.warning(
                "control endpoint on %s is reachable beyond this machine: every request needs "
                "the token, which crosses the network in clear unless a TLS proxy fronts it",
                self.url,
            )

    def on_stop(self) -> None:
        with contextlib.suppress(ValueError):
            self._sup.control_listeners.remove(self._on_outcome)

    def _on_outcome(self, outcome: ControlOutcome) -> None:
        """An actor decided a request (actor thread): wake its waiter, if any."""
        with self._lock:
            w = self._waiters.get(outcome.request_id)
        if w is not None:
            w.outcome = outcome
            w.event.set()

    # -- requests (worker threads) -----------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path in ("/", "/index.html"):
            command, method = "page", "GET"
        elif path == "/api/view":
            command, method = "view", "GET"
        elif path.startswith("/control/") and path[9:] in COMMANDS:
            command, method = path[9:], "POST"
        else:
            return _json(404, {"error": "not found", "reason": f"no route {path[:80]!r}"})
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return _json(
                405,
                {"error": "method not allowed", "reason": f"{path} takes {method}"},
                (("Allow", "GET, HEAD" if method == "GET" else method),),
            )
        why = self._authorize(request, page=command == "page")
        if why is not None:
            return self._unauthorized(request, command, why)
        if command == "page":
            self._stats.count("page", "ok")
            page = render_page(self._view())
            return HttpResponse(200, page.encode("utf-8"), _HTML, _PAGE_HEADERS)
        if command == "view":
            self._stats.count("view", "ok")
            return _json(200, view_json(self._view()))
        try:
            return self._command(command, request)
        except _BadRequest as exc:
            self._stats.count(command, "bad_request")
            log.info("control: %s from %s refused: %s", command, request.peer, exc.reason)
            return _json(exc.status, {"error": "bad request", "reason": exc.reason})

    def _view(self) -> Any:
        return build_view(
            self._sup.cells(),
            self._store,
            self._health,
            accounts=self._accounts,
            refresh_s=self._refresh_s,
            marks=self._marks,
        )

    # -- authentication --------------------------------------------------------------------

    def _authorize(self, request: HttpRequest, *, page: bool) -> str | None:
        """None when the request may go on, else why not (never quoting what was sent)."""
        header = request.headers.get("authorization")
        if header is None:
            if page and self._loopback:
                if _loopback_address(_host_name(request.headers.get("host"))):
                    return None
                return "no token, and the Host header does not name a loopback address"
            return "no token (send Authorization: Bearer <token>)"
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            given = value.strip().encode("utf-8", "replace")
        elif scheme == "basic" and page:
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return "malformed Basic credentials"
            given = decoded.partition(b":")[2]
        else:
            return "unsupported Authorization scheme (use Bearer)"
        if not hmac.compare_digest(given, self._token):
            return "wrong token"
        return None

    def _unauthorized(self, request: HttpRequest, command: str, why: str) -> HttpResponse:
        self._stats.count(command, "unauthorized")
        suppressed = self._refusals.admit(why)
        if suppressed is not None:
            log.warning(
                "control: refused %s %s from %s: %s%s",
                request.method,
                request.path[:80],
                request.peer,
                why,
                f" ({suppressed} more refused for this reason in the last 10 s)"
                if suppressed
                else "",
            )
        challenge = (
            'Basic realm="position-supervisor", charset="UTF-8"' if command == "page" else "Bearer"
        )
        return _json(
            401,
            {"error": "unauthorized", "reason": why},
            (("WWW-Authenticate", challenge),),
        )

    # -- commands ----------------------------------------------------------------------------

    def _command(self, command: str, request: HttpRequest) -> HttpResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != _JSON:
            raise _BadRequest(415, "send the body as application/json")
        try:
            doc = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _BadRequest(400, "the body is not JSON") from None
        if not isinstance(doc, dict):
            raise _BadRequest(400, "the body must be a JSON object")
        unknown = sorted(set(doc) - _FIELDS)
        if unknown:
            raise _BadRequest(400, f"unknown field {str(unknown[0])[:40]!r}")
        account = doc.get("account")
        if account is not None and not isinstance(account, str):
            raise _BadRequest(400, "account: a string or null")
        symbols = doc.get("symbols", [])
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise _BadRequest(400, "symbols: a list of strings")
        if len(symbols) > 1000:
            raise _BadRequest(400, "symbols: at most 1000")
        for s in symbols:
            if not _SYMBOL.fullmatch(s):
                raise _BadRequest(400, f"symbols: {s[:40]!r} is not an exchange symbol id")
        every = doc.get("all", False)
        if not isinstance(every, bool):
            raise _BadRequest(400, "all: true or false")
        reason = doc.get("reason")
        if (
            not isinstance(reason, str)
            or not reason.strip()
            or len(reason) > MAX_REASON
            or not _printable(reason)
        ):
            raise _BadRequest(
                400, f"reason: required, 1-{MAX_REASON} printable characters on one line"
            )
        timeout = doc.get("timeout_s", DEFAULT_TIMEOUT_S)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_TIMEOUT_S
        ):
            raise _BadRequest(400, f"timeout_s: a number above 0, at most {MAX_TIMEOUT_S:g}")
        if every and symbols:
            raise _BadRequest(400, "give symbols or all, not both")
        if command in ("close", "unquarantine") and not symbols and not every:
            raise _BadRequest(400, f"{command}: name the symbols, or all")
        keys = self._targets(command, account, symbols, every)
        return self._run(command, keys, reason.strip(), float(timeout), request.peer)

    def _targets(
        self, command: str, account: str | None, symbols: list[str], every: bool
    ) -> list[Key]:
        if account is not None:
            if account not in self._config.accounts:
                raise _BadRequest(400, f"unknown account {account[:40]!r}")
            if account not in self._accounts:
                raise _BadRequest(409, f"account {account!r} is not managed by this process")
            accounts: Sequence[str] = (account,)
        else:
            accounts = self._accounts
        reports = {c.key: c.report for c in self._sup.cells() if c.key.account in accounts}
        if symbols:
            keys: list[Key] = []
            for s in dict.fromkeys(symbols):
                found = [
                    Key(a, s) for a in accounts if s in self._allowed[a] or Key(a, s) in reports
                ]
                if not found:
                    raise _BadRequest(
                        400, f"unknown symbol {s!r}: not a symbol of {', '.join(accounts)}"
                    )
                keys += found
            return keys
        if command == "close":
            return sorted(
                (
                    k
                    for k, r in reports.items()
                    if r.position is not None and not r.position.status.terminal
                ),
                key=str,
            )
        if command == "unquarantine":
            return sorted((k for k, r in reports.items() if r.quarantined), key=str)
        keys = [Key(a, s) for a in accounts for s in sorted(self._allowed[a])]
        if command == "resume":
            keys += sorted((k for k, r in reports.items() if r.paused and k not in keys), key=str)
        return keys

    def _message(self, command: str, key: Key, request_id: str, reason: str) -> Message:
        if command == "close":
            return CloseRequest(key, CloseReason.MANUAL, request_id, "operator", reason)
        if command in ("pause", "resume"):
            return PauseRequest(key, command == "pause", request_id, "operator", reason)
        return UnquarantineRequest(key, request_id, "operator", reason)

    def _run(
        self, command: str, keys: list[Key], reason: str, timeout: float, peer: str
    ) -> HttpResponse:
        started = time.monotonic()
        deadline = started + timeout
        batch = uuid.uuid4().hex[:12]
        log.info(
            "control: %s %s from %s (reason: %s)",
            command,
            ", ".join(map(str, keys)) or "(nothing)",
            peer,
            reason,
        )
        sent: list[tuple[Key, str, _Waiter, bool]] = []
        try:
            for i, key in enumerate(keys):
                rid = f"op-{batch}-{i}"
                w = _Waiter()
                with self._lock:
                    self._waiters[rid] = w
                told = self._sup.tell(self._message(command, key, rid, reason))
                sent.append((key, rid, w, told))
            results = [self._result(command, key, w, told, deadline) for key, _, w, told in sent]
        finally:
            with self._lock:
                for _, rid, _, _ in sent:
                    self._waiters.pop(rid, None)
        done = all(r["done"] for r in results)
        failed = any(not r["ok"] for r in results)
        result = "failed" if failed else ("ok" if done else "pending")
        self._stats.count(command, result)
        for r in results:
            log.info(
                "control: %s %s:%s -> %s: %s",
                command,
                r["account"],
                r["symbol"],
                r["outcome"],
                r["message"],
            )
        return _json(
            200,
            {
                "command": command,
                "reason": reason,
                "done": done,
                "ok": not failed,
                "results": results,
                "pending": [f"{r['account']}:{r['symbol']}" for r in results if not r["done"]],
                "elapsed_s": round(time.monotonic() - started, 3),
            },
        )

    def _wait(self, event: threading.Event, deadline: float) -> bool:
        """Wait for ``event`` until ``deadline`` or the server's stop. True when set."""
        while not event.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                return False
            event.wait(min(left, 0.2))
        return True

    def _result(
        self, command: str, key: Key, w: _Waiter, told: bool, deadline: float
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "account": key.account,
            "symbol": key.symbol,
            "position_id": None,
        }
        if not told:
            out.update(outcome="refused", ok=False, done=False)
            out["message"] = "not sent: the supervisor is stopping or does not manage the account"
            return out
        if not self._wait(w.event, deadline):
            out.update(outcome="pending", ok=True, done=False)
            out["message"] = (
                "not decided in time: the symbol's actor is busy, restarting after a crash or "
                "waiting for the database; it is still queued and will be done"
            )
            return out
        oc = w.outcome
        assert oc is not None
        out["position_id"] = oc.position_id
        outcome = oc.outcome
        if command == "close" and oc.ok and oc.position_id is not None:
            pos = self._closed(key, oc.position_id, deadline)
            if pos is None or not pos.status.terminal:
                out.update(outcome=outcome, ok=True, done=False)
                what = (
                    "entry cancel requested (not filled yet)"
                    if outcome == "entry_cancel_requested"
                    else "close order sent"
                )
                out["message"] = f"position {oc.position_id} closing: {what}, not done in time"
                return out
            outcome = pos.status.value
            out["message"] = self._closed_words(pos)
        else:
            out["message"] = _WORDS.get(outcome, outcome)
        out.update(outcome=outcome, ok=oc.ok, done=oc.ok and outcome in _DONE[command])
        return out

    def _closed(self, key: Key, position_id: int, deadline: float) -> Position | None:
        """The position as its actor last published it, once terminal or at the deadline."""
        idle = threading.Event()
        while True:
            cell = next((c for c in self._sup.cells() if c.key == key), None)
            pos = cell.report.position if cell is not None else None
            if pos is not None and pos.id == position_id and pos.status.terminal:
                return pos
            if time.monotonic() >= deadline or self._stopping.is_set():
                return pos if pos is not None and pos.id == position_id else None
            idle.wait(0.05)

    @staticmethod
    def _closed_words(pos: Position) -> str:
        from supervision.cli import exit_price, realised_pnl  # noqa: PLC0415

        if pos.status is Status.FAILED:
            return f"position {pos.id} never filled: entry cancelled ({pos.fail_reason or '-'})"
        price, pnl = exit_price(pos), realised_pnl(pos)
        reason = pos.close_reason.value if pos.close_reason else "-"
        text = f"position {pos.id} closed ({reason})"
        if price is not None:
            text += f" at {price:.8g}"
        if pnl is not None:
            text += f", realised PnL {pnl:+.2f}"
        return text
