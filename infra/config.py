"""The process configuration: one TOML file, secrets from the environment.

:func:`load_config` reads a TOML file into frozen dataclasses and validates every key before
anything connects. Every problem is a :class:`ConfigError` whose message starts with the key
path (``accounts.main.rest_url: not a URL``); the CLI prints it and exits with code 2.

Secrets never live in the file: API keys and secrets come from ``PS_<ACCOUNT>_API_KEY`` and
``PS_<ACCOUNT>_API_SECRET`` (the account name upper-cased, ``-`` turned into ``_``), the signal
feed token from ``PS_FEED_TOKEN`` and a database DSN with a password from ``PS_DATABASE_DSN``
(each name can be changed with the matching ``*_env`` key). A key that looks like a secret
(``api_key``, ``secret``, ``token``, ``password`` …) or a DSN carrying a password written in the
file is an error: "secrets come from the environment".

The schema, with defaults (see ``deploy/example.toml``)::

    [accounts.<name>]            # at least one
    exchange = "binanceusdm"     # a ccxt exchange id
    rest_url = "https://fapi.binance.com"
    ws_url = "wss://fstream.binance.com"
    symbols = ["BTCUSDT"]        # allow-list, required, non-empty
    workers = 4                  # exchange worker threads for this account
    enable_rate_limit = true
    timeout_s = 10.0
    credentials = "env"          # or "dummy": fixed fake keys, only for loopback URLs (sim/)
    api_key_env = "PS_<NAME>_API_KEY"
    api_secret_env = "PS_<NAME>_API_SECRET"
    [accounts.<name>.risk]       # optional: overrides [risk] for this account

    [risk]
    default_stop_pct = 0.02      # 0 < x < 1
    max_notional = <none>        # quote currency per position
    max_open_positions = <none>  # per account
    sl_max_attempts = 3          # stop-loss placements per unprotected spell, then close
    sl_deadline_s = 10.0         # longest unprotected spell, then close at market
    max_stop_distance_pct = 0.5  # a stop (or trailing distance) further from the mark: refused
    max_mark_age_s = 5.0         # oldest mark price an entry may be decided on
    mark_wait_s = 3.0            # how long a signal waits for one (then no_mark_price)

    [signal_policy]
    reentry = "cooldown"         # allow | cooldown | never
    cooldown_s = 60.0
    max_signal_age_s = 30.0

    [sync]        interval_s = 5.0
    [restart]     max_restarts = 5, window_s = 60.0, min_backoff_s = 0.1,
                  max_backoff_s = 10.0, jitter = 0.2
    [supervisor]  passivate_after_s = 300.0, shutdown_grace_s = 10.0
    [database]    dsn = <none>, dsn_env = "PS_DATABASE_DSN", embedded_dir = ".data/pg",
                  account_lock_wait = false
    [metrics]     address = "127.0.0.1:9490", enabled = true
    [feeds]       signal_url = <none>, token_env = "PS_FEED_TOKEN", silence_timeout_s = 30.0,
                  exchange_streams = true, signal_acks = true
    [logging]     level = "INFO", json = false
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from actors.state import Policy, Reentry
from supervision.restart import RestartPolicy
from supervision.supervisor import SupervisorConfig

__all__ = [
    "DUMMY_API_KEY",
    "DUMMY_API_SECRET",
    "AccountConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "FeedsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "RiskConfig",
    "SignalPolicyConfig",
    "SupervisorSection",
    "SyncConfig",
    "env_name",
    "load_config",
    "parse_config",
]

DUMMY_API_KEY = "sim-dummy-key"
DUMMY_API_SECRET = "sim-dummy-secret"

_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,32}$")
_ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SECRET_WORDS = ("secret", "password", "passwd", "token", "api_key", "apikey", "private_key")


class ConfigError(Exception):
    """Invalid configuration. ``str(err)`` is ``"<key path>: <problem>"``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


