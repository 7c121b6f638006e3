"""The alert rules, their unit tests, the Prometheus and Alertmanager examples, the dashboard.

promtool checks and runs them (``check rules``, ``test rules``, ``check config``); every
expression of the rules and of the Grafana dashboard is wrapped into a rules file of its own
so that promtool parses each. That each names only series the running process exports is
checked against a real process in ``tests/process/test_operator.py``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.tools import (
    DEPLOY,
    dashboard_expressions,
    need_tool,
    rule_expressions,
    series_names,
)

pytestmark = pytest.mark.timeout(60)

ALERTS = DEPLOY / "alerts.yml"
ALERT_TESTS = DEPLOY / "alerts.test.yml"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))


def _run(*args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def test_rules_and_prometheus_config_pass_promtool() -> None:
    promtool = need_tool("promtool")
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        r = _run(promtool, *args)
        assert r.returncode == 0, r.stdout + r.stderr
    assert "alerting:" in (DEPLOY / "prometheus.yml").read_text()


def test_alert_unit_tests_pass() -> None:
    """alerts.test.yml: each rule fires when it should, and nothing fires while healthy."""
    promtool = need_tool("promtool")
    r = _run(promtool, "test", "rules", "alerts.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def _test_blocks(text: str) -> dict[str, str]:
    """``{test name: its text}`` of alerts.test.yml."""
    parts = re.split(r"^  - name: (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _cases(block: str) -> list[tuple[str, bool]]:
    """``(alertname, expects an alert)`` for each case of one test's alert_rule_test."""
    cases = re.split(r"^      - eval_time:", block, flags=re.M)[1:]
    out = []
    for case in cases:
        m = re.search(r"alertname:\s*(\S+)", case)
        assert m is not None, case
        out.append((m.group(1), "exp_labels:" in case))
    return out


def test_every_rule_is_tested_firing_and_silent() -> None:
    rules = rule_expressions(ALERTS)
    assert len(rules) == ALERTS.read_text().count("- alert:") >= 10
    blocks = _test_blocks(ALERT_TESTS.read_text())
    healthy = dict.fromkeys(name for name, _ in _cases(blocks["healthy"]))
    assert not any(fires for _, fires in _cases(blocks["healthy"])), "healthy must be silent"
    fired = {name for b in blocks.values() for name, fires in _cases(b) if fires}
    for name in rules:
        assert name in healthy, f"{name}: no case showing it silent while healthy"
        assert name in fired, f"{name}: no case showing it fire"


def test_an_exchange_outage_is_one_alert() -> None:
    """The field report's seven alerts for one stopped exchange: the test case that replays
    it expects exactly one alert until SyncFailing, which carries the same upstream label
    that alertmanager.yml inhibits on."""
    block = _test_blocks(ALERT_TESTS.read_text())["exchange outage is one alert"]
    at_4m = [c for c in re.split(r"^      - eval_time:", block, flags=re.M)[1:] if "4m" in c[:4]]
    assert sum(c.count("exp_labels:") for c in at_4m) == 1
    text = ALERTS.read_text()
    assert "FeedDown" not in text and "HealthCheckFailing" not in text
    sync = text[text.index("alert: SyncFailing") :]
    assert re.search(r"labels:\s*\n\s*severity: warning\s*\n\s*upstream: exchange", sync)
    am = (DEPLOY / "alertmanager.yml").read_text()
    assert "source_matchers: ['alertname=\"UpstreamDown\"']" in am
    assert "equal: [job, instance, upstream]" in am


def test_alertmanager_example_passes_amtool() -> None:
    amtool = need_tool("amtool")
    r = _run(amtool, "check-config", "alertmanager.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 inhibit rules" in r.stdout


def test_every_rule_has_a_runbook_section() -> None:
    readme = (DEPLOY / "README.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#{2,4} (.+)$", readme, flags=re.M)
    }
    text = ALERTS.read_text()
    for name in rule_expressions(ALERTS):
        rule = text[text.index(f"alert: {name}\n") :]
        rule = rule[: rule.find("- alert:") if "- alert:" in rule else None]
        m = re.search(r'runbook_url: "([^"]+)"', rule)
        assert m is not None, f"{name} has no runbook_url"
        url = m.group(1)
        assert url.split("#")[0].endswith("deploy/README.md"), url
        assert url.split("#")[1] == name.lower() in anchors, f"{name}: no section {url}"


def test_every_expression_parses(tmp_path: Path) -> None:
    """Each PromQL expression of the rules and of the dashboards, as a recording rule of a
    generated rules file: ``promtool check rules`` parses every one."""
    promtool = need_tool("promtool")
    exprs = list(rule_expressions(ALERTS).values())
    assert DASHBOARDS, "no dashboard in deploy/grafana"
    for path in DASHBOARDS:
        exprs += dashboard_expressions(path)
    assert len(exprs) > 40
    lines = ["groups:", "  - name: every-expression", "    rules:"]
    for i, e in enumerate(exprs):
        quoted = e.replace("'", "''")  # a YAML single-quoted scalar
        lines += [f"      - record: check:expr_{i}", f"        expr: '{quoted}'"]
    wrapped = tmp_path / "wrapped.yml"
    wrapped.write_text("\n".join(lines) + "\n")
    r = _run(promtool, "check", "rules", str(wrapped), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in r.stdout
    # ... and a broken one would be caught (the wrapping does reach the parser).
    wrapped.write_text("\n".join([*lines[:3], "      - record: x", "        expr: 'sum(('"]))
    assert _run(promtool, "check", "rules", str(wrapped), cwd=tmp_path).returncode != 0


def test_dashboard_shows_what_the_issue_asks() -> None:
    """Positions by status, unprotected seconds, signals by source and outcome, orders by
    kind and result, restarts and quarantine, feed lag, commit latency."""
    exprs = [e for path in DASHBOARDS for e in dashboard_expressions(path)]
    names = set().union(*(series_names(e) for e in exprs))
    for wanted in (
        "ps_positions",
        "ps_unprotected_seconds_bucket",
        "ps_signals_total",
        "ps_orders_total",
        "process_start_time_seconds",
        "ps_actor_restarts_total",
        "ps_quarantined_symbols",
        "ps_ws_lag_seconds_bucket",
        "ps_db_commit_seconds_bucket",
    ):
        assert wanted in names, wanted
    joined = "\n".join(exprs)
    assert "sum by (source, outcome) (rate(ps_signals_total" in joined
    assert "sum by (kind, op, result) (rate(ps_orders_total" in joined
    assert "sum by (status) (ps_positions" in joined


def test_series_names_reads_promql() -> None:
    e = (
        'sum without (result) (increase(ps_sync_runs_total{result="error"}[5m])) > 0 unless '
        'ignoring(result) increase(ps_sync_runs_total{result="ok"}[5m]) > 1e3 and on (job) '
        "histogram_quantile(0.99, sum by (le) (rate(ps_x_bucket[1m]))) offset 5m"
    )
    assert series_names(e) == {"ps_sync_runs_total", "ps_x_bucket"}
