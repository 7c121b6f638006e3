"""Validation of the accounts: ``[accounts.<name>]``, their risk overrides and the global
``[risk]`` they start from.

An account's name, exchange, URLs (no plain transport to a remote host with real
credentials), symbol allow-list and credentials (:func:`~infra.config.read_credentials`; the
dummy pair only against a loopback exchange); then, across accounts, that no two are one
exchange account (same key variables by name, or the same key variable or key on the same
exchange URL). Called by :func:`~infra.config.parse_config`; pure; raises
:class:`ConfigError` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from infra.config.schema import AccountConfig, RiskConfig
from infra.config.secrets_policy import DUMMY_API_KEY, DUMMY_API_SECRET, env_name, read_credentials
from infra.config.table import ConfigError, Table, is_loopback, quote

__all__ = ["parse_accounts", "parse_risk"]

_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,32}$")


def parse_accounts(
    t: Table, risk: RiskConfig, environ: Mapping[str, str], require_credentials: bool
) -> dict[str, AccountConfig]:
    """``[accounts]``: at least one, distinct; ``risk`` is what their overrides start from."""
    if not t.keys():
        raise ConfigError("accounts", "at least one account is required")
    _distinct_names(t)
    accounts = {
        name: _account(name, t.table(name, AccountConfig), risk, environ, require_credentials)
        for name in t.keys()
    }
    _distinct_exchange_accounts(accounts, t)
    return accounts


def parse_risk(t: Table) -> RiskConfig:
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
    acc_risk = parse_risk(t.table("risk", risk))
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
