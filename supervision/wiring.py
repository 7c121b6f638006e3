"""The composition root: the one place where the configuration becomes running parts.

:mod:`infra.config` holds plain sections; this module maps them onto the types of the layers
below (:func:`supervisor_config`, :func:`restart_policy`, :func:`lease_settings`,
:func:`venue_config`) and builds the pieces other modules provide: the database and store
(:func:`open_store`), the exchange adapters (:func:`wire_infra`) and the feeds
(:func:`wire_feeds`). :class:`~supervision.app.App` calls these (its ``infra_factory`` and
``feeds_factory`` defaults); the CLI's read-only commands call :func:`open_store`.

Everything built here that must be closed is registered on a :class:`contextlib.ExitStack`
(:attr:`Infra.resources`), closed in reverse order of opening. A close that fails is logged
and the rest still close (:func:`close_logged`); a failure while building closes what was
already opened and re-raises. Main thread; nothing here starts a thread of its own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Protocol, cast

from actors.ports import ExchangePort, Store
from actors.state import Installation
from infra.config import AccountConfig, Config, OwnershipConfig, RestartConfig
from infra.metrics import PrometheusMetrics
from supervision.control import ControlServer
from supervision.leases import LeaseSettings, Ownership, register
from supervision.live_view import ViewSource
from supervision.restart import RestartPolicy
from supervision.supervisor import Supervisor, SupervisorConfig

if TYPE_CHECKING:
    from infra.exchange import CcxtExchange, VenueConfig
    from supervision.app import App
    from supervision.intake import Intake
    from supervision.sync import SyncService

__all__ = [
    "FeedsFactory",
    "Infra",
    "InfraFactory",
    "Service",
    "close_logged",
    "lease_settings",
    "open_store",
    "restart_policy",
    "supervisor_config",
    "venue_config",
    "watch_ownership",
    "watch_sizes",
    "wire_controls",
    "wire_feeds",
    "wire_infra",
    "wire_ownership",
]

log = logging.getLogger(__name__)


class Service(Protocol):
    """Anything the app starts and stops (feeds). ``stop`` must be bounded and idempotent."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Infra:
    """What :func:`wire_infra` built. ``resources`` closes it all (reverse order) at shutdown;
    the app adds what it opens on top (the lease store)."""

    store: Store
    exchanges: Mapping[str, ExchangePort]
    dsn: str | None = None
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    refused_accounts: Mapping[str, str] = field(default_factory=dict)


InfraFactory = Callable[[Config, PrometheusMetrics], Infra]
FeedsFactory = Callable[[Config, "App"], Sequence[Service]]


def close_logged(stack: contextlib.ExitStack, name: str, close: Callable[[], object]) -> None:
    """Register ``close`` on ``stack``; when it raises, the failure is logged (``closing
    <name> failed``) and the stack goes on closing the rest."""

    def run() -> None:
        try:
            close()
        except Exception:
            log.exception("closing %s failed", name)

    stack.callback(run)


# --- configuration -> the types of the layers below ------------------------------------


def restart_policy(section: RestartConfig) -> RestartPolicy:
    """The supervisor's :class:`RestartPolicy` from the ``[restart]`` section."""
    return RestartPolicy(**{f.name: getattr(section, f.name) for f in fields(RestartPolicy)})


def supervisor_config(config: Config, installation: Installation | None = None) -> SupervisorConfig:
    """The :class:`SupervisorConfig`: per-account policies (an account may override risk)
    and per-account exchange worker pools (``accounts.<name>.workers``). With
    ``installation`` (a lease keeper's database), every policy knows it: the orphan sweep and
    adoption leave other installations' orders alone."""
    policy = config.policy()
    policies = {name: config.policy(name) for name in config.accounts}
    if installation is not None:
        policy = replace(policy, installation=installation)
        policies = {a: replace(p, installation=installation) for a, p in policies.items()}
    return SupervisorConfig(
        policy=policy,
        account_policies=policies,
        restart=restart_policy(config.restart),
        account_workers={name: acc.workers for name, acc in config.accounts.items()},
        passivate_after_s=config.supervisor.passivate_after_s,
        shutdown_grace_s=config.supervisor.shutdown_grace_s,
    )


def lease_settings(config: Config) -> LeaseSettings:
    """The lease keeper's settings: ``[ownership]``, and ``database.account_lock_wait``
    (a standby waits for accounts). Each database call of the keeper is bounded by the
    shorter of 2 s and ``renew_s``."""
    o: OwnershipConfig = config.ownership
    return LeaseSettings(
        lease_s=o.lease_s,
        renew_s=o.renew_s,
        fence_margin_s=o.fence_margin_s,
        max_accounts=o.max_accounts,
        wait=config.database.wait_for_accounts,
        timeout=min(2.0, o.renew_s),
        hold_s=o.hold_signals_s,
    )


