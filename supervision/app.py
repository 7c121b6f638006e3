"""The process: builds everything from the configuration, runs until a signal, stops cleanly.

:class:`App` owns, in start order: the metrics/health HTTP server, the database (embedded or
DSN) and the store, the exchange adapters, the :class:`~supervision.supervisor.Supervisor`
(then the actors of symbols whose pause or quarantine is stored), the periodic
:class:`~supervision.sync.SyncService`, the lease keeper (:class:`~supervision.leases.Ownership`,
I7: it takes the accounts' leases and activates each account it holds, recovering its open
positions first, S5), the operator's control endpoint and live view (:mod:`supervision.control`,
only while its token is set) and the feeds. The pieces other modules provide are built in two
functions only, :func:`wire_infra` and :func:`wire_feeds`, so that the wiring is in one place.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any, Protocol, TypeVar, cast

import pykka

from actors.messages import MarkPriceTick, Message, OpenSignal, SyncObservation
from actors.model import Key
from actors.ports import Clock, ExchangePort, Snapshot, Store, StoreUnavailable, SystemClock
from actors.position_actor import PositionActor
from actors.state import Commit, Position, SignalOutcome, SignalRecord
from infra.config import AccountConfig, Config
from infra.metrics import HealthChecks, MetricsServer, PrometheusMetrics
from supervision.control import ControlCollector, ControlServer, ControlStats
from supervision.leases import LeaseSettings, Ownership, register
from supervision.live_view import ViewSource
from supervision.supervisor import Supervisor, SupervisorConfig
from supervision.sync import SyncService

__all__ = [
    "App",
    "Infra",
    "Intake",
    "Service",
    "TimedStore",
    "open_store",
    "wire_feeds",
    "wire_infra",
]

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0
PROBE_S = 5.0
LOOP_STALL_S = 30.0
ACTOR_STALL_S = 120.0
_T = TypeVar("_T")


class Service(Protocol):
    """Anything the app starts and stops (feeds). ``stop`` must be bounded and idempotent."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Infra:
    """What :func:`wire_infra` built. ``closers`` run in reverse order at shutdown."""

    store: Store
    exchanges: Mapping[str, ExchangePort]
    dsn: str | None = None
    closers: list[tuple[str, Callable[[], object]]] = field(default_factory=list)
    refused_accounts: Mapping[str, str] = field(default_factory=dict)


InfraFactory = Callable[[Config, PrometheusMetrics], Infra]
FeedsFactory = Callable[[Config, "App"], Sequence[Service]]


# --- the store, timed -----------------------------------------------------------------


class TimedStore:
    """A :class:`~actors.ports.Store` wrapper: commit latency to metrics, database health.

    The database is "down" from a commit or load that raised ``StoreUnavailable`` until the
    next one that succeeds. Other attributes (inspection methods of the real store) pass
    through unchanged.
    """

    def __init__(self, inner: Store, metrics: PrometheusMetrics | None = None) -> None:
        self.inner = inner
        self._metrics = metrics
        self._down: str | None = None

    def load(self, key: Key) -> Snapshot:
        return self._watch(lambda: self.inner.load(key))

    def commit(self, commit: Commit) -> None:
        """Commit; counts latency, and every status change a sync observation caused as a
        sync discrepancy (``ps_sync_discrepancies_total{kind=<journal event kind>}``)."""
        t0 = time.perf_counter()
        self._watch(lambda: self.inner.commit(commit))
        m = self._metrics
        if m is not None:
            m.db_commit(time.perf_counter() - t0)
            if isinstance(commit.cause, SyncObservation):
                for ev in commit.events:
                    if ev.status_before is not ev.status_after:
                        m.sync_discrepancy(commit.key.account, ev.kind)

    def allocate_ids(self, n: int) -> Sequence[int]:
        return self._watch(lambda: self.inner.allocate_ids(n))

    def open_positions(self, account: str | None = None) -> list[Position]:
        return self._watch(lambda: self.inner.open_positions(account))

    def recorded_signal(self, account: str, signal_id: str) -> SignalRecord | None:
        return self._watch(lambda: self.inner.recorded_signal(account, signal_id))

    def health(self) -> str | None:
        """``None`` while the last store call succeeded, else why it failed."""
        return self._down

    def probe(self) -> None:
        """Ping the database when the store can (``ping()``); updates :meth:`health`."""
        ping = getattr(self.inner, "ping", None)
        if ping is None:
            return
        try:
            ping()
        except Exception as exc:
            self._down = f"unavailable: {exc}"
        else:
            self._down = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _watch(self, fn: Callable[[], _T]) -> _T:
        try:
            out = fn()
        except StoreUnavailable as exc:
            self._down = f"unavailable: {exc}"
            raise
        self._down = None
        return out


