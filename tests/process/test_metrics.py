"""Prometheus exposition after driving a supervisor; /healthz; promtool when installed."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.metrics import HealthChecks, MetricsServer, PrometheusMetrics
from testkit.world import signal
from tests.deploy.tools import need_tool
from tests.process.harness import MetricsWorld, http_get

pytestmark = pytest.mark.timeout(60)

SOURCES = ("sniper", "whale_copy", "trending", "volume")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _sum(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def _scenario() -> tuple[str, int]:
    """Four sources signal three symbols; the scraped exposition and unprotected reports."""
    prices = dict.fromkeys(SYMBOLS, 100.0)
    with MetricsWorld(prices) as w:
        for sym in SYMBOLS:
            for src in SOURCES:
                w.tell(signal(sym, src))
        w.settle()
        for sym in SYMBOLS:
            st = w.state(sym)
            assert st.position is not None and st.position.status.value == "active"
        server = MetricsServer(w.prom.registry, HealthChecks(w.prom), port=0)
        server.start()
        try:
            code, text = http_get(server.url + "/metrics")
        finally:
            server.stop()
    assert code == 200
    return text, len(w.metrics.unprotected_s)


def test_exposition_carries_the_scenario() -> None:
    text, unprotected_reports = _scenario()
    s = _samples(text)
    n = len(SYMBOLS)
    dup = len(SYMBOLS) * (len(SOURCES) - 1)
    assert _sum(s, "ps_signals_total", outcome="accepted") == n
    assert _sum(s, "ps_signals_total", outcome="duplicate", reason="position_open") == dup
    for src in SOURCES[1:]:
        assert _sum(s, "ps_signals_total", source=src, outcome="duplicate") == n
    assert _sum(s, "ps_positions", status="active") == n
    assert _sum(s, "ps_positions", status="pending_sl") == 0
    assert _sum(s, "ps_live_actors") == n
    assert _sum(s, "ps_actor_restarts_total") == 0
    assert _sum(s, "ps_quarantined_symbols") == 0
    assert _sum(s, "ps_orders_total", kind="entry", op="place", result="accepted") == n
    assert _sum(s, "ps_orders_total", kind="stop_loss", op="place", result="accepted") == n
    # One report per stop confirmation with the fill time known (the manual clock does not
    # move, so the REST reply and the stream event of one stop may both count).
    assert _sum(s, "ps_unprotected_seconds_count") == unprotected_reports >= n
    assert _sum(s, "ps_transitions_total", from_status="none", to_status="pending_entry") == n
    assert _sum(s, "ps_transitions_total", to_status="active") == n
    assert _sum(s, "ps_message_handling_seconds_count", type="OpenSignal") == n * len(SOURCES)
    assert _sum(s, "ps_exchange_call_seconds_count", op="place") == 2 * n


def test_feed_and_sync_series() -> None:
    m = PrometheusMetrics()
    m.feed_message("signals")
    m.feed_parse_error("signals", "invalid_json")
    m.ws_reconnect("main:market")
    m.ws_lag("main:market", 0.004)
    m.feed_up("signals", True)
    m.sync_round("main", 3, 0.01, True)
    m.sync_round("main", -1, 0.5, False)
    m.sync_discrepancy("main", "adopted")
    m.db_commit(0.0004)
    s = _samples(m.exposition())
    assert _sum(s, "ps_feed_messages_total", feed="signals") == 1
    assert _sum(s, "ps_feed_parse_errors_total", reason="invalid_json") == 1
    assert _sum(s, "ps_ws_reconnects_total", feed="main:market") == 1
    assert _sum(s, "ps_ws_lag_seconds_count") == 1
    assert _sum(s, "ps_feed_up", feed="signals") == 1
    assert _sum(s, "ps_sync_runs_total", result="ok") == 1
    assert _sum(s, "ps_sync_runs_total", result="error") == 1
    assert _sum(s, "ps_sync_discrepancies_total", kind="adopted") == 1
    assert _sum(s, "ps_db_commit_seconds_count") == 1


def test_metrics_never_raise() -> None:
    m = PrometheusMetrics()
    m.handled("X", float("nan"))
    m.signal("a", "b", "")
    m.transition(None, None)
    assert "ps_signals_total" in m.exposition()


def test_promtool_check_metrics() -> None:
    promtool = need_tool("promtool")
    text, _ = _scenario()
    m = PrometheusMetrics()
    m.feed_message("signals")
    m.feed_parse_error("signals", "invalid_json")
    m.ws_reconnect("x")
    m.ws_lag("x", 0.1)
    m.feed_up("x", False)
    m.sync_round("main", 1, 0.1, True)
    m.sync_discrepancy("main", "adopted")
    m.db_commit(0.001)
    for exposition in (text, m.exposition()):
        r = subprocess.run(
            [promtool, "check", "metrics"],
            input=exposition,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert r.returncode == 0, r.stdout + r.stderr


def test_healthz_flips_with_a_check() -> None:
    m = PrometheusMetrics()
    health = HealthChecks(m)
    db_down: list[str] = []
    health.register("database", lambda: db_down[0] if db_down else None)
    health.register("feed:signals", lambda: None)
    server = MetricsServer(m.registry, health, port=0)
    server.start()
    try:
        assert http_get(server.url + "/healthz") == (200, "ok\n")
        db_down.append("connection refused")
        code, body = http_get(server.url + "/healthz")
        assert code == 503
        assert "database (connection refused)" in body
        assert "feed:signals" not in body
        s = _samples(http_get(server.url + "/metrics")[1])
        assert _sum(s, "ps_health_check_up", check="database") == 0
        assert _sum(s, "ps_health_check_up", check="feed:signals") == 1
        db_down.clear()
        assert http_get(server.url + "/healthz")[0] == 200

        def broken() -> str | None:
            raise RuntimeError("boom")

        health.register("exchange", broken)
        code, body = http_get(server.url + "/healthz")
        assert code == 503 and "exchange (check failed" in body
        assert http_get(server.url + "/nope")[0] == 404
    finally:
        server.stop()