def venue_config(acc: AccountConfig, recv_window_ms: int | None = None) -> VenueConfig:
    """The ccxt adapter's configuration of one account, with the key pair the configuration
    resolved (:func:`infra.config.read_credentials`): the adapter reads no environment."""
    from infra.exchange import Credentials, VenueConfig  # noqa: PLC0415 - imports ccxt

    return VenueConfig(
        venue=acc.exchange,
        base_url=acc.rest_url,
        enable_rate_limit=acc.enable_rate_limit,
        timeout_s=acc.timeout_s,
        require_credentials=acc.credentials == "env",
        recv_window_ms=recv_window_ms,
        api_credentials=Credentials(acc.api_key, acc.api_secret) if acc.api_key else None,
    )


# --- building ------------------------------------------------------------------------


def open_store(config: Config, stack: contextlib.ExitStack) -> tuple[Store, str]:
    """The store and its DSN: the configured DSN, or an embedded server in ``embedded_dir``.

    The store (and the embedded server, which stops when its last user closes it) close with
    ``stack``. Migrations run here.
    """
    from infra.store.embedded import EmbeddedPostgres  # noqa: PLC0415
    from infra.store.postgres import PostgresStore  # noqa: PLC0415

    dsn = config.database.dsn
    if dsn is None:
        pg = EmbeddedPostgres(config.database.embedded_dir)
        close_logged(stack, "embedded postgres", pg.close)
        dsn = pg.start()
    store = PostgresStore(dsn)
    close_logged(stack, "store", store.close)
    return store, dsn


def wire_infra(config: Config, metrics: PrometheusMetrics) -> Infra:
    """Database, store and exchange adapters (every configured account), from the
    configuration. Which accounts this process trades is the lease keeper's to decide
    (:class:`~supervision.leases.Ownership`, started by :meth:`App.start` on ``infra.dsn``).
    """
    with contextlib.ExitStack() as stack:
        store, dsn = open_store(config, stack)
        # The exchange refuses a signed request older than the fence margin (recvWindow): a
        # process paused after signing cannot have it executed once its lease may have expired.
        recv_window_ms = int(min(config.ownership.fence_margin_s, 5.0) * 1000)
        exchanges = {
            name: _exchange(name, acc, stack, recv_window_ms)
            for name, acc in config.accounts.items()
        }
        return Infra(store=store, exchanges=exchanges, dsn=dsn, resources=stack.pop_all())


def _exchange(
    name: str, acc: AccountConfig, stack: contextlib.ExitStack, recv_window_ms: int
) -> ExchangePort:
    """The ccxt adapter of one account; markets loaded now when the exchange answers."""
    from infra.exchange import CcxtExchange  # noqa: PLC0415

    ex = CcxtExchange(name, venue_config(acc, recv_window_ms), environ={})
    close_logged(stack, f"exchange {name}", ex.close)
    try:
        unknown = sorted(set(acc.symbols) - ex.symbols)
    except Exception as exc:
        log.warning("account %s: markets not loaded yet (%s); will retry on first use", name, exc)
    else:
        if unknown:
            log.warning("account %s: symbols not listed by the exchange: %s", name, unknown)
    return ex


def wire_feeds(config: Config, app: App) -> Sequence[Service]:
    """The signal feed and the exchange streams, telling ``app.intake``.

    Called by :meth:`App.start` on the main thread once the supervisor, the sync service and
    the intake exist. A reconnect of an exchange stream asks the sync service for a sync of
    its account (events may have been missed). The signal feed answers each signal once its
    outcome is decided (the supervisor's ``signal_listeners``). Each feed gets a health check
    ``feed:<name>`` that fails while it is not connected, so ``/readyz`` shows a feed down
    (upstream ``signals`` for the signal feed, ``exchange`` for the exchange streams).
    """
    from infra.feeds import feeds_from_config  # noqa: PLC0415
    from infra.feeds.signals import SignalFeedClient  # noqa: PLC0415

    if app.intake is None or app.sync is None or app.infra is None:
        raise RuntimeError("wire_feeds needs the intake, the sync service and the infra")
    feeds = feeds_from_config(
        config,
        app.intake,
        app.sync.request,
        app.metrics,
        accounts=app.infra.exchanges,
    )
    for feed in feeds:
        runner = feed.runner
        if isinstance(feed, SignalFeedClient) and app.supervisor is not None:
            app.supervisor.signal_listeners.append(feed.signal_decided)
            app.supervisor.size_sources[f"feed_awaiting:{runner.name}"] = feed.awaiting
        app.health.register(
            f"feed:{runner.name}",
            lambda r=runner: None if r.connected.is_set() else "not connected",  # type: ignore[misc]
            upstream="signals" if isinstance(feed, SignalFeedClient) else "exchange",
        )
    return feeds


def _client_count(ex: CcxtExchange) -> Callable[[], int]:
    """How many per-thread ccxt clients ``ex`` holds, read when called."""
    return lambda: ex.pool.client_count


