"""Prometheus metrics: the actors' :class:`~actors.ports.Metrics`, process-level series, HTTP.

* :class:`PrometheusMetrics` implements :class:`actors.ports.Metrics` (what actors, workers and
  the supervisor report) and :class:`FeedMetrics` (what the WebSocket feeds, the sync and the
  store report). Every method is cheap, thread-safe and never raises.
* :meth:`PrometheusMetrics.watch_supervisor` adds a collector that reads
  ``Supervisor.stats()`` (and optionally mailbox depths) at scrape time.
* :class:`HealthChecks` holds named checks; :class:`MetricsServer` serves ``/metrics`` and
  ``/healthz`` (200 ``ok`` while every check passes, 503 naming each failing check).

Every series is prefixed ``ps_``; counters end in ``_total`` and durations in ``_seconds``
(see the README's metrics section for the list).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supervision.supervisor import SupervisorStats

__all__ = [
    "FeedMetrics",
    "HealthCheck",
    "HealthChecks",
    "MetricsServer",
    "NullFeedMetrics",
    "PrometheusMetrics",
]

log = logging.getLogger(__name__)

_FAST = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_CALL = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DB = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class FeedMetrics(Protocol):
    """What the feeds, the sync service and the store report. Cheap, thread-safe, never raise.

    ``feed`` names one stream (``signals``, ``main:market``, ``main:user`` …).
    """

    def feed_message(self, feed: str) -> None: ...

    def feed_parse_error(self, feed: str, reason: str) -> None: ...

    def ws_reconnect(self, feed: str) -> None: ...

    def ws_lag(self, feed: str, seconds: float) -> None: ...

    def feed_up(self, feed: str, up: bool) -> None: ...

    def sync_round(self, account: str, observations: int, seconds: float, ok: bool) -> None: ...

    def sync_discrepancy(self, account: str, kind: str) -> None: ...

    def db_commit(self, seconds: float) -> None: ...


class NullFeedMetrics:
    """FeedMetrics that go nowhere (tests, tools)."""

    def feed_message(self, feed: str) -> None:
        pass

    def feed_parse_error(self, feed: str, reason: str) -> None:
        pass

    def ws_reconnect(self, feed: str) -> None:
        pass

    def ws_lag(self, feed: str, seconds: float) -> None:
        pass

    def feed_up(self, feed: str, up: bool) -> None:
        pass

    def sync_round(self, account: str, observations: int, seconds: float, ok: bool) -> None:
        pass

    def sync_discrepancy(self, account: str, kind: str) -> None:
        pass

    def db_commit(self, seconds: float) -> None:
        pass


def _label(value: str | None) -> str:
    return "none" if value is None else str(value)


class PrometheusMetrics:
    """prometheus-client implementation of :class:`actors.ports.Metrics` and FeedMetrics.

    Owns its series in ``registry`` (a fresh :class:`CollectorRegistry` by default, so that
    several instances can live in one process, e.g. in tests).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.signals = Counter(
            "ps_signals",
            "Open signals by source, outcome (accepted, duplicate, cooldown, rejected) and reason.",
            ["source", "outcome", "reason"],
            registry=r,
        )
        self.orders = Counter(
            "ps_orders",
            "Exchange order calls by order kind, operation (place, cancel, lookup) and result.",
            ["kind", "op", "result"],
            registry=r,
        )
        self.transitions = Counter(
            "ps_transitions",
            "Position status transitions (from is none for a new position).",
            ["from_status", "to_status"],
            registry=r,
        )
        self.handling = Histogram(
            "ps_message_handling_seconds",
            "Time a position actor spent handling one message, by message type.",
            ["type"],
            buckets=_FAST,
            registry=r,
        )
        self.tick_latency = Histogram(
            "ps_tick_decision_seconds",
            "Mark-price tick received to the actor's decision on it.",
            buckets=_FAST,
            registry=r,
        )
        self.unprotected_time = Histogram(
            "ps_unprotected_seconds",
            "Time from an entry fill to its stop-loss confirmed on the exchange.",
            buckets=_SLOW,
            registry=r,
        )
        self.exchange_calls = Histogram(
            "ps_exchange_call_seconds",
            "Latency of one exchange call by operation.",
            ["op"],
            buckets=_CALL,
            registry=r,
        )
        self.commit_failures = Counter(
            "ps_commit_failures",
            "Transitions the store could not write, by reason.",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "ps_dead_letters",
            "Messages not handled (refused or dead-lettered), by reason.",
            ["reason"],
            registry=r,
        )
        self.orphans_cancelled = Counter(
            "ps_orphan_orders_cancelled",
            "Resting orders of ours that no open position needed, cancelled (I9).",
            registry=r,
        )
        self.protection_failures = Counter(
            "ps_protection_failures",
            "Protection in trouble, by kind: stop_failed (attempts or deadline spent: closed"
            " at market), close_failing (a close refused again and again),"
            " stop_rejected_at_trigger.",
            ["kind"],
            registry=r,
        )
        # -- feeds, sync, store
        self.feed_messages = Counter(
            "ps_feed_messages", "Messages received by feed.", ["feed"], registry=r
        )
        self.feed_parse_errors = Counter(
            "ps_feed_parse_errors",
            "Feed messages refused as malformed or invalid, by feed and reason.",
            ["feed", "reason"],
            registry=r,
        )
        self.ws_reconnects = Counter(
            "ps_ws_reconnects", "WebSocket reconnects by feed.", ["feed"], registry=r
        )
        self.ws_lag_seconds = Histogram(
            "ps_ws_lag_seconds",
            "Event time (exchange or sender) to handling, by feed.",
            ["feed"],
            buckets=_CALL,
            registry=r,
        )
        self.feed_connected = Gauge(
            "ps_feed_up", "1 while the feed is connected and not silent.", ["feed"], registry=r
        )
        self.sync_runs = Counter(
            "ps_sync_runs",
            "Sync rounds by account and result (ok, error).",
            ["account", "result"],
            registry=r,
        )
        self.sync_seconds = Histogram(
            "ps_sync_seconds",
            "Duration of one sync round (fetch and tell), by account.",
            ["account"],
            buckets=_CALL,
            registry=r,
        )
        self.sync_discrepancies = Counter(
            "ps_sync_discrepancies",
            "Differences the sync found between the exchange and our state, by kind.",
            ["account", "kind"],
            registry=r,
        )
        self.db_commit_seconds = Histogram(
            "ps_db_commit_seconds",
            "Latency of one store commit (one transition, one transaction).",
            buckets=_DB,
            registry=r,
        )
        self.health = Gauge(
            "ps_health_check_up", "1 while the named health check passes.", ["check"], registry=r
        )
        self._watched: list[Collector] = []

    # -- actors.ports.Metrics -------------------------------------------------------------

    def signal(self, source: str, outcome: str, reason: str) -> None:
        self._safe(lambda: self.signals.labels(source, outcome, reason or "none").inc())

    def order(self, kind: str, op: str, result: str) -> None:
        self._safe(lambda: self.orders.labels(kind, op, result).inc())

    def transition(self, before: str | None, after: str | None) -> None:
        self._safe(lambda: self.transitions.labels(_label(before), _label(after)).inc())

    def handled(self, message_type: str, seconds: float) -> None:
        self._safe(lambda: self.handling.labels(message_type).observe(seconds))

    def tick_decision(self, seconds: float) -> None:
        self._safe(lambda: self.tick_latency.observe(max(0.0, seconds)))

    def unprotected(self, seconds: float) -> None:
        self._safe(lambda: self.unprotected_time.observe(max(0.0, seconds)))

    def commit_failed(self, reason: str) -> None:
        self._safe(lambda: self.commit_failures.labels(reason).inc())

    def dead_letter(self, reason: str) -> None:
        self._safe(lambda: self.dead_letters.labels(reason).inc())

    def exchange_call(self, op: str, seconds: float) -> None:
        self._safe(lambda: self.exchange_calls.labels(op).observe(seconds))

    def orphan_cancelled(self) -> None:
        self._safe(self.orphans_cancelled.inc)

    def protection_failure(self, kind: str) -> None:
        self._safe(lambda: self.protection_failures.labels(kind).inc())

    # -- FeedMetrics ----------------------------------------------------------------------

    def feed_message(self, feed: str) -> None:
        self._safe(lambda: self.feed_messages.labels(feed).inc())

    def feed_parse_error(self, feed: str, reason: str) -> None:
        self._safe(lambda: self.feed_parse_errors.labels(feed, reason).inc())

    def ws_reconnect(self, feed: str) -> None:
        self._safe(lambda: self.ws_reconnects.labels(feed).inc())

    def ws_lag(self, feed: str, seconds: float) -> None:
        self._safe(lambda: self.ws_lag_seconds.labels(feed).observe(max(0.0, seconds)))

    def feed_up(self, feed: str, up: bool) -> None:
        self._safe(lambda: self.feed_connected.labels(feed).set(1.0 if up else 0.0))

    def sync_round(self, account: str, observations: int, seconds: float, ok: bool) -> None:
        """Usable as ``SyncService(on_round=...)``."""

        def do() -> None:
            self.sync_runs.labels(account, "ok" if ok else "error").inc()
            self.sync_seconds.labels(account).observe(seconds)

        self._safe(do)

    def sync_discrepancy(self, account: str, kind: str) -> None:
        self._safe(lambda: self.sync_discrepancies.labels(account, kind).inc())

    def db_commit(self, seconds: float) -> None:
        self._safe(lambda: self.db_commit_seconds.observe(seconds))

    # -- supervisor-level series ----------------------------------------------------------

    def watch_supervisor(
        self,
        stats: Callable[[], SupervisorStats],
        mailbox_depths: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        """Expose ``stats()`` (and mailbox depths) at scrape time; call once per supervisor."""
        collector = _SupervisorCollector(stats, mailbox_depths)
        self.registry.register(collector)
        self._watched.append(collector)

    def unwatch(self) -> None:
        """Remove the supervisor collectors (when the supervisor is gone)."""
        for c in self._watched:
            with contextlib.suppress(KeyError):
                self.registry.unregister(c)
        self._watched.clear()

    def exposition(self) -> str:
        """The text exposition of every series (what ``/metrics`` serves)."""
        return generate_latest(self.registry).decode("utf-8")

    @staticmethod
    def _safe(fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:  # metrics must never break the caller
            log.debug("metric update failed", exc_info=True)


class _SupervisorCollector(Collector):
    """Reads the supervisor's stats at scrape time (no state of its own)."""

    STATUSES = ("pending_entry", "entry_placed", "pending_sl", "active", "closing")

    def __init__(
        self,
        stats: Callable[[], SupervisorStats],
        mailbox_depths: Callable[[], Iterable[int]] | None,
    ) -> None:
        self._stats = stats
        self._mailboxes = mailbox_depths

    def collect(self) -> Iterator[Metric]:
        try:
            s = self._stats()
        except Exception:
            log.exception("supervisor stats unavailable")
            return
        positions = GaugeMetricFamily(
            "ps_positions",
            "Positions held by live actors, by status (terminal ones are the last seen).",
            labels=["status"],
        )
        seen = dict.fromkeys(self.STATUSES, 0)
        seen.update(s.by_status)
        for status, n in sorted(seen.items()):
            positions.add_metric([status], float(n))
        yield positions
        yield GaugeMetricFamily("ps_live_actors", "Position actors alive.", value=s.live_actors)
        yield CounterMetricFamily(
            "ps_actor_restarts", "Position actor restarts after a crash.", value=s.restarts
        )
        yield CounterMetricFamily(
            "ps_supervisor_dead_letters",
            "Messages the supervisor could not route (counted there).",
            value=s.dead_letters,
        )
        yield GaugeMetricFamily(
            "ps_quarantined_symbols",
            "Symbols quarantined after too many restarts (no new entries).",
            value=len(s.quarantined),
        )
        q = GaugeMetricFamily(
            "ps_symbol_quarantined",
            "1 for each quarantined account and symbol.",
            labels=["account", "symbol"],
        )
        for key in s.quarantined:
            account, _, symbol = key.partition(":")
            q.add_metric([account, symbol], 1.0)
        yield q
        if self._mailboxes is not None:
            try:
                depths = list(self._mailboxes())
            except Exception:
                log.exception("mailbox depths unavailable")
                depths = []
            yield GaugeMetricFamily(
                "ps_mailbox_depth_max",
                "Largest number of messages waiting in one actor's mailbox.",
                value=max(depths, default=0),
            )
            yield GaugeMetricFamily(
                "ps_mailbox_messages",
                "Messages waiting in all actors' mailboxes.",
                value=sum(depths),
            )


# --- health -------------------------------------------------------------------------------

HealthCheck = Callable[[], str | None]
"""A health check returns ``None`` when healthy, else a short reason. It must not block;
an exception counts as down (its text is the reason)."""


class HealthChecks:
    """Named health checks, evaluated on each ``/healthz`` request. Thread-safe."""

    def __init__(self, metrics: PrometheusMetrics | None = None) -> None:
        self._checks: dict[str, HealthCheck] = {}
        self._lock = threading.Lock()
        self._metrics = metrics

    def register(self, name: str, check: HealthCheck) -> None:
        with self._lock:
            self._checks[name] = check

    def unregister(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def evaluate(self) -> dict[str, str | None]:
        """Each check's result: ``None`` when healthy, else why it is down."""
        with self._lock:
            checks = list(self._checks.items())
        out: dict[str, str | None] = {}
        for name, check in checks:
            try:
                out[name] = check()
            except Exception as exc:
                out[name] = f"check failed: {exc!r}"
            if self._metrics is not None:
                self._metrics.health.labels(name).set(0.0 if out[name] else 1.0)
        return out

    def down(self) -> dict[str, str]:
        return {k: v for k, v in self.evaluate().items() if v}


class MetricsServer:
    """HTTP server for ``/metrics`` (Prometheus text format) and ``/healthz``.

    ``start()`` binds (port 0 picks a free port, see :attr:`port`) and serves on a daemon
    thread; ``stop()`` shuts it down and joins the thread.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthChecks,
        host: str = "127.0.0.1",
        port: int = 9490,
    ) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    down = server.health.down()
                    if down:
                        body = "down: " + "; ".join(f"{k} ({v})" for k, v in sorted(down.items()))
                        self._send(503, (body + "\n").encode(), "text/plain; charset=utf-8")
                    else:
                        self._send(200, b"ok\n", "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer((self.host, self._port), Handler)
        httpd.daemon_threads = True
        self._server = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()
        log.info("metrics on %s/metrics, health on %s/healthz", self.url, self.url)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