# --- intake: what the feeds tell ------------------------------------------------------


class Intake:
    """The door for feeds: checks a signal against the configuration, then routes it.

    * account not configured, or symbol not in the account's allow-list: refused (counted,
      logged), the supervisor never sees it;
    * ``signal_policy.max_signal_age_s`` is the actor's to check (its policy refuses a stale
      signal ``too_old`` and records it), as is ``expires_at`` (``expired``);
    * ``risk.max_open_positions`` per account: refused with reason ``max_open_positions`` and
      recorded in the signal history. The count is an upper bound: symbols whose actor holds a
      non-terminal position, plus symbols admitted in the last few seconds whose actor has not
      reported yet.

    Every other message goes straight to the supervisor (``tell_tick`` for mark prices when the
    caller uses :meth:`tell_tick`). Thread-safe. :attr:`marks` keeps the last mark price of each
    symbol (the live view's unrealised PnL: an actor does not wake for every tick).
    """

    ADMITTED_MEMORY_S = 5.0

    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        metrics: PrometheusMetrics | None = None,
        clock: Clock | None = None,
        store: Store | None = None,
    ) -> None:
        self._config = config
        self._sup = supervisor
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._store = store
        self._allowed = {name: frozenset(a.symbols) for name, a in config.accounts.items()}
        self._admitted: dict[Key, float] = {}
        self._lock = threading.Lock()
        self.marks: dict[Key, float] = {}

    def tell(self, msg: Message) -> bool:
        if isinstance(msg, OpenSignal):
            return self._signal(msg)
        return self._sup.tell(msg)

    def admitted(self) -> int:
        """Symbols remembered as recently admitted (for ``max_open_positions``): pruned to
        the last ``ADMITTED_MEMORY_S`` seconds by every signal that checks the limit."""
        with self._lock:
            return len(self._admitted)

    def tell_tick(self, tick: MarkPriceTick) -> bool:
        self.marks[tick.key] = tick.price  # one store; read by the live view
        return self._sup.tell_tick(tick)

    def allowed(self, key: Key) -> bool:
        return key.symbol in self._allowed.get(key.account, frozenset())

    def _signal(self, sig: OpenSignal) -> bool:
        key = sig.key
        acc = self._config.accounts.get(key.account)
        if acc is None:
            return self._refuse(sig, "unknown_account", record=False)
        if key.symbol not in self._allowed[key.account]:
            return self._refuse(sig, "symbol_not_allowed", record=False)
        limit = acc.risk.max_open_positions
        if limit is not None:
            with self._lock:
                held = self._open_keys(key.account)
                if key not in held and len(held) >= limit:
                    return self._refuse(sig, "max_open_positions", record=True)
                self._admitted[key] = time.monotonic()
        return self._sup.tell(sig)

    def _open_keys(self, account: str) -> set[Key]:
        held = {
            c.key
            for c in self._sup.cells()
            if c.key.account == account
            and c.report.status is not None
            and not c.report.status.terminal
        }
        horizon = time.monotonic() - self.ADMITTED_MEMORY_S
        for k, t in list(self._admitted.items()):
            if t < horizon:
                del self._admitted[k]
            elif k.account == account:
                held.add(k)
        return held

    def _refuse(self, sig: OpenSignal, reason: str, record: bool) -> bool:
        if self._metrics is not None:
            self._metrics.signal(sig.source, SignalOutcome.REJECTED.value, reason)
        # Refusals are the product working (INFO); a signal for an account this process does
        # not have means the signal server and this configuration disagree (WARNING).
        log.log(
            logging.WARNING if reason == "unknown_account" else logging.INFO,
            "signal %s from %s refused: %s",
            sig.signal_id,
            sig.source,
            reason,
            extra={"key": str(sig.key)},
        )
        now = self._clock.now()
        rec = SignalRecord.refused(sig, reason, now)
        if record and self._store is not None:
            try:  # the signal history holds it; the journal holds changes only
                self._store.commit(Commit(sig.key, sig, None, 0, (), rec))
            except Exception as exc:
                log.error("could not record refused signal %s: %r", sig.signal_id, exc)
        self._sup.signal_decided(rec)
        return False


