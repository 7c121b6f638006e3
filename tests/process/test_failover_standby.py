"""Standbys as real processes (``python -m supervision run``) against ``sim/`` and a real
PostgreSQL: a standby waits for ever (``account_lock_wait = true``) and says so in
``/readyz``, its metrics and ``status``; it answers SIGTERM at once; it takes the account as
soon as the owner stops cleanly (the lease given up); a process told to wait a number of
seconds gives up with exit 1; ``confirm-installation`` confirms an alarm.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.store.ownership import Grant, LeaseStore
from infra.store.reads import account_owners, installation_view
from sim.exchange import SimExchange
from supervision.cli import render_owners
from testkit import pg
from testkit.waiting import poll
from tests.process.harness import http_get

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.serial,
    pytest.mark.timeout(120),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dsn(pg_admin: str) -> Iterator[str]:
    with pg.fresh_database(pg_admin) as d:
        yield d


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    keys = {"main": ["key-a", "key-b"]}
    with SimExchange({"BTCUSDT": 60_000.0}, accounts=keys) as ex:
        yield ex


def _config(tmp_path: Path, sim: SimExchange, wait: str = "true") -> Path:
    cfg = tmp_path / "standby.toml"
    cfg.write_text(
        f"""
[accounts.main]
rest_url = "{sim.base_url}"
ws_url = "{sim.ws_url}"
symbols = ["BTCUSDT"]
enable_rate_limit = false
timeout_s = 5.0

[sync]
interval_s = 0.3

[supervisor]
shutdown_grace_s = 2.0

[database]
account_lock_wait = {wait}

[ownership]
lease_s = 2.0
renew_s = 0.3
fence_margin_s = 0.6

[metrics]
address = "127.0.0.1:0"

[feeds]
exchange_streams = false

[logging]
level = "INFO"
json = true
"""
    )
    return cfg


def _env(dsn: str, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    env.update(
        PS_MAIN_API_KEY=key,
        PS_MAIN_API_SECRET=f"secret-{key}",
        PS_DATABASE_DSN=dsn,
        PYTHONUNBUFFERED="1",
    )
    return env


class Proc:
    def __init__(self, cfg: Path, dsn: str, key: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "supervision", "run", "--config", str(cfg)],
                cwd=ROOT,
                env=_env(dsn, key),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.p.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self) -> str:
        """The process's metrics endpoint (the port it chose, read from its log)."""
        pattern = re.compile(r"metrics on (http://[0-9.:]+)/metrics")
        _until(lambda: pattern.search(self.text()), 30, "metrics address in the log")
        found = pattern.search(self.text())
        assert found is not None
        return found.group(1)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        code, body = http_get(self.url() + "/metrics")
        assert code == 200
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body)
            for s in fam.samples
        }

    def role(self) -> str | None:
        for (name, labels), v in self.samples().items():
            if name == "ps_account_role" and v == 1.0 and ("account", "main") in labels:
                return dict(labels)["role"]
        return None

    def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.p.wait(30)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)


def _until(cond: Callable[[], object], timeout: float, what: str) -> None:
    poll(cond, timeout, what, 0.05, TimeoutError)


