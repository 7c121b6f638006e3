"""How many log bytes, and database rows and bytes, a thousand signals cost: the real CLI
(``python -m supervision run``, outside supervisord) logging to a rotated file, against
``sim/`` and a real PostgreSQL.

The mix is that of the soak of issue 14: the four demo strategies (``sim.sources``) signal in
overlapping bursts with replayed ids over ``--symbols`` symbols at ``--rate`` signals a
second, prices move every 250 ms (stops and take-profits are hit, positions close and open
again), the sync runs every 2 s. When ``--signals`` were sent and every one is answered, the
process gets SIGTERM; the size of ``ps.log`` and its rotated files is the log; the rows and
the bytes on disk (with indexes, every partition) the tables that grow with the signals
gained during the run are the storage. Run::

    .venv/bin/python -m tests.process.log_budget --signals 2000 [--json]

``tests/process/test_log_rotation.py`` runs it briefly with a small ``max_bytes`` to check
the rotation of a real run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.exchange import SimExchange
from sim.signals import SignalFeed
from sim.sources import SignalSources
from sim.symbols import make_symbols
from testkit import pg
from testkit.waiting import poll

__all__ = ["LogBudget", "measure"]

ROOT = Path(__file__).resolve().parents[2]
FEED_TOKEN = "log-budget-feed-token-7c1e"
#: Average signals per burst of ``SignalSources`` (1 + 0.5 * 2 more sources, 10 % replays).
_PER_BURST = 2.1


@dataclass(frozen=True)
class LogBudget:
    signals: int
    seconds: float
    log_bytes: int
    log_lines: int
    files: int
    stderr_bytes: int
    exit_code: int
    positions: int
    rows: dict[str, int]
    table_bytes: dict[str, int]
    journal_kinds: dict[str, int]

    @property
    def bytes_per_1000(self) -> float:
        return 1000.0 * self.log_bytes / max(1, self.signals)

    def line(self) -> str:
        return (
            f"log budget: signals={self.signals} positions={self.positions} "
            f"seconds={self.seconds:.0f} bytes={self.log_bytes} lines={self.log_lines} "
            f"files={self.files} bytes_per_1000_signals={self.bytes_per_1000:.0f} "
            f"lines_per_1000_signals={1000.0 * self.log_lines / max(1, self.signals):.0f} "
            f"stderr_bytes={self.stderr_bytes} exit={self.exit_code}\n"
            "storage per 1,000 signals: "
            + ", ".join(
                f"{t} {1000.0 * n / max(1, self.signals):.0f} rows "
                f"{1000.0 * self.table_bytes.get(t, 0) / max(1, self.signals) / 2**20:.2f} MiB"
                for t, n in self.rows.items()
            )
            + "\njournal rows by kind: "
            + ", ".join(f"{k} {n}" for k, n in self.journal_kinds.items())
        )


def storage(dsn: str) -> tuple[dict[str, int], dict[str, int]]:
    """Rows and bytes on disk (heap, indexes, TOAST, every partition) of the tables that grow
    with signals (:data:`~infra.store.retention.GROWING_TABLES`); 0 for one the schema lacks."""
    import psycopg

    from infra.store.retention import GROWING_TABLES, table_bytes

    rows: dict[str, int] = {}
    size: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for t in GROWING_TABLES:
            size[t] = table_bytes(conn, t) or 0
            got = conn.execute(f"SELECT count(*) FROM {t}").fetchone() if size[t] else None
            rows[t] = int(got[0]) if got else 0
    return rows, size


def _config(
    path: Path,
    sim: SimExchange,
    feed: SignalFeed,
    log_file: Path,
    *,
    json_lines: bool,
    max_bytes: int,
    backups: int,
) -> None:
    symbols = ", ".join(f'"{s}"' for s in sim.initial_prices)
    path.write_text(
        f"""# tests/process/log_budget.py
[accounts.main]
rest_url = "{sim.base_url}"
ws_url = "{sim.ws_url}"
symbols = [{symbols}]
enable_rate_limit = false
timeout_s = 5.0

[signal_policy]
reentry = "allow"

[sync]
interval_s = 2.0

[supervisor]
shutdown_grace_s = 5.0

[metrics]
address = "127.0.0.1:0"

[feeds]
signal_url = "{feed.url}"