# --- the configuration values -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Risk defaults; ``None`` means no limit."""

    default_stop_pct: float = 0.02
    max_notional: float | None = None
    max_open_positions: int | None = None
    sl_max_attempts: int = 3
    sl_deadline_s: float = 10.0
    max_stop_distance_pct: float = 0.5
    max_mark_age_s: float = 5.0
    mark_wait_s: float = 3.0


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One exchange account. ``api_key``/``api_secret`` are resolved from the environment."""

    name: str
    exchange: str
    rest_url: str
    ws_url: str
    symbols: tuple[str, ...]
    workers: int = 4
    enable_rate_limit: bool = True
    timeout_s: float = 10.0
    credentials: str = "env"
    api_key_env: str = ""
    api_secret_env: str = ""
    risk: RiskConfig = field(default_factory=RiskConfig)
    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class SignalPolicyConfig:
    reentry: Reentry = Reentry.COOLDOWN
    cooldown_s: float = 60.0
    max_signal_age_s: float = 30.0


@dataclass(frozen=True, slots=True)
class SyncConfig:
    interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class SupervisorSection:
    passivate_after_s: float = 300.0
    shutdown_grace_s: float = 10.0


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """``dsn`` (from the file or the ``dsn_env`` variable) wins over ``embedded_dir``."""

    dsn: str | None = field(default=None, repr=False)
    dsn_env: str = "PS_DATABASE_DSN"
    embedded_dir: str = ".data/pg"
    account_lock_wait: bool = False

    @property
    def embedded(self) -> bool:
        return self.dsn is None


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9490
    enabled: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class FeedsConfig:
    signal_url: str | None = None
    token_env: str = "PS_FEED_TOKEN"
    silence_timeout_s: float = 30.0
    exchange_streams: bool = True
    signal_acks: bool = True
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "INFO"
    json: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Build it with :func:`load_config` or :func:`parse_config`."""

    accounts: Mapping[str, AccountConfig]
    risk: RiskConfig = field(default_factory=RiskConfig)
    signal_policy: SignalPolicyConfig = field(default_factory=SignalPolicyConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    supervisor: SupervisorSection = field(default_factory=SupervisorSection)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = "<memory>"

    # -- mappings to the core's types

    def policy(self, account: str | None = None) -> Policy:
        """The state machine's :class:`Policy` for ``account`` (or the global default)."""
        risk = self.accounts[account].risk if account is not None else self.risk
        sp = self.signal_policy
        return Policy(
            reentry=sp.reentry,
            cooldown_s=sp.cooldown_s,
            max_notional=risk.max_notional,
            default_stop_pct=risk.default_stop_pct,
            sl_max_attempts=risk.sl_max_attempts,
            sl_deadline_s=risk.sl_deadline_s,
            max_stop_distance_pct=risk.max_stop_distance_pct,
            max_mark_age_s=risk.max_mark_age_s,
            mark_wait_s=risk.mark_wait_s,
            max_signal_age_s=sp.max_signal_age_s,
        )

    def supervisor_config(self) -> SupervisorConfig:
        """The :class:`SupervisorConfig`; per-account policies where an account overrides risk."""
        workers = max((a.workers for a in self.accounts.values()), default=4)
        return SupervisorConfig(
            policy=self.policy(),
            account_policies={name: self.policy(name) for name in self.accounts},
            restart=self.restart,
            workers_per_account=workers,
            passivate_after_s=self.supervisor.passivate_after_s,
            shutdown_grace_s=self.supervisor.shutdown_grace_s,
            max_open_positions=self.risk.max_open_positions,
        )

    def secret_values(self) -> tuple[str, ...]:
        """Every secret value resolved from the environment (for log redaction)."""
        out: list[str] = []
        for a in self.accounts.values():
            if a.credentials == "env":
                out += [a.api_key, a.api_secret]
        if self.feeds.token:
            out.append(self.feeds.token)
        if self.database.dsn:
            pw = _dsn_password(self.database.dsn)
            if pw:
                out.append(pw)
        return tuple(s for s in out if s)


# --- loading ------------------------------------------------------------------------------


def env_name(account: str, what: str) -> str:
    """``PS_<ACCOUNT>_<WHAT>``: the environment variable holding an account's secret."""
    return f"PS_{re.sub(r'[^A-Z0-9]', '_', account.upper())}_{what}"


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML file; secrets from ``environ`` (default ``os.environ``).

    Raises :class:`ConfigError` for an unreadable file, bad TOML or any invalid key. Does no
    I/O beyond reading the file: nothing connects.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), f"not valid TOML: {exc}") from None
    return parse_config(data, os.environ if environ is None else environ, source=str(p))


