"""Save-first persistence of one position actor: the commit is written before any effect.

Who calls: :class:`~actors.position_actor.PositionActor`, on its thread only (no lock).

Failure contract of :meth:`SaveFirst.write`:

* written: the transition goes ahead (:attr:`Write.WRITTEN`);
* the store is unavailable, or earlier protective commits still wait to be written: an
  *entry* (risk-increasing) or a commit without a position is dropped
  (:attr:`Write.REFUSED`: no order leaves without its committed intent, I2); a *protective*
  one (fill, stop, close) is held in the :class:`~actors.unwritten.UnwrittenCommits` buffer
  and goes ahead (:attr:`Write.HELD`: exchange-side protection beats write-ahead), written
  again on the persist timer (:data:`PERSIST_TIMER`) until the store is back;
* the store has decided the commit's signal before (:class:`~actors.ports.SignalSeen`):
  :attr:`Write.SEEN`, the caller answers with that decision;
* :class:`~actors.ports.StaleVersion`, :class:`~actors.ports.Fenced` and any other error
  propagate (the caller reloads, stops or crashes).
"""

from __future__ import annotations

import enum

from actors.host import actor_log as log
from actors.messages import Message, OpenSignal, TimerId, TimerKind
from actors.model import Key
from actors.ports import Metrics, SignalSeen, Store, StoreUnavailable, Timers
from actors.state import Commit, ControlChange, JournalEvent, JournalKind
from actors.unwritten import UnwrittenCommits

__all__ = ["PERSIST_RETRY_S", "PERSIST_TIMER", "SaveFirst", "Write"]

#: The actor's timer that writes held commits again.
PERSIST_TIMER = TimerId(TimerKind.SHELL_PERSIST)
#: The pace at which an unavailable store is tried again (held commits, a load).
PERSIST_RETRY_S = 1.0


class Write(enum.Enum):
    """What became of a commit handed to :meth:`SaveFirst.write` (module docstring)."""

    WRITTEN = "written"
    HELD = "held"
    REFUSED = "refused"
    SEEN = "seen"


class SaveFirst:
    """The store side of one actor: writes, the held protective commits, the quarantine."""

    __slots__ = ("_key", "_metrics", "_store", "_timers", "unwritten")

    def __init__(self, key: Key, store: Store, timers: Timers, metrics: Metrics) -> None:
        self._key = key
        self._store = store
        self._timers = timers
        self._metrics = metrics
        self.unwritten = UnwrittenCommits()

    def write(self, commit: Commit) -> Write:
        """Write ``commit`` (after the held ones). See the module docstring."""
        if self.unwritten:
            if commit.risk_increasing:
                return Write.REFUSED
            self.unwritten.append(commit)
            return Write.HELD
        try:
            self._store.commit(commit)
            return Write.WRITTEN
        except SignalSeen as exc:
            # An old replay the actor's memory of recent ids no longer held: the signal
            # history has it. Answered with the decision recorded there (I11).
            if not isinstance(commit.cause, OpenSignal):
                raise
            log.info("%s", exc, extra={"key": str(self._key)})
            return Write.SEEN
        except StoreUnavailable as exc:
            self._metrics.commit_failed("unavailable")
            if commit.risk_increasing or commit.position is None:
                log.error(
                    "store unavailable, transition dropped for %s: %s",
                    self._key,
                    exc,
                    extra={"key": str(self._key)},
                )
                return Write.REFUSED
            log.error(
                "store unavailable for %s; protecting anyway, write retried: %s",
                self._key,
                exc,
                extra={"key": str(self._key), "position_id": commit.position.id},
            )
            self.unwritten.append(commit)
            self._timers.start(self._key, PERSIST_TIMER, PERSIST_RETRY_S)
            return Write.HELD

    def flush(self) -> None:
        """Write the held commits; the store still down: try again on the persist timer.
        Raises what :meth:`UnwrittenCommits.flush` raises."""
        if not self.unwritten:
            return
        if not self.unwritten.flush(self._store):
            self._timers.start(self._key, PERSIST_TIMER, PERSIST_RETRY_S)
            return
        log.info("store back: unwritten transitions persisted for %s", self._key)

    def quarantine(self, cause: Message, error: str, at: float) -> None:
        """Store the quarantine (so that a restart keeps it) with a journal event. Best
        effort: on failure it is logged, and the next load writes it again."""
        note = f"repeated crashes: {error}"[:200] if error else "repeated crashes"
        event = JournalEvent(None, JournalKind.QUARANTINED, None, None, at, {"error": error[:200]})
        commit = Commit(
            self._key, cause, None, 0, (event,), control=ControlChange("quarantined", True, note)
        )
        try:
            self._store.commit(commit)
        except Exception as exc:
            log.error(
                "quarantine of %s not stored (written again at the next load): %s",
                self._key,
                exc,
                extra={"key": str(self._key)},
            )
