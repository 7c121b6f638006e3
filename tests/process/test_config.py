"""Configuration: TOML to frozen dataclasses, mapping to the core's types, errors name keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from actors.state import Reentry
from infra.config import ConfigError, load_config, parse_config

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PS_MAIN_API_KEY": "k" * 16, "PS_MAIN_API_SECRET": "s" * 32}


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "accounts": {
            "main": {
                "rest_url": "https://fapi.binance.com",
                "ws_url": "wss://fstream.binance.com",
                "symbols": ["BTCUSDT", "ETHUSDT"],
            }
        }
    }
    for path, value in over.items():
        *parents, last = path.split("__")
        t = doc
        for p in parents:
            t = t.setdefault(p, {})
        t[last] = value
    return doc


def _error(doc: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(doc, ENV if env is None else env)
    return str(e.value)


def test_defaults_and_mapping() -> None:
    cfg = parse_config(_doc(), ENV)
    acc = cfg.accounts["main"]
    assert acc.exchange == "binanceusdm" and acc.workers == 4 and acc.enable_rate_limit
    assert acc.api_key == ENV["PS_MAIN_API_KEY"]
    assert cfg.metrics.address == "127.0.0.1:9490"
    assert cfg.database.embedded and cfg.database.embedded_dir == ".data/pg"
    sc = cfg.supervisor_config()
    assert sc.policy.reentry is Reentry.COOLDOWN and sc.policy.cooldown_s == 60.0
    assert sc.policy.default_stop_pct == 0.02 and sc.policy.max_notional is None
    assert sc.restart.max_restarts == 5 and sc.restart.window_s == 60.0
    assert sc.shutdown_grace_s == 10.0 and sc.workers_per_account == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sync.interval_s = 1.0  # type: ignore[misc]


def test_overrides_map_to_policy_and_restart() -> None:
    doc = _doc(
        risk__default_stop_pct=0.05,
        risk__max_notional=1000,
        risk__max_open_positions=3,
        signal_policy__reentry="never",
        signal_policy__cooldown_s=5,
        restart__max_restarts=2,
        restart__jitter=0.5,
        accounts__main__risk__max_notional=250.0,
        sync__interval_s=0.5,
        metrics__address="0.0.0.0:0",
        logging__level="debug",
        logging__json=True,
    )
    cfg = parse_config(doc, ENV)
    sc = cfg.supervisor_config()
    assert sc.policy.reentry is Reentry.NEVER and sc.policy.cooldown_s == 5.0
    assert sc.policy.max_notional == 1000.0 and sc.policy.default_stop_pct == 0.05
    assert sc.account_policies["main"].max_notional == 250.0
    assert sc.account_policies["main"].default_stop_pct == 0.05
    assert cfg.accounts["main"].risk.max_open_positions == 3
    assert sc.restart.max_restarts == 2 and sc.restart.jitter == 0.5
    assert cfg.metrics.port == 0 and cfg.logging.level == "DEBUG" and cfg.logging.json


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"accounts__main__rest_url": "fapi.binance.com"}, "accounts.main.rest_url: not a URL"),
        ({"accounts__main__ws_url": "https://x"}, "accounts.main.ws_url: not a URL"),
        ({"accounts__main__symbols": []}, "accounts.main.symbols: the allow-list"),
        ({"accounts__main__symbols": ["btc/usdt"]}, "accounts.main.symbols[0]:"),
        ({"accounts__main__workers": 0}, "accounts.main.workers: must be at least 1"),
        ({"accounts__main__timeout_s": "10"}, "accounts.main.timeout_s: must be a finite number"),
        ({"accounts__main__api_key": "abc"}, "accounts.main.api_key: secrets come from the env"),
        ({"feeds__token": "abc"}, "feeds.token: secrets come from the environment"),
        ({"accounts__main__colour": 1}, "accounts.main.colour: unknown key"),
        ({"risk__default_stop_pct": 2}, "risk.default_stop_pct:"),
        ({"risk__max_open_positions": 0}, "risk.max_open_positions: must be at least 1"),
        ({"signal_policy__reentry": "sometimes"}, "signal_policy.reentry: must be one of"),
        ({"restart__max_backoff_s": 0.01}, "restart.max_backoff_s: must be at least min"),
        ({"metrics__address": "localhost"}, "metrics.address: must be HOST:PORT"),
        ({"database__dsn": "postgresql://u:pw@db/x"}, "database.dsn: contains a password"),
        ({"database__dsn": "host=db password=pw"}, "database.dsn: contains a password"),
        ({"logging__level": "LOUD"}, "logging.level: must be one of"),
        ({"feeds__signal_url": "http://x"}, "feeds.signal_url: not a URL"),
        ({"surprise": {}}, "surprise: unknown key"),
    ],
)
def test_errors_name_the_key(over: dict[str, Any], expected: str) -> None:
    assert _error(_doc(**over)).startswith(expected)


def test_missing_credentials_and_dummy_only_for_loopback() -> None:
    assert "PS_MAIN_API_KEY" in _error(_doc(), env={})
    msg = _error(_doc(accounts__main__credentials="dummy"), env={})
    assert msg.startswith('accounts.main.rest_url: credentials = "dummy" is only allowed')
    cfg = parse_config(
        _doc(
            accounts__main__credentials="dummy",
            accounts__main__rest_url="http://127.0.0.1:8080",
            accounts__main__ws_url="ws://localhost:8081",
        ),
        {},
    )
    assert cfg.secret_values() == ()


def test_dsn_from_environment_is_a_secret() -> None:
    env = {**ENV, "PS_DATABASE_DSN": "postgresql://ps:hunter2-long@db:5432/ps"}
    cfg = parse_config(_doc(), env)
    assert cfg.database.dsn == env["PS_DATABASE_DSN"] and not cfg.database.embedded
    assert "hunter2-long" in cfg.secret_values()
    assert "hunter2" not in repr(cfg)


def test_shipped_configs_are_valid(tmp_path: Path) -> None:
    for name in ("demo.toml", "example.toml"):
        cfg = load_config(ROOT / "deploy" / name, ENV)
        assert cfg.accounts


def test_unreadable_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", ENV)
    bad = tmp_path / "bad.toml"
    bad.write_text("[accounts\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, ENV)
