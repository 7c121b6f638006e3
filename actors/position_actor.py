"""The position actor: a thin pykka shell around :func:`actors.transition.transition`.

One actor per ``(account, symbol)``; it handles one message at a time on its own thread, so
nothing about a symbol can interleave (I8: no shared locks). For each message it

1. computes ``transition(state, message, ctx)`` (pure),
2. writes ``commit`` through the store port (one transaction) *before* any effect,
3. performs the effects: exchange calls go to the account's worker pool and come back as
   messages (I4), timers to the timer service, sync requests to the supervisor.

Failure contract:

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
* Any other exception is a crash: the actor is restarted *in place* from the store, Akka style:
  its mailbox is kept (I3), the message that crashed is tried once more and then
  dead-lettered with a reason; restarts back off and may quarantine the symbol (I6), as the
  supervisor's restart policy decides.
* A message left in the inbox when the actor stops (passivation, shutdown) is handed back to
  the router rather than dropped (pykka drops queued ``tell`` messages of a stopped actor).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from typing import Any

import pykka

from actors.band import TickBand
from actors.host import (
    ActorCell,
    ActorDeps,
    ActorHost,
    Barrier,
    Passivate,
    RestartDecision,
    StatusReport,
    is_activity,
)
from actors.host import actor_log as log
from actors.ids import IdPool
from actors.messages import (
    CloseRequest,
    ExchangeOutcome,
    MarketInfo,
    MarkPriceTick,
    Message,
    OpenSignal,
    OrderUpdate,
    PauseRequest,
    Recover,
    SyncObservation,
    TicksReady,
    TimerFired,
    UnquarantineRequest,
)
from actors.model import Key, Status
from actors.observe import observe_commit, observe_control, observe_signal
from actors.perform import perform
from actors.ports import Fenced, SignalSeen, StaleVersion, StoreUnavailable
from actors.signal_age import AGE_REFUSALS
from actors.state import (
    Commit,
    ControlChange,
    ControlOutcome,
    JournalEvent,
    SignalOutcome,
    SignalRecord,
    SymbolState,
    Transition,
)
from actors.transition import Context, leftovers, tick_band, transition
from actors.unwritten import UnwrittenCommits

__all__ = [
    "DEFER_TIMER",
    "PERSIST_TIMER",
    "RESTART_TIMER",
    "ActorCell",
    "ActorDeps",
    "ActorHost",
    "Barrier",
    "IdPool",
    "Passivate",
    "PositionActor",
    "RestartDecision",
    "StatusReport",
    "is_activity",
]

RESTART_TIMER = "__restart"
PERSIST_TIMER = "__persist"
DEFER_TIMER = "__defer"
PERSIST_RETRY_S = 1.0
#: How often signals that wait for a fresh mark price are offered again (a failed fetch is
#: retried at this pace; the wait itself is bounded by ``Policy.mark_wait_s``).
DEFER_POLL_S = 0.5
#: Signals waiting for a symbol at most; more are refused ``busy`` (transient).
MAX_DEFERRED = 64


class PositionActor(pykka.ThreadingActor):
    """The actor of one ``(account, symbol)``. Created only by the supervisor."""

    def __init__(self, key: Key, deps: ActorDeps, cell: ActorCell) -> None:
        super().__init__()
        self.key = key
        self._deps = deps
        self._ids = deps.ids if deps.ids is not None else IdPool(deps.store, block=8)
        self._state = SymbolState(key)
        self._loaded = False
        self._quarantined = False
        self._restart_pending = False
        self._store_wait = False  # the restart waits for the database, not after a crash
        self._stash: deque[Message] = deque()
        self._deferred: deque[tuple[OpenSignal, float]] = deque()
        self._retry: Message | None = None
        self._unwritten = UnwrittenCommits()
        self._retired = False
        self._band = TickBand(key, deps.host.deliver)
        self._active_at = deps.clock.now()  # see StatusReport.last_activity
        self.cell = cell

    # -- pykka hooks (actor thread)

    def on_start(self) -> None:
        try:
            self._load()
        except StoreUnavailable as exc:
            self._wait_for_store(exc)
        except Exception as exc:
            log.exception("load failed for %s", self.key, extra={"key": str(self.key)})
            self._schedule_restart(exc)

    def _wait_for_store(self, exc: StoreUnavailable) -> None:
        """The database is down, not this actor: load again in a while, messages stashed.

        Not a crash, so it does not count towards the restart intensity (a database outage
        must not quarantine every symbol that hears from a feed meanwhile).
        """
        log.warning(
            "store unavailable, loading %s again in %.1fs: %s",
            self.key,
            PERSIST_RETRY_S,
            exc,
            extra={"key": str(self.key)},
        )
        self._deps.metrics.commit_failed("unavailable")
        self._restart_pending = True
        self._store_wait = True
        self._deps.timers.start(self.key, RESTART_TIMER, PERSIST_RETRY_S)
        self._publish()

    def on_receive(self, message: Any) -> Any:
        return self._receive(message)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: Any,
    ) -> None:
        """pykka calls this when something escapes :meth:`on_receive` (a defect outside a
        transition, which the shell's own restart in place did not catch): the actor stops,
        its mailbox goes back to the router and a successor loads the position from the
        store. The crash is still the restart policy's to count (and may quarantine the
        symbol, stored so that the successor keeps it). Actor thread; never raises."""
        exc = exception_value or RuntimeError("unknown failure")
        try:
            decision = self._deps.host.on_crash(self.key, exc)
            if decision.quarantine and not self._quarantined:
                self._quarantined = True
                log.error("symbol %s quarantined: no new entries", self.key)
                self._persist_quarantine(Recover(self.key, "actor failed"), repr(exc))
        except Exception:
            log.exception("reporting the failure of %s failed", self.key)
        try:
            self._hand_back()
        except Exception:
            log.exception("handing back the mailbox of %s failed", self.key)

    def _receive(self, message: Any) -> Any:
        if isinstance(message, Barrier):
            return True  # started (loaded) and every earlier message handled
        if isinstance(message, Passivate):
            self._passivate()
            return None
        if self._retired:
            self._deps.host.deliver(message)
            return None
        if self._restart_pending:
            if isinstance(message, TimerFired) and message.name == RESTART_TIMER:
                self._restart()
            elif isinstance(message, OpenSignal):
                # No entry is decided late (a signal stashed through a database outage used
                # to open 20 s after it came): refused now, the sender may send it again.
                why = "store_unavailable" if self._store_wait else "restarting"
                self._refuse_signal(message, SignalOutcome.REJECTED, why)
            elif isinstance(message, UnquarantineRequest) and not self._store_wait:
                # A quarantined symbol waits long between restarts: an operator who lifts
                # the quarantine gets a restart now, with a fresh crash count.
                self._deps.host.clear_quarantine(self.key)
                self._deps.timers.cancel(self.key, RESTART_TIMER)
                self._stash.appendleft(message)
                self._restart()
            else:
                self._stash.append(message)
            return None
        arrived: float | None = None
        if isinstance(message, TicksReady):
            tick, arrived = self._band.wake(message)
            if tick is None:
                self._publish_band()
                return None
            message = tick
        else:
            # A tick parked in the band came before this message: apply it first, so that
            # the last price is fresh (signal checks use it).
            parked = self._band.take_parked()
            if parked is not None:
                self._dispatch(parked)
        if isinstance(message, TimerFired) and message.name == PERSIST_TIMER:
            try:
                self._flush_unwritten()
            except (StaleVersion, Fenced) as exc:  # another writer: not a crash
                self._not_owner(message, exc)
            except Exception as exc:
                self._crashed(message, exc)
            self._publish()
            return None
        if isinstance(message, TimerFired) and message.name == DEFER_TIMER:
            self._offer_deferred()
            self._publish_band()
            return None
        self._dispatch(message, arrived=arrived)
        if self._deferred and not self._restart_pending:
            self._offer_deferred()
        self._publish_band()
        return None

    def _offer_deferred(self) -> None:
        """Offer the signals that wait (no fresh mark price yet, an earlier position's orders
        not confirmed gone) to the transition again, in arrival order; one that waited
        ``Policy.mark_wait_s`` is offered for the last time (``give_up``) and so refused with
        what it still waits for."""
        waiting = list(self._deferred)
        self._deferred.clear()
        limit = self._deps.policy.mark_wait_s
        now = self._deps.clock.now()
        for i, (sig, since) in enumerate(waiting):
            self._dispatch(sig, since=since, give_up=now - since >= limit)
            if self._restart_pending:  # crashed: the rest waits for the next incarnation
                self._deferred.extend(waiting[i + 1 :])
                break
        if self._deferred:
            self._deps.timers.start(self.key, DEFER_TIMER, DEFER_POLL_S)

    def _publish_band(self) -> None:
        """Publish the tick band for the actor's state now (see :mod:`actors.band`)."""
        self._band.publish(
            lambda: tick_band(self._state, self._deps.policy),
            self._dispatch,
            lambda: self._restart_pending or self._retired,
        )

    def on_stop(self) -> None:
        """pykka calls this on the actor thread when it stops (passivation, shutdown, fenced),
        after the actor is marked stopped and before its thread ends."""
        self._hand_back()

    def _hand_back(self) -> None:
        """Hand what this actor still holds back to the router instead of letting pykka drop
        it (I3): the message to retry, the deferred signals, the stash, a tick parked under
        its band, and every ``tell`` still in the inbox (pykka answers the ``ask`` ones with
        ``ActorDeadError`` after us; they stay queued). The actor is stopped already (a
        ``tell`` to it fails), so the router starts a successor for them."""
        salvaged: list[Message] = [] if self._retry is None else [self._retry]
        self._retry = None
        salvaged.extend(sig for sig, _ in self._deferred)
        self._deferred.clear()
        salvaged.extend(self._stash)
        self._stash.clear()
        wake_up = self._band.hand_back()
        if wake_up is not None:
            salvaged.append(wake_up)  # a parked tick: the successor's
        keep = []
        inbox = self.actor_inbox
        while not inbox.empty():
            envelope = inbox.get()
            if envelope.reply_to is None and isinstance(envelope.message, _POSITION_MESSAGES):
                salvaged.append(envelope.message)
            else:
                keep.append(envelope)
        for envelope in keep:
            inbox.put(envelope)
        for msg in salvaged:
            self._deps.host.deliver(msg)

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
            self._flush_unwritten()
        ctx = Context(deps.clock.now(), deps.policy, self._ids, give_up)
        try:
            result = transition(self._state, message, ctx)
        except StoreUnavailable as exc:
            # Only the id allocation touches the store here: no new position without it.
            deps.metrics.commit_failed("unavailable")
            if isinstance(message, OpenSignal):
                self._refuse_unwritable_signal(message, "store_unavailable")
            else:
                deps.metrics.dead_letter("store_unavailable")
                log.error(
                    "store unavailable, %s not handled for %s: %s",
                    type(message).__name__,
                    self.key,
                    exc,
                    extra={"key": str(self.key)},
                )
            return
        if result.deferred and isinstance(message, OpenSignal):
            if len(self._deferred) >= MAX_DEFERRED:
                self._refuse_signal(message, SignalOutcome.REJECTED, "busy")
                return
            first = since if since is not None else ctx.now
            if not self._deferred:
                deps.timers.start(self.key, DEFER_TIMER, DEFER_POLL_S)
            self._deferred.append((message, first))
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
            if not self._write(commit, result):
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

    def _write(self, commit: Commit, result: Transition) -> bool:
        """Write the commit. False when the transition must be dropped (entry intents)."""
        store = self._deps.store
        if self._unwritten and commit.risk_increasing:
            self._refuse_unwritable(commit, "store_unavailable")
            return False
        if self._unwritten:
            self._unwritten.append(commit)
            return True
        try:
            store.commit(commit)
            return True
        except (StaleVersion, Fenced):
            raise  # someone else owns this: _dispatch reloads or stops (_not_owner)
        except SignalSeen as exc:
            # An old replay the actor's memory of recent ids no longer held: the signal
            # history has it. Answered with the decision recorded there (I11).
            if not isinstance(commit.cause, OpenSignal):
                raise
            log.info("%s", exc, extra={"key": str(self.key)})
            if not self._answer_replay(commit.cause):
                self._refuse_signal(commit.cause, SignalOutcome.DUPLICATE, "signal_replayed")
            return False
        except StoreUnavailable as exc:
            self._deps.metrics.commit_failed("unavailable")
            if commit.risk_increasing or commit.position is None:
                self._refuse_unwritable(commit, "store_unavailable")
                log.error(
                    "store unavailable, transition dropped for %s: %s",
                    self.key,
                    exc,
                    extra={"key": str(self.key)},
                )
                return False
            log.error(
                "store unavailable for %s; protecting anyway, write retried: %s",
                self.key,
                exc,
                extra={"key": str(self.key), "position_id": commit.position.id},
            )
            self._unwritten.append(commit)
            self._deps.timers.start(self.key, PERSIST_TIMER, PERSIST_RETRY_S)
            return True

    def _refuse_unwritable(self, commit: Commit, reason: str) -> None:
        cause = commit.cause
        if isinstance(cause, OpenSignal):
            self._refuse_unwritable_signal(cause, reason)
        else:
            self._deps.metrics.dead_letter(reason)

    def _refuse_unwritable_signal(self, sig: OpenSignal, reason: str) -> None:
        self._refuse_signal(sig, SignalOutcome.REJECTED, reason)

    def _refuse_signal(self, sig: OpenSignal, outcome: SignalOutcome, reason: str) -> None:
        """A signal refused by the shell, its transition dropped (nothing written for it):
        counted, logged and reported to the host like the transition's own outcomes."""
        self._signal_decided(SignalRecord.refused(sig, reason, self._deps.clock.now(), outcome))

    def _flush_unwritten(self) -> None:
        """Write the unwritten commits; the store still down: try again on the persist timer."""
        if not self._unwritten:
            return
        if not self._unwritten.flush(self._deps.store):
            self._deps.timers.start(self.key, PERSIST_TIMER, PERSIST_RETRY_S)
            return
        log.info("store back: unwritten transitions persisted for %s", self.key)

    def _publish(self, active: bool = True) -> None:
        """Publish the status report; ``active`` False: the message just handled does not
        count as activity (it moves ``last_activity`` only if the actor was not idle)."""
        st = self._state
        pos = st.open_position
        policy = self._deps.policy
        idle = (
            pos is None
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
        self.cell.report = StatusReport(
            status=st.position.status if st.position is not None else None,
            last_activity=self._active_at,
            idle=idle,
            quarantined=self._quarantined,
            unwritten=len(self._unwritten),
            close_failing=(
                pos is not None
                and pos.status is Status.CLOSING
                and pos.close_seq >= policy.close_max_attempts
            ),
            paused=st.paused,
            position=st.position,
            mark=st.last_price,
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
        self._loaded = True
        self._publish()
        if self._state.open_position is not None or leftovers(self._state):
            self._dispatch(Recover(self.key))

    def _not_owner(self, message: Message, exc: StaleVersion | Fenced) -> None:
        """A write refused because another process owns (:class:`Fenced`) or wrote
        (:class:`StaleVersion`) this account: the transition is dropped, nothing of it is
        performed; never a crash (I7). Fenced: the host fences the account (this actor is
        stopped with the others), a signal is refused ``ownership_lock_lost``. Stale: reload
        in place and handle ``message`` once more (twice stale: dead-lettered), the host
        checks the lease now."""
        certain = isinstance(exc, Fenced)
        log.warning(
            "%s for %s on %s: %s",
            "fenced" if certain else "stale version",
            self.key,
            type(message).__name__,
            exc,
            extra={"key": str(self.key)},
        )
        self._deps.metrics.commit_failed("fenced" if certain else "stale_version")
        try:
            self._deps.host.not_owner(self.key, str(exc), certain)
        except Exception:
            log.exception("not_owner report failed for %s", self.key)
        if certain:
            self._unwritten.clear()  # not ours to write any more: the next owner recovers
            if isinstance(message, OpenSignal):
                self._refuse_signal(message, SignalOutcome.REJECTED, "ownership_lock_lost")
            return
        if message is self._retry:
            self._deps.metrics.dead_letter("stale_twice")
            log.error(
                "dead letter for %s: %r met a stale version twice",
                self.key,
                message,
                extra={"key": str(self.key)},
            )
            self._retry = None
        elif not isinstance(message, Recover):
            self._retry = message
        self._restart_pending = True
        self._restart()
        self._publish()

    def _crashed(self, message: Message, exc: BaseException) -> None:
        log.error(
            "actor %s crashed on %s: %r",
            self.key,
            type(message).__name__,
            exc,
            exc_info=exc,
            extra={"key": str(self.key)},
        )
        if message is self._retry:
            self._deps.metrics.dead_letter("crashed_twice")
            log.error(
                "dead letter for %s: %r crashed twice",
                self.key,
                message,
                extra={"key": str(self.key)},
            )
            self._retry = None
        elif not isinstance(message, Recover):
            self._retry = message
        self._schedule_restart(exc, message)

    def _schedule_restart(self, exc: BaseException, cause: Message | None = None) -> None:
        decision = self._deps.host.on_crash(self.key, exc)
        if decision.quarantine and not self._quarantined:
            self._quarantined = True
            log.error(
                "symbol %s quarantined: no new entries", self.key, extra={"key": str(self.key)}
            )
            self._persist_quarantine(cause or Recover(self.key, "load failed"), repr(exc))
        self._restart_pending = True
        if decision.delay <= 0:
            self._restart()
        else:
            self._deps.timers.start(self.key, RESTART_TIMER, decision.delay)
        self._publish()

    def _persist_quarantine(self, cause: Message, error: str) -> None:
        """Store the quarantine (so that a restart keeps it) with a journal event. Best
        effort: on failure it is logged, and the next load writes it again."""
        note = f"repeated crashes: {error}"[:200] if error else "repeated crashes"
        event = JournalEvent(
            None, "quarantined", None, None, self._deps.clock.now(), {"error": error[:200]}
        )
        commit = Commit(
            self.key, cause, None, 0, (event,), control=ControlChange("quarantined", True, note)
        )
        try:
            self._deps.store.commit(commit)
        except Exception as exc:
            log.error(
                "quarantine of %s not stored (written again at the next load): %s",
                self.key,
                exc,
                extra={"key": str(self.key)},
            )

    def _perform(self, result: Transition) -> None:
        deps = self._deps
        perform(result.effects, self.key, deps.host, deps.timers, deps.metrics)

    def _restart(self) -> None:
        """Fresh state from the store; then the crashed message once more, then the stash."""
        self._restart_pending = False
        self._store_wait = False
        self._unwritten.clear()
        try:
            self._load()
        except StoreUnavailable as exc:
            self._wait_for_store(exc)
            return
        except Exception as exc:
            log.error("reload failed for %s: %r", self.key, exc, extra={"key": str(self.key)})
            self._schedule_restart(exc)
            return
        if self._quarantined:
            self._state = replace(self._state, quarantined=True)
        pending: list[Message] = []
        if self._retry is not None:
            pending.append(self._retry)
        pending.extend(self._stash)
        self._stash.clear()
        for i, msg in enumerate(pending):
            self._dispatch(msg)
            if self._restart_pending:
                # Crashed again: keep the rest, in order, for the next incarnation.
                rest = [m for m in pending[i + 1 :] if m is not self._retry]
                self._stash.extendleft(reversed(rest))
                return

    def _passivate(self) -> None:
        if self._retired or not self.cell.report.idle:
            return
        if self._deps.host.retire(self.key, self.actor_ref):
            self._retired = True
            self.stop()


_POSITION_MESSAGES = (
    OpenSignal,
    CloseRequest,
    PauseRequest,
    UnquarantineRequest,
    SyncObservation,
    MarkPriceTick,
    OrderUpdate,
    ExchangeOutcome,
    MarketInfo,
    TimerFired,
    Recover,
    TicksReady,
)


def _recent(decided: tuple[SignalRecord, ...], memory: int) -> tuple[SignalRecord, ...]:
    """The last ``memory`` decisions of a loaded snapshot (the store may return more)."""
    return decided[-memory:] if memory > 0 else ()