# --- wiring of the other modules (the one place to adjust) -----------------------------


def open_store(config: Config) -> tuple[Store, str, list[tuple[str, Callable[[], object]]]]:
    """The store and its DSN: the configured DSN, or an embedded server in ``embedded_dir``.

    Returns ``(store, dsn, closers)``; run the closers in reverse order when done (the
    embedded server stops when its last user closes it). Migrations run here.
    """
    from infra.store.embedded import EmbeddedPostgres  # noqa: PLC0415
    from infra.store.postgres import PostgresStore  # noqa: PLC0415

    closers: list[tuple[str, Callable[[], object]]] = []
    dsn = config.database.dsn
    try:
        if dsn is None:
            pg = EmbeddedPostgres(config.database.embedded_dir)
            closers.append(("embedded postgres", pg.close))
            dsn = pg.start()
        store = PostgresStore(dsn)
    except BaseException:
        _close_all(closers)
        raise
    closers.append(("store", store.close))
    return store, dsn, closers


def wire_infra(config: Config, metrics: PrometheusMetrics) -> Infra:
    """Database, store and exchange adapters (every configured account), from the
    configuration. Which accounts this process trades is the lease keeper's to decide
    (:class:`~supervision.leases.Ownership`, started by :meth:`App.start` on ``infra.dsn``).
    """
    store, dsn, closers = open_store(config)
    infra = Infra(store=store, exchanges={}, dsn=dsn, closers=closers)
    exchanges: dict[str, ExchangePort] = {}
    # The exchange refuses a signed request older than the fence margin (recvWindow): a
    # process paused after signing cannot have it executed once its lease may have expired.
    recv_window_ms = int(min(config.ownership.fence_margin_s, 5.0) * 1000)
    try:
        for name, acc in config.accounts.items():
            exchanges[name] = _exchange(name, acc, closers, recv_window_ms)
    except BaseException:
        _close_all(closers)
        raise
    infra.exchanges = exchanges
    return infra


def _exchange(
    name: str,
    acc: AccountConfig,
    closers: list[tuple[str, Callable[[], object]]],
    recv_window_ms: int | None = None,
) -> ExchangePort:
    """The ccxt adapter of one account; markets loaded now when the exchange answers."""
    from infra.exchange import CcxtExchange, VenueConfig, env_prefix  # noqa: PLC0415

    prefix = env_prefix(name)
    environ = (
        {f"{prefix}_API_KEY": acc.api_key, f"{prefix}_API_SECRET": acc.api_secret}
        if acc.credentials == "env"
        else {}
    )
    ex = CcxtExchange(
        name,
        VenueConfig(
            venue=acc.exchange,
            base_url=acc.rest_url,
            enable_rate_limit=acc.enable_rate_limit,
            timeout_s=acc.timeout_s,
            require_credentials=acc.credentials == "env",
            recv_window_ms=recv_window_ms,
        ),
        environ=environ,
    )
    closers.append((f"exchange {name}", ex.close))
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

    if app.intake is None or app.sync is None or app.infra is None:
        raise RuntimeError("wire_feeds needs the intake, the sync service and the infra")
    feeds = feeds_from_config(
        config,
        app.intake,
        app.sync.request,
        app.metrics,
        accounts=app.infra.exchanges,
    )
    from infra.feeds.signals import SignalFeedClient  # noqa: PLC0415

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