def parse_config(
    data: Mapping[str, Any], environ: Mapping[str, str], source: str = "<memory>"
) -> Config:
    """Validate an already parsed TOML document. See the module docstring for the schema."""
    _no_secrets(data, "")
    root = _Table(data, "")
    risk = _risk(root.table("risk"), RiskConfig())
    accounts_t = root.table("accounts")
    if not accounts_t.keys():
        raise ConfigError("accounts", "at least one account is required")
    accounts = {
        name: _account(name, accounts_t.table(name), risk, environ) for name in accounts_t.keys()
    }

    sp_t = root.table("signal_policy")
    reentry_s = sp_t.str_("reentry", "cooldown")
    try:
        reentry = Reentry(reentry_s)
    except ValueError:
        raise ConfigError(sp_t.at("reentry"), "must be one of allow, cooldown, never") from None
    signal_policy = SignalPolicyConfig(
        reentry=reentry,
        cooldown_s=sp_t.num("cooldown_s", 60.0, min_=0.0),
        max_signal_age_s=sp_t.num("max_signal_age_s", 30.0, min_=0.0, strict=True),
    )
    sp_t.done()

    sync_t = root.table("sync")
    sync = SyncConfig(interval_s=sync_t.num("interval_s", 5.0, min_=0.0, strict=True))
    sync_t.done()

    r_t = root.table("restart")
    d = RestartPolicy()
    restart = RestartPolicy(
        max_restarts=r_t.int_("max_restarts", d.max_restarts, min_=1),
        window_s=r_t.num("window_s", d.window_s, min_=0.0, strict=True),
        min_backoff_s=r_t.num("min_backoff_s", d.min_backoff_s, min_=0.0),
        max_backoff_s=r_t.num("max_backoff_s", d.max_backoff_s, min_=0.0),
        jitter=r_t.num("jitter", d.jitter, min_=0.0, max_=1.0),
    )
    if restart.max_backoff_s < restart.min_backoff_s:
        raise ConfigError(r_t.at("max_backoff_s"), "must be at least min_backoff_s")
    r_t.done()

    s_t = root.table("supervisor")
    supervisor = SupervisorSection(
        passivate_after_s=s_t.num("passivate_after_s", 300.0, min_=0.0, strict=True),
        shutdown_grace_s=s_t.num("shutdown_grace_s", 10.0, min_=0.0),
    )
    s_t.done()

    database = _database(root.table("database"), environ)
    metrics = _metrics(root.table("metrics"))
    feeds = _feeds(root.table("feeds"), environ)

    l_t = root.table("logging")
    level = l_t.str_("level", "INFO").upper()
    if level not in _LEVELS:
        raise ConfigError(l_t.at("level"), f"must be one of {', '.join(_LEVELS)}")
    logging_ = LoggingConfig(level=level, json=l_t.bool_("json", False))
    l_t.done()
    root.done()
    return Config(
        accounts=accounts,
        risk=risk,
        signal_policy=signal_policy,
        sync=sync,
        restart=restart,
        supervisor=supervisor,
        database=database,
        metrics=metrics,
        feeds=feeds,
        logging=logging_,
        source=source,
    )


# --- sections -----------------------------------------------------------------------------


def _risk(t: _Table, base: RiskConfig) -> RiskConfig:
    stop = t.num("default_stop_pct", base.default_stop_pct, min_=0.0, max_=1.0, strict=True)
    if stop >= 1.0:
        raise ConfigError(t.at("default_stop_pct"), "must be below 1 (a fraction, 0.02 = 2 %)")
    notional = t.opt_num("max_notional", base.max_notional)
    if notional is not None and notional <= 0:
        raise ConfigError(t.at("max_notional"), "must be positive")
    max_open = t.opt_int("max_open_positions", base.max_open_positions)
    if max_open is not None and max_open < 1:
        raise ConfigError(t.at("max_open_positions"), "must be at least 1")
    out = RiskConfig(
        default_stop_pct=stop,
        max_notional=notional,
        max_open_positions=max_open,
        sl_max_attempts=t.int_("sl_max_attempts", base.sl_max_attempts, min_=1),
        sl_deadline_s=t.num("sl_deadline_s", base.sl_deadline_s, min_=0.0, strict=True),
        max_stop_distance_pct=t.num(
            "max_stop_distance_pct", base.max_stop_distance_pct, min_=0.0, max_=1.0, strict=True
        ),
        max_mark_age_s=t.num("max_mark_age_s", base.max_mark_age_s, min_=0.0, strict=True),
        mark_wait_s=t.num("mark_wait_s", base.mark_wait_s, min_=0.0, strict=True),
    )
    t.done()
    return out


