"""An actor that restarts in place, Akka style: the lifecycle half of the position actor.

:class:`RestartingShell` is the lifecycle of :class:`~actors.position_actor.PositionShell`
(its only subclass): the hooks a runner calls (pykka's names), restart in place with the
mailbox kept (I3), the retry once of the message that crashed, passivation, and handing back
what the actor still holds when it stops. What a message *does* is the subclass's (the
abstract methods below); every method runs on the actor's thread. No threads here: the
mailbox is the runner's (pykka in production, the deterministic simulation in tests).

Failure contract:

* Someone else owns the account (:meth:`RestartingShell._not_owner`, I7): fenced, the
  host fences the account and the subclass drops what it holds; a stale version, the actor
  reloads in place and tries the message once more. Neither is a crash.
* A crash (:meth:`RestartingShell._crashed`): the actor is restarted *in place* from the
  store: messages arriving meanwhile are stashed (a signal is refused ``restarting``: no
  entry is decided late), the message that crashed is tried once more and then
  dead-lettered ``crashed_twice``; restarts back off and may quarantine the symbol (I6), as
  the host's restart policy decides (:meth:`~actors.host.ActorHost.on_crash`).
* The store is down at a (re)load: not a crash (no back-off, no quarantine): the load is
  tried again every ``PERSIST_RETRY_S`` s, signals are refused ``store_unavailable``.
* Something escapes :meth:`on_receive` (a defect outside a transition): pykka stops the
  actor; the crash is still counted, and the mailbox goes back to the router, whose
  successor loads the position from the store.
* A message left in the inbox when the actor stops (passivation, shutdown, fenced) is handed
  back to the router rather than dropped (pykka drops queued ``tell`` messages of a stopped
  actor): done from pykka's public ``on_stop``/``on_failure`` hooks, which run after the
  actor is marked stopped, so a later ``tell`` to it fails and reaches the router instead.
"""

from __future__ import annotations

import abc
from collections import deque
from typing import Any

from actors.host import ActorCell, ActorDeps, Barrier, Passivate, RestartDecision
from actors.host import actor_log as log
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
    TimerId,
    TimerKind,
    UnquarantineRequest,
)
from actors.model import Key
from actors.ports import Fenced, StaleVersion, StoreUnavailable
from actors.save_first import PERSIST_RETRY_S
from actors.state import SignalOutcome

__all__ = ["HANDED_BACK", "RESTART_TIMER", "RestartingShell"]

#: The actor's timer that ends a restart's back-off (or a wait for the store).
RESTART_TIMER = TimerId(TimerKind.SHELL_RESTART)

