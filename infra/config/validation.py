"""Validation: an already parsed TOML document to a :class:`~infra.config.Config`.

:func:`parse_config` reads each section with the validator kit (:class:`Table`), taking every
default from the schema's dataclasses, and checks what spans keys (distinct accounts, lease
timings, backoff order). Secrets come only from ``environ`` (:mod:`infra.config.secrets_policy`).
Pure apart from resolving ``database.embedded_dir`` to an absolute path; any thread. Raises
:class:`ConfigError` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from actors.state import Reentry
from infra.config.schema import (
    AccountConfig,
    Config,
    ControlConfig,
    DatabaseConfig,
    FeedsConfig,
    LoggingConfig,
    MetricsConfig,
    OwnershipConfig,
    RestartConfig,
    RiskConfig,
    SignalPolicyConfig,
    SupervisorSection,
    SyncConfig,
)
from infra.config.secrets_policy import (
    DUMMY_API_KEY,
    DUMMY_API_SECRET,
    check_control_token,
    env_name,
    parse_dsn,
    read_credentials,
    refuse_dsn_password,
    refuse_file_secrets,
)
from infra.config.table import ConfigError, Table, is_loopback, quote

__all__ = ["parse_config"]

_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,32}$")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_config(
    data: Mapping[str, Any],
    environ: Mapping[str, str],
    source: str = "<memory>",
    *,
    require_credentials: bool = True,
) -> Config:
    """Validate an already parsed TOML document. See :mod:`infra.config` for the schema.

    ``require_credentials=False`` is for commands that only read the database (``status``,
    ``history``): API keys are not looked up (accounts get empty ones) and their absence is no
    error; every other check is the same. Raises :class:`ConfigError` only.
    """
    refuse_file_secrets(data)
    root = Table(data, "")
    risk = _risk(root.table("risk", RiskConfig))
    accounts_t = root.table("accounts")
    if not accounts_t.keys():
        raise ConfigError("accounts", "at least one account is required")
    _distinct_names(accounts_t)
    accounts = {
        name: _account(
            name, accounts_t.table(name, AccountConfig), risk, environ, require_credentials
        )
        for name in accounts_t.keys()
    }
    _distinct_exchange_accounts(accounts, accounts_t)
    signal_policy = _signal_policy(root.table("signal_policy", SignalPolicyConfig))

    sync_t = root.table("sync", SyncConfig)
    sync = SyncConfig(interval_s=sync_t.num("interval_s", min_=0.0, strict=True))
    sync_t.done()

    restart = _restart(root.table("restart", RestartConfig))

    s_t = root.table("supervisor", SupervisorSection)
    supervisor = SupervisorSection(
        passivate_after_s=s_t.num("passivate_after_s", min_=0.0, strict=True),
        shutdown_grace_s=s_t.num("shutdown_grace_s", min_=0.0),
    )
    s_t.done()

    database = _database(root.table("database", DatabaseConfig), environ)
    ownership = _ownership(root.table("ownership", OwnershipConfig))
    metrics = _metrics(root.table("metrics", MetricsConfig))
    control = _control(root.table("control", ControlConfig), environ)
    feeds = _feeds(root.table("feeds", FeedsConfig), environ)
    logging_ = _logging(root.table("logging", LoggingConfig))
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


def _risk(t: Table) -> RiskConfig:
    """``[risk]`` (defaults: the schema's) or ``[accounts.<name>.risk]`` (defaults: the
    global ``[risk]``, the table's ``defaults``)."""
    stop = t.num("default_stop_pct", min_=0.0, max_=1.0, strict=True)
    if stop >= 1.0:
        raise ConfigError(t.at("default_stop_pct"), "must be below 1 (a fraction, 0.02 = 2 %)")
    notional = t.opt_num("max_notional")
    if notional is not None and notional <= 0:
        raise ConfigError(t.at("max_notional"), "must be positive")
    out = RiskConfig(
        default_stop_pct=stop,
        max_notional=notional,
        max_open_positions=t.opt_int("max_open_positions", min_=1),
        sl_max_attempts=t.int_("sl_max_attempts", min_=1),
        sl_deadline_s=t.num("sl_deadline_s", min_=0.0, strict=True),
        max_stop_distance_pct=t.num("max_stop_distance_pct", min_=0.0, max_=1.0, strict=True),
        max_mark_age_s=t.num("max_mark_age_s", min_=0.0, strict=True),
        mark_wait_s=t.num("mark_wait_s", min_=0.0, strict=True),
    )
    t.done()
    return out


def _account(
    name: str,
    t: Table,
    risk: RiskConfig,
    environ: Mapping[str, str],
    require_credentials: bool = True,
) -> AccountConfig:
    if not _ACCOUNT_RE.fullmatch(name):
        raise ConfigError(t.path, "account name must be 1-32 of [A-Za-z0-9_-]")
    exchange = t.str_("exchange")
    from infra.exchange.venues import VENUES  # noqa: PLC0415 - imports ccxt: only when needed

    if exchange not in VENUES:
        raise ConfigError(
            t.at("exchange"),
            f"unsupported exchange {quote(exchange)} (known: {', '.join(VENUES)})",
        )
    rest_url = t.url("rest_url", ("http", "https"))
    ws_url = t.url("ws_url", ("ws", "wss"))
    symbols = t.str_list("symbols")
    if not symbols:
        raise ConfigError(t.at("symbols"), "the allow-list needs at least one symbol")
    for i, s in enumerate(symbols):
        if not _SYMBOL_RE.fullmatch(s):
            raise ConfigError(f"{t.at('symbols')}[{i}]", f"{quote(s)} is not an exchange symbol id")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(t.at("symbols"), "lists a symbol twice")
    credentials = t.str_("credentials")
    key_env = t.env_name("api_key_env", env_name(name, "API_KEY"))
    secret_env = t.env_name("api_secret_env", env_name(name, "API_SECRET"))
    insecure_ok = t.bool_("allow_insecure_transport")
    if credentials == "env" and not insecure_ok:
        for k, url in (("rest_url", rest_url), ("ws_url", ws_url)):
            scheme = urlsplit(url).scheme
            if scheme in ("http", "ws") and not is_loopback(url):
                raise ConfigError(
                    t.at(k),
                    f"{scheme}:// to a non-loopback host would carry the account's traffic "
                    f'unencrypted with real credentials (credentials = "env"): use {scheme}s://, '
                    "or set allow_insecure_transport = true",
                )
    if credentials == "env" and not require_credentials:
        key, secret = "", ""
    elif credentials == "env":
        key, secret = read_credentials(key_env, secret_env, environ, where=t.path)
    elif credentials == "dummy":
        for k, url in (("rest_url", rest_url), ("ws_url", ws_url)):
            if not is_loopback(url):
                raise ConfigError(
                    t.at(k), 'credentials = "dummy" is only allowed for a loopback exchange (sim/)'
                )
        key, secret = DUMMY_API_KEY, DUMMY_API_SECRET
    else:
        raise ConfigError(t.at("credentials"), 'must be "env" or "dummy"')
    acc_risk = _risk(t.table("risk", risk))
    out = AccountConfig(
        name=name,
        exchange=exchange,
        rest_url=rest_url,
        ws_url=ws_url,
        symbols=tuple(symbols),
        workers=t.int_("workers", min_=1, max_=64),
        enable_rate_limit=t.bool_("enable_rate_limit"),
        timeout_s=t.num("timeout_s", min_=0.0, strict=True),
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


def _distinct_names(accounts_t: Table) -> None:
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


def _distinct_exchange_accounts(accounts: Mapping[str, AccountConfig], accounts_t: Table) -> None:
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


def _signal_policy(t: Table) -> SignalPolicyConfig:
    reentry_s = t.str_("reentry", SignalPolicyConfig().reentry.value)
    try:
        reentry = Reentry(reentry_s)
    except ValueError:
        raise ConfigError(t.at("reentry"), "must be one of allow, cooldown, never") from None
    out = SignalPolicyConfig(
        reentry=reentry,
        cooldown_s=t.num("cooldown_s", min_=0.0),
        max_signal_age_s=t.num("max_signal_age_s", min_=0.0, strict=True),
    )
    t.done()
    return out


def _restart(t: Table) -> RestartConfig:
    out = RestartConfig(
        max_restarts=t.int_("max_restarts", min_=1),
        window_s=t.num("window_s", min_=0.0, strict=True),
        min_backoff_s=t.num("min_backoff_s", min_=0.0),
        max_backoff_s=t.num("max_backoff_s", min_=0.0),
        jitter=t.num("jitter", min_=0.0, max_=1.0),
    )
    if out.max_backoff_s < out.min_backoff_s:
        raise ConfigError(t.at("max_backoff_s"), "must be at least min_backoff_s")
    t.done()
    return out


def _database(t: Table, environ: Mapping[str, str]) -> DatabaseConfig:
    dsn_env = t.env_name("dsn_env")
    dsn = t.opt_str("dsn")
    if dsn is not None:
        if not dsn.strip():
            raise ConfigError(t.at("dsn"), "is empty")
        refuse_dsn_password(dsn, t.at("dsn"), dsn_env)
    env_dsn = environ.get(dsn_env)
    if env_dsn:
        parse_dsn(
            env_dsn, t.at("dsn_env"), f"{dsn_env} is not a valid PostgreSQL connection string"
        )
        dsn = env_dsn
    embedded_dir = t.str_("embedded_dir")
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


def _lock_wait(t: Table) -> bool | float:
    """``account_lock_wait``: ``false`` (take what is free at start), ``true`` (a standby:
    wait for ever) or seconds (wait that long for a first account, then exit 1)."""
    v = t.data.get("account_lock_wait")
    if v is None or isinstance(v, bool):
        return t.bool_("account_lock_wait")
    if not isinstance(v, int | float):
        raise ConfigError(
            t.at("account_lock_wait"), "must be true, false or a number of seconds above 0"
        )
    return t.num("account_lock_wait", min_=0.0, strict=True)


def _ownership(t: Table) -> OwnershipConfig:
    lease = t.num("lease_s", min_=0.0, strict=True)
    renew = t.num("renew_s", min_=0.0, strict=True)
    margin = t.num("fence_margin_s", min_=0.0, strict=True)
    if margin >= lease:
        raise ConfigError(t.at("fence_margin_s"), f"must be below lease_s ({lease:g})")
    if renew >= lease - margin:
        raise ConfigError(
            t.at("renew_s"),
            f"must be below lease_s - fence_margin_s ({lease - margin:g}): an owner would "
            "fence itself between two renewals",
        )
    out = OwnershipConfig(
        lease_s=lease,
        renew_s=renew,
        fence_margin_s=margin,
        max_accounts=t.opt_int("max_accounts", min_=1),
        hold_signals_s=t.num("hold_signals_s", min_=0.0),
    )
    t.done()
    return out


def _address(t: Table, default: str) -> tuple[str, int]:
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


def _metrics(t: Table) -> MetricsConfig:
    host, port = _address(t, MetricsConfig().address)
    out = MetricsConfig(host=host, port=port, enabled=t.bool_("enabled"))
    t.done()
    return out


def _control(t: Table, environ: Mapping[str, str]) -> ControlConfig:
    host, port = _address(t, ControlConfig().address)
    token_env = t.env_name("token_env")
    token = environ.get(token_env) or None
    if token is not None:
        check_control_token(token, token_env, t.at("token_env"))
    out = ControlConfig(
        host=host,
        port=port,
        token_env=token_env,
        refresh_s=t.num("refresh_s", min_=0.0, max_=3600.0, strict=True),
        token=token,
    )
    t.done()
    return out


def _feeds(t: Table, environ: Mapping[str, str]) -> FeedsConfig:
    url = t.opt_str("signal_url")
    if url is not None:
        url = t.url("signal_url", ("ws", "wss"))
    token_env = t.env_name("token_env")
    out = FeedsConfig(
        signal_url=url,
        token_env=token_env,
        silence_timeout_s=t.num("silence_timeout_s", min_=0.0, strict=True),
        exchange_streams=t.bool_("exchange_streams"),
        signal_acks=t.bool_("signal_acks"),
        token=environ.get(token_env) or None,
    )
    t.done()
    return out


def _logging(t: Table) -> LoggingConfig:
    level = t.str_("level").upper()
    if level not in _LEVELS:
        raise ConfigError(t.at("level"), f"must be one of {', '.join(_LEVELS)}")
    log_file = t.opt_str("file")
    if log_file is not None and (not log_file.strip() or "\0" in log_file):
        raise ConfigError(t.at("file"), "must be a file path")
    out = LoggingConfig(
        level=level,
        json=t.bool_("json"),
        file=log_file,
        max_bytes=t.int_("max_bytes", min_=4096),
        backups=t.int_("backups", min_=1, max_=1000),
    )
    t.done()
    return out
