"""Named liveness and readiness checks (:class:`HealthChecks`) and their series.

Callers: the app registers checks (any thread); the probes (``/livez``, ``/readyz``) of
:class:`infra.metrics.MetricsServer` evaluate them on an HTTP worker thread and the scrape
evaluates them for ``ps_health_check_up``. A check that raises counts as down, its exception
text the reason; nothing else fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from infra.metrics._prometheus import PrometheusMetrics

__all__ = ["LIVE", "READY", "HealthCheck", "HealthChecks"]

HealthCheck = Callable[[], str | None]
"""A health check returns ``None`` when healthy, else a short reason. It must not block;
an exception counts as down (its text is the reason)."""

LIVE = "live"
"""The probe of the liveness checks (``/livez``)."""
READY = "ready"
"""The probe of every check (``/readyz``, ``/healthz``)."""


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
        return {name: why for name, why, _live, _up in self.results(probe)}

    def down(self, probe: str = READY) -> dict[str, str]:
        """The failing checks of ``probe`` and why."""
        return {k: v for k, v in self.evaluate(probe).items() if v}

    def results(self, probe: str) -> list[tuple[str, str | None, bool, str]]:
        """Run the checks of ``probe``: for each, ``(name, why down or None, live,
        upstream)``. Any thread; the checks run on the caller's."""
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
        for name, why, live, upstream in self._health.results(READY):
            g.add_metric([name, LIVE if live else READY, upstream], 0.0 if why else 1.0)
        yield g
