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

The package: :mod:`~infra.config.schema` (the sections' dataclasses, where every default
is written), :mod:`~infra.config.validation` and :mod:`~infra.config.accounts` (the section
parsers, with the validator kit of :mod:`~infra.config.table`), :mod:`~infra.config.loading`
(the file) and :mod:`~infra.config.secrets_policy` (also used by :mod:`infra.exchange.venues`
for an account's key pair). The mapping onto the supervisor's types is
:mod:`supervision.wiring`'s.

The schema, with the defaults of the dataclasses (a test checks this text against them; see
also ``deploy/example.toml``)::

    [accounts.<name>]            # at least one
    rest_url = "https://fapi.binance.com"   # required
    ws_url = "wss://fstream.binance.com"    # required
    symbols = ["BTCUSDT"]        # allow-list, required, non-empty
    exchange = "binanceusdm"     # a ccxt exchange id
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

from infra.config.loading import load_config
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
    MIN_CONTROL_TOKEN,
    dsn_secrets,
    env_name,
    env_prefix,
    read_credentials,
)
from infra.config.table import ConfigError
from infra.config.validation import parse_config

__all__ = [
    "DUMMY_API_KEY",
    "DUMMY_API_SECRET",
    "MIN_CONTROL_TOKEN",
    "AccountConfig",
    "Config",
    "ConfigError",
    "ControlConfig",
    "DatabaseConfig",
    "FeedsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "OwnershipConfig",
    "RestartConfig",
    "RiskConfig",
    "SignalPolicyConfig",
    "SupervisorSection",
    "SyncConfig",
    "dsn_secrets",
    "env_name",
    "env_prefix",
    "load_config",
    "parse_config",
    "read_credentials",
]