def _watch_sizes(sup: Supervisor, intake: Intake, sync: SyncService, infra: Infra) -> None:
    """Per-key structures outside the supervisor, reported by ``sup.structure_sizes()``: the
    intake's recent admissions, the sync's pending requests, each adapter's per-thread
    clients and the store's memory of written orders (where the implementation has them)."""
    sup.size_sources["intake_admitted"] = intake.admitted
    sup.size_sources["sync_requested"] = lambda: sync.sizes()["sync_requested"]
    for account, ex in infra.exchanges.items():
        clients = getattr(ex, "_clients", None)
        if isinstance(clients, dict):
            sup.size_sources[f"exchange_clients:{account}"] = clients.__len__
    written = getattr(infra.store, "_written", None)
    if isinstance(written, dict):
        sup.size_sources["store_written"] = written.__len__


def _close_all(closers: list[tuple[str, Callable[[], object]]]) -> None:
    for name, close in reversed(closers):
        try:
            close()
        except Exception:
            log.exception("closing %s failed", name)
    closers.clear()


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
        self._sync_ok: dict[str, float] = {}
        self._started_at = time.monotonic()
        self._heartbeat: float | None = None  # the last round of wait()'s loop
        #: The lease keeper (I7); ``None`` without a database DSN (in-memory tests).
        self.ownership: Ownership | None = None
        #: What :meth:`run` returns after a stop that is not a failure to start.
        self.exit_code = 0
        self._unregister_ownership_metrics: Callable[[], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Build and start everything; returns when the process is ready (or raises)."""
        cfg = self.config
        self.health.register("startup", lambda: None if self.ready.is_set() else "starting")
        self.health.register("shutdown", lambda: "stopping" if self.stopping.is_set() else None)
        self.health.register("housekeeping", self._housekeeping_check, live=True)
        self.health.register("threads", self._threads_check, live=True)
        self.health.register("actors", self._actors_check, live=True)
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
        own = self._ownership(infra) if infra.dsn is not None else None
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
            self._wire_ownership(own, sup)
        self.metrics.watch_supervisor(sup.stats, _mailbox_depths)
        self.health.register("closes", self._closes_check)
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
            active=self._may_sync if own is not None else None,
        )
        sup.sync_listeners.append(self.sync.request)
        for account in infra.exchanges:
            self._sync_ok[account] = time.monotonic()
            self.health.register(
                f"exchange:{account}", self._exchange_check(account), upstream="exchange"
            )
        self.sync.start()
        if own is not None:
            own.start()  # the first round takes what is free now (activates, recovers)
            if not own.owned() and not cfg.database.wait_for_accounts:
                raise RuntimeError(
                    "no account can be managed by this process: "
                    + "; ".join(f"{v.account}: {v.note}" for v in own.view())
                )
        self.intake = Intake(cfg, sup, self.metrics, self.clock, self.store)
        _watch_sizes(sup, self.intake, self.sync, infra)
        self._start_controls(infra, sup)
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

    def _start_controls(self, infra: Infra, sup: Supervisor) -> None:
        """Pauses and quarantines: their metrics, the actors of the symbols whose flag is
        stored (so that they show), and the control endpoint when its token is set."""
        self._control_collector = ControlCollector(self.control_stats, sup.stats)
        self.metrics.registry.register(self._control_collector)
        stored = getattr(infra.store, "controls", None)
        if callable(stored):
            try:
                woken = sup.wake(c.key for c in stored())
            except Exception as exc:
                log.error("stored pauses and quarantines not read now: %s", exc)
            else:
                if woken:
                    log.info("paused or quarantined (stored): %s", ", ".join(str(k) for k in woken))
        cc = self.config.control
        if not cc.enabled:
            log.info("control endpoint and live view off: %s is not set", cc.token_env)
            return
        reads = ("controls", "recent_journal", "recent_signals")
        view = infra.store if all(callable(getattr(infra.store, n, None)) for n in reads) else None
        self.control = ControlServer(
            self.config,
            sup,
            list(infra.exchanges),
            self.health.evaluate,
            self.control_stats,
            cast(ViewSource | None, view),
            marks=self.intake.marks if self.intake is not None else None,
        )
        self.control.start()

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
        self._heartbeat = time.monotonic()
        while not self.stopping.wait(HOUSEKEEPING_S):
            now = self._heartbeat = time.monotonic()
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
            _close_all(self.infra.closers)
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

    def _ownership(self, infra: Infra) -> Ownership:
        """The lease keeper on ``infra.dsn``: its lease store (closed with the infra), this
        database's installation id, the store's commits fenced by its epochs."""
        from infra.store.ownership import LeaseStore  # noqa: PLC0415

        cfg = self.config
        o = cfg.ownership
        assert infra.dsn is not None
        leases = LeaseStore(infra.dsn, lease_s=o.lease_s, timeout=min(2.0, o.renew_s))
        infra.closers.append(("lease store", leases.close))
        installation = leases.installation()
        settings = LeaseSettings(
            lease_s=o.lease_s,
            renew_s=o.renew_s,
            fence_margin_s=o.fence_margin_s,
            max_accounts=o.max_accounts,
            wait=cfg.database.wait_for_accounts,
            timeout=min(2.0, o.renew_s),
            hold_s=o.hold_signals_s,
        )

        def sup() -> Supervisor:
            assert self.supervisor is not None
            return self.supervisor

        own = Ownership(
            leases,
            list(cfg.accounts),
            settings,
            activate=self._activate,
            deactivate=lambda account, reason: sup().deactivate(account, reason),
            set_entries=lambda account, is_open, reason, hold: sup().set_entries_open(
                account, is_open, reason, hold=hold
            ),
            request_sync=lambda account: (
                self.sync.request(account, "takeover") if self.sync is not None else None
            ),
            set_adoption=lambda account, allowed: sup().set_adoption(account, allowed),
            installation=installation,
        )
        fence_with = getattr(infra.store, "fence_with", None)
        if fence_with is not None:
            fence_with(own.token)
        log.info(
            "installation %s; %s; leases of %.1fs renewed every %.1fs, fenced %.1fs before "
            "expiry%s",
            installation.label,
            leases.identity.describe(),
            o.lease_s,
            o.renew_s,
            o.fence_margin_s,
            f", at most {o.max_accounts} accounts" if o.max_accounts else "",
        )
        self.ownership = own
        return own

    def _supervisor_config(self, own: Ownership | None) -> SupervisorConfig:
        """The supervisor's configuration; with a lease keeper, every policy knows this
        database's installation (the orphan sweep and adoption leave other installations'
        orders alone)."""
        sc = self.config.supervisor_config()
        if own is None or own.guard is None:
            return sc
        inst = own.guard.installation
        return replace(
            sc,
            policy=replace(sc.policy, installation=inst),
            account_policies={
                a: replace(p, installation=inst) for a, p in sc.account_policies.items()
            },
        )

    def _wire_ownership(self, own: Ownership, sup: Supervisor) -> None:
        sup.ownership_listeners.append(own.not_owner)
        if own.guard is not None:
            sup.inspect = own.guard.inspect
            guard = own.guard
            for account in self.config.accounts:
                self.health.register(
                    f"installation:{account}",
                    lambda a=account: guard.check(a),  # type: ignore[misc]
                )
        self.health.register("ownership", own.readiness)  # process-internal: no page
        self._unregister_ownership_metrics = register(
            self.metrics.registry,
            own.collector(
                lambda: {
                    a: (sup.dropped_not_owner.get(a, 0), sup.held_signals(a))
                    for a in self.config.accounts
                }
            ),
        )

    def _activate(self, account: str) -> None:
        """The lease keeper holds ``account``'s lease: recover it, on a thread of its own
        (keeper's thread calls; returns at once). A recovery of many positions takes seconds
        and must not hold up the keeper's renewals (a stalled keeper fences the account it
        just took). Safe while it runs: an actor always loads its position before its first
        message, whoever starts it (a signal, the sync, this recovery)."""
        self._sync_ok[account] = time.monotonic()
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

    def _may_sync(self, account: str) -> bool:
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
        if limit is None or own is None or own.owned() or now - self._started_at < limit:
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
            self._sync_ok[account] = time.monotonic()
            if self.ownership is not None and observations >= 0:
                self.ownership.synced(account)
        self.metrics.sync_round(account, observations, seconds, ok)

    def _closes_check(self) -> str | None:
        """Not ready while a close keeps failing (the position cannot be flattened)."""
        sup = self.supervisor
        failing = sup.failing_closes() if sup is not None else []
        if not failing:
            return None
        return "closes refused again and again: " + ", ".join(sorted(map(str, failing)))

    # -- liveness checks (/livez): the process itself can work. Called on the metrics
    # server's worker threads; they only read.

    def _housekeeping_check(self) -> str | None:
        """The main thread's loop (:meth:`wait`) went round within ``LOOP_STALL_S``."""
        beat = self._heartbeat
        if beat is None or self.stopping.is_set():
            return None
        age = time.monotonic() - beat
        return f"main loop stalled for {age:.0f}s" if age > LOOP_STALL_S else None

    def _threads_check(self) -> str | None:
        """The timer, sync and feed threads are alive (while running; not when stopping)."""
        if not self.ready.is_set() or self.stopping.is_set():
            return None
        dead = []
        sup = self.supervisor
        timers = getattr(sup.timers, "_thread", None) if sup is not None else None
        if isinstance(timers, threading.Thread) and not timers.is_alive():
            dead.append("timers")
        if self.sync is not None and not self.sync.running:
            dead.append("sync")
        if self.ownership is not None and not self.ownership.running:
            dead.append("lease-keeper")
        for feed in self.feeds:
            if getattr(feed, "running", True) is False:
                dead.append(f"feed:{getattr(feed, 'name', type(feed).__name__)}")
        return "dead: " + ", ".join(dead) if dead else None

    def _actors_check(self) -> str | None:
        """The actor system moves: when messages wait in actor mailboxes, some actor handled
        one within ``ACTOR_STALL_S``."""
        sup = self.supervisor
        if sup is None or not self.ready.is_set() or self.stopping.is_set():
            return None
        waiting = sum(_mailbox_depths())
        if waiting == 0:
            return None
        last = max((c.report.last_activity for c in sup.cells()), default=None)
        if last is None:
            return None
        idle = self.clock.now() - last
        if idle > ACTOR_STALL_S:
            return f"{waiting} messages waiting, no actor handled one for {idle:.0f}s"
        return None

    def _exchange_check(self, account: str) -> Callable[[], str | None]:
        limit = max(30.0, 3 * self.config.sync.interval_s)

        def check() -> str | None:
            if self.ownership is not None and not self._may_sync(account):
                return None  # not synced here: its owner's check
            age = time.monotonic() - self._sync_ok.get(account, self._started_at)
            return f"no successful sync for {age:.0f}s" if age > limit else None

        return check


def _mailbox_depths() -> Iterable[int]:
    for ref in pykka.ActorRegistry.get_by_class(PositionActor):
        with contextlib.suppress(Exception):
            yield ref.actor_inbox.qsize()  # type: ignore[attr-defined]


def _hard_exit(code: int) -> None:
    """Exit now, without waiting for actor threads (they are not daemons)."""
    with contextlib.suppress(Exception):
        logging.shutdown()
    sys.stderr.flush()
    os._exit(code)
