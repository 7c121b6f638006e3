"""The process: builds everything from the configuration, runs until a signal, stops cleanly.

:class:`App` owns, in start order: the metrics/health HTTP server, the database (embedded or
DSN) and the store, the exchange adapters, the :class:`~supervision.supervisor.Supervisor`
(then the actors of symbols whose pause or quarantine is stored), the periodic
:class:`~supervision.sync.SyncService`, the lease keeper (:class:`~supervision.leases.Ownership`,
I7: it takes the accounts' leases and activates each account it holds, recovering its open
positions first, S5), the operator's control endpoint and live view (:mod:`supervision.control`,
only while its token is set) and the feeds. The pieces other modules provide are built by the
composition root, :mod:`supervision.wiring` (``infra_factory``, ``feeds_factory``, the lease
keeper, the control endpoint); the signal intake is :mod:`supervision.intake`, the timed store
:mod:`infra.store.timed`, the process's own health checks :mod:`supervision.checks`.
Slightly over 400 lines: the start order and its undo, and the two-signal stop, read best as
one class.

Stopping (:meth:`App.run`): the first SIGTERM or SIGINT stops intake (the control endpoint,
feeds, then sync), lets
in-flight exchange calls finish within ``supervisor.shutdown_grace_s`` (``Supervisor.stop``),
then gives up the leases of the accounts it held (the next owner takes them at once; a lease
of an account whose calls may still be in flight is left to expire), closes the store and the
embedded database, and ``run`` returns 0. A second signal forces the exit with code 1 at once.
A failure while starting returns 1 after undoing what was started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from actors.ports import Clock, SystemClock
from infra.config import Config
from infra.metrics import HealthChecks, MetricsServer, PrometheusMetrics
from infra.store.timed import TimedStore
from supervision.checks import ProcessChecks, mailbox_depths
from supervision.control import ControlCollector, ControlServer, ControlStats
from supervision.intake import Intake
from supervision.leases import Ownership
from supervision.supervisor import Supervisor, SupervisorConfig
from supervision.sync import SyncService
from supervision.wiring import (
    FeedsFactory,
    Infra,
    InfraFactory,
    Service,
    supervisor_config,
    watch_ownership,
    watch_sizes,
    wire_controls,
    wire_feeds,
    wire_infra,
    wire_ownership,
)

__all__ = ["App"]

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0
PROBE_S = 5.0


# --- the app ----------------------------------------------------------------------------


class App:
    """One supervisor process. ``run()`` from the main thread; the rest is for tests/tools."""

    def __init__(
        self,
        config: Config,
        *,
        infra_factory: InfraFactory = wire_infra,
        feeds_factory: FeedsFactory = wire_feeds,
        clock: Clock | None = None,
        metrics: PrometheusMetrics | None = None,
        force_exit: Callable[[int], object] | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics or PrometheusMetrics()
        self.health = HealthChecks(self.metrics)
        self.server: MetricsServer | None = None
        self.infra: Infra | None = None
        self.store: TimedStore | None = None
        self.supervisor: Supervisor | None = None
        self.sync: SyncService | None = None
        self.intake: Intake | None = None
        self.control: ControlServer | None = None
        self.control_stats = ControlStats()
        self._control_collector: ControlCollector | None = None
        self.feeds: list[Service] = []
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self._infra_factory = infra_factory
        self._feeds_factory = feeds_factory
        self._force_exit = force_exit or _hard_exit
        self._signals = 0
        self.checks = ProcessChecks(self)
        #: The lease keeper (I7); ``None`` without a database DSN (in-memory tests).
        self.ownership: Ownership | None = None
        #: What :meth:`run` returns after a stop that is not a failure to start.
        self.exit_code = 0
        self._unregister_ownership_metrics: Callable[[], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Build and start everything; returns when the process is ready (or raises)."""
        cfg = self.config
        self.checks.register_process()
        if cfg.metrics.enabled:
            self.server = MetricsServer(
                self.metrics.registry, self.health, cfg.metrics.host, cfg.metrics.port
            )
            self.server.start()
        infra = self._infra_factory(cfg, self.metrics)
        self.infra = infra
        for account, why in infra.refused_accounts.items():
            log.error("account %s not managed by this process: %s", account, why)
        if not infra.exchanges:
            raise RuntimeError(
                "no account can be managed by this process: "
                + ", ".join(f"{a} ({w})" for a, w in infra.refused_accounts.items())
            )
        self.store = TimedStore(infra.store, self.metrics)
        self.health.register("database", self.store.health, upstream="database")
        own = self.ownership = wire_ownership(self, infra) if infra.dsn is not None else None
        sup = Supervisor(
            self.store,
            infra.exchanges,
            self.clock,
            config=self._supervisor_config(own),
            metrics=self.metrics,
            gate=own.token if own is not None else None,
            hold_s=cfg.ownership.hold_signals_s,
        )
        self.supervisor = sup
        if own is not None:
            self._unregister_ownership_metrics = watch_ownership(self, own, sup)
        self.metrics.watch_supervisor(sup.stats, mailbox_depths)
        self.health.register("closes", self.checks.closes)
        sup.start()
        recovered = sup.recover()
        log.info("recovered %d open positions", len(recovered))
        self.sync = SyncService(
            infra.exchanges,
            sup.tell,
            sup.keys,
            cfg.sync.interval_s,
            on_round=self._on_sync_round,
            clock=self.clock.now,
            active=self.may_sync if own is not None else None,
        )
        sup.sync_listeners.append(self.sync.request)
        for account in infra.exchanges:
            self.checks.register_account(account)
        self.sync.start()
        if own is not None:
            own.start()  # the first round takes what is free now (activates, recovers)
            if not own.owned() and not cfg.database.wait_for_accounts:
                raise RuntimeError(
                    "no account can be managed by this process: "
                    + "; ".join(f"{v.account}: {v.note}" for v in own.view())
                )
        self.intake = Intake(cfg, sup, self.metrics, self.clock, self.store)
        watch_sizes(sup, self.intake, self.sync, infra)
        self._control_collector = ControlCollector(self.control_stats, sup.stats)
        self.metrics.registry.register(self._control_collector)
        self.control = wire_controls(self, infra, sup)
        if self.control is not None:
            self.control.start()
        self.feeds = list(self._feeds_factory(cfg, self))
        for feed in self.feeds:
            feed.start()
        self.ready.set()
        log.info(
            "supervisor ready: accounts %s%s, %d feeds, metrics %s, control %s",
            ", ".join(sorted(infra.exchanges)),
            ""
            if own is None
            else f" (owns {', '.join(own.owned()) or 'none'}; waits for "
            f"{', '.join(own.waiting()) or 'none'})",
            len(self.feeds),
            self.server.url if self.server else "off",
            self.control.url if self.control else "off",
        )

    def request_stop(self, reason: str = "requested") -> None:
        """Ask :meth:`wait` to return (thread-safe, idempotent)."""
        if not self.stopping.is_set():
            log.info("stopping: %s", reason)
        self.stopping.set()

    def wait(
        self, duration: float | None = None, on_tick: Callable[[], object] | None = None
    ) -> None:
        """Block until :meth:`request_stop` (or ``duration`` s), doing housekeeping.

        ``on_tick`` runs about once a second on this thread (the demo's live view).
        """
        deadline = None if duration is None else time.monotonic() + duration
        sup = self.supervisor
        passivate_every = max(1.0, self.config.supervisor.passivate_after_s / 4)
        next_passivate = time.monotonic() + passivate_every
        next_probe = time.monotonic() + PROBE_S
        self.checks.beat()
        while not self.stopping.wait(HOUSEKEEPING_S):
            now = self.checks.beat()
            if deadline is not None and now >= deadline:
                self.request_stop("duration elapsed")
                break
            if self.store is not None and now >= next_probe:
                next_probe = now + PROBE_S
                self.store.probe()
            self._check_wait_limit(now)
            if on_tick is not None:
                try:
                    on_tick()
                except Exception:
                    log.exception("housekeeping callback failed")
            if sup is not None and now >= next_passivate:
                next_passivate = now + passivate_every
                try:
                    sup.passivate_idle()
                except Exception:
                    log.exception("passivation failed")

    def shutdown(self) -> bool:
        """Stop intake, drain (bounded), stop actors, close. True when everything was clean."""
        self.stopping.set()
        clean = True
        if self.control is not None:
            self.control.stop()
        for feed in self.feeds:
            try:
                feed.stop()
            except Exception:
                clean = False
                log.exception("stopping feed %r failed", feed)
        if self.sync is not None:
            self.sync.stop()
        sup = self.supervisor
        own = self.ownership
        if own is not None:
            own.stop_taking()  # a stopping process takes no new account
        stopped_clean = True
        if sup is not None:
            unwritten = sum(c.report.unwritten for c in sup.cells())
            if unwritten:
                log.warning("%d transitions are still waiting for the database", unwritten)
            grace = self.config.supervisor.shutdown_grace_s
            in_flight = sup.in_flight()
            log.info("stopping actors; %d exchange calls in flight (grace %.1fs)", in_flight, grace)
            if not sup.stop(grace):
                clean = stopped_clean = False
                log.warning("not every exchange call or actor finished within %.1fs", grace)
            self.metrics.unwatch()
        if own is not None:
            # Nothing of this process can send any more when every call finished: the next
            # owner may take the accounts now. Otherwise the leases expire.
            own.stop(release=lambda account: stopped_clean)
            if self._unregister_ownership_metrics is not None:
                self._unregister_ownership_metrics()
        if self._control_collector is not None:
            with contextlib.suppress(KeyError):
                self.metrics.registry.unregister(self._control_collector)
            self._control_collector = None
        if self.infra is not None:
            self.infra.resources.close()
        if self.server is not None:
            self.server.stop()
        self.stopped.set()
        log.info("stopped%s", "" if clean else " (not clean)")
        return clean

    def run(self, duration: float | None = None) -> int:
        """Start, block until SIGTERM/SIGINT (or ``duration``), stop. Returns the exit code.

        Must be called from the main thread (signal handlers).
        """
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            try:
                self.start()
            except Exception as exc:
                log.error("start failed: %s", exc, exc_info=not isinstance(exc, RuntimeError))
                self.shutdown()
                return 1
            try:
                if not self.stopping.is_set():
                    self.wait(duration)
            finally:
                self.shutdown()
            return self.exit_code
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # -- internals ---------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.handle_signal(signum)

    def handle_signal(self, signum: int) -> None:
        """SIGTERM/SIGINT: the first asks for a graceful stop, the second forces exit 1."""
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self.request_stop(f"{name} received (send again to force)")
            return
        log.error("%s received again: forcing exit", name)
        self._force_exit(1)

    # -- ownership (I7) -------------------------------------------------------------------

    def _supervisor_config(self, own: Ownership | None) -> SupervisorConfig:
        """The supervisor's configuration; with a lease keeper, every policy knows this
        database's installation (:func:`~supervision.wiring.supervisor_config`)."""
        guard = own.guard if own is not None else None
        return supervisor_config(self.config, guard.installation if guard is not None else None)

    def activate(self, account: str) -> None:
        """The lease keeper holds ``account``'s lease: recover it, on a thread of its own
        (keeper's thread calls; returns at once). A recovery of many positions takes seconds
        and must not hold up the keeper's renewals (a stalled keeper fences the account it
        just took). Safe while it runs: an actor always loads its position before its first
        message, whoever starts it (a signal, the sync, this recovery)."""
        self.checks.synced(account)
        sup = self.supervisor
        assert sup is not None
        sup.activate(account, recover=False)  # its messages flow from now on
        threading.Thread(
            target=self._recover_account, args=(account,), name=f"recover-{account}", daemon=True
        ).start()

    def _recover_account(self, account: str) -> None:
        """Recover ``account``'s open positions; a store that fails is tried again (1 s, 2 s,
        ... 30 s) while the account is still active here."""
        delay = 1.0
        while not self.stopping.is_set():
            sup = self.supervisor
            if sup is None or not sup.active(account):
                return
            try:
                self._recover_now(account, sup)
                return
            except Exception as exc:
                log.error("account %s: recovery failed, again in %.0fs: %r", account, delay, exc)
            if self.stopping.wait(delay):
                return
            delay = min(30.0, delay * 2)

    def _recover_now(self, account: str, sup: Supervisor) -> None:
        # Read before the recovery's actors load: hundreds of them at once fill the store's
        # pool, and this read failing must not cost the whole account.
        stored = getattr(self.infra.store if self.infra else None, "controls", None)
        controlled = (
            [c.key for c in stored() if c.key.account == account] if callable(stored) else []
        )
        keys = sup.recover(account)
        log.info("account %s: %d open positions recovered", account, len(keys))
        sup.wake(controlled)  # its stored pauses and quarantines show from now on

    def may_sync(self, account: str) -> bool:
        """The sync runs only for an account this process acts on and may send for now."""
        own, sup = self.ownership, self.supervisor
        return (
            own is not None
            and sup is not None
            and sup.active(account)
            and own.token(account) is not None
        )

    def _check_wait_limit(self, now: float) -> None:
        """``account_lock_wait = <seconds>``: a process that owns no account after that long
        exits 1 (its supervisor restarts it or says so)."""
        limit = self.config.database.wait_limit_s
        own = self.ownership
        if limit is None or own is None or own.owned() or now - self.checks.started_at < limit:
            return
        log.error(
            "no account could be owned within account_lock_wait = %.0f s: %s",
            limit,
            "; ".join(f"{v.account}: {v.note}" for v in own.view()),
        )
        self.exit_code = 1
        self.request_stop("no account owned in time")

    def _on_sync_round(self, account: str, observations: int, seconds: float, ok: bool) -> None:
        if ok:
            self.checks.synced(account)
            if self.ownership is not None and observations >= 0:
                self.ownership.synced(account)
        self.metrics.sync_round(account, observations, seconds, ok)


def _hard_exit(code: int) -> None:
    """Exit now, without waiting for actor threads (they are not daemons)."""
    with contextlib.suppress(Exception):
        logging.shutdown()
    sys.stderr.flush()
    os._exit(code)
