"""The supervisor: creates position actors on demand, routes messages, restarts, stops.

Threads that call in:

* any producer (feeds, sync, tests) calls :meth:`Supervisor.tell`; the hot path is one dict
  lookup and a pykka ``tell``, no lock. Creating an actor takes the supervisor's lock (slow path,
  once per key);
* actor threads call the :class:`~actors.position_actor.ActorHost` methods (``deliver``,
  ``submit``, ``request_sync``, ``signal_decided``, ``control_decided``, ``on_crash``,
  ``clear_quarantine``, ``retire``);
* worker threads and the timer thread call :meth:`deliver`.

Cross-symbol state lives here only (I8): the actor map, restart trackers, per-account worker
pools and entry gates (account ownership, I7).

Bounded for weeks of running: every per-key structure here (actors, their cells, tick slots,
restart trackers, the timers' table) holds live actors only, plus the restart trackers of
symbols that crashed within the restart window or are quarantined. An actor that passivates
takes its cell, its tick slot and its timers with it (:meth:`Supervisor.retire`); quiet restart
trackers are dropped by :meth:`Supervisor.passivate_idle`. :meth:`Supervisor.structure_sizes`
reports every size.

Ownership (I7): with a ``gate`` (the lease keeper's ``account -> epoch or None``), every
account starts *inactive*: no actor runs for it, messages for it are dropped (counted in
:attr:`Supervisor.dropped_not_owner`), signals for it are held (below), and its worker
pool sends a call only while the gate gives the epoch it was submitted under. The lease
keeper calls :meth:`Supervisor.activate` once it holds an account's lease (its open
positions are recovered, S5) and :meth:`Supervisor.deactivate` when the process must stop
acting on it (fenced): queued calls are dropped and the account's actors stopped. While an
account waits for its lease (standby, fenced, taking over), the signals for it are *held*,
not answered (its owner answers them), for at most ``hold_s`` seconds, and offered to the
actors when entries open here; an old one is then refused by its age, one decided by the
previous owner is answered with its recorded decision (:mod:`supervision.held_signals`).

Longer than 400 lines for a reason: one class whose routing, actor creation, retirement,
activation and stop read and write the same actor map under the same lock (the hot path of
:meth:`Supervisor.tell` reads it without one); split across modules, that lock and map would
be shared private state. What needs neither is elsewhere: the held signals
(:mod:`supervision.held_signals`), the recovery's start window (:mod:`supervision.recovery`),
the timers (:mod:`supervision.timers`), the restart policy (:mod:`supervision.restart`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pykka

from actors.conflation import TickSlot
from actors.effects import CancelOrder, FetchMarket, LookupOrder, PlaceOrder
from actors.host import ActorCell, ActorDeps, Passivate, RestartDecision, is_activity
from actors.ids import IdPool
from actors.messages import (
    CallResult,
    ExchangeOutcome,
    MarketInfo,
    MarkPriceTick,
    Message,
    OpenSignal,
    OrderUpdate,
    SyncObservation,
    TicksReady,
    TimerFired,
)
from actors.model import Key
from actors.ports import Clock, ExchangePort, Metrics, NullMetrics, Store
from actors.position_actor import PositionActor
from actors.state import ControlOutcome, Policy, SignalRecord, SymbolState
from actors.workers import ExchangeWorkers
from infra.config import SupervisorSection
from supervision.held_signals import HeldSignals
from supervision.recovery import StartWindow
from supervision.restart import RestartPolicy, RestartTracker
from supervision.timers import TimerService

__all__ = ["Supervisor", "SupervisorConfig", "SupervisorStats"]

log = logging.getLogger(__name__)

_STOPPING = ("shutting_down", "stopped")


def _notify(listeners: list[Callable[..., None]], what: str, *args: object) -> None:
    """Call every listener with ``args`` (a copy of the list: one may be removed meanwhile);
    one that raises is logged and the others still called."""
    for listener in list(listeners):
        try:
            listener(*args)
        except Exception:
            log.exception("%s listener failed", what)


#: The configuration's defaults (``[supervisor]``), written once there.
_SECTION = SupervisorSection()


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Knobs of the supervisor; see the README's configuration section."""

    policy: Policy = field(default_factory=Policy)
    account_policies: Mapping[str, Policy] = field(default_factory=dict)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    workers_per_account: int = 4
    #: Exchange worker threads per account where it differs from ``workers_per_account``.
    account_workers: Mapping[str, int] = field(default_factory=dict)
    passivate_after_s: float = _SECTION.passivate_after_s
    shutdown_grace_s: float = _SECTION.shutdown_grace_s


