"""Any document, any environment, any file: a Config or a ConfigError, nothing else.

The CLI turns a :class:`ConfigError` into exit code 2 and one line; any other exception would
be exit 1 with a traceback in the log (the review found two: invalid UTF-8 and deep nesting).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.config import ConfigError, dsn_secrets, load_config, parse_config
from supervision.wiring import supervisor_config

pytestmark = pytest.mark.timeout(120)

ENV = {"PS_MAIN_API_KEY": "k" * 16, "PS_MAIN_API_SECRET": "s" * 32}
BASE: dict[str, Any] = {
    "accounts": {
        "main": {
            "rest_url": "https://fapi.binance.com",
            "ws_url": "wss://fstream.binance.com",
            "symbols": ["BTCUSDT"],
        }
    }
}
A = ("accounts", "main")
KEYS: list[tuple[str, ...]] = [
    *[
        (*A, k)
        for k in (
            "exchange",
            "rest_url",
            "ws_url",
            "symbols",
            "workers",
            "enable_rate_limit",
            "timeout_s",
            "credentials",
            "api_key_env",
            "api_secret_env",
            "allow_insecure_transport",
            "risk",
        )
    ],
    ("accounts", "other"),
    ("accounts",),
    *[("risk", k) for k in ("default_stop_pct", "max_notional", "max_open_positions")],
    *[("signal_policy", k) for k in ("reentry", "cooldown_s", "max_signal_age_s")],
    ("sync", "interval_s"),
    *[("restart", k) for k in ("max_restarts", "window_s", "min_backoff_s", "jitter")],
    ("supervisor", "passivate_after_s"),
    *[("database", k) for k in ("dsn", "dsn_env", "embedded_dir", "account_lock_wait")],
    *[("metrics", k) for k in ("address", "enabled")],
    *[("feeds", k) for k in ("signal_url", "token_env", "silence_timeout_s")],
    *[("logging", k) for k in ("level", "json", "file", "max_bytes", "backups")],
]
URLISH = st.sampled_from(
    ["http://", "https://", "ws://", "wss://", "postgresql://", "host=", "password=", ""]
).flatmap(lambda p: st.text(max_size=40).map(lambda t: p + t))
# Characters that trip parsers: NUL, newline, non-ASCII digits, URL and DSN syntax.
AWKWARD = st.lists(
    st.sampled_from(
        ["a", "1", ":", "\x00", "\n", "\u00b2", "\u0663", "[", "@", "%", "=", "'", " "]
    ),
    max_size=12,
).map("".join)
SCALARS = st.one_of(
    st.text(max_size=40),
    URLISH,
    AWKWARD,
    st.integers(),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    edits=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4),
    env_dsn=st.none() | URLISH,
    with_keys=st.booleans(),
)
def test_parse_config_raises_only_config_errors(
    edits: list[tuple[tuple[str, ...], Any]], env_dsn: str | None, with_keys: bool
) -> None:
    doc = copy.deepcopy(BASE)
    for path, value in edits:
        t: Any = doc
        for p in path[:-1]:
            if not isinstance(t.get(p), dict):
                t[p] = {}
            t = t[p]
        t[path[-1]] = value
    env = dict(ENV) if with_keys else {}
    if env_dsn is not None:
        env["PS_DATABASE_DSN"] = env_dsn
    try:
        cfg = parse_config(doc, env, require_credentials=with_keys)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    cfg.secret_values()
    supervisor_config(cfg)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tail=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_load_config_raises_only_config_errors(tail: bytes) -> None:
    head = b'[accounts.main]\nrest_url = "https://fapi.binance.com"\nsymbols = ["BTCUSDT"]\n'
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.toml"
        path.write_bytes(head + tail)
        try:
            load_config(path, ENV)
        except ConfigError as exc:
            assert "\n" not in str(exc)


@given(st.text(max_size=60))
def test_dsn_secrets_never_raises(dsn: str) -> None:
    assert all(isinstance(s, str) and s for s in dsn_secrets(dsn))