def _cli(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    env["PS_DATABASE_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "supervision", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_standby_waits_reports_answers_sigterm_and_takes_over_at_once(
    tmp_path: Path, sim: SimExchange, dsn: str
) -> None:
    cfg = _config(tmp_path, sim)
    a = Proc(cfg, dsn, "key-a", tmp_path / "a.log")
    procs = [a]
    try:
        _until(lambda: a.role() == "owner", 60, "a owns main")
        b = Proc(cfg, dsn, "key-b", tmp_path / "b.log")
        procs.append(b)
        _until(lambda: b.role() == "standby", 60, "b waits")
        samples = b.samples()
        owner = [dict(ls) for (n, ls), v in samples.items() if n == "ps_account_owner" and v]
        promtool = shutil.which("promtool")
        if promtool is not None:  # names, types and help texts of the new series
            exposition = http_get(b.url() + "/metrics")[1]
            assert "ps_account_role" in exposition and "ps_lease_takeovers_total" in exposition
            r = subprocess.run(
                [promtool, "check", "metrics"],
                input=exposition,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert r.returncode == 0, r.stdout + r.stderr
        assert [(o["pid"], o["epoch"]) for o in owner] == [(str(a.pid), "1")]
        code, body = http_get(b.url() + "/healthz")  # readiness (/readyz where split)
        assert code == 503
        assert f"standby: owns no account; waits for main (epoch 1, pid {a.pid} on" in body
        assert http_get(a.url() + "/healthz")[0] == 200
        # status: who owns it, since when, who waits.
        _until(
            lambda: (
                f"waiting: pid {b.pid} on" in _cli("status", "--config", str(cfg), dsn=dsn).stdout
            ),
            10,
            "b's heartbeat",
        )
        out = _cli("status", "--config", str(cfg), dsn=dsn)
        assert out.returncode == 0, out.stderr
        row = next(line for line in out.stdout.splitlines() if "owned by" in line)
        assert row.startswith("main") and f"owned by supervisor pid {a.pid} on" in row
        assert "lease epoch 1 since" in row and f"waiting: pid {b.pid} on" in row
        assert "installation " in out.stdout
        # A standby answers SIGTERM at once (it waits for ever otherwise).
        t0 = time.monotonic()
        assert b.stop() == 0
        assert time.monotonic() - t0 < 5.0, "the standby took long to stop"
        assert sim.order_log() == [] or all(e.api_key == "key-a" for e in sim.order_log())
        b = Proc(cfg, dsn, "key-b", tmp_path / "b2.log")
        procs.append(b)
        _until(lambda: b.role() == "standby", 60, "b waits again")
        # The owner stops cleanly: it gives its lease up, the standby takes it at once.
        t0 = time.monotonic()
        assert a.stop() == 0
        _until(lambda: b.role() == "owner", 10, "b owns main")
        took = time.monotonic() - t0
        assert took < 2.0 + 3.0, took  # well before the 2 s lease could have expired + stop
        assert '"msg": "account main: lease released (epoch 1)"' in a.text()
        assert "lease taken, epoch 2 (free" in b.text()
        _until(lambda: http_get(b.url() + "/healthz")[0] == 200, 10, "b ready")
    finally:
        for p in procs:
            p.kill()


def test_a_process_that_waits_seconds_gives_up_with_exit_1(
    tmp_path: Path, sim: SimExchange, dsn: str
) -> None:
    a = Proc(_config(tmp_path, sim), dsn, "key-a", tmp_path / "a.log")
    try:
        _until(lambda: a.role() == "owner", 60, "a owns main")
        (tmp_path / "b").mkdir()
        b = Proc(_config(tmp_path / "b", sim, wait="1.5"), dsn, "key-b", tmp_path / "b.log")
        assert b.p.wait(60) == 1, b.text()
        assert "no account could be owned within account_lock_wait = 2 s" in b.text()
    finally:
        a.kill()


def test_render_leases_and_confirm_installation(tmp_path: Path, sim: SimExchange, dsn: str) -> None:
    cfg = _config(tmp_path, sim)
    with LeaseStore(dsn, lease_s=30.0) as ls:
        assert isinstance(ls.acquire("main"), Grant)
        ls.heartbeat(["main"], [], None)
        ls.record_alert("main", 654321, "ps9654321s1", "BTCUSDT")
        inst = ls.installation().label
        text = render_owners(  # while its lease connection is open
            account_owners(dsn, ["main", "other"]), installation_view(dsn, ["main", "other"])
        )
    lines = text.splitlines()
    assert lines[0].split() == ["ACCOUNT", "OWNER"]
    assert lines[1].startswith("main") and f"owned by supervisor pid {os.getpid()} on" in lines[1]
    assert "lease epoch 1 since" in lines[1]
    left = re.search(r"expires in ([0-9.]+)s", lines[1])
    assert left is not None and 25.0 < float(left.group(1)) <= 30.0
    assert "PostgreSQL backend" in lines[1]  # its lease connection, found by its name
    assert lines[2].startswith("other") and "not owned" in lines[2]
    assert lines[3] == f"installation {inst}"
    assert "ALARM main: orders of installation 654321" in text
    assert "confirm-installation --account main" in text
    r = _cli("confirm-installation", "--config", str(cfg), "--account", "nope", dsn=dsn)
    assert r.returncode == 2 and "unknown account 'nope'" in r.stderr
    r = _cli("confirm-installation", "--config", str(cfg), "--account", "main", dsn=dsn)
    assert r.returncode == 0, r.stderr
    assert "confirmed: account main, installation 654321 (ps9654321s1 on BTCUSDT, seen" in r.stdout
    r = _cli("confirm-installation", "--config", str(cfg), "--account", "main", dsn=dsn)
    assert "nothing to confirm" in r.stdout
    out = _cli("status", "--config", str(cfg), dsn=dsn)
    assert out.returncode == 0 and "ALARM" not in out.stdout, out.stdout + out.stderr
