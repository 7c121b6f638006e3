"""Structured logs: context fields on position lines, JSON lines, secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from infra.config import parse_config
from infra.logs import setup_logging
from testkit.world import signal
from tests.process.harness import MetricsWorld

pytestmark = pytest.mark.timeout(60)

SECRET_KEY = "AKIA-live-key-9f8e7d6c5b4a"
SECRET = "s3cr3t-live-secret-0123456789abcdef"
TOKEN = "feed-token-abcdef012345"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    filters = {h: list(h.filters) for h in handlers}
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h, fs in filters.items():
        h.filters[:] = fs
    root.setLevel(level)


def _config_secrets() -> tuple[str, ...]:
    env = {"PS_MAIN_API_KEY": SECRET_KEY, "PS_MAIN_API_SECRET": SECRET, "PS_FEED_TOKEN": TOKEN}
    doc = {
        "accounts": {
            "main": {
                "rest_url": "https://fapi.binance.com",
                "ws_url": "wss://fstream.binance.com",
                "symbols": ["BTCUSDT"],
            }
        },
        "feeds": {"signal_url": "wss://signals.example.com/ws"},
    }
    cfg = parse_config(doc, env)
    assert SECRET not in repr(cfg) and SECRET_KEY not in repr(cfg)
    return cfg.secret_values()


def test_secrets_never_logged(restore_logging: None) -> None:
    secrets = _config_secrets()
    assert set(secrets) == {SECRET_KEY, SECRET, TOKEN}
    for json_lines in (False, True):
        out = io.StringIO()
        setup_logging("DEBUG", json_lines, secrets, stream=out)
        log = logging.getLogger("test.secrets")
        log.info("key=%s secret=%s", SECRET_KEY, SECRET)
        log.warning("headers %r", {"X-MBX-APIKEY": SECRET_KEY})
        log.info("token in msg " + TOKEN, extra={"detail": f"url?token={TOKEN}"})
        try:
            raise RuntimeError(f"signature failed for {SECRET}")
        except RuntimeError:
            log.exception("call failed")
        text = out.getvalue()
        assert "***" in text
        for s in secrets:
            assert s not in text, (json_lines, text)
        assert "signature failed for ***" in text


def test_position_lines_carry_account_symbol_and_id(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("INFO", True, (), stream=out)
    with MetricsWorld({"BTCUSDT": 100.0}) as w:
        w.tell(signal("BTCUSDT", "sniper"), signal("BTCUSDT", "volume"))
        w.settle()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    about = [d for d in lines if d["logger"] == "actors.position_actor"]
    assert about, lines
    for d in about:
        assert d["account"] == "main" and d["symbol"] == "BTCUSDT", d
    transitions = [d for d in about if "->" in d["msg"]]
    assert transitions and all(isinstance(d["position_id"], int) for d in transitions)
    assert any("duplicate" in d["msg"] and d["position_id"] != "-" for d in about)


def test_text_format(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("INFO", False, (), stream=out)
    logging.getLogger("x").info("hello", extra={"key": "main:ETHUSDT", "position_id": 7})
    logging.getLogger("x").info("plain")
    first, second = out.getvalue().splitlines()
    assert first.endswith("INFO x [main ETHUSDT #7] hello")
    assert second.endswith("INFO x plain")
