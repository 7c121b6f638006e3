"""``python -m demo --duration`` as a subprocess: sim/ exchange, four sources, a
real PostgreSQL; exits 0, refuses duplicates, leaves every open position protected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.store import PostgresStore
from testkit import pg

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_and_protects(tmp_path: Path, pg_admin: str) -> None:
    text = (ROOT / "deploy" / "demo.toml").read_text()
    for port in ("18900", "18901", "18902", "9490"):
        text = text.replace(f":{port}", ":0")
    cfg = tmp_path / "demo.toml"
    cfg.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    with pg.fresh_database(pg_admin) as dsn:
        env["PS_DATABASE_DSN"] = dsn
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "demo",
                "-c",
                str(cfg),
                "--duration",
                "8",
                "--no-ui",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert "duplicates refused" in r.stdout
        dup_line = next(ln for ln in r.stdout.splitlines() if "duplicates refused" in ln)
        assert int(dup_line.split(":")[1]) > 0, r.stdout
        store = PostgresStore(dsn, migrate_schema=False)
        try:
            # Account "main" trades on Binance's wire, "bybit" on Bybit's: both side by side.
            positions = {a: store.positions(a) for a in ("main", "bybit")}
            signals = {a: store.signals(a) for a in ("main", "bybit")}
        finally:
            store.close()
    for account in ("main", "bybit"):
        assert positions[account], (account, r.stderr[-3000:])
        assert any(s.outcome.value == "duplicate" for s in signals[account]), account
        for p in positions[account]:
            if not p.status.terminal:
                assert p.stop_confirmed, p
