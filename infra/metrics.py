"""Prometheus metrics: the actors' :class:`~actors.ports.Metrics`, process-level series, HTTP.

* :class:`PrometheusMetrics` implements :class:`actors.ports.Metrics` (what actors, workers and
  the supervisor report), :class:`infra.feeds.FeedMetrics` (what the WebSocket feeds report)
  and what the sync (``sync_round``, ``sync_discrepancy``) and the store (``db_commit``)
  report. Every method is cheap, thread-safe and never raises.
* :meth:`PrometheusMetrics.watch_supervisor` adds a collector that reads the supervisor's
  numbers (any :class:`SupervisorCounts`, e.g. ``Supervisor.stats()``, passed in by the
  composition root) and optionally mailbox depths at scrape time.
* :class:`HealthChecks` holds named checks, each a *liveness* check (the process can work:
  its threads and loops are alive) or a *readiness* check (its upstreams answer);
  :class:`MetricsServer` serves ``/metrics``, ``/livez`` (liveness checks), ``/readyz``
  (every check) and ``/healthz`` (an alias of ``/readyz``): 200 ``ok`` while the checks pass,
  503 naming each failing check.
* The standard ``process_*`` (CPU, memory, open files, ``process_start_time_seconds``) and
  ``python_*`` series are exported from the same registry, so a restart shows in Prometheus.

Every series is prefixed ``ps_``; counters end in ``_total`` and durations in ``_seconds``
(see the README's metrics section for the list).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from infra.http_server import OUTCOMES, BindError, BoundedHttpServer, HttpRequest, HttpResponse

__all__ = [
    "BindError",
    "HealthCheck",
    "HealthChecks",
    "MetricsServer",
    "PrometheusMetrics",
    "SupervisorCounts",
]

log = logging.getLogger(__name__)

_FAST = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_CALL = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DB = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class SupervisorCounts(Protocol):
    """The supervisor's numbers that :meth:`PrometheusMetrics.watch_supervisor` exports.

    Structural, so that infra does not import the supervisor (layers go ``supervision ->
    infra``): ``supervision.supervisor.SupervisorStats`` has these attributes and is passed in
    as is. Read on the scrape thread; the object should be a snapshot (immutable).
    """

    @property
    def live_actors(self) -> int:
        """Position actors alive."""
        ...

    @property
    def restarts(self) -> int:
        """Actor restarts after a crash, since the supervisor started."""
        ...

    @property
    def quarantined(self) -> Sequence[str]:
        """The quarantined keys, each ``account:symbol``."""
        ...

    @property
    def dead_letters(self) -> int:
        """Messages the supervisor could not route, since it started."""
        ...

    @property
    def by_status(self) -> Mapping[str, int]:
        """Positions held by live actors, by status value."""
        ...


def _label(value: str | None) -> str:
    return "none" if value is None else str(value)


class PrometheusMetrics:
    """prometheus-client implementation of :class:`actors.ports.Metrics`, FeedMetrics and more.

    Owns its series in ``registry`` (a fresh :class:`CollectorRegistry` by default, so that
    several instances can live in one process, e.g. in tests). ``process=True`` (the default)
    also registers prometheus-client's process and platform collectors there
    (``process_start_time_seconds``, ``process_cpu_seconds_total``,
    ``process_resident_memory_bytes``, ``process_open_fds``, ``python_info``): a custom
    registry does not get them by itself, and without them a crash-restart is invisible.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
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
            "Arrival of the mark-price frame whose price left the actor's band (woke it) to"
            " the end of the actor's handling of that tick. Ticks parked inside the band"
            " decide nothing and are not observed.",
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
        self._watched: list[Collector] = []
        self._health: Collector | None = None

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

    # -- infra.feeds.FeedMetrics, the sync, the store -------------------------------------

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
        stats: Callable[[], SupervisorCounts],
        mailbox_depths: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        """Expose ``stats()`` (and mailbox depths) at scrape time; call once per supervisor."""
        collector = _SupervisorCollector(stats, mailbox_depths)
        self.registry.register(collector)
        self._watched.append(collector)

    def attach_health(self, collector: Collector) -> None:
        """Export a :class:`HealthChecks`' results (its constructor calls this); a later
        one replaces the earlier."""
        if self._health is not None:
            with contextlib.suppress(KeyError):
                self.registry.unregister(self._health)
        self.registry.register(collector)
        self._health = collector

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
        stats: Callable[[], SupervisorCounts],
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

LIVE = "live"
READY = "ready"


