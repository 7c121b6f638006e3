"""The control endpoint's Prometheus series: requests by command and result
(:class:`ControlStats`, counted on the server's worker threads) and the paused symbols
(:class:`ControlCollector`, at scrape time on the metrics server's thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supervision.supervisor import SupervisorStats

__all__ = ["ControlCollector", "ControlStats"]

log = logging.getLogger("supervision.control")


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
