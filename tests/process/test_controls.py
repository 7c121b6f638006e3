"""The operator's controls through one real process: ``python -m supervision run`` against
the sim/ exchange (real ccxt over HTTP), the sim/ signal feed (real websocket-client) and a
real PostgreSQL, with the control endpoint on (``PS_CONTROL_TOKEN``), and the CLI commands
``close``, ``close --all``, ``pause``, ``resume`` and ``unquarantine`` calling it.

One process serves the module (killed with SIGKILL and started again halfway); the tests run
in file order and each leaves the world as the next expects: refused requests, close one,
flatten, pause (a signal refused, protection going on), crashes forced by a fault in the
database until the symbol is quarantined (and a request that times out pending meanwhile),
SIGKILL and a new process that still has the pause and the quarantine, resume, unquarantine.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.model import CloseReason, Status
from infra.store import PostgresStore
from sim.exchange import SimExchange
from sim.signals import SignalFeed
from supervision.cli import main as cli_main
from testkit import pg
from testkit.waiting import poll
from tests.process.control_process import (
    ROOT,
    Supervised,
    free_port,
    http,
    process_env,
    signal,
    spawn,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 150.0, "XRPUSDT": 0.5}
STOPS = {"BTCUSDT": 59_000.0, "ETHUSDT": 2_900.0, "SOLUSDT": 140.0, "XRPUSDT": 0.45}
SIZES = {"BTCUSDT": 0.01, "ETHUSDT": 0.1, "SOLUSDT": 1.0, "XRPUSDT": 100.0}
#: Crashes fast into quarantine: more than one crash in the window, then 3 s between restarts.
RESTART = (
    "\n[restart]\nmax_restarts = 1\nwindow_s = 60.0\nmin_backoff_s = 0.05\nmax_backoff_s = 3.0\n"
)
#: A fault in the real database: SOLUSDT's signal decisions cannot be written (a CHECK-like
#: refusal, which the actor treats as a bug: it crashes). Its quarantine event can.
FAULT = """
CREATE FUNCTION test_refuse_sol() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'test fault: % of SOLUSDT refused', TG_TABLE_NAME
        USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER test_refuse_sol BEFORE INSERT ON journal FOR EACH ROW
    WHEN (NEW.symbol = 'SOLUSDT' AND NEW.kind = 'entry_intent')
    EXECUTE FUNCTION test_refuse_sol();
CREATE TRIGGER test_refuse_sol_signals BEFORE INSERT ON signals FOR EACH ROW
    WHEN (NEW.symbol = 'SOLUSDT') EXECUTE FUNCTION test_refuse_sol();
"""
NO_FAULT = (
    "DROP TRIGGER test_refuse_sol ON journal; DROP TRIGGER test_refuse_sol_signals ON signals; "
    "DROP FUNCTION test_refuse_sol();"
)


@dataclass
class World:
    sim: SimExchange
    feed: SignalFeed
    store: PostgresStore
    tmp: Path
    cfg: Path
    dsn: str
    p: Supervised
    n: int = 0

    def sid(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def send(self, symbol: str, prefix: str = "s") -> dict[str, Any]:
        """Send a signal for ``symbol``; its answer."""
        sid = self.sid(prefix)
        self.feed.send_signal(signal(sid, symbol, STOPS[symbol], size=SIZES[symbol]))
        ack = self.feed.wait_for_ack(sid, 30)
        assert ack is not None, (sid, self.p.log.read_text()[-3000:])
        return ack

    def open(self, symbol: str) -> int:
        """A position on ``symbol``, filled and protected; its id."""
        ack = self.send(symbol, "open")
        assert ack["outcome"] == "accepted", ack
        pid = int(ack["position_id"])

        def protected() -> bool:
            return any(
                p.id == pid and p.status is Status.ACTIVE and p.stop_confirmed
                for p in self.store.positions("main")
            )

        poll(protected, 30, f"{symbol} protected", interval=0.05)
        return pid

    def position(self, pid: int) -> Any:
        return next(p for p in self.store.positions("main") if p.id == pid)

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """The CLI as its own process (what an operator runs)."""
        return subprocess.run(
            [sys.executable, "-m", "supervision", *args, "--config", str(self.cfg)],
            cwd=ROOT,
            env=process_env(self.dsn, token or self.p.token),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def cli_here(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``supervision.cli.main`` in this process (a second saved per call); the HTTP calls
        to the running process are the same. The logging it installs is put back."""
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        filters = {h: list(h.filters) for h in handlers}
        out, err = io.StringIO(), io.StringIO()
        saved = {k: os.environ.get(k) for k in ("PS_DATABASE_DSN", "PS_CONTROL_TOKEN")}
        os.environ.update(PS_DATABASE_DSN=self.dsn, PS_CONTROL_TOKEN=self.p.token)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli_main([*args, "--config", str(self.cfg)])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for h in list(root.handlers):
                if h not in handlers:
                    root.removeHandler(h)
                    h.close()
            for h, fs in filters.items():
                h.filters[:] = fs
            root.setLevel(level)
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())

    def metric(self, name: str, **labels: str) -> float | None:
        _, _, text = http("GET", self.p.metrics + "/metrics")
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    def db(self, sql: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql)


