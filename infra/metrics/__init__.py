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
(see the README's metrics section for the list). Everything logs through the logger
``infra.metrics``.

The modules behind this list, one job each:

* ``_prometheus``: the series of the process and the methods that update them;
* ``_supervisor``: the supervisor's numbers read at scrape time (:class:`SupervisorCounts`);
* ``_health``: the named liveness and readiness checks and their series;
* ``_server``: the HTTP endpoint (``/metrics`` and the probes) on
  :class:`infra.http_server.BoundedHttpServer`.
"""

from infra.http_server import BindError
from infra.metrics._health import LIVE, READY, HealthCheck, HealthChecks
from infra.metrics._prometheus import PrometheusMetrics
from infra.metrics._server import MetricsServer
from infra.metrics._supervisor import SupervisorCounts

__all__ = [
    "LIVE",
    "READY",
    "BindError",
    "HealthCheck",
    "HealthChecks",
    "MetricsServer",
    "PrometheusMetrics",
    "SupervisorCounts",
]
