"""The CLI end to end as a subprocess, against the sim/ exchange and a real PostgreSQL.

``python -m supervision run`` starts, adopts and protects a position it finds on the exchange
(the sync path), opens and protects a position from a signal on the signal feed (WebSocket),
reports a feed that is down on ``/healthz``, a second process for the same account refuses to
trade (I7, exit 1), SIGTERM stops the first with exit 0, the state is in the database, and no
secret from the environment appears in any log line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.model import Key, OrderKind, Status
from actors.ports import OrderRequest
from infra.exchange import CcxtExchange, VenueConfig
from infra.store import PostgresStore
from sim.exchange import SimExchange
from sim.signals import SignalFeed
from testkit import pg
from testkit.waiting import poll
from tests.process.harness import http_get

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "e2e-live-api-key-5f4e3d2c1b0a"
API_SECRET = "e2e-live-api-secret-00112233445566778899"
FEED_TOKEN = "e2e-feed-token-9a8b7c6d5e4f"


@pytest.fixture
def dsn(pg_admin: str) -> Iterator[str]:
    with pg.fresh_database(pg_admin) as d:
        yield d


@pytest.fixture
def feed() -> Iterator[SignalFeed]:
    f = SignalFeed("127.0.0.1", 0, token=FEED_TOKEN).start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    ex = SimExchange({"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}).start()
    try:
        yield ex
    finally:
        ex.stop()


def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    poll(cond, timeout, what, 0.05, TimeoutError)


def _config(tmp_path: Path, sim: SimExchange, feed: SignalFeed) -> Path:
    cfg = tmp_path / "e2e.toml"
    cfg.write_text(
        f"""
[accounts.main]
rest_url = "{sim.base_url}"
ws_url = "{sim.ws_url}"
symbols = ["BTCUSDT", "ETHUSDT"]
enable_rate_limit = false
timeout_s = 5.0

[sync]
interval_s = 0.2

[supervisor]
shutdown_grace_s = 3.0

[metrics]
address = "127.0.0.1:0"

[feeds]
signal_url = "{feed.url}"

[logging]
level = "DEBUG"
json = true
"""
    )
    return cfg


def _spawn(cfg: Path, dsn: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    env.update(
        PS_MAIN_API_KEY=API_KEY,
        PS_MAIN_API_SECRET=API_SECRET,
        PS_DATABASE_DSN=dsn,
        PS_FEED_TOKEN=FEED_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "supervision", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_run_adopt_protect_refuse_second_sigterm(
    tmp_path: Path, sim: SimExchange, feed: SignalFeed, dsn: str
) -> None:
    # A position on the exchange that nobody here opened: the supervisor must adopt and
    # protect it.
    opener = CcxtExchange("main", VenueConfig(base_url=sim.base_url, require_credentials=False))
    try:
        reply = opener.place_order(
            OrderRequest(Key("main", "BTCUSDT"), "manual1", OrderKind.ENTRY, "buy", 0.01)
        )
    finally:
        opener.close()
    assert reply.result.value == "accepted", reply
    cfg = _config(tmp_path, sim, feed)
    log1 = tmp_path / "first.log"
    first = _spawn(cfg, dsn, log1)
    store = PostgresStore(dsn, migrate_schema=False)
    try:

        def adopted_and_protected() -> bool:
            assert first.poll() is None, log1.read_text()
            ps = store.positions("main")
            return any(p.status is Status.ACTIVE and p.stop_confirmed for p in ps)

        _until(adopted_and_protected, 60, "adopted position protected")
        assert any(o.symbol == "BTCUSDT" and o.kind == "algo" for o in sim.open_orders())

        # Metrics over HTTP (the port was chosen by the process: read it from its log).
        m = re.search(r"metrics on (http://[0-9.:]+)/metrics", log1.read_text())
        assert m is not None
        with urllib.request.urlopen(m.group(1) + "/metrics", timeout=5) as r:
            exposition = r.read().decode()
        _until(lambda: http_get(m.group(1) + "/healthz")[0] == 200, 30, "healthy")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(exposition)
            for s in fam.samples
        }
        assert samples[("ps_positions", (("status", "active"),))] == 1
        assert (
            samples[("ps_sync_discrepancies_total", (("account", "main"), ("kind", "adopted")))]
            == 1
        )
        assert (
            samples[
                (
                    "ps_orders_total",
                    (("kind", "stop_loss"), ("op", "place"), ("result", "accepted")),
                )
            ]
            >= 1
        )
        assert sum(v for (n, ls), v in samples.items() if n == "ps_sync_runs_total") >= 1

        # A signal on the feed opens a position, protected on the exchange.
        assert feed.wait_for_clients(1, 30)
        feed.send_signal(
            {
                "signal_id": "e2e-signal-1",
                "source": "sniper",
                "account": "main",
                "symbol": "ETHUSDT",
                "side": "long",
                "size": 0.05,
                "stop_loss": 2_900.0,
                "created_at": time.time(),
            }
        )

        def signal_protected() -> bool:
            ps = [p for p in store.positions("main") if p.key.symbol == "ETHUSDT"]
            return any(p.status is Status.ACTIVE and p.stop_confirmed for p in ps)

        _until(signal_protected, 30, "signalled position protected")
        assert sim.orders_sent("e2e-signal-1") == 0  # orders carry the position's ids (I2)
        assert [s.outcome.value for s in store.signals("main")] == ["accepted"]
        # ... and the process answered it on the feed, naming its outcome.
        ack = feed.wait_for_ack("e2e-signal-1", 30)
        assert ack is not None and ack["outcome"] == "accepted", ack
        assert ack["account"] == "main" and ack["symbol"] == "ETHUSDT"

        # The signal feed goes away: /healthz names it.
        feed.stop()
        _until(lambda: "feed:signals" in http_get(m.group(1) + "/healthz")[1], 30, "feed down")
        assert http_get(m.group(1) + "/healthz")[0] == 503

        # I7: a second process for the same account says so and does not trade.
        log2 = tmp_path / "second.log"
        second = _spawn(cfg, dsn, log2)
        assert second.wait(timeout=60) == 1
        assert "already managed by another process" in log2.read_text()

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0, log1.read_text()
        positions = store.positions("main")
        assert len(positions) == 2
        p = next(p for p in positions if p.key.symbol == "BTCUSDT")
        assert p.source == "sync"
        assert p.status is Status.ACTIVE and p.stop_confirmed
        q = next(p for p in positions if p.key.symbol == "ETHUSDT")
        assert q.source == "sniper" and q.signal_id == "e2e-signal-1"
        assert q.status is Status.ACTIVE and q.stop_confirmed
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
        store.close()
    text = log1.read_text() + (tmp_path / "second.log").read_text()
    assert '"msg": "stopped"' in text
    assert API_KEY not in text and API_SECRET not in text and FEED_TOKEN not in text
    assert '"position_id": ' in text