#: The messages a stopping actor hands back to the router when they are still in its inbox
#: (``tell`` only; an ``ask`` is answered ``ActorDeadError`` by pykka).
HANDED_BACK = (
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


class RestartingShell:
    """The lifecycle of one ``(account, symbol)`` actor (module docstring), without threads:
    whoever runs it calls the four hooks (:meth:`on_start` once, then :meth:`on_receive` for
    each message in order, :meth:`on_stop` or :meth:`on_failure` once at the end) on one
    thread at a time, and offers the three mailbox methods (:meth:`_self_ref`,
    :meth:`_stop_self`, :meth:`_queued_tells`). Production runs it on a pykka thread
    (:class:`~actors.position_actor.PositionActor`); the deterministic simulation
    (``testkit.dst``) calls the hooks itself."""

    def __init__(self, key: Key, deps: ActorDeps, cell: ActorCell) -> None:
        self.key = key
        self.cell = cell
        self._deps = deps
        self._quarantined = False
        self._restart_pending = False
        self._store_wait = False  # the restart waits for the database, not after a crash
        self._stash: deque[Message] = deque()
        self._retry: Message | None = None
        self._retired = False

    # -- what the subclass does

    @abc.abstractmethod
    def _load(self) -> None:
        """Load the actor's state from the store (raises what the store raises)."""

    @abc.abstractmethod
    def _reload(self) -> None:
        """Forget what is not in the store and :meth:`_load` again (a restart in place)."""

    @abc.abstractmethod
    def _receive_live(self, message: Any) -> None:
        """Handle a message while the actor runs (not restarting, not retired)."""

    @abc.abstractmethod
    def _dispatch(self, message: Message) -> None:
        """Handle one message; a crash or a stale write is reported through :meth:`_crashed`
        or a restart, never raised."""

    @abc.abstractmethod
    def _publish(self) -> None:
        """Publish the actor's status report (:attr:`cell`)."""

    @abc.abstractmethod
    def _refuse_signal(self, sig: OpenSignal, outcome: SignalOutcome, reason: str) -> None:
        """Refuse a signal without a transition (nothing written for it)."""

    @abc.abstractmethod
    def _persist_quarantine(self, cause: Message, error: str) -> None:
        """Store the quarantine, best effort."""

    @abc.abstractmethod
    def _fenced(self, message: Message) -> None:
        """Drop what is not ours any more (the account is fenced); ``message`` was refused."""

    @abc.abstractmethod
    def _held(self) -> list[Message]:
        """Take the messages the subclass holds (deferred signals, a parked tick's
        wake-up): handed back to the router when the actor stops."""

    # -- the mailbox (the runner's)

    @abc.abstractmethod
    def _self_ref(self) -> Any:
        """This incarnation's handle, as the host's ``retire`` knows it."""

    @abc.abstractmethod
    def _stop_self(self) -> None:
        """Stop after the current message: nothing more is delivered to this incarnation."""

    @abc.abstractmethod
    def _queued_tells(self) -> list[Message]:
        """Remove and return, in order, the messages still queued for this incarnation that
        were told (not asked) and are of a :data:`HANDED_BACK` type; the rest stay queued.
        Called once the incarnation is stopped."""

    # -- the hooks (pykka's names)

    def on_start(self) -> None:
        try:
            self._load()
        except StoreUnavailable as exc:
            self._wait_for_store(exc)
        except Exception as exc:
            log.exception("load failed for %s", self.key, extra={"key": str(self.key)})
            self._schedule_restart(exc)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Barrier):
            return True  # started (loaded) and every earlier message handled
        if isinstance(message, Passivate):
            self._passivate()
            return None
        if self._retired:
            self._deps.host.deliver(message)
            return None
        if self._restart_pending:
            self._while_restarting(message)
            return None
        self._receive_live(message)
        return None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: Any,
    ) -> None:
        """pykka calls this when something escapes :meth:`on_receive` (a defect outside a
        transition, which the restart in place did not catch): the actor stops, its mailbox
        goes back to the router and a successor loads the position from the store. The crash
        is still the restart policy's to count (and may quarantine the symbol, stored so that
        the successor keeps it). Never raises."""
        exc = exception_value or RuntimeError("unknown failure")
        try:
            self._quarantine_if(self._deps.host.on_crash(self.key, exc), exc, None, "actor failed")
        except Exception:
            log.exception("reporting the failure of %s failed", self.key)
        try:
            self._hand_back()
        except Exception:
            log.exception("handing back the mailbox of %s failed", self.key)

    def on_stop(self) -> None:
        """pykka calls this when the actor stops (passivation, shutdown, fenced), after it is
        marked stopped and before its thread ends."""
        self._hand_back()

    # -- restart in place

    def _while_restarting(self, message: Message) -> None:
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
            self._fenced(message)
            return
        self._retry_once(message, "stale_twice", "met a stale version twice")
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
        self._retry_once(message, "crashed_twice", "crashed twice")
        self._schedule_restart(exc, message)

    def _retry_once(self, message: Message, reason: str, what: str) -> None:
        """Keep ``message`` to handle once more after the restart; the second time it fails
        it is dead-lettered with ``reason`` instead. A :class:`Recover` is never kept (the
        restart sends a fresh one)."""
        if message is self._retry:
            self._deps.metrics.dead_letter(reason)
            log.error(
                "dead letter for %s: %r %s",
                self.key,
                message,
                what,
                extra={"key": str(self.key)},
            )
            self._retry = None
        elif not isinstance(message, Recover):
            self._retry = message

    def _schedule_restart(self, exc: BaseException, cause: Message | None = None) -> None:
        decision = self._deps.host.on_crash(self.key, exc)
        self._quarantine_if(decision, exc, cause, "load failed")
        self._restart_pending = True
        if decision.delay <= 0:
            self._restart()
        else:
            self._deps.timers.start(self.key, RESTART_TIMER, decision.delay)
        self._publish()

    def _quarantine_if(
        self, decision: RestartDecision, exc: BaseException, cause: Message | None, why: str
    ) -> None:
        """Quarantine the symbol (stored, so that a restart keeps it) when the restart
        policy says so; ``why`` is the stored cause when no message caused the crash."""
        if decision.quarantine and not self._quarantined:
            self._quarantined = True
            log.error(
                "symbol %s quarantined: no new entries", self.key, extra={"key": str(self.key)}
            )
            self._persist_quarantine(cause or Recover(self.key, why), repr(exc))

    def _restart(self) -> None:
        """Fresh state from the store; then the crashed message once more, then the stash."""
        self._restart_pending = False
        self._store_wait = False
        try:
            self._reload()
        except StoreUnavailable as exc:
            self._wait_for_store(exc)
            return
        except Exception as exc:
            log.error("reload failed for %s: %r", self.key, exc, extra={"key": str(self.key)})
            self._schedule_restart(exc)
            return
        pending: list[Message] = []
        if self._retry is not None:
            pending.append(self._retry)
        pending.extend(self._stash)
        self._stash.clear()
        for i, msg in enumerate(pending):
            # As if it arrived now (a stashed wake-up is unwrapped, a persist timer flushes).
            self._receive_live(msg)
            if self._restart_pending:
                # Crashed again: keep the rest, in order, for the next incarnation.
                rest = [m for m in pending[i + 1 :] if m is not self._retry]
                self._stash.extendleft(reversed(rest))
                return

    # -- stopping

    def _passivate(self) -> None:
        if self._retired or not self.cell.report.idle:
            return
        if self._deps.host.retire(self.key, self._self_ref()):
            self._retired = True
            self._stop_self()

    def _hand_back(self) -> None:
        """Hand what this actor still holds back to the router instead of letting pykka drop
        it (I3): the message to retry, what the subclass holds (:meth:`_held`), the stash,
        and every ``tell`` still in the inbox (pykka answers the ``ask`` ones with
        ``ActorDeadError`` after us; they stay queued). The actor is stopped already (a
        ``tell`` to it fails), so the router starts a successor for them."""
        salvaged: list[Message] = [] if self._retry is None else [self._retry]
        self._retry = None
        held = self._held()
        salvaged.extend(m for m in held if not isinstance(m, TicksReady))
        salvaged.extend(self._stash)
        self._stash.clear()
        salvaged.extend(m for m in held if isinstance(m, TicksReady))
        salvaged.extend(self._queued_tells())
        for msg in salvaged:
            self._deps.host.deliver(msg)
