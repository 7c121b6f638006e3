"""The supervisor: creates position actors on demand, routes messages, restarts, stops.

Threads that call in:

* any producer (feeds, sync, tests) calls :meth:`Supervisor.tell`; the hot path is one dict
  lookup and a pykka ``tell``, no lock. Creating an actor takes the supervisor's lock (slow path,
  once per key);
* actor threads call the :class:`~actors.position_actor.ActorHost` methods (``deliver``,
  ``submit``, ``request_sync``, ``signal_decided``, ``on_crash``, ``retire``);
* worker threads and the timer thread call :meth:`deliver`.

Cross-symbol state lives here only (I8): the actor map, restart trackers, per-account worker
pools and entry gates (account ownership, I7).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.conflation import TickSlot
from actors.effects import CancelOrder, FetchMarket, LookupOrder, PlaceOrder
from actors.messages import (
    CallResult,
    ExchangeOutcome,
    MarketInfo,
    MarkPriceTick,
    Message,
    OpenSignal,
    TicksReady,
    TimerFired,
)
from actors.model import Key
from actors.ports import Clock, ExchangePort, Metrics, NullMetrics, Store
from actors.position_actor import (
    ActorCell,
    ActorDeps,
    IdPool,
    Passivate,
    PositionActor,
    RestartDecision,
)
from actors.state import Policy, SignalOutcome, SignalRecord, SymbolState
from actors.workers import ExchangeWorkers
from supervision.restart import RestartPolicy, RestartTracker
from supervision.timers import TimerService

__all__ = ["Supervisor", "SupervisorConfig", "SupervisorStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Knobs of the supervisor; see the README's configuration section."""

    policy: Policy = field(default_factory=Policy)
    account_policies: Mapping[str, Policy] = field(default_factory=dict)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    workers_per_account: int = 4
    passivate_after_s: float = 300.0
    shutdown_grace_s: float = 10.0
    max_open_positions: int | None = None


@dataclass(frozen=True, slots=True)
class SupervisorStats:
    live_actors: int
    restarts: int
    quarantined: tuple[str, ...]
    dead_letters: int
    by_status: Mapping[str, int]


