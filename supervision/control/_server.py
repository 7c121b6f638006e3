"""The control endpoint's server (:class:`ControlServer`): routes a request, authorizes it
(:mod:`._auth`), reads its body (:mod:`._request`), tells each symbol's actor and waits for
the outcomes; serves the live view (:mod:`supervision.live_view`). See
:mod:`supervision.control` for the endpoint's contract.

Threads: the server's (see :mod:`infra.http_server`); the outcome listener runs on actor
threads and only sets events.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.messages import CloseRequest, Message, PauseRequest, UnquarantineRequest
from actors.model import CloseReason, Key
from actors.state import ControlOutcome, Position
from infra.config import Config
from infra.http_server import BoundedHttpServer, HttpRequest, HttpResponse
from infra.logs import LogWindows
from supervision.control._auth import authorize, loopback_address
from supervision.control._metrics import ControlStats
from supervision.control._request import COMMANDS, JSON, BadRequest, parse_command
from supervision.control._words import closed_words, done, outcome_words
from supervision.live_view import ViewSource, build_view, render_page, view_json
from supervision.supervisor import Supervisor

__all__ = ["ControlServer"]

log = logging.getLogger("supervision.control")

_HTML = "text/html; charset=utf-8"
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


@dataclass
class _Waiter:
    event: threading.Event = field(default_factory=threading.Event)
    outcome: ControlOutcome | None = None


def _json(
    status: int, doc: Mapping[str, Any], headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    body = (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode()
    return HttpResponse(status, body, JSON, _API_HEADERS + headers)


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
        self._loopback = loopback_address(cc.host)
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
        except BadRequest as exc:
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
        return authorize(
            request.headers.get("authorization"),
            request.headers.get("host"),
            self._token,
            page=page,
            loopback=self._loopback,
        )

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
        req = parse_command(command, request.headers.get("content-type", ""), request.body)
        keys = self._targets(command, req.account, list(req.symbols), req.every)
        return self._run(command, keys, req.reason, req.timeout_s, request.peer)

    def _targets(
        self, command: str, account: str | None, symbols: list[str], every: bool
    ) -> list[Key]:
        if account is not None:
            if account not in self._config.accounts:
                raise BadRequest(400, f"unknown account {account[:40]!r}")
            if account not in self._accounts:
                raise BadRequest(409, f"account {account!r} is not managed by this process")
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
                    raise BadRequest(
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
            out["message"] = closed_words(pos)
        else:
            out["message"] = outcome_words(outcome)
        out.update(outcome=outcome, ok=oc.ok, done=oc.ok and done(command, outcome))
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
