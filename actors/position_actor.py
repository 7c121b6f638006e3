"""The position actor: a shell around :func:`actors.transition.transition`, and its pykka
thread.

One actor per ``(account, symbol)``; it handles one message at a time on its own thread, so
nothing about a symbol can interleave (I8: no shared locks). For each message it

1. computes ``transition(state, message, ctx)`` (pure),
2. writes ``commit`` through the store port (one transaction) *before* any effect
   (:mod:`actors.save_first`, with its outage buffer :mod:`actors.unwritten`),
3. performs the effects (:mod:`actors.perform`): exchange calls go to the account's worker
   pool and come back as messages (I4), timers to the timer service, sync requests to the
   supervisor; and reports the decision (:mod:`actors.observe`).

This module holds the message handling: the tick band around it (:mod:`actors.band`), the
signals that wait for a mark price, the shell's own signal refusals and answers to replays,
and the status it publishes. Its lifecycle (pykka hooks, restart in place, retry once,
passivation, handing the mailbox back at a stop) is :mod:`actors.restarting`; the contract
with its host is :mod:`actors.host`. :class:`PositionShell` is all of it without threads (the
deterministic simulation, ``testkit.dst``, runs it); :class:`PositionActor` is the thin pykka
adapter production runs: one thread and one inbox per actor.

Failure contract (with the lifecycle's, in :mod:`actors.restarting`):

* A write that fails for an *entry* (risk-increasing) drops the transition: no order leaves
  without its committed intent (I2); the signal is refused with ``store_unavailable``.
* A write that fails for a *protective* transition (fill, stop, close) does not stop the
  protection: the state and effects go ahead and the write is retried until the store is back
  (exchange-side protection beats write-ahead for orders that reduce risk).
* Someone else owns this (I7): a write refused because the account's lease epoch is stale
  or this process does not hold the lease (:class:`~actors.ports.Fenced`) drops the
  transition (no effect is performed, a signal is refused ``ownership_lock_lost``) and tells
  the host, which fences the account and stops its actors. A write refused for a stale
  version (:class:`~actors.ports.StaleVersion`: another writer got there first) reloads the
  actor in place and tries the message once more, and the host checks the account's lease
  at once; neither is a crash (no back-off, no quarantine).
* Any other exception is a crash: restart in place (:mod:`actors.restarting`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pykka

from actors.band import TickBand
from actors.deferral import DEFER_TIMER, DeferredSignals
from actors.host import (
    ActorCell,
    ActorDeps,
    StatusReport,
    is_activity,
)
from actors.host import actor_log as log
from actors.ids import IdPool
from actors.messages import (
    Message,
    OpenSignal,
    Recover,
    SyncObservation,
    TicksReady,
    TimerFired,
)
from actors.model import Key
from actors.observe import observe_commit, observe_control, observe_signal
from actors.perform import perform
from actors.ports import Fenced, StaleVersion, StoreUnavailable
from actors.restarting import HANDED_BACK, RestartingShell
from actors.save_first import PERSIST_TIMER, SaveFirst, Write
from actors.signal_age import AGE_REFUSALS
from actors.state import (
    Commit,
    ControlOutcome,
    SignalOutcome,
    SignalRecord,
    SymbolState,
    Transition,
)
from actors.transition import Context, leftovers, tick_band, transition

__all__ = ["PositionActor", "PositionShell"]


class PositionShell(RestartingShell):
    """The actor of one ``(account, symbol)``, without its thread (module docstring)."""

    def __init__(self, key: Key, deps: ActorDeps, cell: ActorCell) -> None:
        super().__init__(key, deps, cell)
        self._ids = deps.ids if deps.ids is not None else IdPool(deps.store, block=8)
        self._next_id: int | None = None  # see _spare_id
        self._state = SymbolState(key)
        self._deferred = DeferredSignals(key, deps.timers)
        self._saver = SaveFirst(key, deps.store, deps.timers, deps.metrics)
        self._unwritten = self._saver.unwritten
        self._band = TickBand(key, deps.host.deliver)
        self._active_at = deps.clock.now()  # see StatusReport.last_activity

    def _receive_live(self, message: Any) -> None:
        arrived: float | None = None
        if isinstance(message, TicksReady):
            tick, arrived = self._band.wake(message)
            if tick is None:
                self._publish_band()
                return
            message = tick
        else:
            # A tick parked in the band came before this message: apply it first, so that
            # the last price is fresh (signal checks use it).
            parked = self._band.take_parked()
            if parked is not None:
                self._dispatch(parked)
        if isinstance(message, TimerFired) and message.name == PERSIST_TIMER:
            try:
                self._saver.flush()
            except (StaleVersion, Fenced) as exc:  # another writer: not a crash
                self._not_owner(message, exc)
            except Exception as exc:
                self._crashed(message, exc)
            self._publish()
            return
        if isinstance(message, TimerFired) and message.name == DEFER_TIMER:
            self._offer_deferred()
            self._publish_band()
            return
        self._dispatch(message, arrived=arrived)
        if self._deferred and not self._restart_pending:
            self._offer_deferred()
        self._publish_band()
        return

    def _offer_deferred(self) -> None:
        """Offer the signals that wait (no fresh mark price yet, an earlier position's orders
        not confirmed gone) to the transition again, in arrival order; one that waited
        ``Policy.mark_wait_s`` is offered for the last time (``give_up``) and so refused with
        what it still waits for."""
        waiting = self._deferred.take()
        limit = self._deps.policy.mark_wait_s
        now = self._deps.clock.now()
        for i, (sig, since) in enumerate(waiting):
            self._dispatch(sig, since=since, give_up=now - since >= limit)
            if self._restart_pending:  # crashed: the rest waits for the next incarnation
                self._deferred.keep(waiting[i + 1 :])
                break
        self._deferred.rearm()

    def _publish_band(self) -> None:
        """Publish the tick band for the actor's state now (see :mod:`actors.band`)."""
        self._band.publish(
            lambda: tick_band(self._state, self._deps.policy),
            self._dispatch,
            lambda: self._restart_pending or self._retired,
        )

    def _held(self) -> list[Message]:
        """The deferred signals, then the wake-up owed for a tick parked under the band
        (handed back after the stash: the newest price last)."""
        held: list[Message] = [sig for sig, _ in self._deferred.take()]
        wake_up = self._band.hand_back()
        if wake_up is not None:
            held.append(wake_up)  # a parked tick: the successor's
        return held

    # -- the inspection surface used by tests and the supervisor (via ask/proxy)

    def get_state(self) -> SymbolState:
        """The actor's state, with a tick parked in its band applied first (freshest price)."""
        if not self._restart_pending and not self._retired:
            parked = self._band.take_parked()
            if parked is not None:
                self._dispatch(parked)
                self._publish_band()
        return self._state

    def unwritten(self) -> int:
        return len(self._unwritten)

    # -- message handling

    def _dispatch(
        self,
        message: Message,
        since: float | None = None,
        give_up: bool = False,
        arrived: float | None = None,
    ) -> None:
        """Handle one message (a deferred signal: with the time it first arrived, and
        ``give_up`` when this is its last chance). ``arrived``: for a tick that woke this
        actor, when the frame that carried its band-leaving price arrived; the time from
        then to the end of this handling is ``ps_tick_decision_seconds``. Other ticks (parked
        inside the band, applied before another message or released by a narrower band)
        decided nothing when they arrived and are not observed."""
        t0 = time.perf_counter()
        try:
            self._handle(message, since, give_up)
        except (StaleVersion, Fenced) as exc:
            self._not_owner(message, exc)
        except Exception as exc:
            self._crashed(message, exc)
        else:
            if message is self._retry:
                self._retry = None
        elapsed = time.perf_counter() - t0
        metrics = self._deps.metrics
        if since is None:  # a deferred signal offered again is not a new message
            metrics.handled(type(message).__name__, elapsed)
        if arrived is not None:
            metrics.tick_decision(self._deps.clock.now() - arrived)
        self._publish(active=is_activity(message))

    def _handle(self, message: Message, since: float | None = None, give_up: bool = False) -> None:
        deps = self._deps
        if self._unwritten:
            self._saver.flush()
        ctx = Context(deps.clock.now(), deps.policy, self._spare_id(message), give_up)
        result = transition(self._state, message, ctx)
        made = result.state.position
        if made is not None and made.id == self._next_id:
            self._next_id = None  # used: the next message that may create a position takes another
        if result.deferred and isinstance(message, OpenSignal):
            if not self._deferred.add(message, since if since is not None else ctx.now):
                self._refuse_signal(message, SignalOutcome.REJECTED, "busy")
                return
            self._state = result.state
            self._perform(result)
            return
        commit = result.commit
        rec = result.signal
        if (
            rec is not None
            and isinstance(message, OpenSignal)
            and rec.reason in AGE_REFUSALS
            and self._answer_replay(message)
        ):
            return  # an old signal decided before: answered with that decision
        if commit is not None:
            if not self._write(commit):
                if result.control is not None:
                    self._control_decided(
                        replace(result.control, ok=False, outcome="store_unavailable")
                    )
                return
        self._state = result.state
        if rec is not None:
            self._signal_decided(rec)
        if commit is not None:
            observe_commit(commit, self.key, deps.metrics)
        self._perform(result)
        if result.control is not None:
            self._control_decided(result.control)

    def _spare_id(self, message: Message) -> int | None:
        """The position id this actor holds for the next position it creates (taken from the
        shared pool before :func:`transition`, which stays free of I/O). Only a signal or a
        sync observation can create one. ``None`` when the store cannot give one: the
        transition then refuses the signal ``store_unavailable`` or adopts at a later sync."""
        if self._next_id is None and isinstance(message, OpenSignal | SyncObservation):
            try:
                self._next_id = self._ids()
            except StoreUnavailable as exc:
                self._deps.metrics.commit_failed("unavailable")
                log.error(
                    "store unavailable, no position id for %s: %s",
                    self.key,
                    exc,
                    extra={"key": str(self.key)},
                )
        return self._next_id

    def _control_decided(self, outcome: ControlOutcome) -> None:
        """An operator's request is decided: logged, and reported to the host (which answers
        the control endpoint). A lifted quarantine also resets the crash count."""
        if outcome.ok and outcome.command == "unquarantine":
            self._quarantined = False
            self._deps.host.clear_quarantine(self.key)
        observe_control(outcome, self.key)
        self._deps.host.control_decided(outcome)

    def _signal_decided(self, rec: SignalRecord) -> None:
        observe_signal(rec, self.key, self._deps.metrics)
        self._deps.host.signal_decided(rec)

    def _answer_replay(self, sig: OpenSignal) -> bool:
        """If the store has a final decision on this signal id (a replay older than the
        actor's memory), answer with it (``replay``) and return True."""
        try:
            prior = self._deps.store.recorded_signal(self.key.account, sig.signal_id)
        except StoreUnavailable:
            self._refuse_signal(sig, SignalOutcome.REJECTED, "store_unavailable")
            return True
        if prior is None:
            return False
        self._signal_decided(replace(prior, replay=True))
        return True

    def _write(self, commit: Commit) -> bool:
        """Write the commit first (:mod:`actors.save_first`). False when the transition must
        be dropped: an entry the store cannot take (refused), a replay the store has decided
        before (answered with that decision)."""
        written = self._saver.write(commit)
        if written is Write.REFUSED:
            self._refuse_unwritable(commit, "store_unavailable")
            return False
        if written is Write.SEEN:
            assert isinstance(commit.cause, OpenSignal)
            if not self._answer_replay(commit.cause):
                self._refuse_signal(commit.cause, SignalOutcome.DUPLICATE, "signal_replayed")
            return False
        return True

    def _refuse_unwritable(self, commit: Commit, reason: str) -> None:
        cause = commit.cause
        if isinstance(cause, OpenSignal):
            self._refuse_signal(cause, SignalOutcome.REJECTED, reason)
        else:
            self._deps.metrics.dead_letter(reason)

    def _refuse_signal(self, sig: OpenSignal, outcome: SignalOutcome, reason: str) -> None:
        """A signal refused by the shell, its transition dropped (nothing written for it):
        counted, logged and reported to the host like the transition's own outcomes."""
        self._signal_decided(SignalRecord.refused(sig, reason, self._deps.clock.now(), outcome))

    def _publish(self, active: bool = True) -> None:
        """Publish the status report; ``active`` False: the message just handled does not
        count as activity (it moves ``last_activity`` only if the actor was not idle)."""
        st = self._state
        idle = (
            st.open_position is None
            and not self._unwritten
            and not self._restart_pending
            and not self._deferred
            and not leftovers(st)
            # a paused or quarantined symbol stays, so that metrics and the live view show it
            and not st.paused
            and not self._quarantined
        )
        if active or not idle or not self.cell.report.idle:
            self._active_at = self._deps.clock.now()
        self.cell.report = StatusReport.of(
            st,
            self._deps.policy,
            last_activity=self._active_at,
            idle=idle,
            quarantined=self._quarantined,
            unwritten=len(self._unwritten),
        )

    # -- (re)start and crash

    def _load(self) -> None:
        snap = self._deps.store.load(self.key)
        old = self._state
        if self._quarantined and not snap.quarantined:
            # The quarantine was not written when it was decided (the store failed): again.
            self._persist_quarantine(Recover(self.key, "quarantine not stored"), "")
        self._quarantined = self._quarantined or snap.quarantined
        self._state = SymbolState(
            key=self.key,
            position=snap.position,
            last_closed_at=snap.last_closed_at,
            bought=snap.bought,
            decided=_recent(snap.decided, self._deps.policy.recent_signal_memory),
            quarantined=self._quarantined,
            paused=snap.paused,
            # What the exchange told us survives a restart in place (not durable anyway).
            last_price=old.last_price,
            last_price_at=old.last_price_at,
            market=old.market,
        )
        self._publish()
        if self._state.open_position is not None or leftovers(self._state):
            self._dispatch(Recover(self.key))

    def _fenced(self, message: Message) -> None:
        self._unwritten.clear()  # not ours to write any more: the next owner recovers
        if isinstance(message, OpenSignal):
            self._refuse_signal(message, SignalOutcome.REJECTED, "ownership_lock_lost")

    def _persist_quarantine(self, cause: Message, error: str) -> None:
        self._saver.quarantine(cause, error, self._deps.clock.now())

    def _perform(self, result: Transition) -> None:
        deps = self._deps
        perform(result.effects, self.key, deps.host, deps.timers, deps.metrics)

    def _reload(self) -> None:
        self._unwritten.clear()
        self._load()  # keeps a quarantine decided here (``_load``: stored or not)


class PositionActor(PositionShell, pykka.ThreadingActor):
    """The actor of one ``(account, symbol)`` on its pykka thread. Created only by the
    supervisor. pykka calls the shell's hooks; the mailbox is pykka's inbox."""

    def __init__(self, key: Key, deps: ActorDeps, cell: ActorCell) -> None:
        pykka.ThreadingActor.__init__(self)
        PositionShell.__init__(self, key, deps, cell)

    def _self_ref(self) -> pykka.ActorRef[Any]:
        return self.actor_ref

    def _stop_self(self) -> None:
        self.stop()

    def _queued_tells(self) -> list[Message]:
        told: list[Message] = []
        keep = []
        inbox = self.actor_inbox
        while not inbox.empty():
            envelope = inbox.get()
            if envelope.reply_to is None and isinstance(envelope.message, HANDED_BACK):
                told.append(envelope.message)
            else:
                keep.append(envelope)
        for envelope in keep:
            inbox.put(envelope)
        return told


def _recent(decided: tuple[SignalRecord, ...], memory: int) -> tuple[SignalRecord, ...]:
    """The last ``memory`` decisions of a loaded snapshot (the store may return more)."""
    return decided[-memory:] if memory > 0 else ()