@dataclass(frozen=True, slots=True)
class SupervisorStats:
    live_actors: int
    restarts: int
    quarantined: tuple[str, ...]
    dead_letters: int
    by_status: Mapping[str, int]
    paused: tuple[str, ...] = ()


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
        gate: Callable[[str], int | None] | None = None,
        hold_s: float = 30.0,
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
        self._gate = gate
        self._workers = {
            account: ExchangeWorkers(
                account,
                ex,
                self.deliver,
                self.config.account_workers.get(account, self.config.workers_per_account),
                self.metrics,
                gate=None if gate is None else (lambda a=account: gate(a)),  # type: ignore[misc]
            )
            for account, ex in exchanges.items()
        }
        # I7: without a gate every account is ours; with one, none until activate().
        self._active: dict[str, bool] = dict.fromkeys(exchanges, gate is None)
        self._entries_open: dict[str, bool] = dict.fromkeys(exchanges, gate is None)
        self._entry_refusal: dict[str, str] = dict.fromkeys(exchanges, "not_owner")
        self._held = HeldSignals(exchanges, hold_s, holding=gate is not None)
        self._no_adoption: set[str] = set()
        #: Messages dropped because their account is not active here (per account).
        self.dropped_not_owner: dict[str, int] = dict.fromkeys(exchanges, 0)
        #: Called with ``(account, why, certain)`` when an actor's write was refused because
        #: another process owns (certain) or may own the account (the lease keeper).
        self.ownership_listeners: list[Callable[[str, str, bool], None]] = []
        #: Called with every order update and sync observation of an active account before
        #: it is routed (the installation check). Must be cheap and must not raise.
        self.inspect: Callable[[Message], None] | None = None
        self.sync_listeners: list[Callable[[str, str], None]] = []
        #: Ticks dropped because their symbol had no live actor (see :meth:`tell_tick`).
        self.ticks_without_actor = 0
        self._marks: dict[Key, tuple[float, float]] = {}  # the last price of actorless keys
        #: Sizes of per-key structures kept elsewhere (intake, sync, feeds), reported by
        #: :meth:`structure_sizes` under their name. Callables must be thread-safe, cheap.
        self.size_sources: dict[str, Callable[[], int]] = {}
        #: Called with each signal's outcome once decided (and written): the signal feed's
        #: acknowledgements. Called on actor threads and producers' threads; must not block.
        self.signal_listeners: list[Callable[[SignalRecord], None]] = []
        #: Called with the outcome of each operator's request (close, pause, resume,
        #: unquarantine) once decided: the control endpoint's answers. Called on actor
        #: threads; must not block.
        self.control_listeners: list[Callable[[ControlOutcome], None]] = []

    # -- routing (any thread) ---------------------------------------------------------------

    def tell(self, msg: Message) -> bool:
        """Deliver ``msg`` to its symbol's actor, creating the actor if needed.

        Returns False when the message was refused (unknown account, shutting down, entries
        closed for the account); the refusal is logged and counted as a dead letter. Two
        messages start no actor and are dropped without a word, returning False: a
        ``TicksReady`` for a tick slot that is no longer its symbol's (the actor passivated
        meanwhile, or the process is stopping: a parked mark price is not a lost message),
        and the sync's "nothing here" (no position, no order of ours) for a symbol without a
        live actor: neither carries anything for a new actor.
        """
        if isinstance(msg, TicksReady) and (
            self._closing or self._slots.get(msg.key) is not msg.slot
        ):
            return False
        if self._closing and not isinstance(msg, ExchangeOutcome | TimerFired):
            return self._dead_letter(msg, "shutting_down")
        account = msg.key.account
        if not self._active.get(account, True):
            if isinstance(msg, OpenSignal) and self._hold(msg):
                return True
            if not isinstance(msg, OpenSignal):
                self.dropped_not_owner[account] = self.dropped_not_owner.get(account, 0) + 1
                return False
        elif isinstance(msg, OrderUpdate | SyncObservation) and self.inspect is not None:
            self.inspect(msg)
        if isinstance(msg, OpenSignal) and not self._entries_open.get(account, False):
            if self._hold(msg):
                return True
            reason = self._entry_refusal.get(msg.key.account, "unknown_account")
            self.metrics.signal(msg.source, "rejected", reason)
            log.warning("signal %s refused: %s", msg.signal_id, reason, extra={"key": str(msg.key)})
            self.signal_decided(SignalRecord.refused(msg, reason, self.clock.now()))
            return False
        if (
            isinstance(msg, SyncObservation)
            and msg.position is not None
            and msg.adoptable
            and account in self._no_adoption
        ):
            # A running actor must not adopt either (I7): the observation says so.
            msg = replace(msg, adoptable=False)
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

        A mark price starts no actor: a symbol without a live actor has no position (an actor
        holding one never passivates), so a price can decide nothing there, and an actor
        started later asks the exchange for a fresh mark price with the market's rules before
        its first entry. Such a tick is dropped and counted in ``ticks_without_actor``;
        returns False for it. (Else live actors would follow the allow-list, not the
        positions.)
        """
        slot = self._slots.get(tick.key)
        if slot is None:
            # Kept (one per allowed symbol): the actor started later gets it with the rules.
            self._marks[tick.key] = (tick.price, tick.received_at or self.clock.now())
            self.ticks_without_actor += 1
            return False
        if slot.put(tick):
            return self.tell(TicksReady(tick.key, slot))
        return True

    def _prime(self, ref: pykka.ActorRef[PositionActor], key: Key) -> None:
        """A new actor starts with the market's rules when the account's exchange port holds
        them without I/O (``cached_market_rules``), and with the last mark price the stream
        gave for its symbol (with the time it arrived): a signal that finds them fresh needs
        no :class:`FetchMarket` round trip. Called with the lock held; never blocks, never
        raises."""
        mark = self._marks.pop(key, None)
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
            price, at = mark if mark is not None else (None, self.clock.now())
            ref.tell(MarketInfo(key, CallResult.FOUND, price, rules, at))

    def _tell_slow(self, msg: Message) -> bool:
        key = msg.key
        if key.account not in self._workers:
            return self._dead_letter(msg, "unknown_account")
        for _ in range(3):
            with self._lock:
                if self._stopped:
                    return self._dead_letter(msg, "stopped")
                if isinstance(msg, TicksReady) and self._slots.get(key) is not msg.slot:
                    return False  # its actor passivated since: the wake-up is stale
                if not self._active.get(key.account, True) and not isinstance(msg, OpenSignal):
                    self.dropped_not_owner[key.account] += 1
                    return False  # deactivated meanwhile: nothing may start for it
                ref = self._actors.get(key)
                if ref is None or not ref.is_alive():
                    if isinstance(msg, SyncObservation) and not is_activity(msg):
                        return False  # "nothing here" where no actor is: nothing to do
                    if (
                        isinstance(msg, SyncObservation)
                        and key.account in self._no_adoption
                        and msg.position is not None
                    ):
                        return False  # another installation trades here: adopt nothing
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
        self._prime(ref, key)
        slot = self._slots.get(key)
        if slot is None:
            self._slots[key] = TickSlot()  # mark prices reach the actor from now on
        elif slot.set_band(None):
            # A tick parked under a predecessor's band: the new actor decides afresh.
            ref.tell(TicksReady(key, slot))
        return ref

    def _dead_letter(self, msg: Message, reason: str) -> bool:
        self._dead_letters += 1
        self.metrics.dead_letter(reason)
        # A mark price refused while stopping loses nothing (the next start reads fresh ones):
        # counted, but a clean stop writes no warning for it.
        quiet = isinstance(msg, TicksReady | MarkPriceTick) and reason in _STOPPING
        log.log(
            logging.DEBUG if quiet else logging.WARNING,
            "dead letter %s: %s",
            type(msg).__name__,
            reason,
            extra={"key": str(msg.key)},
        )
        return False

    # -- ActorHost (actor, worker and timer threads) ----------------------------------------

    def submit(self, effect: PlaceOrder | CancelOrder | LookupOrder | FetchMarket) -> None:
        self._workers[effect.key.account].submit(effect)

    def request_sync(self, key: Key, reason: str) -> None:
        _notify(self.sync_listeners, "sync request", key.account, reason)

    def signal_decided(self, record: SignalRecord) -> None:
        _notify(self.signal_listeners, "signal outcome", record)

    def control_decided(self, outcome: ControlOutcome) -> None:
        _notify(self.control_listeners, "control outcome", outcome)

    def clear_quarantine(self, key: Key) -> None:
        """Forget the key's crash history (an operator lifted its quarantine)."""
        with self._lock:
            self._trackers.pop(key, None)

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

    def not_owner(self, key: Key, why: str, certain: bool) -> None:
        _notify(self.ownership_listeners, "ownership", key.account, why, certain)

    def retire(self, key: Key, ref: pykka.ActorRef[Any]) -> bool:
        """An idle actor passivates (its own thread): forget its actor, cell and tick slot,
        cancel its timers, and drop its restart tracker unless it still counts (a crash
        within the window, or quarantine). False when ``ref`` is not the key's live actor
        (nothing is forgotten then). A message sent meanwhile still reaches the retiring
        actor, which hands it back to :meth:`deliver`: a new actor is started for it."""
        with self._lock:
            if self._actors.get(key) is not ref:
                return False
            del self._actors[key]
            self._cells.pop(key, None)
            self._slots.pop(key, None)
            self.timers.cancel_key(key)
            tracker = self._trackers.get(key)
            if tracker is not None and tracker.quiet(self.clock.now()):
                del self._trackers[key]
            return True

    # -- entry gates (ownership, I7) --------------------------------------------------------

    def set_entries_open(
        self, account: str, is_open: bool, reason: str = "not_owner", *, hold: bool = False
    ) -> None:
        """Open or close new entries for an account (the lease keeper and the installation
        check call this). Closed with ``hold``: signals are held (module docstring), not
        refused; opened: the held signals are offered to the actors now."""
        self._entries_open[account] = is_open
        self._held.set_holding(account, hold and not is_open)
        if not is_open:
            self._entry_refusal[account] = reason
        log.log(
            logging.INFO if is_open or hold else logging.WARNING,
            "entries for account %s %s",
            account,
            "open" if is_open else f"closed: {reason}{' (signals held)' if hold else ''}",
        )
        if is_open or not hold:
            self._release_held(account)

    def entries_open(self, account: str) -> bool:
        """Whether new entries are open for ``account`` here."""
        return self._entries_open.get(account, False)

    def set_adoption(self, account: str, allowed: bool) -> None:
        """Forbid (or allow again) adopting positions found on the exchange for ``account``:
        while another installation trades the account, its positions are not ours."""
        if allowed:
            self._no_adoption.discard(account)
        else:
            self._no_adoption.add(account)

    def active(self, account: str) -> bool:
        """Whether this process acts on ``account`` now (always, without a gate)."""
        return self._active.get(account, False)

    def activate(self, account: str, *, recover: bool = True) -> list[Key]:
        """The lease keeper holds ``account``'s lease now: messages for it flow again and its
        open positions are recovered (actors load them and resolve them against the exchange
        before new entries, S5). Entries stay as they are (the keeper opens them after the
        takeover's first sync). Returns the keys recovered (none with ``recover`` False: the
        caller recovers them, e.g. on a thread of its own). Raises what the store raises
        (:class:`~actors.ports.StoreUnavailable`): the account is then active, its positions
        are recovered by the next sync (or a retry)."""
        with self._lock:
            if self._stopped:
                return []
            self._active[account] = True
        log.info("account %s: active here", account)
        return self.recover(account) if recover else []

    def deactivate(
        self, account: str, reason: str = "ownership_lock_lost", *, hold: bool = True
    ) -> Callable[[], bool]:
        """Stop acting on ``account`` now (fenced, or the lease given up): nothing is sent for
        it any more (its gate is closed already), queued calls are dropped, its actors stop
        (each transition is in the database; the next owner recovers), entries close with
        ``reason`` (signals held when ``hold``). Returns a function that says whether every
        actor stopped (the account must not be activated again before: an actor finishing
        a message could act under the next epoch). Any thread but an actor's of the
        account."""
        with self._lock:
            self._active[account] = False
            refs = [(k, r) for k, r in self._actors.items() if k.account == account]
            for key, _ in refs:
                del self._actors[key]
                self._cells.pop(key, None)
                self._slots.pop(key, None)
                self._trackers.pop(key, None)
                self.timers.cancel_key(key)
        self.set_entries_open(account, False, reason, hold=hold)
        workers = self._workers.get(account)
        dropped = workers.drop_queued() if workers is not None else 0
        for _, ref in refs:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.stop(block=False)
        log.warning(
            "account %s: not active here any more (%s): %d actors stopped, %d queued calls dropped",
            account,
            reason,
            len(refs),
            dropped,
        )
        return lambda: all(ref.actor_stopped.is_set() for _, ref in refs)

    def _hold(self, sig: OpenSignal) -> bool:
        """Hold ``sig`` when its account waits for its lease here; False when not holding."""
        return self._held.hold(sig)

    def _release_held(self, account: str) -> None:
        """Offer the signals held for ``account`` (not older than ``hold_s``) again."""
        batch = self._held.release(account)
        if batch:
            log.info("account %s: offering %d held signals", account, len(batch))
        for sig in batch:
            self.tell(sig)

    def held_signals(self, account: str) -> int:
        """Signals held for ``account`` now."""
        return self._held.count(account)

    # -- lifecycle --------------------------------------------------------------------------

    def recover(self, account: str | None = None) -> list[Key]:
        """Start an actor for every non-terminal position in the store (of ``account``, or of
        every account active here) (S5).

        Each actor loads its position before its first message and resolves it against the
        exchange (lookups by client order id, then a sync) before it accepts a new entry.
        """
        keys: list[Key] = []
        window = StartWindow()
        for pos in self.store.open_positions(account):
            if pos.key.account not in self._workers:
                log.error("open position %s for unconfigured account %s", pos.id, pos.key)
                continue
            if not self._active.get(pos.key.account, False):
                continue  # another process's (I7)
            with self._lock:
                if self._stopped:
                    break
                ref = self._actors.get(pos.key)
                if ref is None or not ref.is_alive():
                    window.started(self._spawn(pos.key))
            keys.append(pos.key)
            window.make_room()  # a sliding window, oldest first
        window.wait_all()
        log.info("recovery started for %d open positions", len(keys))
        return keys

    def wake(self, keys: Iterable[Key]) -> list[Key]:
        """Start an actor for each of ``keys`` of a configured account active here (the
        symbols whose pause or quarantine is stored: their actors load it and show it in
        metrics; an account another process owns is its owner's to show, I7)."""
        started: list[Key] = []
        for key in keys:
            if key.account not in self._workers or not self._active.get(key.account, False):
                continue
            with self._lock:
                if self._stopped:
                    break
                ref = self._actors.get(key)
                if ref is None or not ref.is_alive():
                    self._spawn(key)
            started.append(key)
        return started

    def start(self) -> None:
        """Run the real-time timer thread (tests with a manual clock skip this)."""
        self.timers.run_in_thread()

    def passivate_idle(self) -> int:
        """Ask actors idle for ``passivate_after_s`` to stop themselves; returns how many were
        asked. Called by the app's housekeeping (main thread) every quarter of that period.

        Idle: no position, nothing unwritten, deferred or pending, no order of an earlier
        position still to be confirmed gone (``StatusReport.idle``); the time counts from the
        actor's last *activity*: ticks, timers and the sync's "nothing here" do not count
        (:func:`~actors.position_actor.is_activity`), so the periodic sync does not keep an
        idle actor alive. A quarantined actor is kept (its quarantine lives in it). Also
        drops restart trackers whose crashes are older than the restart window.
        """
        now = self.clock.now()
        limit = now - self.config.passivate_after_s
        with self._lock:
            for key, tracker in list(self._trackers.items()):
                if tracker.quiet(now):
                    del self._trackers[key]
        n = 0
        for key, cell in list(self._cells.items()):
            r = cell.report
            if r.idle and not r.quarantined and r.last_activity <= limit:
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
        for _ in range(3):
            ref = self._actors.get(key)
            if ref is None or not ref.is_alive():
                with self._lock:
                    ref = self._actors.get(key)
                    if ref is None or not ref.is_alive():
                        ref = self._spawn(key)  # a failed actor's successor
            try:
                state: SymbolState = ref.proxy().get_state().get(timeout=timeout)
                return state
            except pykka.ActorDeadError:
                continue
        raise pykka.ActorDeadError(f"no live actor for {key}")

    def keys(self) -> list[Key]:
        return list(self._actors)

    def structure_sizes(self) -> dict[str, int]:
        """Sizes of every per-key structure of the process, for a soak to print (any thread).

        ``actors``, ``cells``, ``tick_slots``: live actors; ``restart_trackers``: symbols that
        crashed within the restart window or are quarantined; ``timers``, ``timer_keys``,
        ``timer_heap``: :meth:`TimerService.sizes`; ``exchange_queue``: exchange calls queued or
        running; then every entry of :attr:`size_sources` (the app registers the intake's,
        the sync's and the feeds'). A source that fails reports -1.
        """
        with self._lock:
            out = {
                "actorless_marks": len(self._marks),
                "actors": len(self._actors),
                "cells": len(self._cells),
                "tick_slots": len(self._slots),
                "restart_trackers": len(self._trackers),
            }
        out["held_signals"] = self._held.total()
        out.update(self.timers.sizes())
        out["exchange_queue"] = self.in_flight()
        for name, size in list(self.size_sources.items()):
            try:
                out[name] = int(size())
            except Exception:
                log.exception("size of %s could not be read", name)
                out[name] = -1
        return out

    def cells(self) -> Iterable[ActorCell]:
        return list(self._cells.values())

    def stats(self) -> SupervisorStats:
        by_status: dict[str, int] = {}
        quarantined: set[str] = set()
        paused: list[str] = []
        for cell in list(self._cells.values()):
            r = cell.report
            s = r.status
            if s is not None:
                by_status[s.value] = by_status.get(s.value, 0) + 1
            if r.quarantined:  # a stored quarantine, loaded by the actor, counts too
                quarantined.add(str(cell.key))
            if r.paused:
                paused.append(str(cell.key))
        with self._lock:
            quarantined.update(str(k) for k, t in self._trackers.items() if t.quarantined)
        return SupervisorStats(
            live_actors=len(self._actors),
            restarts=self._restarts,
            quarantined=tuple(sorted(quarantined)),
            dead_letters=self._dead_letters,
            by_status=by_status,
            paused=tuple(sorted(paused)),
        )

    def failing_closes(self) -> list[Key]:
        """Symbols whose open position is closing and whose closes the exchange keeps
        refusing (``close_max_attempts`` or more): shown in the readiness check."""
        return [c.key for c in list(self._cells.values()) if c.report.close_failing]

    def in_flight(self) -> int:
        return sum(w.in_flight for w in self._workers.values())

    def calls_submitted(self) -> int:
        """Exchange calls accepted by the worker pools since start (only grows)."""
        return sum(w.submitted for w in self._workers.values())

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