@pytest.fixture(scope="module")
def world(pg_admin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("controls")
    with pg.fresh_database(pg_admin) as dsn, SimExchange(dict(PRICES)) as sim:
        feed = SignalFeed("127.0.0.1", 0).start()
        cfg = write_config(tmp / "c.toml", sim, feed, free_port(), tuple(PRICES), extra=RESTART)
        store = PostgresStore(dsn, migrate_schema=False)
        p: Supervised | None = None
        try:
            p = spawn(cfg, dsn, tmp / "first.log")
            assert feed.wait_for_clients(1, 30)
            w = World(sim, feed, store, tmp, cfg, dsn, p)
            yield w
            p = w.p
        finally:
            if p is not None:
                p.kill()
            store.close()
            feed.stop()


def test_requests_without_or_with_a_wrong_token_are_refused_and_logged(world: World) -> None:
    url = world.p.control
    body = {"symbols": ["BTCUSDT"], "reason": "x"}
    code, headers, text = http("POST", url + "/control/pause", body)
    assert code == 401 and headers.get("WWW-Authenticate") == "Bearer", (code, text)
    assert json.loads(text) == {
        "error": "unauthorized",
        "reason": "no token (send Authorization: Bearer <token>)",
    }
    wrong = "w" * 48
    code, _, text = http("POST", url + "/control/close", body, token=wrong)
    assert (code, json.loads(text)["reason"]) == (401, "wrong token")
    # the read-only page: open on loopback to a client naming a loopback host, not to one
    # that names another (a DNS-rebinding page), and never to a wrong token
    assert http("GET", url + "/")[0] == 200
    code, _, text = http("GET", url + "/", headers={"Host": "rebind.example:80"})
    assert code == 401 and "Host header" in json.loads(text)["reason"]
    assert http("GET", url + "/", token=wrong)[0] == 401
    assert http("GET", url + "/api/view")[0] == 401  # the JSON view needs the token
    # the CLI with a wrong token: exit 1, the endpoint's reason, nothing done
    r = world.cli("pause", "BTCUSDT", "--reason", "x", token=wrong)
    assert r.returncode == 1 and "refused the request (401): wrong token" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # logged at WARNING with the client's address and why, never the token
    refused = [
        d for d in world.p.lines() if d["level"] == "WARNING" and "control: refused" in d["msg"]
    ]
    msgs = " | ".join(d["msg"] for d in refused)
    assert "refused POST /control/pause from 127.0.0.1:" in msgs and "no token" in msgs, msgs
    assert "refused POST /control/close from 127.0.0.1:" in msgs and "wrong token" in msgs
    assert "does not name a loopback address" in msgs
    text = world.p.log.read_text()
    assert wrong not in text and world.p.token not in text
    assert (
        world.metric("ps_control_requests_total", command="pause", result="unauthorized") or 0
    ) >= 2
    # a request with a token but a bad body: 400 with the reason, nothing done
    code, _, text = http(
        "POST",
        url + "/control/pause",
        {"symbols": ["BTC/USDT"], "reason": "x"},
        token=world.p.token,
    )
    assert code == 400 and "not an exchange symbol id" in json.loads(text)["reason"]
    code, _, text = http("POST", url + "/control/pause", {"symbols": []}, token=world.p.token)
    assert code == 400 and json.loads(text)["reason"].startswith("reason: required")
    assert not world.store.controls()  # nothing paused by any of it


def test_close_one(world: World) -> None:
    btc, eth = world.open("BTCUSDT"), world.open("ETHUSDT")
    r = world.cli("close", "BTCUSDT", "--reason", "test: close one")
    assert r.returncode == 0, r.stdout + r.stderr
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("main:BTCUSDT")]
    assert "closed" in line and f"position {btc} closed (manual) at" in line, r.stdout
    pos = world.position(btc)
    assert pos.status is Status.CLOSED and pos.close_reason is CloseReason.MANUAL
    assert world.position(eth).status is Status.ACTIVE  # only the one named
    assert "BTCUSDT" not in world.sim.positions() and "ETHUSDT" in world.sim.positions()
    # journaled with the operator as its cause and the reason given
    (closing,) = [
        e for e in world.store.journal("main", "BTCUSDT", btc) if e.event.kind == "closing"
    ]
    assert closing.cause_type == "CloseRequest"
    assert (closing.cause_data["by"], closing.cause_data["note"]) == ("operator", "test: close one")
    assert closing.event.detail["by"] == "operator" and closing.event.detail["reason"] == "manual"
    history = world.cli_here("history", "BTCUSDT", "--position", str(btc)).stdout
    assert "operator: test: close one" in history, history
    # nothing open: answered at once, and journaled all the same
    r = world.cli_here("close", "BTCUSDT", "--reason", "again")
    assert r.returncode == 0 and "no open position: nothing to close" in r.stdout, r.stdout
    assert any(
        e.event.kind == "close_requested" and e.event.detail.get("result") == "no_position"
        for e in world.store.journal("main", "BTCUSDT")
    )