def watch_sizes(sup: Supervisor, intake: Intake, sync: SyncService, infra: Infra) -> None:
    """Per-key structures outside the supervisor, reported by ``sup.structure_sizes()``: the
    intake's recent admissions, the sync's pending requests, each adapter's per-thread
    clients and the store's memory of written orders (where the implementation has them)."""
    sup.size_sources["intake_admitted"] = intake.admitted
    sup.size_sources["sync_requested"] = lambda: sync.sizes()["sync_requested"]
    from infra.exchange import CcxtExchange  # noqa: PLC0415
    from infra.store.postgres import PostgresStore  # noqa: PLC0415

    for account, ex in infra.exchanges.items():
        if isinstance(ex, CcxtExchange):
            sup.size_sources[f"exchange_clients:{account}"] = _client_count(ex)
    store = infra.store
    if isinstance(store, PostgresStore):
        sup.size_sources["store_written"] = lambda: store.written_positions


def wire_ownership(app: App, infra: Infra) -> Ownership:
    """The lease keeper (I7) on ``infra.dsn``: its lease store (closed with the infra), this
    database's installation id, the store's commits fenced by its epochs. It activates an
    account through :meth:`App.activate` and reaches the supervisor and the sync service
    through ``app`` once they exist. Called by :meth:`App.start` (main thread)."""
    from infra.store.ownership import LeaseStore  # noqa: PLC0415

    cfg = app.config
    o = cfg.ownership
    assert infra.dsn is not None
    settings = lease_settings(cfg)
    leases = LeaseStore(infra.dsn, lease_s=o.lease_s, timeout=settings.timeout)
    close_logged(infra.resources, "lease store", leases.close)
    installation = leases.installation()

    def sup() -> Supervisor:
        assert app.supervisor is not None
        return app.supervisor

    own = Ownership(
        leases,
        list(cfg.accounts),
        settings,
        activate=app.activate,
        deactivate=lambda account, reason: sup().deactivate(account, reason),
        set_entries=lambda account, is_open, reason, hold: sup().set_entries_open(
            account, is_open, reason, hold=hold
        ),
        request_sync=lambda account: (
            app.sync.request(account, "takeover") if app.sync is not None else None
        ),
        set_adoption=lambda account, allowed: sup().set_adoption(account, allowed),
        installation=installation,
    )
    fence_with = getattr(infra.store, "fence_with", None)
    if fence_with is not None:
        fence_with(own.token)
    for account, exchange in infra.exchanges.items():
        # Each place and cancel is stamped, then sent only while the lease is valid (I7).
        fence_exchange = getattr(exchange, "fence_with", None)
        if fence_exchange is not None:
            fence_exchange(functools.partial(own.seconds_left, account))
    log.info(
        "installation %s; %s; leases of %.1fs renewed every %.1fs, fenced %.1fs before expiry%s",
        installation.label,
        leases.identity.describe(),
        o.lease_s,
        o.renew_s,
        o.fence_margin_s,
        f", at most {o.max_accounts} accounts" if o.max_accounts else "",
    )
    return own


def watch_ownership(app: App, own: Ownership, sup: Supervisor) -> Callable[[], None]:
    """Connect the lease keeper and the supervisor: the supervisor reports what it is refused
    as not owner, inspects orders through the installation guard; health checks
    ``installation:<account>`` and ``ownership``; the keeper's metrics. Returns the function
    that unregisters those metrics (at shutdown)."""
    sup.ownership_listeners.append(own.not_owner)
    if own.guard is not None:
        sup.inspect = own.guard.inspect
        guard = own.guard
        for account in app.config.accounts:
            app.health.register(
                f"installation:{account}",
                lambda a=account: guard.check(a),  # type: ignore[misc]
            )
    app.health.register("ownership", own.readiness)  # process-internal: no page
    return register(
        app.metrics.registry,
        own.collector(
            lambda: {
                a: (sup.dropped_not_owner.get(a, 0), sup.held_signals(a))
                for a in app.config.accounts
            }
        ),
    )


def wire_controls(app: App, infra: Infra, sup: Supervisor) -> ControlServer | None:
    """Pauses and quarantines: the actors of the symbols whose flag is stored (woken, so that
    they show), and the control endpoint when its token is set (``None`` otherwise;
    :meth:`App.start` starts it). A failure to read the stored flags is logged; the process
    starts without them showing."""
    stored = getattr(infra.store, "controls", None)
    if callable(stored):
        try:
            woken = sup.wake(c.key for c in stored())
        except Exception as exc:
            log.error("stored pauses and quarantines not read now: %s", exc)
        else:
            if woken:
                log.info("paused or quarantined (stored): %s", ", ".join(str(k) for k in woken))
    cc = app.config.control
    if not cc.enabled:
        log.info("control endpoint and live view off: %s is not set", cc.token_env)
        return None
    reads = ("controls", "recent_journal", "recent_signals")
    view = infra.store if all(callable(getattr(infra.store, n, None)) for n in reads) else None
    server = ControlServer(
        app.config,
        sup,
        list(infra.exchanges),
        app.health.evaluate,
        app.control_stats,
        cast(ViewSource | None, view),
        marks=app.intake.marks if app.intake is not None else None,
    )
    return server
