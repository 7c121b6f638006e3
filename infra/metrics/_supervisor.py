"""The supervisor's numbers, read at scrape time: :class:`SupervisorCounts` and its collector.

Infra does not import the supervisor (layers go ``supervision -> infra``): the composition
root passes a callable returning any object with the attributes of :class:`SupervisorCounts`
(``supervision.supervisor.Supervisor.stats`` returns one) to
:meth:`infra.metrics.PrometheusMetrics.watch_supervisor`.

Threads: :meth:`SupervisorCollector.collect` runs on the scrape thread (the metrics HTTP
worker, or whoever calls ``generate_latest``). A callable that raises is logged and its series
are left out of that scrape; the scrape itself never fails because of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["SupervisorCollector", "SupervisorCounts"]

# The package's logger, whichever module logs: log configuration and filters name "infra.metrics".
log = logging.getLogger("infra.metrics")


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


class SupervisorCollector(Collector):
    """Reads the supervisor's numbers (and mailbox depths) at scrape time; no state of its own.

    ``ps_positions{status}``, ``ps_live_actors``, ``ps_actor_restarts_total``,
    ``ps_supervisor_dead_letters_total``, ``ps_quarantined_symbols``,
    ``ps_symbol_quarantined{account, symbol}`` and, with ``mailbox_depths``,
    ``ps_mailbox_depth_max`` and ``ps_mailbox_messages``.
    """

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
