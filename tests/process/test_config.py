"""Configuration: TOML to frozen dataclasses, mapping to the core's types, errors name keys."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from actors.state import Reentry
from infra.config import ConfigError, load_config, parse_config
from supervision.wiring import supervisor_config

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
    sc = supervisor_config(cfg)
    assert sc.policy.reentry is Reentry.COOLDOWN and sc.policy.cooldown_s == 60.0
    assert sc.policy.default_stop_pct == 0.02 and sc.policy.max_notional is None
    assert sc.restart.max_restarts == 5 and sc.restart.window_s == 60.0
    assert sc.shutdown_grace_s == 10.0 and sc.account_workers == {"main": 4}
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
    sc = supervisor_config(cfg)
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
        # Odd characters: an error naming the key, never a ValueError with a traceback.
        ({"metrics__address": "localhost:\u00b2"}, "metrics.address: must be HOST:PORT"),
        ({"database__embedded_dir": "pg\x00x"}, "database.embedded_dir: contains a NUL"),
        ({"accounts__main__symbols": ["BTCUSDT\n"]}, "accounts.main.symbols[0]:"),
        ({"accounts__main__api_key_env": "PS_KEY\n"}, "accounts.main.api_key_env: not an env"),
        ({"accounts__main__exchange": "x" * 10_000}, "accounts.main.exchange: unsupported"),
    ],
)
def test_errors_name_the_key(over: dict[str, Any], expected: str) -> None:
    msg = _error(_doc(**over))
    assert msg.startswith(expected), msg
    assert "\n" not in msg and len(msg) < 400


def test_an_account_name_with_a_newline_is_refused() -> None:
    doc = {"accounts": {"main\n": _doc()["accounts"]["main"]}}
    assert _error(doc).startswith("accounts.main : account name must be")


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


# --- D11: a DSN's password, in any form libpq accepts ----------------------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://ps:pw-long@db/x",
        "postgresql://ps@db/x?password=pw-long",  # the review's case: query, not user info
        "postgres://ps@db:5432/x?sslmode=require&password=pw-long",
        "postgresql://ps@db/x?pass%77ord=pw-long",  # a percent-encoded key is still "password"
        "postgresql://ps@db/x?sslpassword=pw-long",  # the client key's passphrase
        "postgresql://ps:pw-long@db1:5432,db2:5433/x",
        "host=db password=pw-long",
        "host=db  password = 'pw long'",
        "dbname=x password='it\\'s-long' host=db",
        "host=db password=",  # written, even if empty
        "host=db sslpassword=pw-long",
    ],
)
def test_a_password_written_in_the_file_dsn_is_refused(dsn: str) -> None:
    msg = _error(_doc(database__dsn=dsn))
    assert msg.startswith("database.dsn: contains a password"), msg
    assert "pw" not in msg.replace("password", "") and "long" not in msg


def test_a_dsn_without_a_password_is_accepted() -> None:
    for dsn in (
        "postgresql://ps@db.internal:5432/ps?sslmode=verify-full",
        "host=db dbname=ps user=ps passfile=/etc/ps/pgpass",  # a path, not a secret
        "postgresql://ps:@db/ps",  # an empty password: libpq sends none
    ):
        assert parse_config(_doc(database__dsn=dsn), ENV).database.dsn == dsn


def test_an_unparsable_dsn_is_refused_without_quoting_it() -> None:
    # libpq's own message would quote "long-tail", a piece of the mis-quoted password.
    msg = _error(_doc(database__dsn="host=db password=hunter2 long-tail"))
    assert msg.startswith("database.dsn: not a valid PostgreSQL connection string"), msg
    assert "hunter2" not in msg and "long-tail" not in msg
    env = {**ENV, "PS_DATABASE_DSN": "host=db password=hunter2 long-tail"}
    msg = _error(_doc(), env)
    assert msg.startswith("database.dsn_env: PS_DATABASE_DSN is not a valid"), msg
    assert "hunter2" not in msg and "long-tail" not in msg
    assert _error(_doc(database__dsn="host=db\x00 password=x")).startswith("database.dsn: not a")


@pytest.mark.parametrize(
    ("dsn", "password", "written"),
    [
        ("postgresql://ps:hunter2-long@db:5432/ps", "hunter2-long", "hunter2-long"),
        ("postgresql://ps@db/ps?password=hunter2-long", "hunter2-long", "hunter2-long"),
        (
            "postgresql://ps@db/ps?sslmode=require&password=p%40ss%3Aw%2Frd",
            "p@ss:w/rd",
            "p%40ss%3Aw%2Frd",
        ),
        ("postgresql://ps:p%40ss%3Aword@db/ps", "p@ss:word", "p%40ss%3Aword"),
        ("postgresql://ps@db/ps?pass%77ord=hunter2%20long", "hunter2 long", "hunter2%20long"),
        ("postgresql://ps@db/ps?sslpassword=keyphrase-long", "keyphrase-long", "keyphrase-long"),
        ("host=db password=hunter2-long", "hunter2-long", "hunter2-long"),
        ("host=db password = 'hunter2 long' user=ps", "hunter2 long", "hunter2 long"),
        ("host=db password='it\\'s-long'", "it's-long", "it\\'s-long"),
        ("host=db password=back\\slash-long", "backslash-long", "back\\slash-long"),
    ],
)
def test_the_password_of_a_dsn_from_the_environment_is_redacted_in_every_spelling(
    dsn: str, password: str, written: str
) -> None:
    from infra.logs import SecretRedactor

    cfg = parse_config(_doc(), {**ENV, "PS_DATABASE_DSN": dsn})
    assert cfg.database.dsn == dsn and written in dsn
    redactor = SecretRedactor(cfg.secret_values())
    # The value libpq sends (what an error or a careless log line would show) ...
    assert password in cfg.secret_values()
    assert redactor.redact(f"auth with {password} failed") == "auth with *** failed"
    # ... and the DSN as written: neither spelling survives.
    shown = redactor.redact(f"database {dsn}")
    assert written not in shown and password not in shown and "***" in shown, shown
    assert dsn not in repr(cfg)


def test_pgpassword_is_a_secret_too() -> None:
    cfg = parse_config(_doc(), {**ENV, "PGPASSWORD": "from-libpq-env"})
    assert "from-libpq-env" in cfg.secret_values()
    assert "from-libpq-env" not in repr(cfg)


# --- D13: refusals that keep one exchange account safe ------------------------------------


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        (
            {"accounts__main__rest_url": "http://fapi.binance.com"},
            "accounts.main.rest_url: http://",
        ),
        ({"accounts__main__ws_url": "ws://fstream.binance.com"}, "accounts.main.ws_url: ws://"),
        ({"accounts__main__rest_url": "http://10.0.0.7:8080"}, "accounts.main.rest_url: http://"),
    ],
)
def test_plain_transport_to_a_remote_exchange_with_real_keys_is_refused(
    over: dict[str, Any], expected: str
) -> None:
    msg = _error(_doc(**over))
    assert msg.startswith(expected) and "allow_insecure_transport = true" in msg, msg
    cfg = parse_config(_doc(**over, accounts__main__allow_insecure_transport=True), ENV)
    assert cfg.accounts["main"].allow_insecure_transport


def test_plain_transport_to_loopback_is_fine() -> None:
    cfg = parse_config(
        _doc(
            accounts__main__rest_url="http://127.0.0.1:8080",
            accounts__main__ws_url="ws://[::1]:8081",
        ),
        ENV,
    )
    assert not cfg.accounts["main"].allow_insecure_transport
    assert _error(_doc(accounts__main__allow_insecure_transport="yes")).startswith(
        "accounts.main.allow_insecure_transport: must be true or false"
    )


def _account(**over: Any) -> dict[str, Any]:
    acc: dict[str, Any] = {
        "rest_url": "https://fapi.binance.com",
        "ws_url": "wss://fstream.binance.com",
        "symbols": ["BTCUSDT"],
    }
    acc.update(over)
    return acc


@pytest.mark.parametrize(("first", "second"), [("main", "MAIN"), ("main-1", "Main_1")])
def test_account_names_that_differ_only_in_case_are_refused(first: str, second: str) -> None:
    doc = {"accounts": {first: _account(), second: _account()}}
    env = {"PS_MAIN_API_KEY": "k" * 16, "PS_MAIN_API_SECRET": "s" * 16}
    env |= {"PS_MAIN_1_API_KEY": "k" * 16, "PS_MAIN_1_API_SECRET": "s" * 16}
    msg = _error(doc, env)
    assert msg.startswith(f"accounts.{second}: same name as accounts.{first}"), msg


def test_one_exchange_account_configured_twice_is_refused() -> None:
    env = {**ENV, "PS_OTHER_API_KEY": "o" * 16, "PS_OTHER_API_SECRET": "t" * 16}
    # The same key variables on the same exchange URL (trailing slash and port do not matter).
    doc = {
        "accounts": {
            "main": _account(),
            "other": _account(
                rest_url="https://FAPI.binance.com:443/",
                api_key_env="PS_MAIN_API_KEY",
                api_secret_env="PS_OTHER_API_SECRET",
            ),
        }
    }
    msg = _error(doc, env)
    assert msg.startswith("accounts.other.api_key_env: accounts.main uses the same key"), msg
    # Two variables holding the same key: the same account too (the key is not quoted).
    same = {**env, "PS_OTHER_API_KEY": ENV["PS_MAIN_API_KEY"]}
    msg = _error({"accounts": {"main": _account(), "other": _account()}}, same)
    assert msg.startswith("accounts.other.api_key_env: PS_OTHER_API_KEY holds the same API key")
    assert ENV["PS_MAIN_API_KEY"] not in msg
    # Different exchange URLs (mainnet and testnet) with the same variables are two accounts.
    doc["accounts"]["other"]["rest_url"] = "https://testnet.binancefuture.com"
    assert set(parse_config(doc, env).accounts) == {"main", "other"}
    # Two dummy accounts on one sim/ are test fixtures, not real accounts.
    sim = _account(rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9", credentials="dummy")
    assert len(parse_config({"accounts": {"a": sim, "b": sim}}, {}).accounts) == 2


@pytest.mark.parametrize(
    "url",
    [
        "wss://signals.example/ws?token=abc",
        "wss://signals.example/ws?room=x&access_token=abc",
        "wss://signals.example/ws?apiKey=abc",
        "wss://signals.example/ws?api-key=abc",
        "wss://signals.example/ws?auth=abc",
        "wss://signals.example/ws?password=abc",
        "wss://signals.example/ws?secret=abc",
        "wss://signals.example/ws?sig=abc",
        "wss://signals.example/ws?jwt=abc",
        "wss://signals.example/ws?%74oken=abc",
        "wss://signals.example/ws#token=abc",
        "wss://abc@signals.example/ws",
        "wss://user:abc@signals.example/ws",
    ],
)
def test_a_secret_in_the_signal_url_is_refused(url: str) -> None:
    msg = _error(_doc(feeds__signal_url=url))
    assert msg.startswith("feeds.signal_url: must not carry"), msg
    assert "abc" not in msg


def test_a_signal_url_with_an_ordinary_query_is_fine() -> None:
    url = "wss://signals.example/ws?room=btc&format=json"
    assert parse_config(_doc(feeds__signal_url=url), ENV).feeds.signal_url == url


# --- D15: commands that only read the database need no trading keys -----------------------


def test_loading_without_credentials_validates_everything_else() -> None:
    cfg = parse_config(_doc(), {}, require_credentials=False)
    acc = cfg.accounts["main"]
    assert acc.credentials == "env" and acc.api_key == "" and acc.api_secret == ""
    assert cfg.secret_values() == ()
    with pytest.raises(ConfigError, match=r"accounts\.main\.workers: must be at least 1"):
        parse_config(_doc(accounts__main__workers=0), {}, require_credentials=False)
    with pytest.raises(ConfigError, match=r"accounts\.main\.rest_url: http://"):
        parse_config(
            _doc(accounts__main__rest_url="http://fapi.binance.com"), {}, require_credentials=False
        )
    # The default still requires them.
    assert "PS_MAIN_API_KEY" in _error(_doc(), env={})


def _schema_defaults(section: str) -> dict[str, Any]:
    """The defaults a section's dataclass holds (fields without one left out; properties such
    as ``address`` included)."""
    import infra.config as c

    classes: dict[str, Any] = {
        "accounts.<name>": c.AccountConfig,
        "risk": c.RiskConfig,
        "signal_policy": c.SignalPolicyConfig,
        "sync": c.SyncConfig,
        "restart": c.RestartConfig,
        "supervisor": c.SupervisorSection,
        "database": c.DatabaseConfig,
        "ownership": c.OwnershipConfig,
        "metrics": c.MetricsConfig,
        "control": c.ControlConfig,
        "feeds": c.FeedsConfig,
        "logging": c.LoggingConfig,
    }
    cls = classes[section]
    out = {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING and f.init
    }
    if section in ("metrics", "control"):
        out["address"] = cls().address
    return out


def test_the_documented_schema_shows_the_dataclass_defaults() -> None:
    """The schema in ``infra.config``'s docstring is the dataclasses' defaults, which are
    the only ones the loader uses: a default changed in one place and not the other fails."""
    import infra.config

    literal = r'"[^"<]*"|<none>|true|false|-?[0-9][0-9_.]*'
    section = ""
    checked = 0
    block = (infra.config.__doc__ or "").split("The schema, with the defaults", 1)[1]
    for line in block.splitlines():
        code = line.split("#", 1)[0]
        header = re.match(r"\s*\[([\w.<>]+)\]", code)
        if header:
            section = header.group(1)
            code = code[header.end() :]
        for key, value in re.findall(rf"(\w+) = ({literal})(?=,|\s|$)", code):
            defaults = _schema_defaults(section)
            if key in ("rest_url", "ws_url"):
                continue  # required: the values shown are examples
            assert key in defaults, f"[{section}] {key}: not a field with a default"
            expected = tomllib.loads(f"v = {value}")["v"] if value != "<none>" else None
            got = defaults[key]
            assert got == expected, f"[{section}] {key}: documented {value}, schema {got!r}"
            checked += 1
    assert checked >= 45, checked
