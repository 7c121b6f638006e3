"""The signal feed client: JSON signals from a WebSocket server, validated, then told.

:class:`SignalFeedClient` connects to the configured URL (``Authorization: Bearer <token>``
when a token is configured), takes each text frame as one signal and runs
:func:`infra.feeds.parsing.parse_signal` on it (frame size, UTF-8, JSON, schema, types, finite
positive numbers, known account and allowed symbol, expiry and age, then
``actors.transition.validate_signal``). A valid signal passes a token bucket (``rate_per_s``,
``burst``: a flood cannot drown the actors) and is told with ``sink.tell``; the actor records
it, refuses it (its own checks against the last price, the open position, re-entry) or
records a replayed ``signal_id`` as a duplicate. The feed does not deduplicate: a re-delivery
after a reconnect reaches the actor, which records it once as a duplicate, so the history
shows it.

Every frame ends in exactly one outcome, counted in :meth:`SignalFeedClient.stats`:
``accepted`` (told, and the sink took it) or ``refused[reason]`` — the parse reasons, plus
``rate_limited``, ``intake_refused`` (the sink returned False) and ``sink_error`` (it
raised). So ``accepted + sum(refused) == frames`` at any quiet moment. Each refusal logs
``refused signal frame: <reason> (<detail>) preview=<first 80 characters, escaped>``
(throttled per reason) and counts ``feed_parse_error(feed, reason)``.

Acknowledgements: every signal gets one answer frame on the feed's connection, a JSON text
frame ``{"ack": <signal_id>, "account": …, "symbol": …, "outcome": …, "reason": …,
"retry": …, "replay": …, "position_id": …}``, once its outcome is decided. ``retry`` says
whether the same id may succeed if sent again later (:func:`actors.reasons.retry_allowed`);
``replay`` that the id was decided before and the answer is that recorded decision (an
accepted one with its ``position_id``), whatever the re-sent signal's age (I11). Answers go
out for a signal the actor handled, after the outcome is written (the signal
record, and the entry intent of an accepted one, are committed); for a refusal of the feed
or the intake, at once (``outcome`` ``"rejected"``, ``reason`` the refusal's). A frame without
a well-formed ``signal_id`` gets no answer. The supervisor reports decided outcomes through
:meth:`SignalFeedClient.signal_decided`; only ids this feed delivered are answered (at most
``awaiting_max`` at a time, the oldest forgotten beyond). An answer that could not be written
is sent on the next connection. A signal server that re-sends unanswered signals after a
reconnect (with the same ids: a decided one is answered with its decision, ``replay``) loses
none to a crash of the supervisor.

Threads: the runner thread parses, validates and tells; ``start``/``stop``/``stats`` and
``signal_decided`` from any thread. The token is sent in the handshake header only and never
logged (nor is the URL's query string).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from actors.messages import OpenSignal
from actors.model import Key
from actors.reasons import retry_allowed
from actors.state import SignalRecord
from infra.backoff import Backoff
from infra.feeds.metrics import FeedMetrics
from infra.feeds.parsing import Refusal, SignalRules, parse_signal
from infra.feeds.runner_feed import RunnerFeed
from infra.feeds.sink import FeedSink
from infra.feeds.ws_client import Connect, ReconnectingWebSocket

__all__ = ["SignalFeedClient", "SignalFeedStats", "TokenBucket"]

log = logging.getLogger(__name__)


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved. One thread only."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class SignalFeedStats:
    """Frames received, accepted, and refused by reason (a consistent snapshot)."""

    frames: int
    accepted: int
    refused: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    connected: bool = False

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


def _safe_url(url: str) -> str:
    """``scheme://host:port/path``: no user info, no query (a token may hide there)."""
    p = urlsplit(url)
    host = p.hostname or ""
    port = f":{p.port}" if p.port else ""
    return f"{p.scheme}://{host}{port}{p.path}"


