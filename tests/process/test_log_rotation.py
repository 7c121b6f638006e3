"""Logs for weeks outside supervisord (issue 14, item 5): ``[logging] file``, ``max_bytes`` and
``backups`` put the log lines in a file rotated by size, so the log never takes more than
``(backups + 1) * max_bytes``; a file that cannot be opened is a one-line configuration error."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, parse_config
from supervision import cli
from supervision.cli.common import EXIT_CONFIG
from supervision.cli.run import setup_run_logging
from testkit import pg
from tests.process import log_budget

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cr3t-live-secret-0123456789abcdef"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    filters = {h: list(h.filters) for h in handlers}
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h, fs in filters.items():
        h.filters[:] = fs
    root.setLevel(level)


def _doc(**logging_keys: Any) -> dict[str, Any]:
    return {
        "accounts": {
            "main": {
                "rest_url": "http://127.0.0.1:1",
                "ws_url": "ws://127.0.0.1:1",
                "symbols": ["BTCUSDT"],
                "credentials": "dummy",
            }
        },
        "logging": logging_keys,
    }


def test_logging_keys_are_read_and_checked() -> None:
    cfg = parse_config(_doc(file="/var/log/ps/ps.log", max_bytes=1_000_000, backups=4), {})
    assert (cfg.logging.file, cfg.logging.max_bytes, cfg.logging.backups) == (
        "/var/log/ps/ps.log",
        1_000_000,
        4,
    )
    default = parse_config(_doc(), {}).logging
    assert (default.file, default.max_bytes, default.backups) == (None, 100 * 1024 * 1024, 10)
    for keys, message in (
        ({"max_bytes": 100}, "logging.max_bytes: must be at least 4096"),
        ({"backups": 0}, "logging.backups: must be at least 1"),
        ({"file": " "}, "logging.file: must be a file path"),
        ({"file": 7}, "logging.file: must be a string"),
        ({"rotate": True}, "logging.rotate: unknown key"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config(_doc(**keys), {})


def test_the_log_file_rotates_by_size_and_keeps_backups(
    tmp_path: Path, restore_logging: None
) -> None:
    path = tmp_path / "ps.log"
    env = {"PS_MAIN_API_KEY": "k" * 16, "PS_MAIN_API_SECRET": SECRET}
    doc = _doc(file=str(path), max_bytes=4096, backups=3)
    doc["accounts"]["main"]["credentials"] = "env"
    cfg = parse_config(doc, env)
    setup_run_logging(cfg, argparse.Namespace())
    log = logging.getLogger("test.rotation")
    for i in range(2000):  # about 200 KB of lines: many rollovers
        log.info("line %05d secret=%s", i, SECRET, extra={"key": "main:BTCUSDT"})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ps.log", "ps.log.1", "ps.log.2", "ps.log.3"]
    sizes = [(tmp_path / f).stat().st_size for f in files]
    assert all(0 < s <= 4096 for s in sizes), sizes
    assert sum(sizes) <= (3 + 1) * 4096
    newest = path.read_text(encoding="utf-8").splitlines()
    assert newest[-1].endswith("INFO test.rotation [main BTCUSDT #-] line 01999 secret=***")
    older = (tmp_path / "ps.log.1").read_text(encoding="utf-8").splitlines()
    assert int(older[-1].split("line ")[1][:5]) + 1 == int(newest[0].split("line ")[1][:5])
    text = "".join((tmp_path / f).read_text(encoding="utf-8") for f in files)
    assert SECRET not in text


def test_a_log_file_that_cannot_be_opened_is_a_configuration_error(
    tmp_path: Path, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ps.toml"
    missing = tmp_path / "no" / "such" / "dir" / "ps.log"
    config.write_text(
        "[accounts.main]\n"
        'rest_url = "http://127.0.0.1:1"\n'
        'ws_url = "ws://127.0.0.1:1"\n'
        'symbols = ["BTCUSDT"]\n'
        'credentials = "dummy"\n'
        "[metrics]\n"
        "enabled = false\n"
        "[logging]\n"
        f'file = "{missing}"\n',
        encoding="utf-8",
    )
    code = cli.main(["run", "--config", str(config), "--duration", "0.1"])
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert err.strip().startswith("configuration error: logging.file: cannot be opened:")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(
        isinstance(h, logging.handlers.RotatingFileHandler) for h in logging.getLogger().handlers
    )


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_run_outside_supervisord_rotates_its_log_file(tmp_path: Path, pg_admin: str) -> None:
    """The real CLI, its lines in a 8 KiB file with 2 backups: the log rotates during the
    run, never takes more than 3 x 8 KiB, nothing goes to stderr, SIGTERM still exits 0."""
    with pg.fresh_database(pg_admin) as dsn:
        r = log_budget.measure(
            tmp_path, dsn, signals=150, rate_per_s=60.0, n_symbols=10, max_bytes=8192, backups=2
        )
    assert r.exit_code == 0
    assert r.signals >= 150 and r.positions > 0
    # Refusals are in the signal history only; the journal holds changes (issue 14, item 3).
    assert r.rows["signals"] > 0 and r.journal_kinds.get("entry_intent", 0) > 0
    assert "signal_refused" not in r.journal_kinds, r.journal_kinds
    names = sorted(p.name for p in tmp_path.glob("ps.log*"))
    assert names == ["ps.log", "ps.log.1", "ps.log.2"]  # rotated, the oldest dropped
    assert all((tmp_path / n).stat().st_size <= 8192 for n in names)
    assert r.log_bytes <= 3 * 8192
    assert r.stderr_bytes == 0
    last = (tmp_path / "ps.log").read_text(encoding="utf-8").splitlines()[-1]
    assert last.endswith("INFO supervision.app stopped")
