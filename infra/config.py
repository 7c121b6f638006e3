"""The process configuration: one TOML file, secrets from the environment.

:func:`load_config` reads a TOML file into frozen dataclasses and validates every key before
anything connects. Every problem is a :class:`ConfigError` whose message starts with the key
path (``accounts.main.rest_url: not a URL``); the CLI prints it and exits with code 2.

Secrets never live in the file: API keys and secrets come from ``PS_<ACCOUNT>_API_KEY`` and
``PS_<ACCOUNT>_API_SECRET`` (the account name upper-cased, ``-`` turned into ``_``), the signal
feed token from ``PS_FEED_TOKEN``, the control endpoint's token from ``PS_CONTROL_TOKEN`` and a
database DSN with a password from ``PS_DATABASE_DSN``
(each name can be changed with the matching ``*_env`` key). A key that looks like a secret
(``api_key``, ``secret``, ``token``, ``password`` …), a DSN carrying a password in any form libpq
accepts (``user:pw@``, ``?password=``, ``password=``, also ``sslpassword``) or a URL carrying
user info or a secret-looking query parameter (``?token=``) written in the file is an error:
"secrets come from the environment". :meth:`Config.secret_values` lists every secret resolved
from the environment, a DSN's password in each spelling, for log redaction.

:func:`load_config` never lets the file's text out: an unreadable, oversized (over 1 MiB),
non-UTF-8, non-TOML or too deeply nested file is a :class:`ConfigError` naming the file and at
most the position (line, column, byte) of the problem.

``require_credentials=False`` (the read-only ``status`` and ``history`` commands) validates
everything the same way but does not resolve API keys: accounts with ``credentials = "env"``
get empty ``api_key``/``api_secret`` and a missing variable is not an error.

Accounts must be distinct: two names that differ only in case or ``-``/``_`` (they would share
the key variables and take two account locks) are refused, and so are two ``credentials =
"env"`` accounts on the same exchange URL with the same key variable or the same key.

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
    allow_insecure_transport = false  # true: allow http:// / ws:// to a non-loopback host
                                      # with credentials = "env"
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
                  account_lock_wait = false   # true: a standby, waits for ever; a number:
                                              # seconds to wait for a first account
    [ownership]   lease_s = 10.0, renew_s = 2.0, fence_margin_s = 2.0,
                  max_accounts = <none>, hold_signals_s = 30.0
    [metrics]     address = "127.0.0.1:9490", enabled = true
    [control]     address = "127.0.0.1:9491", token_env = "PS_CONTROL_TOKEN", refresh_s = 2.0
                  (the control endpoint and live view run only while the token is set)
    [feeds]       signal_url = <none>, token_env = "PS_FEED_TOKEN", silence_timeout_s = 30.0,
                  exchange_streams = true, signal_acks = true
    [logging]     level = "INFO", json = false,
                  file = <none>,            # log to this file, rotated, instead of stderr
                  max_bytes = 104857600,    # rotate when the file would pass this (>= 4096)
                  backups = 10              # rotated files kept: file.1 ... file.<backups>
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
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from actors.state import Policy, Reentry
from supervision.restart import RestartPolicy
from supervision.supervisor import SupervisorConfig

__all__ = [
    "DUMMY_API_KEY",
    "DUMMY_API_SECRET",
    "AccountConfig",
    "Config",
    "ConfigError",
    "ControlConfig",
    "DatabaseConfig",
    "FeedsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "OwnershipConfig",
    "RiskConfig",
    "SignalPolicyConfig",
    "SupervisorSection",
    "SyncConfig",
    "dsn_secrets",
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
# Connection options whose value is a secret (libpq's keywords; ``passfile`` is a path: fine).
_DSN_SECRET_KEYS = ("password", "sslpassword")
# URL query parameters that carry a secret: their names, lower-cased, without ``-``/``_``/``.``.
_URL_SECRET_RE = re.compile(
    r"token|secret|passw|pwd|auth|apikey|key$|^key|signature|^sig$|jwt|credential|session|bearer"
)
_MAX_FILE_BYTES = 1 << 20
_MAX_NESTING = 64


class ConfigError(Exception):
    """Invalid configuration. ``str(err)`` is ``"<key path>: <problem>"``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        text = f"{path}: {problem}" if path else problem
        super().__init__(" ".join(text.splitlines()))  # always one line


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
    """One exchange account. ``api_key``/``api_secret`` are resolved from the environment
    (empty when loaded with ``require_credentials=False``)."""

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
    allow_insecure_transport: bool = False
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
    """``dsn`` (from the file or the ``dsn_env`` variable) wins over ``embedded_dir``.

    ``libpq_password``: the ``PGPASSWORD`` of the environment, which libpq uses for a DSN
    without a password (kept only to redact it from logs).
    """

    dsn: str | None = field(default=None, repr=False)
    dsn_env: str = "PS_DATABASE_DSN"
    embedded_dir: str = ".data/pg"
    account_lock_wait: bool | float = False
    libpq_password: str | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self.dsn is None

    @property
    def wait_for_accounts(self) -> bool:
        """Take accounts that become free after the start (a standby)."""
        return self.account_lock_wait is not False

    @property
    def wait_limit_s(self) -> float | None:
        """Seconds a process may own no account before it exits 1 (``None``: for ever, or
        not waiting at all)."""
        wait = self.account_lock_wait
        return None if isinstance(wait, bool) else float(wait)


