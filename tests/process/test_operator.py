"""The operator's seat, through one real process: ``python -m supervision run`` against the
sim/ exchange (real ccxt over HTTP), the sim/ signal feed (real websocket-client) and a real
PostgreSQL, with the CLI as a subprocess beside it.

One process serves the whole module (starting one costs seconds); the tests run in file
order and each leaves the world as the next expects: probes and process series, the deploy
expressions against what the process exports, ``status`` (owners, ``--json``, ``--verify``),
a position closed by its stop, ``history`` and its errors, a closed pipe, sync failures and
their log levels, a feed going away (``/readyz`` but not ``/livez``), a second process that
cannot bind the metrics address, and last the clean stop with the log read through.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.model import Status
from infra.store import PostgresStore
from sim.exchange import SimExchange
from sim.signals import SignalFeed
from supervision.cli import main as cli_main
from testkit import pg
from testkit.waiting import poll
from tests.deploy.tools import DEPLOY, dashboard_expressions, rule_expressions, series_names
from tests.process.harness import http_get

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 150.0}


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    cfg: Path
    sim: SimExchange
    feed: SignalFeed
    dsn: str
    store: PostgresStore
    acks: dict[str, dict[str, Any]]
    spawned_at: float

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"level": "RAW", "msg": line, "logger": "-"})
        return out


def _env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    env.update(PS_DATABASE_DSN=dsn, PYTHONUNBUFFERED="1")
    return env


def cli(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as its own process (what an operator runs)."""
    return subprocess.run(
        [sys.executable, "-m", "supervision", *args, "--config", str(running.cfg)],
        cwd=ROOT,
        env=_env(running.dsn),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cli_here(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    """The same entry point (``supervision.cli.main``) in this process: a second each saved
    for the many variations; the real database and the running process all the same."""
    return cli_at(running.cfg, running.dsn, *args)


def cli_at(cfg: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``supervision.cli.main`` in this process with ``PS_DATABASE_DSN=dsn``; the logging it
    installs is put back."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, threading.excepthook
    filters = {h: list(h.filters) for h in handlers}
    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("PS_DATABASE_DSN")
    os.environ["PS_DATABASE_DSN"] = dsn
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main([*args, "--config", str(cfg)])
    finally:
        if old is None:
            del os.environ["PS_DATABASE_DSN"]
        else:
            os.environ["PS_DATABASE_DSN"] = old
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        for h, fs in filters.items():
            h.filters[:] = fs
        root.setLevel(level)
        threading.excepthook = hook
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def _signal(sid: str, source: str, symbol: str, stop: float, **kw: Any) -> dict[str, Any]:
    return {
        "signal_id": sid,
        "source": source,
        "account": "main",
        "symbol": symbol,
        "side": "long",
        "size": kw.pop("size", 0.01),
        "stop_loss": stop,
        "created_at": kw.pop("created_at", time.time()),
        **kw,
    }


@pytest.fixture(scope="module")
def running(pg_admin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("operator")
    with (
        pg.fresh_database(pg_admin) as dsn,
        SimExchange(dict(PRICES)) as sim,
    ):
        feed = SignalFeed("127.0.0.1", 0).start()
        cfg = tmp / "op.toml"
        cfg.write_text(
            f"""
[accounts.main]
rest_url = "{sim.base_url}"
ws_url = "{sim.ws_url}"
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
credentials = "dummy"
enable_rate_limit = false
timeout_s = 5.0

[signal_policy]
reentry = "allow"
max_signal_age_s = 30.0

[sync]
interval_s = 0.5

[supervisor]
shutdown_grace_s = 3.0

[metrics]
address = "127.0.0.1:0"

[feeds]
signal_url = "{feed.url}"

[logging]
level = "INFO"
json = true
"""
        )
        log = tmp / "process.log"
        spawned_at = time.time()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "supervision", "run", "--config", str(cfg)],
                cwd=ROOT,
                env=_env(dsn),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        store = PostgresStore(dsn, migrate_schema=False)
        try:

            def url() -> str | None:
                assert proc.poll() is None, log.read_text()
                m = re.search(r"metrics on (http://[0-9.:]+)/metrics", log.read_text())
                return m.group(1) if m else None

            base = poll(url, 30, "metrics address in the log", interval=0.05)
            assert feed.wait_for_clients(1, 30)
            acks: dict[str, dict[str, Any]] = {}
            for sid, sig in (
                ("op-1", _signal("op-1", "sniper", "BTCUSDT", 59_000.0)),
                ("op-1", _signal("op-1", "sniper", "BTCUSDT", 59_000.0)),  # replayed
                ("op-2", _signal("op-2", "whale_copy", "BTCUSDT", 59_000.0)),
                ("op-3", _signal("op-3", "volume", "ETHUSDT", 2_900.0, created_at=1e9)),
                ("op-4", _signal("op-4", "trending", "ETHUSDT", 2_900.0, size=0.1)),
            ):
                again = sid in acks
                feed.send_signal(sig)
                ack = feed.wait_for_ack(sid, 30)
                if again:  # the answer to the re-sent one: a new frame, marked replay

                    def replayed(sid: str = sid) -> dict[str, Any] | None:
                        a = feed.acks.get(sid)
                        return a if a is not None and a.get("replay") else None

                    ack = poll(replayed, 30, "answer to the replay")
                assert ack is not None, (sid, log.read_text()[-3000:])
                acks[sid + "-again" if again else sid] = ack

            def protected() -> bool:
                ps = [p for p in store.positions("main") if p.status is Status.ACTIVE]
                return len(ps) == 2 and all(p.stop_confirmed for p in ps)

            poll(protected, 30, "two positions protected", interval=0.05)
            yield Running(proc, base, log, cfg, sim, feed, dsn, store, acks, spawned_at)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            store.close()
            feed.stop()


def test_signals_were_decided(running: Running) -> None:
    a = running.acks
    assert a["op-1"]["outcome"] == "accepted"
    again = a["op-1-again"]  # answered with the recorded decision
    assert again["replay"] and again["outcome"] == "accepted"
    assert again["position_id"] == a["op-1"]["position_id"]
    assert (a["op-2"]["outcome"], a["op-2"]["reason"]) == ("duplicate", "position_open")
    # The configuration table's reason for max_signal_age_s is the one the process gives.
    row = next(
        line
        for line in (DEPLOY / "README.md").read_text().splitlines()
        if line.startswith("| `signal_policy.max_signal_age_s`")
    )
    assert f"refused `{a['op-3']['reason']}`" in row, (a["op-3"], row)
    assert a["op-3"]["reason"] == "too_old"
    assert a["op-4"]["outcome"] == "accepted"


def test_probes_and_process_series(running: Running) -> None:
    assert http_get(running.url + "/livez") == (200, "ok\n")
    poll(lambda: http_get(running.url + "/readyz") == (200, "ok\n"), 20, "ready")
    assert http_get(running.url + "/healthz") == (200, "ok\n")
    code, text = http_get(running.url + "/metrics")
    assert code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    started = samples[("process_start_time_seconds", ())]
    assert running.spawned_at - 1.0 <= started <= running.spawned_at + 10.0
    assert samples[("process_open_fds", ())] > 0
    live = ("check", "housekeeping"), ("probe", "live"), ("upstream", "")
    assert samples[("ps_health_check_up", live)] == 1
    db = ("check", "database"), ("probe", "ready"), ("upstream", "database")
    assert samples[("ps_health_check_up", db)] == 1
    feed = ("check", "feed:signals"), ("probe", "ready"), ("upstream", "signals")
    assert samples[("ps_health_check_up", feed)] == 1


def _exported(text: str) -> tuple[set[str], set[str]]:
    """The series names a scrape of this exposition gives (a labelled family without any
    child yet counts too: it has its HELP and TYPE), and the metrics as the README names
    them (a counter with ``_total``, a histogram by its family name)."""
    names: set[str] = set()
    metrics: set[str] = set()
    for fam in text_string_to_metric_families(text):
        names.update(s.name for s in fam.samples)
        if fam.type == "counter":
            names.add(fam.name + "_total")
            metrics.add(fam.name + "_total")
        elif fam.type == "histogram":
            names.update(fam.name + sfx for sfx in ("_bucket", "_count", "_sum"))
            metrics.add(fam.name)
        else:
            names.add(fam.name)
            metrics.add(fam.name)
    return names, metrics


def test_deploy_expressions_name_only_exported_series(running: Running) -> None:
    """Every series an alert rule or a dashboard panel reads is one this process exports
    (``up`` is the scrape's own), and every ``ps_`` series the README documents too."""
    names, metrics = _exported(http_get(running.url + "/metrics")[1])
    exprs = {f"alert {k}": v for k, v in rule_expressions(DEPLOY / "alerts.yml").items()}
    for path in sorted((DEPLOY / "grafana").glob("*.json")):
        exprs.update({f"{path.name} #{i}": e for i, e in enumerate(dashboard_expressions(path))})
    assert len(exprs) > 40
    for where, expr in exprs.items():
        unknown = series_names(expr) - names - {"up"}
        assert not unknown, f"{where}: {expr} reads {unknown}, not exported"
    readme = (DEPLOY / "README.md").read_text()
    table = readme[readme.index("## Metrics") : readme.index("### Probes")]
    documented = {
        m
        for row in re.findall(r"^\| `ps_[^|]*", table, re.M)
        for m in re.findall(r"`(ps_[a-z_]+)`", row)
    }
    ours = {m for m in metrics if m.startswith("ps_") and not m.endswith("_created")}
    assert documented <= ours, f"documented, not exported: {sorted(documented - ours)}"
    assert ours <= documented, f"exported, not documented: {sorted(ours - documented)}"
    for series in ("process_start_time_seconds", "process_cpu_seconds_total", "python_info"):
        assert series in names and series in readme, series


def test_status_owner_positions_json_and_verify(running: Running) -> None:
    r = cli(running, "status")
    assert r.returncode == 0, r.stderr
    assert f"owned by supervisor pid {running.proc.pid} on {socket.gethostname()}" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines()]
    assert ["main", "BTCUSDT"] in [row[:2] for row in rows]
    r = cli_here(running, "status", "--json", "--verify")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (owner,) = doc["accounts"]
    assert owner["owned"] and owner["pid"] == running.proc.pid and owner["backend_pid"] > 0
    assert {p["symbol"] for p in doc["open"]} == {"BTCUSDT", "ETHUSDT"}
    for p in doc["open"]:
        assert p["stop_confirmed"] and p["stop_on_exchange"] == "resting", p
    r = cli_here(running, "status", "--verify")
    assert r.returncode == 0 and "ON EXCHANGE" in r.stdout and "resting" in r.stdout, r.stdout
    r = cli_here(running, "status", "--account", "mian")
    assert r.returncode == 2 and "unknown account 'mian'" in r.stderr
    assert "did you mean 'main'" in r.stderr and "Traceback" not in r.stderr


def test_a_stopped_out_position_shows_in_status(running: Running) -> None:
    """The mark falls through the stop: the exchange executes it, the position closes as
    stop_loss; status shows its close time, exit price, realised PnL and reason."""
    running.sim.set_price("BTCUSDT", 58_000.0)

    def closed() -> Any:
        return [
            p
            for p in running.store.positions("main")
            if p.key.symbol == "BTCUSDT" and p.status is Status.CLOSED
        ]

    (pos,) = poll(closed, 30, "BTCUSDT closed by its stop", interval=0.05)
    r = cli_here(running, "status", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (c,) = [p for p in doc["closed"] if p["symbol"] == "BTCUSDT"]
    assert c["reason"] == "stop_loss" and c["id"] == pos.id
    assert c["exit_price"] is not None and c["exit_price"] < c["entry_price"]
    expected = (c["exit_price"] - c["entry_price"]) * c["size"]
    assert c["realised_pnl"] == pytest.approx(expected) and c["realised_pnl"] < 0
    assert c["closed_at"] == pytest.approx(pos.closed_at)
    text = cli_here(running, "status").stdout
    row = next(
        line for line in text.splitlines() if line.startswith("main") and "stop_loss" in line
    )
    assert f"{c['realised_pnl']:+.2f}" in row and time.strftime("%Y-%m-%d", time.gmtime()) in row


def test_history_filters_and_errors(running: Running) -> None:
    r = cli_here(running, "history", "BTCUSDT")
    assert r.returncode == 0, r.stderr
    journal, signals = r.stdout.split("signals:")
    # A refusal is a row of the signal history, not of the journal (one row per change).
    assert "op-2" not in journal and "duplicate" not in journal
    assert re.search(r"op-2 +whale_copy +duplicate +position_open", signals), signals
    assert "signal op-1 from sniper" in journal  # the entry names the signal that caused it
    r = cli_here(running, "history", "ETHUSDT")
    journal, signals = r.stdout.split("signals:")
    assert re.search(r"op-3 +volume +rejected +too_old", signals), signals
    btc = next(p for p in running.store.positions("main") if p.key.symbol == "BTCUSDT")
    r = cli_here(running, "history", "BTCUSDT", "--position", str(btc.id))
    journal, signals = r.stdout.split("signals:")
    assert "op-2" not in journal and "entry_intent" in journal and "stop" in journal
    assert "op-1" in signals and "op-2" in signals  # both name the position
    r = cli_here(running, "history", "BTCUSDT", "--limit", "1")
    journal, signals = r.stdout.split("signals:")
    assert len(signals.strip().splitlines()) == 2  # header and one row
    assert len(journal.strip().splitlines()) == 4  # "== main:…", "journal:", header, one row
    assert "(empty)" not in cli_here(running, "history", "BTCUSDT", "--since", "1h").stdout
    r = cli_here(running, "history", "BTCUSDT", "--since", "2100-01-01T00:00")
    assert r.stdout.count("(empty)") == 2
    r = cli(running, "history", "BTCUSD")
    assert r.returncode == 2 and "unknown symbol 'BTCUSD'" in r.stderr
    assert "did you mean 'BTCUSDT'" in r.stderr and r.stdout == ""
    r = cli_here(running, "history", "BTCUSDT", "--account", "other")
    assert r.returncode == 2 and "unknown account 'other'" in r.stderr
    r = cli_here(running, "history", "BTCUSDT", "--since", "yesterday")
    assert r.returncode == 2 and "--since 'yesterday'" in r.stderr
    for r in (
        cli_here(running, "history", "BTCUSD"),
        cli_here(running, "history", "X", "--limit", "0"),
    ):
        assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


def test_history_into_a_closed_pipe_ends_quietly(running: Running) -> None:
    """``history … | head``: the reader is gone before the command writes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervision", "history", "BTCUSDT", "--config", str(running.cfg)],
        cwd=ROOT,
        env=_env(running.dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err, err


def test_sync_failures_warn_then_error_then_recover(running: Running) -> None:
    start = len(running.lines())
    running.sim.add_fault(
        "http_502",
        path=["/fapi/v2/positionRisk", "/fapi/v3/positionRisk"],
        method="GET",
        count=None,  # until cleared
    )
    try:

        def sync_lines() -> list[dict[str, Any]]:
            return [d for d in running.lines()[start:] if d["logger"] == "supervision.sync"]

        poll(
            lambda: any(d["level"] == "ERROR" for d in sync_lines()),
            30,
            "sync ERROR once it keeps failing",
            interval=0.05,
        )
    finally:
        running.sim.clear_faults()
    poll(lambda: any("recovered" in d["msg"] for d in sync_lines()), 30, "recovered")
    lines = sync_lines()
    levels = [d["level"] for d in lines]
    first_error = levels.index("ERROR")
    assert levels[:first_error] == ["WARNING", "WARNING"], lines
    assert "keeps failing: 3 rounds in a row" in lines[first_error]["msg"]
    assert "will retry" in lines[0]["msg"]
    assert levels.count("ERROR") == 1  # then throttled (DEBUG, not logged at INFO)
    assert lines[-1]["level"] == "INFO" and "recovered after" in lines[-1]["msg"]


def test_readiness_follows_the_feed_liveness_does_not(running: Running) -> None:
    running.feed.stop()

    def feed_down() -> bool:
        code, body = http_get(running.url + "/readyz")
        return code == 503 and "feed:signals (not connected)" in body

    poll(feed_down, 30, "/readyz names the feed")
    assert http_get(running.url + "/healthz")[0] == 503  # the alias of /readyz
    assert http_get(running.url + "/livez") == (200, "ok\n")


def test_bind_failure_names_the_address_and_key(running: Running, tmp_path: Path) -> None:
    """A second process on the first one's metrics address: exit 1, one line naming the
    address and metrics.address, no traceback."""
    host_port = running.url.removeprefix("http://")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        running.cfg.read_text().replace('address = "127.0.0.1:0"', f'address = "{host_port}"')
    )
    r = subprocess.run(
        [sys.executable, "-m", "supervision", "run", "--config", str(cfg), "--log-level", "INFO"],
        cwd=ROOT,
        env=_env(running.dsn),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    (line,) = [line for line in r.stderr.splitlines() if "start failed" in line]
    assert f"cannot listen on {host_port} (set by metrics.address)" in line, line
    assert "address already in use" in line.lower()


def test_clean_stop_and_log_levels(running: Running) -> None:
    """Ticks flowing, SIGTERM: exit 0, no dead-letter warning. Through the whole run: one
    INFO line per signal decision (the feed's own line is DEBUG), no refusal above INFO."""
    running.sim.start_random_walk(0.02, 0.0005)
    try:
        poll(lambda: "ps_ws_lag_seconds_count" in http_get(running.url + "/metrics")[1], 10)
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(30) == 0, running.log.read_text()[-3000:]
    finally:
        running.sim.stop_random_walk()
    lines = running.lines()
    assert any(d["msg"] == "stopped" for d in lines)
    noisy = [d for d in lines if d["level"] in ("WARNING", "ERROR", "RAW")]
    assert not [d for d in noisy if "dead letter" in d["msg"]], noisy
    for sid, decisions in (("op-1", 2), ("op-2", 1), ("op-3", 1), ("op-4", 1)):
        about = [d for d in lines if re.search(rf"\bsignal {sid}\b", d["msg"])]
        assert len(about) == decisions, (sid, about)
        assert {d["level"] for d in about} == {"INFO"}, about
        assert {d["logger"] for d in about} == {"actors.position_actor"}, about
    sync_or_feed = {"supervision.sync", "infra.feeds.signals", "infra.feeds.ws_client"}
    unexpected = [d for d in noisy if d["logger"] not in sync_or_feed]
    assert not unexpected, unexpected


def test_verify_says_missing_when_the_stop_does_not_rest(pg_admin: str, tmp_path: Path) -> None:
    """``status --verify`` against a database that believes a stop rests (accepted) while
    the exchange has none: MISSING, exit 3. Once the stop is placed there: resting, exit 0."""
    from actors.model import Key, OrderKind, OrderRecord, OrderState
    from actors.ports import OrderRequest
    from infra.exchange import CcxtExchange, VenueConfig
    from tests.store.builders import advance, entry_commit, new_position

    key = Key("main", "BTCUSDT")
    stop = OrderRecord("ps41s1", OrderKind.STOP_LOSS, "sell", 0.01, OrderState.ACCEPTED, 59_000.0)
    with pg.fresh_database(pg_admin) as dsn, SimExchange({"BTCUSDT": 60_000.0}) as sim:
        store = PostgresStore(dsn, migrate_schema=False)
        try:
            pos = new_position(41, key)
            store.commit(entry_commit(pos))
            _, commit = advance(
                pos, status=Status.ACTIVE, qty=0.01, entry_price=60_000.0, orders=(stop,)
            )
            store.commit(commit)
        finally:
            store.close()
        cfg = tmp_path / "v.toml"
        cfg.write_text(
            f'[accounts.main]\nrest_url = "{sim.base_url}"\nws_url = "{sim.ws_url}"\n'
            'symbols = ["BTCUSDT"]\ncredentials = "dummy"\nenable_rate_limit = false\n'
        )
        r = cli_at(cfg, dsn, "status", "--verify")
        assert r.returncode == 3, r.stdout + r.stderr
        assert "MISSING (ps41s1: not found)" in r.stdout
        assert "not owned: no supervisor manages this account now" in r.stdout
        ex = CcxtExchange("main", VenueConfig(base_url=sim.base_url, require_credentials=False))
        try:
            for req in (
                OrderRequest(key, "ps41e1", OrderKind.ENTRY, "buy", 0.01),
                OrderRequest(
                    key, "ps41s1", OrderKind.STOP_LOSS, "sell", 0.01, 59_000.0, close_position=True
                ),
            ):
                assert ex.place_order(req).result.value == "accepted"
        finally:
            ex.close()
        r = cli_at(cfg, dsn, "status", "--verify", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        (p,) = json.loads(r.stdout)["open"]
        assert p["stop_on_exchange"] == "resting" and p["stop_client_id"] == "ps41s1"