[logging]
level = "INFO"
json = {"true" if json_lines else "false"}
file = "{log_file}"
max_bytes = {max_bytes}
backups = {backups}
""",
        encoding="utf-8",
    )


def measure(
    workdir: Path,
    dsn: str,
    *,
    signals: int = 2000,
    rate_per_s: float = 8.0,
    n_symbols: int = 80,
    json_lines: bool = False,
    max_bytes: int = 64 * 1024 * 1024,
    backups: int = 100,
    seed: int = 14,
) -> LogBudget:
    """One run; ``dsn`` an empty, migrated database. Leaves the log files in ``workdir``."""
    from infra.store import PostgresStore

    rows0, bytes0 = storage(dsn)
    log_file = workdir / "ps.log"
    stderr_file = workdir / "stderr.log"
    with (
        SimExchange(make_symbols(n_symbols), seed=seed) as sim,
        SignalFeed("127.0.0.1", 0, token=FEED_TOKEN, redeliver=True) as feed,
    ):
        cfg = workdir / "ps.toml"
        _config(
            cfg, sim, feed, log_file, json_lines=json_lines, max_bytes=max_bytes, backups=backups
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
        env.update(
            PS_MAIN_API_KEY="log-budget-api-key-not-a-secret",
            PS_MAIN_API_SECRET="log-budget-api-secret-not-a-secret",
            PS_DATABASE_DSN=dsn,
            PS_FEED_TOKEN=FEED_TOKEN,
            PYTHONUNBUFFERED="1",
        )
        sources = SignalSources(
            feed.send_signal,
            list(sim.initial_prices),
            sim.mark_price,
            rate_per_s=rate_per_s / _PER_BURST,
            seed=seed,
        )
        with stderr_file.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "supervision", "run", "--config", str(cfg)],
                cwd=ROOT,
                env=env,
                stdout=err,
                stderr=subprocess.STDOUT,
            )
        t0 = time.monotonic()
        try:
            if not feed.wait_for_clients(1, 60.0):
                raise RuntimeError(f"the supervisor did not connect: {stderr_file.read_text()}")
            sim.start_random_walk(0.25, 0.0005)
            sources.start()
            poll(lambda: sources.sent >= signals, 3600.0, "signals sent", 0.05)
            sources.stop()
            poll(lambda: not feed.pending(), 120.0, "every signal answered", 0.05)
            sim.stop_random_walk()
            seconds = time.monotonic() - t0
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        finally:
            sources.stop()
            sim.stop_random_walk()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    files = sorted(workdir.glob("ps.log*"))
    data = b"".join(f.read_bytes() for f in files)
    store = PostgresStore(dsn, migrate_schema=False)
    try:
        positions = len(store.positions("main"))
    finally:
        store.close()
    rows1, bytes1 = storage(dsn)
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        kinds = {
            str(k): int(n)
            for k, n in conn.execute(
                "SELECT kind, count(*) FROM journal GROUP BY kind ORDER BY 2 DESC"
            ).fetchall()
        }
    return LogBudget(
        signals=sources.sent,
        seconds=seconds,
        log_bytes=len(data),
        log_lines=data.count(b"\n"),
        files=len(files),
        stderr_bytes=stderr_file.stat().st_size,
        exit_code=code,
        positions=positions,
        rows={t: rows1[t] - rows0[t] for t in rows1},
        table_bytes={t: bytes1[t] - bytes0[t] for t in rows1},
        journal_kinds=kinds,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.process.log_budget", description=__doc__)
    ap.add_argument("--signals", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=8.0, help="signals a second")
    ap.add_argument("--symbols", type=int, default=80)
    ap.add_argument("--json", action="store_true", help="JSON lines instead of text lines")
    args = ap.parse_args(argv)
    admin = pg.admin_dsn()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="ps-log-budget-") as tmp,
            pg.fresh_database(admin) as dsn,
        ):
            r = measure(
                Path(tmp),
                dsn,
                signals=args.signals,
                rate_per_s=args.rate,
                n_symbols=args.symbols,
                json_lines=args.json,
            )
            kinds: dict[str, int] = {}
            for f in sorted(Path(tmp).glob("ps.log*")):
                for line in f.read_text(encoding="utf-8").splitlines():
                    key = _kind(line, args.json)
                    kinds[key] = kinds.get(key, 0) + len(line) + 1
            for key, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:12]:
                print(f"  {n:>9} bytes  {key}")
    finally:
        pg.shutdown()
    print(r.line())
    return 0 if r.exit_code == 0 else 1


def _kind(line: str, json_lines: bool) -> str:
    """A line's kind for the breakdown: level, logger and the message's first two words."""
    if json_lines:
        d: dict[str, Any] = json.loads(line)
        level, logger, msg = d["level"], d["logger"], str(d["msg"])
    else:
        parts = line.split(" ", 3)
        level, logger = parts[1], parts[2]
        msg = parts[3] if len(parts) > 3 else ""
        if msg.startswith("["):
            msg = msg.split("] ", 1)[-1]
    words = [w for w in msg.split() if not any(c.isdigit() for c in w)][:2]
    return f"{level} {logger} {' '.join(words)}"


if __name__ == "__main__":
    sys.exit(main())
