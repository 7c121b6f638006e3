"""The CLI as a subprocess: configuration errors exit 2 naming the key; --help everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.model import Key, Side, Status
from actors.state import JournalEvent, Position, SignalOutcome, SignalRecord
from supervision.cli import render_history, render_status
from supervision.presentation import unrealised_pnl

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
[accounts.main]
rest_url = "https://fapi.binance.com"
ws_url = "wss://fstream.binance.com"
symbols = ["BTCUSDT"]
"""


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    return subprocess.run(
        [sys.executable, "-m", "supervision", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("https://fapi", "fapi"), "accounts.main.rest_url: not a URL"),
        (GOOD + 'api_secret = "x"\n', "accounts.main.api_secret: secrets come from the env"),
        (GOOD + "[risk]\ndefault_stop_pct = -1\n", "risk.default_stop_pct: must be above 0"),
        (GOOD + '[metrics]\naddress = "nowhere"\n', "metrics.address: must be HOST:PORT"),
        (GOOD + "[sync]\ninterval = 3\n", "sync.interval: unknown key"),
        ("[accounts\n", "not valid TOML"),
        (
            GOOD + '[database]\ndsn = "postgresql://ps@db/ps?password=pw-0123"\n',
            "database.dsn: contains a password",
        ),
        (GOOD.replace("https://", "http://"), "accounts.main.rest_url: http:// to a non-loopback"),
        (GOOD + GOOD.replace("main", "MAIN"), "accounts.MAIN: same name as accounts.main"),
        (
            GOOD
            + GOOD.replace("main", "copy")
            + 'api_key_env = "PS_MAIN_API_KEY"\napi_secret_env = "PS_MAIN_API_SECRET"\n',
            "accounts.copy.api_key_env: accounts.main uses the same key variable",
        ),
        (
            GOOD + '[feeds]\nsignal_url = "wss://s.example/ws?token=pw-0123"\n',
            "feeds.signal_url: must not carry a secret",
        ),
    ],
)
def test_config_errors_exit_2_and_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    env = {"PS_MAIN_API_KEY": "key-0123456789", "PS_MAIN_API_SECRET": "secret-0123456789"}
    r = _cli("run", "--config", str(bad), env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [r.stderr.strip()]  # one line
    assert r.stderr.startswith("configuration error: ") and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "pw-0123" not in r.stderr


def test_missing_secret_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    r = _cli("run", "--config", str(cfg))
    assert r.returncode == 2
    assert "accounts.main: credentials missing" in r.stderr and "PS_MAIN_API_KEY" in r.stderr
    r = _cli("check", "--config", str(cfg))
    assert r.returncode == 2 and "accounts.main: credentials missing" in r.stderr


def test_status_and_history_need_the_database_only(pg_admin: str, tmp_path: Path) -> None:
    """D15: the read-only commands run with no PS_*_API_KEY in the environment (and still
    validate the file), against a real PostgreSQL holding a position and a refused signal."""
    from actors.model import Key
    from infra.store import PostgresStore
    from testkit import pg
    from tests.store.builders import entry_commit, new_position, refusal_commit

    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    key = Key("main", "BTCUSDT")
    with pg.fresh_database(pg_admin) as dsn:
        store = PostgresStore(dsn, migrate_schema=False)
        try:
            store.commit(entry_commit(new_position(41, key)))
            store.commit(refusal_commit(key, "whale-9c1", 1_700_000_100.0))
        finally:
            store.close()
        env = {"PS_DATABASE_DSN": dsn}  # _cli drops every other PS_ variable
        r = _cli("status", "--config", str(cfg), env=env)
        assert r.returncode == 0, r.stderr
        row = r.stdout.splitlines()[1].split()
        assert row[:5] == ["main", "BTCUSDT", "41", "pending_entry", "long"], r.stdout
        r = _cli("history", "BTCUSDT", "--config", str(cfg), env=env)
        assert r.returncode == 0, r.stderr
        assert "== main:BTCUSDT" in r.stdout and "entry_intent" in r.stdout
        assert "sig-41" in r.stdout and "whale-9c1" in r.stdout and "cooldown" in r.stdout
        # Everything but the keys is still checked.
        bad = tmp_path / "bad.toml"
        bad.write_text(GOOD.replace("https://", "http://"))
        r = _cli("status", "--config", str(bad), env=env)
        assert r.returncode == 2 and "accounts.main.rest_url: http://" in r.stderr


def test_check_ok_and_missing_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    env = {"PS_MAIN_API_KEY": "key-0123456789", "PS_MAIN_API_SECRET": "secret-0123456789"}
    r = _cli("check", "--config", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "secret-0123456789" not in r.stdout + r.stderr
    r = _cli("check")
    assert r.returncode == 2 and "--config: required" in r.stderr
    r = _cli("check", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_help_for_each_command() -> None:
    for cmd in ((), ("run",), ("check",), ("status",), ("history",), ("demo",)):
        r = _cli(*cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert "usage:" in r.stdout
    assert _cli().returncode == 2
    assert _cli("history").returncode == 2  # SYMBOL is required


def _pos(pid: int, status: Status, **kw: object) -> Position:
    base: dict[str, object] = {
        "id": pid,
        "key": Key("main", "BTCUSDT"),
        "side": Side.LONG,
        "status": status,
        "source": "sniper",
        "requested_qty": 0.5,
        "stop_price": 95.0,
        "created_at": 1000.0,
        "updated_at": 1000.0,
    }
    base.update(kw)
    return Position(**base)  # type: ignore[arg-type]


def test_render_status_and_pnl() -> None:
    active = _pos(7, Status.ACTIVE, qty=0.5, entry_price=100.0)
    short = _pos(
        8, Status.ACTIVE, key=Key("main", "ETHUSDT"), side=Side.SHORT, qty=2.0, entry_price=10.0
    )
    pending = _pos(9, Status.PENDING_ENTRY, key=Key("main", "SOLUSDT"))
    assert unrealised_pnl(active, 110.0) == pytest.approx(5.0)
    assert unrealised_pnl(short, 11.0) == pytest.approx(-2.0)
    assert unrealised_pnl(pending, 11.0) is None
    marks = {("main", "BTCUSDT"): 110.0, ("main", "ETHUSDT"): 11.0}
    text = render_status([pending, short, active], marks, now=1000.0 + 3725)
    lines = text.splitlines()
    assert lines[0].split() == [
        "ACCOUNT",
        "SYMBOL",
        "ID",
        "STATUS",
        "SIDE",
        "SIZE",
        "ENTRY",
        "STOP",
        "UPNL",
        "AGE",
    ]
    assert lines[1].split() == [
        "main",
        "BTCUSDT",
        "7",
        "active",
        "long",
        "0.5",
        "100",
        "95",
        "+5.00",
        "1h02m",
    ]
    assert lines[2].split()[:4] == ["main", "ETHUSDT", "8", "active"]
    assert "-2.00" in lines[2]
    assert lines[3].split()[3] == "pending_entry" and lines[3].split()[8] == "-"
    assert render_status([], {}, 0.0) == "no positions"


def test_render_history() -> None:
    ev = JournalEvent(7, "entry_intent", None, Status.PENDING_ENTRY, 1000.0, {"source": "sniper"})
    ev2 = JournalEvent(7, "entry_fill", Status.PENDING_ENTRY, Status.PENDING_SL, 1001.5)
    sig = SignalRecord(
        Key("main", "BTCUSDT"), "s-2", "volume", SignalOutcome.DUPLICATE, "position_open", 1000.2, 7
    )
    text = render_history([(ev, "OpenSignal"), (ev2, "ExchangeOutcome")], [sig])
    assert "entry_intent" in text and "- -> pending_entry" in text and "source=sniper" in text
    assert "pending_entry -> pending_sl" in text
    assert "s-2" in text and "duplicate" in text and "position_open" in text


def test_marks_from_the_exchange() -> None:
    from infra.config import parse_config
    from sim.exchange import SimExchange
    from supervision.cli.status import fetch_marks

    ex = SimExchange({"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}).start()
    try:
        doc = {
            "accounts": {
                "main": {
                    "rest_url": ex.base_url,
                    "ws_url": ex.ws_url,
                    "symbols": ["BTCUSDT"],
                    "credentials": "dummy",
                }
            }
        }
        marks = fetch_marks(parse_config(doc, {}))
    finally:
        ex.stop()
    assert marks[("main", "BTCUSDT")] == pytest.approx(60_000.0)
    assert ("main", "ETHUSDT") in marks


def test_a_runtime_error_line_is_redacted(tmp_path: Path) -> None:
    """D11: the ``error:`` line main() prints itself (not through the log handler) hides the
    DSN's password in both spellings. The failure is injected (a unit-level fake in a child
    process): no real path is known to put the DSN in an exception's text today."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    dsn = "postgresql://ps@db.invalid/ps?password=p%40ss-hunter2"
    program = (
        "import sys, supervision.cli as cli, supervision.cli.status as status\n"
        "def boom(cfg, fn):\n"
        "    raise RuntimeError(f'cannot use {cfg.database.dsn} (password p@ss-hunter2)')\n"
        "status.with_store = boom\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    r = subprocess.run(
        [sys.executable, "-c", program, "status", "--config", str(cfg)],
        cwd=ROOT,
        env={**base, "PS_DATABASE_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 1, r.stderr
    assert "hunter2" not in r.stderr and "p%40ss" not in r.stderr, r.stderr
    assert "error: cannot use postgresql://ps@db.invalid/ps?password=*** (password ***)" in r.stderr


def test_archive_command_exports_and_drops_old_months(pg_admin: str, tmp_path: Path) -> None:
    """``archive --before``: a dry run changes nothing; the run writes the file, drops the
    months before DATE (database only, no keys) and says what it kept; bad dates exit 2."""
    import gzip
    import json

    import psycopg

    from testkit import pg

    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    with pg.fresh_database(pg_admin) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT ps_month_partitions('2026-01-01', now())")
            conn.execute(
                "INSERT INTO journal (account, symbol, kind, at, detail, cause_type, cause, "
                "recorded_at) VALUES ('main', 'BTCUSDT', 'old', 1.0, '{}', 'T', '{}', "
                "'2026-02-03 00:00+00')"
            )
        env = {"PS_DATABASE_DSN": dsn}
        r = _cli("archive", "--config", str(cfg), "--before", "2026-04", "--dry-run", env=env)
        assert r.returncode == 0, r.stderr
        assert "would drop months 2026-01, 2026-02, 2026-03 (journal 1, signals 0 rows)" in r.stdout
        out = tmp_path / "h.jsonl.gz"
        r = _cli("archive", "--config", str(cfg), "--before", "2026-04", "--out", str(out), env=env)
        assert r.returncode == 0, r.stderr
        assert f"exported to {out}" in r.stdout
        with gzip.open(out, "rt") as f:
            assert [json.loads(line)["row"]["kind"] for line in f] == ["old"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            left = conn.execute("SELECT count(*) FROM journal WHERE kind = 'old'").fetchone()
        assert left == (0,)
        for bad in ("April", "2999-01"):
            r = _cli("archive", "--config", str(cfg), "--before", bad, "--dry-run", env=env)
            assert r.returncode == 2 and r.stderr.startswith("archive: "), r.stderr