def test_flatten_all(world: World) -> None:
    world.open("XRPUSDT")
    open_before = {p.key.symbol for p in world.store.positions("main") if not p.status.terminal}
    assert open_before == {"ETHUSDT", "XRPUSDT"}
    r = world.cli_here("close", "--all", "--reason", "test: flatten", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["done"] and doc["pending"] == [] and doc["elapsed_s"] < 5.0, doc
    assert {(x["symbol"], x["outcome"]) for x in doc["results"]} == {
        ("ETHUSDT", "closed"),
        ("XRPUSDT", "closed"),
    }
    assert all("closed (manual)" in x["message"] for x in doc["results"]), doc
    assert not [p for p in world.store.positions("main") if not p.status.terminal]
    assert world.sim.positions() == {}
    poll(lambda: not [o for o in world.sim.open_orders()], 10, "no stop left resting")
    r = world.cli_here("close", "--all", "--reason", "again")
    assert r.returncode == 0 and "nothing to do" in r.stdout


def test_pause_refuses_signals_and_protection_goes_on(world: World) -> None:
    eth = world.open("ETHUSDT")
    r = world.cli("pause", "BTCUSDT", "ETHUSDT", "--reason", "test: maintenance")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("paused: new signals are refused `paused`") == 2, r.stdout
    ack = world.send("BTCUSDT")
    assert (ack["outcome"], ack["reason"], ack["retry"]) == ("rejected", "paused", True)
    assert world.send("XRPUSDT")["outcome"] == "accepted"  # other symbols go on
    assert world.metric("ps_symbol_paused", account="main", symbol="BTCUSDT") == 1
    # the paused symbol's open position keeps its stop: the price falls through it
    world.sim.set_price("ETHUSDT", 2_850.0)
    poll(lambda: world.position(eth).status is Status.CLOSED, 30, "ETHUSDT stopped out")
    assert world.position(eth).close_reason is CloseReason.STOP_LOSS
    r = world.cli_here("pause", "BTCUSDT", "--reason", "twice")
    assert r.returncode == 0 and "paused already" in r.stdout
    first, again = [e for e in world.store.journal("main", "BTCUSDT") if e.event.kind == "paused"]
    assert (
        first.event.detail["by"] == "operator" and first.cause_data["note"] == "test: maintenance"
    )
    assert first.event.detail["changed"] and not again.event.detail["changed"]


def test_forced_crashes_quarantine_and_a_request_meanwhile_is_pending(world: World) -> None:
    world.db(FAULT)
    world.feed.send_signal(signal(world.sid("crash"), "SOLUSDT", STOPS["SOLUSDT"], size=1.0))

    def quarantined() -> bool:
        return any(c.key.symbol == "SOLUSDT" and c.quarantined for c in world.store.controls())

    poll(quarantined, 30, "SOLUSDT quarantined (stored)", interval=0.02)
    # The actor waits 3 s before its next restart: a request meanwhile is not decided in
    # time. The command says so, names it, exits 4; the request stays queued.
    r = world.cli_here(
        "resume", "SOLUSDT", "--reason", "test: while restarting", "--timeout", "0.5"
    )
    assert r.returncode == 4, r.stdout + r.stderr
    assert (
        "main:SOLUSDT  pending" in r.stdout
        and "not done within the timeout: main:SOLUSDT" in r.stdout
    )
    world.db(NO_FAULT)
    poll(
        lambda: world.metric("ps_symbol_quarantined", account="main", symbol="SOLUSDT") == 1,
        10,
        "quarantine in metrics",
    )

    def refused_quarantined() -> bool:  # "restarting" until its restart, then "quarantined"
        return bool(world.send("SOLUSDT")["reason"] == "quarantined")

    poll(refused_quarantined, 15, "SOLUSDT refused quarantined", interval=0.2)


def test_a_killed_process_comes_back_still_paused_and_quarantined(world: World) -> None:
    world.p.kill()
    world.p = spawn(world.cfg, world.dsn, world.tmp / "second.log", world.p.token)
    assert world.feed.wait_for_clients(1, 30)
    poll(
        lambda: (
            world.metric("ps_symbol_paused", account="main", symbol="BTCUSDT") == 1
            and world.metric("ps_symbol_quarantined", account="main", symbol="SOLUSDT") == 1
        ),
        15,
        "stored pause and quarantine in the new process's metrics",
    )
    ack = world.send("BTCUSDT")
    assert (ack["outcome"], ack["reason"]) == ("rejected", "paused")
    assert world.send("SOLUSDT")["reason"] == "quarantined"
    status = world.cli_here("status").stdout  # from the database, without the endpoint
    assert re.search(r"main\s+BTCUSDT\s+paused\s+\S+ \S+\s+test: maintenance", status), status
    assert re.search(r"main\s+SOLUSDT\s+quarantined\s+.*repeated crashes", status), status
    code, _, text = http("GET", world.p.control + "/api/view", token=world.p.token)
    assert code == 200
    controls = {c["symbol"]: c for c in json.loads(text)["controls"]}
    assert (
        controls["BTCUSDT"]["paused"] and controls["BTCUSDT"]["paused_note"] == "test: maintenance"
    )
    assert (
        controls["SOLUSDT"]["quarantined"]
        and "repeated crashes" in controls["SOLUSDT"]["quarantined_note"]
    )


def test_resume(world: World) -> None:
    r = world.cli("resume", "--reason", "test: maintenance over")  # every symbol of main
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {x.split()[0]: x for x in r.stdout.splitlines()[1:]}
    assert "resumed: new signals are decided again" in lines["main:BTCUSDT"]
    assert "resumed" in lines["main:ETHUSDT"] and "not paused" in lines["main:XRPUSDT"]
    assert world.send("BTCUSDT")["outcome"] == "accepted"
    assert not any(c.paused for c in world.store.controls())
    poll(lambda: world.metric("ps_symbol_paused", account="main", symbol="BTCUSDT") is None, 5)


def test_unquarantine_after_forced_crashes(world: World) -> None:
    r = world.cli("unquarantine", "SOLUSDT", "--reason", "test: fault fixed")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "quarantine lifted" in r.stdout
    assert world.send("SOLUSDT")["outcome"] == "accepted"
    assert not any(c.quarantined for c in world.store.controls())
    poll(
        lambda: world.metric("ps_symbol_quarantined", account="main", symbol="SOLUSDT") is None,
        5,
        "quarantine gone from the metrics",
    )
    kinds = [(e.event.kind, e.cause_type) for e in world.store.journal("main", "SOLUSDT")]
    assert ("quarantined", "OpenSignal") in kinds and (
        "unquarantined",
        "UnquarantineRequest",
    ) in kinds
    history = world.cli_here("history", "SOLUSDT").stdout
    assert "operator: test: fault fixed" in history, history


def test_a_clean_stop_after_all_of_it(world: World) -> None:
    world.p.proc.terminate()
    assert world.p.proc.wait(30) == 0, world.p.log.read_text()[-3000:]
    lines = world.p.lines()
    assert any(d["msg"] == "stopped" for d in lines)
    assert not [d for d in lines if d["level"] == "RAW"], [d for d in lines if d["level"] == "RAW"]
