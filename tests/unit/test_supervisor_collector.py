"""The supervisor's numbers at scrape time, read through :class:`SupervisorCounts`.

Any object with the protocol's attributes will do (infra does not import the supervisor);
the real ``SupervisorStats`` is checked against the protocol by mypy here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from infra.metrics import PrometheusMetrics, SupervisorCounts
from supervision.supervisor import SupervisorStats


@dataclass(frozen=True)
class Counts:
    live_actors: int = 3
    restarts: int = 2
    quarantined: tuple[str, ...] = ("main:BTCUSDT",)
    dead_letters: int = 5
    by_status: Mapping[str, int] = field(default_factory=lambda: {"active": 2, "closed": 1})


def _scrape(m: PrometheusMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_supervisor_stats_satisfy_the_protocol() -> None:
    counts: SupervisorCounts = SupervisorStats(1, 0, (), 0, {})  # mypy checks the attributes
    assert counts.live_actors == 1


def test_any_object_with_the_numbers_is_exported() -> None:
    m = PrometheusMetrics(process=False)
    m.watch_supervisor(Counts, lambda: [4, 1, 0])
    s = _scrape(m)
    assert s[("ps_positions", (("status", "active"),))] == 2
    assert s[("ps_positions", (("status", "pending_sl"),))] == 0  # every live status, even 0
    assert s[("ps_positions", (("status", "closed"),))] == 1
    assert s[("ps_live_actors", ())] == 3
    assert s[("ps_actor_restarts_total", ())] == 2
    assert s[("ps_supervisor_dead_letters_total", ())] == 5
    assert s[("ps_quarantined_symbols", ())] == 1
    assert s[("ps_symbol_quarantined", (("account", "main"), ("symbol", "BTCUSDT")))] == 1
    assert s[("ps_mailbox_depth_max", ())] == 4
    assert s[("ps_mailbox_messages", ())] == 5


def test_failing_stats_leave_the_series_out_not_the_scrape() -> None:
    def broken() -> SupervisorCounts:
        raise RuntimeError("gone")

    m = PrometheusMetrics(process=False)
    m.watch_supervisor(broken)
    m.signal("sniper", "accepted", "")
    s = _scrape(m)
    assert ("ps_live_actors", ()) not in s
    assert (
        s[("ps_signals_total", (("outcome", "accepted"), ("reason", "none"), ("source", "sniper")))]
        == 1
    )
    m.unwatch()
    m.watch_supervisor(Counts)
    assert ("ps_mailbox_messages", ()) not in _scrape(m)  # no depths given
    assert _scrape(m)[("ps_live_actors", ())] == 3
