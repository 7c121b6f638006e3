"""The configuration's schema: one frozen dataclass per TOML section, with the defaults.

The field defaults here are the only place a default is written: the section parsers
(:mod:`infra.config.validation`) read them (:func:`~infra.config.table.defaults_of`), and
the schema shown in :mod:`infra.config`'s docstring is checked against them by a test.
Values only: any thread. :meth:`Config.policy` maps the risk and signal sections onto the
core's :class:`~actors.state.Policy` (the supervisor's and the feeds' signal rules); every
other mapping onto the supervisor's types is :mod:`supervision.wiring`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from actors.state import Policy, Reentry
from infra.config.secrets_policy import dsn_secrets

__all__ = [
    "AccountConfig",
    "Config",
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
]


#: The core's defaults for the rules the configuration exposes: written once, in
#: :class:`~actors.state.Policy`.
_CORE = Policy()


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Risk defaults; ``None`` means no limit."""

    default_stop_pct: float = _CORE.default_stop_pct
    max_notional: float | None = _CORE.max_notional
    max_open_positions: int | None = None
    sl_max_attempts: int = _CORE.sl_max_attempts
    sl_deadline_s: float = _CORE.sl_deadline_s
    max_stop_distance_pct: float = _CORE.max_stop_distance_pct
    max_mark_age_s: float = _CORE.max_mark_age_s
    mark_wait_s: float = _CORE.mark_wait_s


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One exchange account. ``api_key``/``api_secret`` are resolved from the environment
    (empty when loaded with ``require_credentials=False``)."""

    name: str
    rest_url: str
    ws_url: str
    symbols: tuple[str, ...]
    exchange: str = "binanceusdm"
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
    reentry: Reentry = _CORE.reentry
    cooldown_s: float = _CORE.cooldown_s
    #: On in production (the core's own default, ``None``, checks no age).
    max_signal_age_s: float = 30.0


@dataclass(frozen=True, slots=True)
class RestartConfig:
    """``[restart]``: crashed actors' restart intensity and backoff (the supervisor's
    :class:`~supervision.restart.RestartPolicy` adds the backoff formula)."""

    max_restarts: int = 5
    window_s: float = 60.0
    min_backoff_s: float = 0.1
    max_backoff_s: float = 10.0
    jitter: float = 0.2


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
    restart: RestartConfig = field(default_factory=RestartConfig)
    supervisor: SupervisorSection = field(default_factory=SupervisorSection)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    ownership: OwnershipConfig = field(default_factory=OwnershipConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = "<memory>"

    # -- the core's policy (also read by the feeds' signal rules)

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