class SignalFeedClient(RunnerFeed):
    """Signals from ``url`` to ``sink`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        sink: FeedSink,
        rules: SignalRules,
        *,
        token: str | None = None,
        name: str = "signals",
        rate_per_s: float = 50.0,
        burst: int = 100,
        hard_max_frame_bytes: int = 1024 * 1024,
        ping_interval_s: float | None = 20.0,
        pong_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        metrics: FeedMetrics | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 0.25,
        acks: bool = True,
        awaiting_max: int = 65536,
    ) -> None:
        super().__init__(name, metrics, log)
        self.rules = rules
        self._url = url
        self._token = token
        self._sink = sink
        self._clock = clock
        self._bucket = TokenBucket(rate_per_s, burst)
        self._lock = threading.Lock()
        self._frames = 0
        self._accepted = 0
        self._refused: Counter[str] = Counter()
        self._acks = acks
        self._awaiting: OrderedDict[str, int] = OrderedDict()
        self._awaiting_max = awaiting_max
        self.acks_sent = 0
        self.runner = ReconnectingWebSocket(
            name,
            self._prepare,
            self._on_frame,
            backoff=backoff,
            ping_interval_s=ping_interval_s,
            pong_timeout_s=pong_timeout_s,
            hard_max_frame_bytes=hard_max_frame_bytes,
            metrics=self.metrics,
            poll_s=poll_s,
        )

    def __repr__(self) -> str:
        return f"SignalFeedClient({_safe_url(self._url)!r})"

    def start(self) -> None:
        """Connect on the feed's own thread (returns at once)."""
        log.info(
            "%s: signal feed %s%s",
            self.name,
            _safe_url(self._url),
            " (token)" if self._token else "",
        )
        self.runner.start()

    def signal_decided(self, record: SignalRecord) -> None:
        """The outcome of a signal is decided (and written): answer it if this feed delivered
        it and is still waiting. Any thread; never blocks."""
        if self._acks and self._still_awaited(record.signal_id):
            self._answer(
                record.signal_id,
                record.key,
                record.outcome.value,
                record.reason,
                retry=record.retry,
                replay=record.replay,
                position_id=record.position_id,
            )

    @property
    def acks_enabled(self) -> bool:
        """Whether signals are answered (``[feeds] signal_acks``)."""
        return self._acks

    def awaiting(self) -> int:
        """Signals delivered and not yet answered."""
        with self._lock:
            return sum(self._awaiting.values())

    def _answer(
        self,
        signal_id: str,
        key: Key | None,
        outcome: str,
        reason: str,
        *,
        retry: bool,
        replay: bool = False,
        position_id: int | None = None,
    ) -> None:
        frame = {
            "ack": signal_id,
            "account": key.account if key is not None else None,
            "symbol": key.symbol if key is not None else None,
            "outcome": outcome,
            "reason": reason,
            "retry": retry,
            "replay": replay,
            "position_id": position_id,
        }
        if self.runner.send_text(json.dumps(frame, separators=(",", ":"))):
            with self._lock:
                self.acks_sent += 1
        else:
            self.throttled.warning(
                "ack_queue_full", "%s: answer queue full; %s not answered", self.name, signal_id
            )

    def _await(self, signal_id: str) -> None:
        with self._lock:
            self._awaiting[signal_id] = self._awaiting.get(signal_id, 0) + 1
            self._awaiting.move_to_end(signal_id)
            while len(self._awaiting) > self._awaiting_max:
                self._awaiting.popitem(last=False)

    def _still_awaited(self, signal_id: str) -> bool:
        """Take one delivery of ``signal_id`` off the waiting list; False if already answered."""
        with self._lock:
            n = self._awaiting.get(signal_id)
            if n is None:
                return False
            if n > 1:
                self._awaiting[signal_id] = n - 1
            else:
                del self._awaiting[signal_id]
            return True

    def stats(self) -> SignalFeedStats:
        with self._lock:
            return SignalFeedStats(
                self._frames,
                self._accepted,
                dict(self._refused),
                self.runner.connections,
                self.runner.connected.is_set(),
            )

    # -- runner thread --------------------------------------------------------------------

    def _prepare(self) -> Connect:
        headers = [f"Authorization: Bearer {self._token}"] if self._token else []
        return Connect(self._url, headers)

    def _on_frame(self, data: bytes, binary: bool) -> None:
        now = self._clock()
        with self._lock:
            self._frames += 1
        result = parse_signal(data, binary, self.rules, now)
        if isinstance(result, Refusal):
            self._refuse(result, data)
            return
        if not self._bucket.take(time.monotonic()):
            limited = Refusal("rate_limited", f"over {self._bucket.rate:g}/s", result.signal_id)
            self._refuse(limited, data, result.key)
            return
        self._deliver(result, data, now)

    def _deliver(self, sig: OpenSignal, data: bytes, now: float) -> None:
        if sig.created_at is not None:
            with contextlib.suppress(Exception):
                self.metrics.ws_lag(self.name, now - sig.created_at)
        if self._acks:
            self._await(sig.signal_id)  # before telling: the outcome may be decided at once
        try:
            ok = self._sink.tell(sig)
        except Exception:
            log.exception("%s: delivering signal %s failed", self.name, sig.signal_id)
            self._refuse(Refusal("sink_error", signal_id=sig.signal_id), data, sig.key)
            return
        if not ok:
            # The intake answers the refusals it decides; what it did not answer, we do.
            self._refuse(
                Refusal("intake_refused", "see the intake's log line", sig.signal_id),
                data,
                sig.key,
            )
            return
        with self._lock:
            self._accepted += 1
        # DEBUG: the actor logs the decision (one INFO line per signal decision).
        log.debug(
            "signal %s from %s delivered: %s %s %g stop %g",
            sig.signal_id,
            sig.source,
            sig.key,
            sig.side.value,
            sig.size,
            sig.stop_loss,
            extra={"key": str(sig.key)},
        )

    def _refuse(self, r: Refusal, data: bytes, key: Key | None = None) -> None:
        """Answer, report (metric and throttled log line), then count the refusal: a frame
        counted in :meth:`stats` has been wholly handled."""
        if self._acks and r.signal_id is not None:
            delivered = r.reason in ("sink_error", "intake_refused")
            if not delivered or self._still_awaited(r.signal_id):
                self._answer(r.signal_id, key, "rejected", r.reason, retry=retry_allowed(r.reason))
        self.report_refusal("refused signal frame", r, data)
        with self._lock:
            self._refused[r.reason] += 1