@dataclass(frozen=True, slots=True)
class OwnershipConfig:
    """Leases (I7): see the README's operations section. ``fence_margin_s``: the owner stops
    this long before its lease can expire; ``max_accounts``: at most this many accounts are
    owned by one process; ``hold_signals_s``: how long a process that waits for an account
    holds the signals for it (its owner answers them)."""

    lease_s: float = 10.0
    renew_s: float = 2.0
    fence_margin_s: float = 2.0
    max_accounts: int | None = None
    hold_signals_s: float = 30.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9490
    enabled: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """The operator's control endpoint and live view (:mod:`supervision.control`): on only
    while ``token`` (from the ``token_env`` variable) is set. ``refresh_s``: how often the
    live view reloads itself."""

    host: str = "127.0.0.1"
    port: int = 9491
    token_env: str = "PS_CONTROL_TOKEN"
    refresh_s: float = 2.0
    token: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def enabled(self) -> bool:
        return self.token is not None


#: The shortest control token accepted (a guessable token guards an endpoint that closes
#: positions).
MIN_CONTROL_TOKEN = 16


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
    """``file``: where log lines go instead of stderr, for a run outside supervisord (which
    rotates stderr itself); rotated by size: ``file`` grows to ``max_bytes``, then becomes
    ``file.1`` (older ones ``file.2`` ... ``file.<backups>``, the oldest deleted), so the
    log never takes more than ``(backups + 1) * max_bytes``."""

    level: str = "INFO"
    json: bool = False
    file: str | None = None
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 10


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
    ownership: OwnershipConfig = field(default_factory=OwnershipConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
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
        """Every secret value resolved from the environment (for log redaction): API keys and
        secrets, the feed token, ``PGPASSWORD`` and the DSN's password(s) in every spelling
        (:func:`dsn_secrets`: as libpq reads it and as written in the DSN)."""
        out: list[str] = []
        for a in self.accounts.values():
            if a.credentials == "env":
                out += [a.api_key, a.api_secret]
        if self.feeds.token:
            out.append(self.feeds.token)
        if self.control.token:
            out.append(self.control.token)
        if self.database.dsn:
            out += dsn_secrets(self.database.dsn)
        if self.database.libpq_password:
            out.append(self.database.libpq_password)
        return tuple(dict.fromkeys(s for s in out if s))


# --- loading ------------------------------------------------------------------------------


def env_name(account: str, what: str) -> str:
    """``PS_<ACCOUNT>_<WHAT>``: the environment variable holding an account's secret."""
    return f"PS_{re.sub(r'[^A-Z0-9]', '_', account.upper())}_{what}"


def load_config(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    require_credentials: bool = True,
) -> Config:
    """Read and validate a TOML file; secrets from ``environ`` (default ``os.environ``).

    Called by the CLI before anything starts (any thread). Raises :class:`ConfigError` for an
    unreadable file, a directory, a file over 1 MiB, invalid UTF-8, bad or too deeply nested
    TOML, or any invalid key; the message names the file and at most the position of the
    problem, never the file's text (which may hold a secret written by mistake). Does no I/O
    beyond reading the file: nothing connects. ``require_credentials``: see
    :func:`parse_config`.
    """
    p = Path(path)
    where = str(p)
    try:
        with p.open("rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(where, f"cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(where, f"too large (over {_MAX_FILE_BYTES} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(where, f"not valid UTF-8 {_byte_position(raw, exc.start)}") from None
    text = text.removeprefix("\ufeff")  # a byte order mark some editors write
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, f"not valid TOML {_toml_problem(str(exc))}") from None
    except RecursionError:
        at = _nesting_position(text, _MAX_NESTING)
        raise ConfigError(where, f"not valid TOML: nested too deeply{at}") from None
    except ValueError:  # e.g. an integer over Python's 4300 digits
        raise ConfigError(where, "not valid TOML: a value out of range") from None
    return parse_config(
        data,
        os.environ if environ is None else environ,
        source=where,
        require_credentials=require_credentials,
    )


def parse_config(
    data: Mapping[str, Any],
    environ: Mapping[str, str],
    source: str = "<memory>",
    *,
    require_credentials: bool = True,
) -> Config:
    """Validate an already parsed TOML document. See the module docstring for the schema.

    ``require_credentials=False`` is for commands that only read the database (``status``,
    ``history``): API keys are not looked up (accounts get empty ones) and their absence is no
    error; every other check is the same. Raises :class:`ConfigError` only.
    """
    _no_secrets(data)
    root = _Table(data, "")
    risk = _risk(root.table("risk"), RiskConfig())
    accounts_t = root.table("accounts")
    if not accounts_t.keys():
        raise ConfigError("accounts", "at least one account is required")
    _distinct_names(accounts_t)
    accounts = {
        name: _account(name, accounts_t.table(name), risk, environ, require_credentials)
        for name in accounts_t.keys()
    }
    _distinct_exchange_accounts(accounts, accounts_t)

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
    ownership = _ownership(root.table("ownership"))
    metrics = _metrics(root.table("metrics"))
    control = _control(root.table("control"), environ)
    feeds = _feeds(root.table("feeds"), environ)

    l_t = root.table("logging")
    level = l_t.str_("level", "INFO").upper()
    if level not in _LEVELS:
        raise ConfigError(l_t.at("level"), f"must be one of {', '.join(_LEVELS)}")
    log_file = l_t.opt_str("file")
    if log_file is not None and (not log_file.strip() or "\0" in log_file):
        raise ConfigError(l_t.at("file"), "must be a file path")
    logging_ = LoggingConfig(
        level=level,
        json=l_t.bool_("json", False),
        file=log_file,
        max_bytes=l_t.int_("max_bytes", 100 * 1024 * 1024, min_=4096),
        backups=l_t.int_("backups", 10, min_=1, max_=1000),
    )
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
        ownership=ownership,
        metrics=metrics,
        control=control,
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


def _account(
    name: str,
    t: _Table,
    risk: RiskConfig,
    environ: Mapping[str, str],
    require_credentials: bool = True,
) -> AccountConfig:
    if not _ACCOUNT_RE.fullmatch(name):
        raise ConfigError(t.path, "account name must be 1-32 of [A-Za-z0-9_-]")
    exchange = t.str_("exchange", "binanceusdm")
    from infra.exchange.venues import VENUES  # noqa: PLC0415 - imports ccxt: only when needed

    if exchange not in VENUES:
        raise ConfigError(
            t.at("exchange"),
            f"unsupported exchange {_quote(exchange)} (known: {', '.join(VENUES)})",
        )
    rest_url = t.url("rest_url", ("http", "https"))
    ws_url = t.url("ws_url", ("ws", "wss"))
    symbols = t.str_list("symbols")
    if not symbols:
        raise ConfigError(t.at("symbols"), "the allow-list needs at least one symbol")
    for i, s in enumerate(symbols):
        if not _SYMBOL_RE.fullmatch(s):
            raise ConfigError(
                f"{t.at('symbols')}[{i}]", f"{_quote(s)} is not an exchange symbol id"
            )
    if len(set(symbols)) != len(symbols):
        raise ConfigError(t.at("symbols"), "lists a symbol twice")
    credentials = t.str_("credentials", "env")
    key_env = t.env_name("api_key_env", env_name(name, "API_KEY"))
    secret_env = t.env_name("api_secret_env", env_name(name, "API_SECRET"))
    insecure_ok = t.bool_("allow_insecure_transport", False)
    if credentials == "env" and not insecure_ok:
        for k, url in (("rest_url", rest_url), ("ws_url", ws_url)):
            scheme = urlsplit(url).scheme
            if scheme in ("http", "ws") and not _loopback(url):
                raise ConfigError(
                    t.at(k),
                    f"{scheme}:// to a non-loopback host would carry the account's traffic "
                    f'unencrypted with real credentials (credentials = "env"): use {scheme}s://, '
                    "or set allow_insecure_transport = true",
                )
    if credentials == "env" and not require_credentials:
        key, secret = "", ""
    elif credentials == "env":
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
        allow_insecure_transport=insecure_ok,
        risk=acc_risk,
        api_key=key,
        api_secret=secret,
    )
    t.done()
    return out


def _distinct_names(accounts_t: _Table) -> None:
    """Refuse account names that differ only in case or ``-``/``_``: they would read the same
    key variables (:func:`env_name`) yet take two account locks, i.e. two owners of one
    exchange account."""
    seen: dict[str, str] = {}
    for name in accounts_t.keys():
        folded = env_name(name, "")
        if folded in seen:
            raise ConfigError(
                accounts_t.at(name),
                f"same name as accounts.{seen[folded]} apart from case or -/_ (both would use "
                f"{env_name(name, 'API_KEY')} and take separate account locks): rename one",
            )
        seen[folded] = name


def _endpoint(url: str) -> str:
    """``url`` normalised for comparison: scheme and host lower-cased, default port explicit."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme, 0)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port or default}{parts.path.rstrip('/')}"


def _distinct_exchange_accounts(accounts: Mapping[str, AccountConfig], accounts_t: _Table) -> None:
    """Refuse two ``credentials = "env"`` accounts on the same exchange and REST URL with the
    same key variable or the same key: one exchange account under two names would be traded
    by two sets of actors under two account locks."""
    seen_env: dict[tuple[str, str, str], str] = {}
    seen_key: dict[tuple[str, str, str], str] = {}
    for name, acc in accounts.items():
        if acc.credentials != "env":
            continue  # "dummy" is for sim/ only: several test accounts may share one sim
        where = _endpoint(acc.rest_url)
        by_env = (acc.exchange, where, acc.api_key_env)
        if by_env in seen_env:
            raise ConfigError(
                f"{accounts_t.at(name)}.api_key_env",
                f"accounts.{seen_env[by_env]} uses the same key variable {acc.api_key_env} on "
                "the same exchange URL: one exchange account must be configured once",
            )
        seen_env[by_env] = name
        if acc.api_key:
            by_key = (acc.exchange, where, acc.api_key)
            if by_key in seen_key:
                other = accounts[seen_key[by_key]]
                raise ConfigError(
                    f"{accounts_t.at(name)}.api_key_env",
                    f"{acc.api_key_env} holds the same API key as {other.api_key_env} "
                    f"(accounts.{other.name}) on the same exchange URL: one exchange account "
                    "must be configured once",
                )
            seen_key[by_key] = name


def _database(t: _Table, environ: Mapping[str, str]) -> DatabaseConfig:
    dsn_env = t.env_name("dsn_env", "PS_DATABASE_DSN")
    dsn = t.opt_str("dsn")
    if dsn is not None:
        if not dsn.strip():
            raise ConfigError(t.at("dsn"), "is empty")
        params = _parse_dsn(dsn, t.at("dsn"), "not a valid PostgreSQL connection string")
        written = [k for k in _DSN_SECRET_KEYS if k in params] or (
            ["password"] if _written_dsn_secrets(dsn) else []
        )
        if written:
            raise ConfigError(
                t.at("dsn"),
                f"contains a password{'' if written[0] == 'password' else f' ({written[0]})'}; "
                f"secrets come from the environment (set {dsn_env}, or use a passfile)",
            )
    env_dsn = environ.get(dsn_env)
    if env_dsn:
        _parse_dsn(
            env_dsn, t.at("dsn_env"), f"{dsn_env} is not a valid PostgreSQL connection string"
        )
        dsn = env_dsn
    embedded_dir = t.str_("embedded_dir", ".data/pg")
    if not embedded_dir:
        raise ConfigError(t.at("embedded_dir"), "is empty")
    if "\x00" in embedded_dir:
        raise ConfigError(t.at("embedded_dir"), "contains a NUL character")
    # pgserver's Unix socket lives in the data folder: its path is limited to 107 bytes.
    if len(str(Path(embedded_dir).resolve())) > 80:
        raise ConfigError(
            t.at("embedded_dir"), "path too long for a PostgreSQL socket (keep it under 80)"
        )
    out = DatabaseConfig(
        dsn=dsn,
        dsn_env=dsn_env,
        embedded_dir=embedded_dir,
        account_lock_wait=_lock_wait(t),
        libpq_password=environ.get("PGPASSWORD") or None,
    )
    t.done()
    return out


def _lock_wait(t: _Table) -> bool | float:
    """``account_lock_wait``: ``false`` (take what is free at start), ``true`` (a standby:
    wait for ever) or seconds (wait that long for a first account, then exit 1)."""
    v = t.data.get("account_lock_wait")
    if v is None or isinstance(v, bool):
        return t.bool_("account_lock_wait", False)
    if not isinstance(v, int | float):
        raise ConfigError(
            t.at("account_lock_wait"), "must be true, false or a number of seconds above 0"
        )
    return t.num("account_lock_wait", 0.0, min_=0.0, strict=True)


def _ownership(t: _Table) -> OwnershipConfig:
    d = OwnershipConfig()
    lease = t.num("lease_s", d.lease_s, min_=0.0, strict=True)
    renew = t.num("renew_s", d.renew_s, min_=0.0, strict=True)
    margin = t.num("fence_margin_s", d.fence_margin_s, min_=0.0, strict=True)
    if margin >= lease:
        raise ConfigError(t.at("fence_margin_s"), f"must be below lease_s ({lease:g})")
    if renew >= lease - margin:
        raise ConfigError(
            t.at("renew_s"),
            f"must be below lease_s - fence_margin_s ({lease - margin:g}): an owner would "
            "fence itself between two renewals",
        )
    max_accounts = t.opt_int("max_accounts", None)
    if max_accounts is not None and max_accounts < 1:
        raise ConfigError(t.at("max_accounts"), "must be at least 1")
    out = OwnershipConfig(
        lease_s=lease,
        renew_s=renew,
        fence_margin_s=margin,
        max_accounts=max_accounts,
        hold_signals_s=t.num("hold_signals_s", d.hold_signals_s, min_=0.0),
    )
    t.done()
    return out


def _address(t: _Table, default: str) -> tuple[str, int]:
    address = t.str_("address", default)
    host, sep, port_s = address.rpartition(":")
    host = host.strip("[]")
    if (
        not sep
        or not host
        or not (port_s.isascii() and port_s.isdigit())
        or not 0 <= int(port_s) <= 65535
    ):
        raise ConfigError(t.at("address"), "must be HOST:PORT")
    return host, int(port_s)


def _metrics(t: _Table) -> MetricsConfig:
    host, port = _address(t, "127.0.0.1:9490")
    out = MetricsConfig(host=host, port=port, enabled=t.bool_("enabled", True))
    t.done()
    return out


def _control(t: _Table, environ: Mapping[str, str]) -> ControlConfig:
    host, port = _address(t, "127.0.0.1:9491")
    token_env = t.env_name("token_env", "PS_CONTROL_TOKEN")
    token = environ.get(token_env) or None
    if token is not None and (
        len(token) < MIN_CONTROL_TOKEN
        or not token.isascii()
        or not token.isprintable()
        or any(c.isspace() for c in token)
    ):
        raise ConfigError(
            t.at("token_env"),
            f"{token_env} must be at least {MIN_CONTROL_TOKEN} printable ASCII characters "
            "without spaces (e.g. the output of `openssl rand -hex 32`)",
        )
    out = ControlConfig(
        host=host,
        port=port,
        token_env=token_env,
        refresh_s=t.num("refresh_s", 2.0, min_=0.0, max_=3600.0, strict=True),
        token=token,
    )
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


def _no_secrets(data: Mapping[str, Any]) -> None:
    """Refuse secret-looking keys anywhere in the document (tables, arrays of tables).

    Iterative, so that a document nested thousands of levels deep by dotted keys (which
    ``tomllib`` builds without recursion) is refused later as an unknown key, not by a
    RecursionError here."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(node)]
            continue
        if not isinstance(node, Mapping):
            continue
        for k, v in node.items():
            here = f"{path}.{k}" if path else str(k)
            low = str(k).lower()
            if isinstance(v, Mapping | list):
                stack.append((here, v))
            elif not low.endswith("_env") and any(w in low for w in _SECRET_WORDS):
                raise ConfigError(here, "secrets come from the environment, not the file")


def _parse_dsn(dsn: str, where: str, problem: str) -> dict[str, Any]:
    """``dsn``'s options as libpq reads them (``conninfo_to_dict``: URI and key=value forms).

    Raises :class:`ConfigError` ``where: problem (detail)``; the detail is libpq's message
    with every quoted part of the DSN left out, since it could be a piece of a password."""
    if "\x00" in dsn:
        raise ConfigError(where, f"{problem} (it contains a NUL character)")
    try:
        return conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()
        detail = re.sub(r'"[^"]*"', '"…"', lines[0]) if lines else ""
        raise ConfigError(where, f"{problem} ({detail or type(exc).__name__})") from None


def dsn_secrets(dsn: str) -> tuple[str, ...]:
    """Every spelling of the passwords a DSN carries (``password``, ``sslpassword``): the value
    libpq uses and the text as written (percent-encoded in a URI, backslash-escaped or quoted
    in ``key=value``), so that a log line quoting the DSN or the value is redacted either way.
    Never raises; an unparsable DSN yields what a scan of its text finds."""
    out: list[str] = []
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        params = {}
    out += [str(params[k]) for k in _DSN_SECRET_KEYS if params.get(k)]
    out += _written_dsn_secrets(dsn)
    return tuple(dict.fromkeys(s for s in out if s))


def _written_dsn_secrets(dsn: str) -> list[str]:
    """Values of password options as written in ``dsn`` and decoded, following libpq's
    grammar (``fe-connect.c``: ``conninfo_uri_parse_options``, ``conninfo_parse``)."""
    out: list[str] = []
    if dsn.startswith(("postgresql://", "postgres://")):
        rest = dsn.split("://", 1)[1]
        at = rest.find("@")
        slash = rest.find("/")
        if at >= 0 and (slash < 0 or at < slash):
            user_info, rest = rest[:at], rest[at + 1 :]
            if ":" in user_info:
                raw = user_info.split(":", 1)[1]
                out += [raw, unquote(raw)]
        if "?" in rest:
            for item in rest.split("?", 1)[1].split("&"):
                k, eq, v = item.partition("=")
                if eq and unquote(k) in _DSN_SECRET_KEYS:
                    out += [v, unquote(v)]
        return [s for s in out if s]
    i, n = 0, len(dsn)
    while i < n:
        while i < n and dsn[i].isspace():
            i += 1
        start = i
        while i < n and dsn[i] != "=" and not dsn[i].isspace():
            i += 1
        key = dsn[start:i]
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n or dsn[i] != "=":
            break  # malformed: libpq refuses it as well
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        quoted = i < n and dsn[i] == "'"
        i += quoted
        start, value = i, []
        while i < n and (dsn[i] != "'" if quoted else not dsn[i].isspace()):
            if dsn[i] == "\\" and i + 1 < n:
                i += 1
            value.append(dsn[i])
            i += 1
        raw = dsn[start:i]
        i += quoted
        if key in _DSN_SECRET_KEYS:
            out += [raw, "".join(value)]
    return [s for s in out if s]


def _byte_position(raw: bytes, offset: int) -> str:
    """``at line L, column C (byte B)`` for a byte offset (column counted in bytes, from 1)."""
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return f"at line {line}, column {column} (byte {offset})"


def _toml_problem(message: str) -> str:
    """``tomllib``'s message without any text of the file: its constant head and position.

    ``tomllib`` quotes keys and characters of the document in some messages (``Cannot declare
    ('x',) twice``, ``Illegal character '\\x01'``); only the words before the first quoted or
    formatted part are kept, then ``(at line L, column C)`` (or ``at end of document``)."""
    m = re.search(r"\(at (line \d+, column \d+|end of document)\)\s*$", message)
    at = f"at {m.group(1)}" if m else "(position unknown)"
    body = message[: m.start()] if m else message
    head = re.match(r"[A-Za-z ]*", body)
    words = head.group(0).strip() if head else ""
    if words and len(words) < len(body.strip()):
        words += " …"
    return f"{at}: {words}" if words else at


def _nesting_position(text: str, limit: int) -> str:
    """``" at line L, column C"`` where arrays and inline tables first nest deeper than
    ``limit`` (outside strings and comments), or ``""`` if a scan finds no such place."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "\"'":
            triple = text.startswith(c * 3, i)
            close = c * 3 if triple else c
            i += len(close)
            while i < n and not text.startswith(close, i):
                if c == '"' and text[i] == "\\":
                    i += 1
                elif text[i] == "\n" and not triple:
                    break
                i += 1
            i += len(close)
            continue
        if c in "[{":
            depth += 1
            if depth > limit:
                line = text.count("\n", 0, i) + 1
                column = i - (text.rfind("\n", 0, i) + 1) + 1
                return f" at line {line}, column {column}"
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return ""


def _quote(value: str, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for a value quoted in an error."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


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
        if not _ENV_RE.fullmatch(v):
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
        for part, text in (("query", parts.query), ("fragment", parts.fragment)):
            for item in re.split(r"[&;]", text):
                name = re.sub(r"[-_.]", "", unquote(item.partition("=")[0])).lower()
                if name and _URL_SECRET_RE.search(name):
                    raise ConfigError(
                        self.at(key),
                        f"must not carry a secret in its {part} (a parameter named like a "
                        "token, key or password); secrets come from the environment",
                    )
        return v.rstrip("/")

    def done(self) -> None:
        """Refuse keys that were never read (typos would otherwise be silently ignored)."""
        for k in self.data:
            if k not in self._seen:
                raise ConfigError(self.at(k), "unknown key")