class HealthChecks:
    """Named health checks, evaluated on each probe request and at each scrape. Thread-safe.

    Each check is registered as a *liveness* check (``live=True``: the process itself can
    work — its loops and threads are alive; a failing one means "restart me") or a
    *readiness* check (the default: an upstream or a phase — database, exchange, feeds,
    starting, stopping; a failing one means "do not count on me now", and a restart would
    not help). ``/livez`` evaluates the liveness checks, ``/readyz`` (and its alias
    ``/healthz``) all of them: a process that is not alive is not ready either.

    ``upstream`` names what a readiness check depends on (``exchange``, ``signals``,
    ``database``): the alert rules page once per upstream, however many checks it fails.

    With ``metrics``, every check is exported at scrape time as
    ``ps_health_check_up{check, probe, upstream}`` (1 passing, 0 failing; ``probe`` is
    ``live`` or ``ready``, ``upstream`` empty for a process-internal check), so Prometheus sees
    the checks even when nobody calls the probes.
    """

    def __init__(self, metrics: PrometheusMetrics | None = None) -> None:
        self._checks: dict[str, tuple[HealthCheck, bool, str]] = {}
        self._lock = threading.Lock()
        if metrics is not None:
            metrics.attach_health(_HealthCollector(self))

    def register(
        self, name: str, check: HealthCheck, *, live: bool = False, upstream: str = ""
    ) -> None:
        """Add (or replace) the check ``name``. Any thread."""
        with self._lock:
            self._checks[name] = (check, live, upstream)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def evaluate(self, probe: str = READY) -> dict[str, str | None]:
        """Each check's result (``None`` when healthy, else why it is down): the liveness
        checks for ``probe="live"``, every check for ``probe="ready"``."""
        return {name: why for name, why, _live, _up in self._run(probe)}

    def down(self, probe: str = READY) -> dict[str, str]:
        """The failing checks of ``probe`` and why."""
        return {k: v for k, v in self.evaluate(probe).items() if v}

    def _run(self, probe: str) -> list[tuple[str, str | None, bool, str]]:
        with self._lock:
            checks = list(self._checks.items())
        out = []
        for name, (check, live, upstream) in checks:
            if probe == LIVE and not live:
                continue
            try:
                why = check()
            except Exception as exc:
                why = f"check failed: {exc!r}"
            out.append((name, why, live, upstream))
        return out


class _HealthCollector(Collector):
    """``ps_health_check_up{check, probe, upstream}``, evaluated at scrape time."""

    def __init__(self, health: HealthChecks) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "ps_health_check_up",
            "1 while the named health check passes; probe is live (the process can work) or"
            " ready (its upstreams answer); upstream names what a readiness check depends on.",
            labels=["check", "probe", "upstream"],
        )
        for name, why, live, upstream in self._health._run(READY):
            g.add_metric([name, LIVE if live else READY, upstream], 0.0 if why else 1.0)
        yield g


_PROBES = {"/livez": LIVE, "/readyz": READY, "/healthz": READY}


class MetricsServer(BoundedHttpServer):
    """HTTP server for ``/metrics`` (Prometheus text format) and the probes: ``/livez`` (the
    liveness checks), ``/readyz`` (every check) and ``/healthz`` (the same as ``/readyz``).

    ``start()`` binds (port 0 picks a free port, see :attr:`port`) and serves; ``stop()``
    closes every connection and joins every thread it started. Any thread may call them.
    An address that cannot be bound raises :class:`BindError` naming the address and
    ``address_key`` (the configuration key that set it).

    Bounded against slow, idle and rude clients by :class:`infra.http_server.BoundedHttpServer`
    (see there): one loop thread (``metrics-http``) and ``workers`` threads
    (``metrics-http-worker``) that build the answers, whatever the clients do; a request head
    must be complete within ``read_timeout_s``, the answer taken within ``write_timeout_s``;
    at most ``max_connections`` open. Client misbehaviour is logged at DEBUG through this
    module's logger, at most one line per kind per 10 s, and counted in
    ``ps_http_connections_total{outcome}`` (see :meth:`stats`); nothing is printed on stderr.
    An error while building an answer is logged (throttled) and answered ``500``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthChecks,
        host: str = "127.0.0.1",
        port: int = 9490,
        *,
        read_timeout_s: float = 5.0,
        write_timeout_s: float = 5.0,
        max_connections: int = 32,
        max_request_bytes: int = 8192,
        workers: int = 2,
        address_key: str = "metrics.address",
    ) -> None:
        super().__init__(
            host,
            port,
            name="metrics",
            label="metrics HTTP",
            logger=log,
            read_timeout_s=read_timeout_s,
            write_timeout_s=write_timeout_s,
            max_connections=max_connections,
            max_request_bytes=max_request_bytes,
            workers=workers,
            address_key=address_key,
        )
        self.registry = registry
        self.health = health
        self._collector: _HttpCollector | None = None

    def on_start(self) -> None:
        self._collector = _HttpCollector(self)
        with contextlib.suppress(ValueError):
            self.registry.register(self._collector)
        log.info(
            "metrics on %s/metrics, probes on %s/livez and %s/readyz (/healthz = /readyz)",
            self.url,
            self.url,
            self.url,
        )

    def on_stop(self) -> None:
        if self._collector is not None:
            with contextlib.suppress(KeyError):
                self.registry.unregister(self._collector)
            self._collector = None

    def handle(self, request: HttpRequest) -> HttpResponse:
        """The answer to one request (worker thread)."""
        if request.path == "/metrics":
            return HttpResponse(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        probe = _PROBES.get(request.path)
        if probe is not None:
            down = self.health.down(probe)
            if down:
                body = "down: " + "; ".join(f"{k} ({v})" for k, v in sorted(down.items()))
                return HttpResponse(503, (body + "\n").encode())
            return HttpResponse(200, b"ok\n")
        return HttpResponse(404, b"not found: try /metrics, /livez, /readyz or /healthz\n")


class _HttpCollector(Collector):
    """``ps_http_connections_total{outcome}`` from a :class:`MetricsServer`, at scrape time."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        stats = self._server.stats()
        c = CounterMetricFamily(
            "ps_http_connections",
            "Connections to the metrics/health server by outcome (served, timeout, "
            "write_timeout, closed_early, evicted, refused).",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            c.add_metric([outcome], float(stats[outcome]))
        yield c
