"""The request side of one Bybit v5 WebSocket connection: auth, subscriptions, pings.

Bybit's streams are subscribed by requests on the open connection (no listen key, no topics
in the URL): :class:`BybitSession` says what to send when a connection opens (an ``auth`` op
on the private stream, else the subscriptions), what a reply means, and when a ping is due.

* ``auth``: ``{"op": "auth", "args": [api_key, expires, signature]}``, ``expires`` = now +
  ``auth_expiry_s`` in epoch milliseconds, ``signature`` = hex HMAC-SHA256 of
  ``"GET/realtime" + expires`` with the API secret (:class:`BybitCredentials`). The secret
  never leaves this module; the frame is written by the runner, never logged;
* ``subscribe``: ``{"op": "subscribe", "args": [topics], "req_id"}``, at most ``chunk``
  topics a request. When a request of several topics is refused, each is asked again alone,
  so one unknown symbol costs only its own topic;
* ``ping``: ``{"op": "ping", "req_id"}`` every ``ping_interval_s`` (Bybit asks for one every
  20 s); a connection whose ping is not answered within ``pong_timeout_s`` is dead, and so is
  one whose auth or subscription is not answered within ``reply_timeout_s``.

:meth:`BybitSession.reply` and :meth:`BybitSession.idle` return a :class:`Step`: a refusal
to report (log line and metric, by the feed), a reconnect reason, and whether the
subscriptions are now all confirmed (``ready``: the moment to resync the account).

Threads: every method on the feed's runner thread (``send`` queues on the runner's outbox, any
thread). Pure bookkeeping otherwise: nothing here raises or blocks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from infra.feeds.parsing import OpReply, Refusal

__all__ = ["BybitCredentials", "BybitSession", "Step", "auth_signature"]

Send = Callable[[str], object]


def auth_signature(secret: str, expires_ms: int) -> str:
    """Bybit's WebSocket auth signature: hex HMAC-SHA256(secret, "GET/realtime" + expires)."""
    return hmac.new(
        secret.encode(), f"GET/realtime{expires_ms}".encode(), hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True, slots=True)
class BybitCredentials:
    """An account's API key pair for the private stream (the secret is never shown)."""

    api_key: str
    api_secret: str = field(repr=False)

    def auth_frame(self, expires_ms: int, req_id: str) -> str:
        """The ``auth`` request valid until ``expires_ms``."""
        sig = auth_signature(self.api_secret, expires_ms)
        args = [self.api_key, expires_ms, sig]
        return json.dumps({"op": "auth", "args": args, "req_id": req_id})


@dataclass(frozen=True, slots=True)
class Step:
    """What a reply or the passing of time asks of the feed."""

    refusal: Refusal | None = None
    reconnect: str | None = None
    ready: bool = False


_NOTHING = Step()


class BybitSession:
    """Requests and replies of one stream's connections (see the module docstring).

    ``credentials``: the private stream's (``None``: public, no auth). ``topics``: what to
    subscribe on every connection.
    """

    def __init__(
        self,
        name: str,
        topics: Sequence[str],
        credentials: BybitCredentials | None = None,
        *,
        chunk: int = 10,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 10.0,
        reply_timeout_s: float = 10.0,
        auth_expiry_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not topics:
            raise ValueError("no topics to subscribe")
        self.name = name
        self.topics = tuple(topics)
        self._credentials = credentials
        self.chunk = max(1, chunk)
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.auth_expiry_s = auth_expiry_s
        self._clock = clock
        self._mono = monotonic
        self._conn = 0
        self._seq = 0
        self._pending: dict[str, tuple[str, ...]] = {}  # req_id -> topics asked
        self._auth_id: str | None = None
        self._asked_at = 0.0  # when the oldest unanswered request went out
        self._ping_at = 0.0
        self._ping_id: str | None = None
        self.authenticated = False
        self.ready = False
        self.refused_topics: set[str] = set()
        self.pongs = 0

    def _req_id(self, kind: str) -> str:
        self._seq += 1
        return f"{kind}-{self._conn}-{self._seq}"

    def opened(self, n: int, send: Send) -> None:
        """Connection ``n`` is open: forget the last one's state, send auth or subscribe."""
        self._conn = n
        self._pending.clear()
        self._ping_id = None
        self.authenticated = self.ready = False
        now = self._mono()
        self._asked_at = self._ping_at = now
        creds = self._credentials
        if creds is not None:
            self._auth_id = self._req_id("auth")
            expires = int((self._clock() + self.auth_expiry_s) * 1000)
            send(creds.auth_frame(expires, self._auth_id))
        else:
            self._auth_id = None
            self.authenticated = True
            self._subscribe(self.topics, send)

    def _subscribe(self, topics: Sequence[str], send: Send) -> None:
        for i in range(0, len(topics), self.chunk):
            part = tuple(topics[i : i + self.chunk])
            rid = self._req_id("sub")
            self._pending[rid] = part
            send(json.dumps({"op": "subscribe", "args": list(part), "req_id": rid}))

    def reply(self, r: OpReply, send: Send) -> Step:
        """What the reply ``r`` means (see :class:`Step`)."""
        if r.op in ("pong", "ping"):
            if r.req_id is None or r.req_id == self._ping_id:
                self._ping_id = None
                self.pongs += 1
            return _NOTHING
        if r.op == "auth":
            if not r.success:
                return Step(Refusal("auth_refused", r.message), reconnect="auth_refused")
            if self.authenticated:
                return _NOTHING
            self.authenticated = True
            self._asked_at = self._mono()
            self._subscribe(self.topics, send)
            return _NOTHING
        if r.op == "subscribe":
            rid = r.req_id if r.req_id is not None else next(iter(self._pending), None)
            topics = self._pending.pop(rid, ()) if rid is not None else ()
            if not r.success:
                if len(topics) > 1:
                    self._subscribe_singly(topics, send)
                    return _NOTHING
                self.refused_topics.update(topics)
                detail = f"{','.join(topics) or '?'}: {r.message}"
                if self._credentials is not None or not topics:
                    return Step(Refusal("subscribe_refused", detail), "subscribe_refused")
                return self._maybe_ready(Step(Refusal("subscribe_refused", detail)))
            return self._maybe_ready(_NOTHING)
        if not r.success:
            return Step(Refusal("request_refused", f"{r.op or '?'}: {r.message}"))
        return _NOTHING

    def _subscribe_singly(self, topics: Sequence[str], send: Send) -> None:
        chunk, self.chunk = self.chunk, 1
        try:
            self._subscribe(topics, send)
        finally:
            self.chunk = chunk

    def _maybe_ready(self, step: Step) -> Step:
        if self._pending or self.ready:
            return step
        self.ready = True
        return Step(step.refusal, step.reconnect, ready=True)

    def idle(self, send: Send) -> Step:
        """Called at least every poll of the runner while connected: send a ping when one is
        due; a reconnect reason when a reply is overdue."""
        now = self._mono()
        waiting = (not self.authenticated) or bool(self._pending)
        if waiting and now - self._asked_at > self.reply_timeout_s:
            what = "auth" if not self.authenticated else "subscribe"
            return Step(Refusal(f"{what}_timeout"), reconnect=f"{what}_timeout")
        if self._ping_id is not None:
            if now - self._ping_at > self.pong_timeout_s:
                return Step(reconnect="ping_timeout")
        elif now - self._ping_at >= self.ping_interval_s:
            self._ping_id = self._req_id("ping")
            self._ping_at = now
            send(json.dumps({"op": "ping", "req_id": self._ping_id}))
        return _NOTHING
