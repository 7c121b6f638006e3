"""The lease keeper's Prometheus series (:class:`OwnershipCollector`) and the registration
helper the app uses for its collectors (:func:`register`).

Called at scrape time on the metrics server's thread; reads the keeper's views (no lock
held across the scrape, no I/O).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from infra.store.ownership import ProcessIdentity
from supervision.leases._model import AccountView, Role

__all__ = ["OwnershipCollector", "register"]


class OwnershipCollector(Collector):
    """The ownership series (see the README), evaluated at scrape time (the scraping
    thread). ``views``: the keeper's :meth:`~supervision.leases.Ownership.view`;
    ``identity``: this process; ``counts``: ``account -> (messages dropped as not owner,
    signals held)``."""

    def __init__(
        self,
        views: Callable[[], list[AccountView]],
        identity: ProcessIdentity,
        counts: Callable[[], dict[str, tuple[int, int]]],
    ) -> None:
        self._views = views
        self._identity = identity
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        views = self._views()
        role = GaugeMetricFamily(
            "ps_account_role",
            "1 for this process's role for the account: owner, taking_over, standby, fenced, "
            "left_out.",
            labels=["account", "role"],
        )
        owner = GaugeMetricFamily(
            "ps_account_owner",
            "1 for the account's owner as this process last saw it (itself when it owns it): "
            "host, pid and lease epoch.",
            labels=["account", "host", "pid", "epoch"],
        )
        since = GaugeMetricFamily(
            "ps_account_owner_since_seconds",
            "When the account's current lease epoch began (Unix time).",
            labels=["account"],
        )
        valid = GaugeMetricFamily(
            "ps_lease_valid_seconds",
            "Seconds this process may still act on the account without a renewal.",
            labels=["account"],
        )
        alarm = GaugeMetricFamily(
            "ps_installation_alarm",
            "1 while orders of another installation (another database) on the account are "
            "not confirmed by an operator: entries are stopped.",
            labels=["account", "installation"],
        )
        fenced = CounterMetricFamily(
            "ps_fenced",
            "Times this process fenced the account (lost or could not renew its lease).",
            labels=["account"],
        )
        takeovers = CounterMetricFamily(
            "ps_lease_takeovers",
            "Leases this process took for the account.",
            labels=["account"],
        )
        dropped = CounterMetricFamily(
            "ps_not_owner_messages",
            "Messages dropped because the account is not active in this process.",
            labels=["account"],
        )
        held = GaugeMetricFamily(
            "ps_held_signals",
            "Signals held for an account this process waits for (answered by its owner).",
            labels=["account"],
        )
        me = self._identity
        for v in views:
            for r in Role:
                role.add_metric([v.account, r.value], 1.0 if v.role is r else 0.0)
            mine = v.role in (Role.OWNER, Role.TAKING_OVER)
            if mine and v.epoch is not None:
                owner.add_metric([v.account, me.host, str(me.pid), str(v.epoch)], 1.0)
            elif v.owner is not None and v.owner.owner is not None and not v.owner.expired:
                o = v.owner
                owner.add_metric([v.account, o.host or "", str(o.pid or ""), str(o.epoch)], 1.0)
            if v.since is not None:
                since.add_metric([v.account], v.since)
            valid.add_metric([v.account], v.valid_s)
            if v.alarm:
                for inst in v.alarm.split(", "):
                    alarm.add_metric([v.account, inst], 1.0)
            fenced.add_metric([v.account], float(v.fenced))
            takeovers.add_metric([v.account], float(v.takeovers))
        for account, (n_dropped, n_held) in self._counts().items():
            dropped.add_metric([account], float(n_dropped))
            held.add_metric([account], float(n_held))
        yield from (role, owner, since, valid, alarm, fenced, takeovers, dropped, held)


def register(registry: CollectorRegistry, collector: Collector) -> Callable[[], None]:
    """Register ``collector``; returns the function that unregisters it."""
    registry.register(collector)

    def undo() -> None:
        with contextlib.suppress(KeyError):
            registry.unregister(collector)

    return undo