def _account(name: str, t: _Table, risk: RiskConfig, environ: Mapping[str, str]) -> AccountConfig:
    if not _ACCOUNT_RE.match(name):
        raise ConfigError(t.path, "account name must be 1-32 of [A-Za-z0-9_-]")
    exchange = t.str_("exchange", "binanceusdm")
    from infra.exchange.venues import VENUES  # noqa: PLC0415 - imports ccxt: only when needed

    if exchange not in VENUES:
        raise ConfigError(
            t.at("exchange"), f"unsupported exchange {exchange!r} (known: {', '.join(VENUES)})"
        )
    rest_url = t.url("rest_url", ("http", "https"))
    ws_url = t.url("ws_url", ("ws", "wss"))
    symbols = t.str_list("symbols")
    if not symbols:
        raise ConfigError(t.at("symbols"), "the allow-list needs at least one symbol")
    for i, s in enumerate(symbols):
        if not _SYMBOL_RE.match(s):
            raise ConfigError(f"{t.at('symbols')}[{i}]", f"{s!r} is not an exchange symbol id")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(t.at("symbols"), "lists a symbol twice")
    credentials = t.str_("credentials", "env")
    key_env = t.env_name("api_key_env", env_name(name, "API_KEY"))
    secret_env = t.env_name("api_secret_env", env_name(name, "API_SECRET"))
    if credentials == "env":
        key = environ.get(key_env, "")
        secret = environ.get(secret_env, "")
        if not key or not secret:
            missing = key_env if not key else secret_env
            raise ConfigError(
                t.path, f"credentials missing: set the environment variable {missing}"
            )
    elif credentials == "dummy":
        for k, url in (("rest_url", rest_url), ("ws_url", ws_url)):
            if not _loopback(url):
                raise ConfigError(
                    t.at(k), 'credentials = "dummy" is only allowed for a loopback exchange (sim/)'
                )
        key, secret = DUMMY_API_KEY, DUMMY_API_SECRET
    else:
        raise ConfigError(t.at("credentials"), 'must be "env" or "dummy"')
    acc_risk = _risk(t.table("risk"), risk)
    out = AccountConfig(
        name=name,
        exchange=exchange,
        rest_url=rest_url,
        ws_url=ws_url,
        symbols=tuple(symbols),
        workers=t.int_("workers", 4, min_=1, max_=64),
        enable_rate_limit=t.bool_("enable_rate_limit", True),
        timeout_s=t.num("timeout_s", 10.0, min_=0.0, strict=True),
        credentials=credentials,
        api_key_env=key_env,
        api_secret_env=secret_env,
        risk=acc_risk,
        api_key=key,
        api_secret=secret,
    )
    t.done()
    return out


def _database(t: _Table, environ: Mapping[str, str]) -> DatabaseConfig:
    dsn_env = t.env_name("dsn_env", "PS_DATABASE_DSN")
    dsn = t.opt_str("dsn")
    if dsn is not None:
        if _dsn_password(dsn):
            raise ConfigError(
                t.at("dsn"),
                f"contains a password; secrets come from the environment (set {dsn_env})",
            )
        if not dsn.strip():
            raise ConfigError(t.at("dsn"), "is empty")
    env_dsn = environ.get(dsn_env)
    if env_dsn:
        dsn = env_dsn
    embedded_dir = t.str_("embedded_dir", ".data/pg")
    if not embedded_dir:
        raise ConfigError(t.at("embedded_dir"), "is empty")
    # pgserver's Unix socket lives in the data folder: its path is limited to 107 bytes.
    if len(str(Path(embedded_dir).resolve())) > 80:
        raise ConfigError(
            t.at("embedded_dir"), "path too long for a PostgreSQL socket (keep it under 80)"
        )
    out = DatabaseConfig(
        dsn=dsn,
        dsn_env=dsn_env,
        embedded_dir=embedded_dir,
        account_lock_wait=t.bool_("account_lock_wait", False),
    )
    t.done()
    return out


def _metrics(t: _Table) -> MetricsConfig:
    address = t.str_("address", "127.0.0.1:9490")
    host, sep, port_s = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ConfigError(t.at("address"), "must be HOST:PORT")
    out = MetricsConfig(host=host, port=int(port_s), enabled=t.bool_("enabled", True))
    t.done()
    return out


def _feeds(t: _Table, environ: Mapping[str, str]) -> FeedsConfig:
    url = t.opt_str("signal_url")
    if url is not None:
        url = t.url("signal_url", ("ws", "wss"))
    token_env = t.env_name("token_env", "PS_FEED_TOKEN")
    out = FeedsConfig(
        signal_url=url,
        token_env=token_env,
        silence_timeout_s=t.num("silence_timeout_s", 30.0, min_=0.0, strict=True),
        exchange_streams=t.bool_("exchange_streams", True),
        signal_acks=t.bool_("signal_acks", True),
        token=environ.get(token_env) or None,
    )
    t.done()
    return out


