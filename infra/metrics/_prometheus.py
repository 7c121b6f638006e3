"""The process's Prometheus series and the methods that update them (:class:`PrometheusMetrics`).

Callers: the actors, workers and the supervisor (through :class:`actors.ports.Metrics`), the
feeds (:class:`infra.feeds.FeedMetrics`), the sync and the store wrapper, each on its own
thread. Every update method is cheap, thread-safe and never raises: a failing update is logged
at DEBUG and dropped. Scrape-time collectors (the supervisor's numbers, the health checks)
are registered in the same registry through :meth:`PrometheusMetrics.watch_supervisor` and
:meth:`PrometheusMetrics.attach_health`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector

from infra.metrics._supervisor import SupervisorCollector, SupervisorCounts

__all__ = ["PrometheusMetrics"]

# The package's logger, whichever module logs: log configuration and filters name "infra.metrics".
log = logging.getLogger("infra.metrics")

_FAST = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_CALL = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DB = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


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
        collector = SupervisorCollector(stats, mailbox_depths)
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