class Supervisor:
    """Owns every position actor of this process. See the module docstring for threads."""

    def __init__(
        self,
        store: Store,
        exchanges: Mapping[str, ExchangePort],
        clock: Clock,
        *,
        config: SupervisorConfig | None = None,
        metrics: Metrics | None = None,
        timers: TimerService | None = None,
    ) -> None:
        self.config = config or SupervisorConfig()
        self.store = store
        self._ids = IdPool(store)
        self.clock = clock
        self.metrics: Metrics = metrics or NullMetrics()
        self.timers = timers or TimerService(clock.now, self.deliver)
        self._actors: dict[Key, pykka.ActorRef[PositionActor]] = {}
        self._cells: dict[Key, ActorCell] = {}
        self._slots: dict[Key, TickSlot] = {}
        self._trackers: dict[Key, RestartTracker] = {}
        self._lock = threading.RLock()
        self._closing = False
        self._stopped = False
        self._dead_letters = 0
        self._restarts = 0
        self._workers = {
            account: ExchangeWorkers(
                account, ex, self.deliver, self.config.workers_per_account, self.metrics
            )
            for account, ex in exchanges.items()
        }
        self._entries_open: dict[str, bool] = dict.fromkeys(exchanges, True)
        self._entry_refusal: dict[str, str] = {}
        self.sync_listeners: list[Callable[[str, str], None]] = []
        #: Called with each signal's outcome once decided (and written): the signal feed's
        #: acknowledgements. Called on actor threads and producers' threads; must not block.
        self.signal_listeners: list[Callable[[SignalRecord], None]] = []

    # -- routing (any thread) ---------------------------------------------------------------

    def tell(self, msg: Message) -> bool:
        """Deliver ``msg`` to its symbol's actor, creating the actor if needed.

        Returns False when the message was refused (unknown account, shutting down, entries
        closed for the account); the refusal is logged and counted as a dead letter.
        """
        if self._closing and not isinstance(msg, ExchangeOutcome | TimerFired):
            return self._dead_letter(msg, "shutting_down")
        if isinstance(msg, OpenSignal) and not self._entries_open.get(msg.key.account, False):
            reason = self._entry_refusal.get(msg.key.account, "unknown_account")
            self.metrics.signal(msg.source, "rejected", reason)
            log.warning("signal %s refused: %s", msg.signal_id, reason, extra={"key": str(msg.key)})
            self.signal_decided(
                SignalRecord(
                    msg.key,
                    msg.signal_id,
                    msg.source,
                    SignalOutcome.REJECTED,
                    reason,
                    self.clock.now(),
                )
            )
            return False
        ref = self._actors.get(msg.key)
        if ref is not None:
            try:
                ref.tell(msg)
                return True
            except pykka.ActorDeadError:
                pass
        return self._tell_slow(msg)

    deliver = tell

    def tell_tick(self, tick: MarkPriceTick) -> bool:
        """Deliver a mark price with conflation: at most one wake-up per symbol in flight.

        Called by the mark-price feed thread. A newer price replaces an older unhandled one
        (keeping extremes for the stop guard); order updates never go this way.
        """
        slot = self._slots.get(tick.key)
        if slot is None:
            slot = self._slots.setdefault(tick.key, TickSlot())
            self._prime_rules(tick.key)
        if slot.put(tick):
            return self.tell(TicksReady(tick.key, slot))
        return True

    def _prime_rules(self, key: Key) -> None:
        """The first tick of a key comes with the market's rules when the account's exchange
        port holds them without I/O (``cached_market_rules``): a signal that then finds a
        fresh mark price from the stream needs no :class:`FetchMarket` round trip. Called on
        the feed thread; never blocks, never raises."""
        workers = self._workers.get(key.account)
        cached = getattr(getattr(workers, "exchange", None), "cached_market_rules", None)
        if cached is None:
            return
        try:
            rules = cached(key.symbol)
        except Exception:
            log.exception("cached market rules of %s failed", key)
            return
        if rules is not None:
            self.tell(MarketInfo(key, CallResult.FOUND, None, rules, self.clock.now()))

    def _tell_slow(self, msg: Message) -> bool:
        key = msg.key
        if key.account not in self._workers:
            return self._dead_letter(msg, "unknown_account")
        for _ in range(3):
            with self._lock:
                if self._stopped:
                    return self._dead_letter(msg, "stopped")
                ref = self._actors.get(key)
                if ref is None or not ref.is_alive():
                    ref = self._spawn(key)
            try:
                ref.tell(msg)
                return True
            except pykka.ActorDeadError:
                continue
        return self._dead_letter(msg, "actor_unavailable")

    def _spawn(self, key: Key) -> pykka.ActorRef[PositionActor]:
        cell = ActorCell(key, self.clock.now())
        policy = self.config.account_policies.get(key.account, self.config.policy)
        deps = ActorDeps(self.store, self.timers, self.clock, self.metrics, policy, self, self._ids)
        ref = PositionActor.start(key, deps, cell)
        self._actors[key] = ref
        self._cells[key] = cell
        slot = self._slots.get(key)
        if slot is not None and slot.set_band(None):
            # A tick parked under a predecessor's band: the new actor decides afresh.
            ref.tell(TicksReady(key, slot))
        return ref

    def _dead_letter(self, msg: Message, reason: str) -> bool:
        self._dead_letters += 1
        self.metrics.dead_letter(reason)
        log.warning("dead letter %s: %s", type(msg).__name__, reason, extra={"key": str(msg.key)})
        return False

    # -- ActorHost (actor, worker and timer threads) ----------------------------------------

    def submit(self, effect: PlaceOrder | CancelOrder | LookupOrder | FetchMarket) -> None:
        self._workers[effect.key.account].submit(effect)

    def request_sync(self, key: Key, reason: str) -> None:
        for listener in list(self.sync_listeners):
            try:
                listener(key.account, reason)
            except Exception:
                log.exception("sync request listener failed")

    def signal_decided(self, record: SignalRecord) -> None:
        for listener in list(self.signal_listeners):
            try:
                listener(record)
            except Exception:
                log.exception("signal outcome listener failed")

    def on_crash(self, key: Key, exc: BaseException) -> RestartDecision:
        with self._lock:
            tracker = self._trackers.get(key)
            if tracker is None:
                tracker = self._trackers[key] = RestartTracker(self.config.restart)
            decision = tracker.on_crash(self.clock.now())
            self._restarts += 1
        log.warning(
            "restarting %s in %.3fs%s after %r",
            key,
            decision.delay,
            " (quarantined)" if decision.quarantine else "",
            exc,
            extra={"key": str(key)},
        )
        return decision

    def retire(self, key: Key, ref: pykka.ActorRef[Any]) -> bool:
        with self._lock:
            if self._actors.get(key) is ref:
                del self._actors[key]
                self._cells.pop(key, None)
                return True
        return False

    # -- entry gates (ownership, I7) --------------------------------------------------------

    def set_entries_open(self, account: str, is_open: bool, reason: str = "not_owner") -> None:
        """Open or close new entries for an account (the account lock calls this)."""
        self._entries_open[account] = is_open
        if not is_open:
            self._entry_refusal[account] = reason
        log.warning(
            "entries for account %s %s", account, "open" if is_open else f"closed: {reason}"
        )

    # -- lifecycle --------------------------------------------------------------------------

    def recover(self) -> list[Key]:
        """Start an actor for every non-terminal position in the store (S5).

        Each actor loads its position before its first message and resolves it against the
        exchange (lookups by client order id, then a sync) before it accepts a new entry.
        """
        keys: list[Key] = []
        for pos in self.store.open_positions():
            if pos.key.account not in self._workers:
                log.error("open position %s for unconfigured account %s", pos.id, pos.key)
                continue
            with self._lock:
                ref = self._actors.get(pos.key)
                if ref is None or not ref.is_alive():
                    self._spawn(pos.key)
            keys.append(pos.key)
        log.info("recovery started for %d open positions", len(keys))
        return keys

    def start(self) -> None:
        """Run the real-time timer thread (tests with a manual clock skip this)."""
        self.timers.run_in_thread()

    def passivate_idle(self) -> int:
        """Ask actors idle for ``passivate_after_s`` without a position to stop themselves."""
        limit = self.clock.now() - self.config.passivate_after_s
        n = 0
        for key, cell in list(self._cells.items()):
            r = cell.report
            if r.idle and r.last_activity <= limit:
                ref = self._actors.get(key)
                if ref is not None:
                    try:
                        ref.tell(Passivate())
                        n += 1
                    except pykka.ActorDeadError:
                        pass
        return n

    def state(self, key: Key, timeout: float = 5.0) -> SymbolState:
        """The actor's state (an ``ask``: for tests and tools, never from an actor)."""
        ref = self._actors.get(key)
        if ref is None:
            with self._lock:
                ref = self._actors.get(key) or self._spawn(key)
        state: SymbolState = ref.proxy().get_state().get(timeout=timeout)
        return state

    def keys(self) -> list[Key]:
        return list(self._actors)

    def cells(self) -> Iterable[ActorCell]:
        return list(self._cells.values())

    def stats(self) -> SupervisorStats:
        by_status: dict[str, int] = {}
        for cell in list(self._cells.values()):
            s = cell.report.status
            if s is not None:
                by_status[s.value] = by_status.get(s.value, 0) + 1
        with self._lock:
            quarantined = tuple(str(k) for k, t in self._trackers.items() if t.quarantined)
        return SupervisorStats(
            live_actors=len(self._actors),
            restarts=self._restarts,
            quarantined=quarantined,
            dead_letters=self._dead_letters,
            by_status=by_status,
        )

    def in_flight(self) -> int:
        return sum(w.in_flight for w in self._workers.values())

    def drain_calls(self, timeout: float) -> bool:
        """Wait until no exchange call is in flight (bounded). True if none is left."""
        deadline = time.monotonic() + timeout
        return all(w.drain(max(0.0, deadline - time.monotonic())) for w in self._workers.values())

    def stop(self, grace_s: float | None = None) -> bool:
        """Stop intake, let in-flight exchange calls finish (bounded), stop every actor.

        Returns True when everything finished within the grace period. Leaves no thread.
        """
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        self._closing = True
        clean = True
        for w in self._workers.values():
            clean &= w.shutdown(max(0.0, deadline - time.monotonic()))
        self.timers.stop()
        with self._lock:
            self._stopped = True
            refs = list(self._actors.values())
            self._actors.clear()
        for ref in refs:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.stop(block=False)
        for ref in refs:
            left = max(0.5, deadline - time.monotonic())
            if not ref.actor_stopped.wait(left):
                clean = False
        return clean
