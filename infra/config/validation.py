"""Validation: an already parsed TOML document to a :class:`~infra.config.Config`.

:func:`parse_config` reads each section with the validator kit (:class:`Table`), taking every
default from the schema's dataclasses, and checks what spans keys (lease timings, backoff
order); the accounts and the risk they start from are :mod:`infra.config.accounts`'. Secrets
come only from ``environ`` (:mod:`infra.config.secrets_policy`). Pure apart from resolving
``database.embedded_dir`` to an absolute path; any thread. Raises :class:`ConfigError` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from actors.state import Reentry
from infra.config.accounts import parse_accounts, parse_risk
from infra.config.schema import (
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
    check_control_token,
    parse_dsn,
    refuse_dsn_password,
    refuse_file_secrets,
)
from infra.config.table import ConfigError, Table

__all__ = ["parse_config"]

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
    risk = parse_risk(root.table("risk", RiskConfig))
    accounts = parse_accounts(root.table("accounts"), risk, environ, require_credentials)
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
