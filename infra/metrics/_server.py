"""The metrics and probe endpoint (:class:`MetricsServer`): ``/metrics``, ``/livez``,
``/readyz``, ``/healthz``, served by :class:`infra.http_server.BoundedHttpServer`.

Threads: the server's (one loop thread, ``workers`` worker threads that call
:meth:`MetricsServer.handle`); ``start``/``stop`` from any thread. An error while building an
answer is logged (throttled) and answered ``500``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Unpack

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from infra.http_server import (
    OUTCOMES,
    BoundedHttpServer,
    HttpBounds,
    HttpRequest,
    HttpResponse,
)
from infra.metrics._health import LIVE, READY, HealthChecks

__all__ = ["MetricsServer"]

# The package's logger, whichever module logs: log configuration and filters name "infra.metrics".
log = logging.getLogger("infra.metrics")

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
    at most ``max_connections`` open (``bounds``: these four and ``max_request_bytes``; what
    is left out takes :class:`~infra.http_server.BoundedHttpServer`'s default). Client
    misbehaviour is logged at DEBUG through this package's logger (``infra.metrics``), at most
    one line per kind per 10 s, and counted in ``ps_http_connections_total{outcome}`` (see
    :meth:`stats`); nothing is printed on stderr.
    An error while building an answer is logged (throttled) and answered ``500``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthChecks,
        host: str = "127.0.0.1",
        port: int = 9490,
        *,
        address_key: str = "metrics.address",
        **bounds: Unpack[HttpBounds],
    ) -> None:
        super().__init__(
            host,
            port,
            name="metrics",
            label="metrics HTTP",
            logger=log,
            address_key=address_key,
            **bounds,
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