# --- helpers ------------------------------------------------------------------------------


def _no_secrets(data: Mapping[str, Any], path: str) -> None:
    for k, v in data.items():
        here = f"{path}.{k}" if path else str(k)
        low = str(k).lower()
        if isinstance(v, Mapping):
            _no_secrets(v, here)
        elif not low.endswith("_env") and any(w in low for w in _SECRET_WORDS):
            raise ConfigError(here, "secrets come from the environment, not the file")


def _dsn_password(dsn: str) -> str | None:
    """The password a DSN carries (URL or ``key=value`` form), if any."""
    if "://" in dsn:
        try:
            return urlsplit(dsn).password or None
        except ValueError:
            return None
    m = re.search(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    if m is None:
        return None
    return m.group(1).strip("'") or None


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Table:
    """A TOML table being validated; remembers which keys were read to refuse unknown ones."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, "must be a table")
        self.data: Mapping[str, Any] = data
        self.path = path
        self._seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def keys(self) -> list[str]:
        return list(self.data)

    def _get(self, key: str) -> Any:
        self._seen.add(key)
        return self.data.get(key)

    def table(self, key: str) -> _Table:
        v = self._get(key)
        return _Table({} if v is None else v, self.at(key))

    def str_(self, key: str, default: str) -> str:
        v = self._get(key)
        if v is None:
            return default
        if not isinstance(v, str):
            raise ConfigError(self.at(key), "must be a string")
        return v

    def opt_str(self, key: str) -> str | None:
        v = self._get(key)
        if v is not None and not isinstance(v, str):
            raise ConfigError(self.at(key), "must be a string")
        return v

    def str_list(self, key: str) -> list[str]:
        v = self._get(key)
        if v is None:
            raise ConfigError(self.at(key), "is required")
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(self.at(key), "must be a list of strings")
        return list(v)

    def bool_(self, key: str, default: bool) -> bool:
        v = self._get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise ConfigError(self.at(key), "must be true or false")
        return v

    def num(
        self,
        key: str,
        default: float,
        *,
        min_: float | None = None,
        max_: float | None = None,
        strict: bool = False,
    ) -> float:
        """A finite number; ``strict`` makes ``min_`` exclusive."""
        v = self._get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(self.at(key), "must be a finite number")
        x = float(v)
        if min_ is not None and (x <= min_ if strict else x < min_):
            raise ConfigError(self.at(key), f"must be {'above' if strict else 'at least'} {min_}")
        if max_ is not None and x > max_:
            raise ConfigError(self.at(key), f"must be at most {max_}")
        return x

    def opt_num(self, key: str, default: float | None) -> float | None:
        if self.data.get(key) is None:
            self._seen.add(key)
            return default
        return self.num(key, 0.0)

    def int_(
        self, key: str, default: int, *, min_: int | None = None, max_: int | None = None
    ) -> int:
        v = self._get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(self.at(key), "must be an integer")
        if min_ is not None and v < min_:
            raise ConfigError(self.at(key), f"must be at least {min_}")
        if max_ is not None and v > max_:
            raise ConfigError(self.at(key), f"must be at most {max_}")
        return v

    def opt_int(self, key: str, default: int | None) -> int | None:
        if self.data.get(key) is None:
            self._seen.add(key)
            return default
        return self.int_(key, 0)

    def env_name(self, key: str, default: str) -> str:
        v = self.str_(key, default)
        if not _ENV_RE.match(v):
            raise ConfigError(self.at(key), "not an environment variable name")
        return v

    def url(self, key: str, schemes: tuple[str, ...]) -> str:
        v = self._get(key)
        if v is None:
            raise ConfigError(self.at(key), "is required")
        if not isinstance(v, str):
            raise ConfigError(self.at(key), "must be a string")
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ConfigError(self.at(key), "not a URL") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise ConfigError(self.at(key), f"not a URL ({' or '.join(schemes)}://host...)")
        if parts.username or parts.password:
            raise ConfigError(
                self.at(key), "must not carry credentials; secrets come from the environment"
            )
        return v.rstrip("/")

    def done(self) -> None:
        """Refuse keys that were never read (typos would otherwise be silently ignored)."""
        for k in self.data:
            if k not in self._seen:
                raise ConfigError(self.at(k), "unknown key")
