"""Tests written to kill mutants of the actor shell's lifecycle and message handling
(``make mutate``): :class:`actors.position_actor.PositionShell` with
:class:`actors.restarting.RestartingShell`, driven through the hooks a runner calls
(``on_start``, ``on_receive``, ``on_stop``, ``on_failure``) on the test's thread, with recording
fakes for its host, timers, clock and metrics and an in-memory store that can be told to raise.
Each test asserts the whole record of what the shell did (every call on its host, timer and
metric, in order), not one field; the docstrings say what each pins (the contracts are in the
two modules' docstrings).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from actors.conflation import TickSlot
from actors.deferral import DEFER_TIMER, MAX_DEFERRED
from actors.host import ActorCell, ActorDeps, Barrier, Passivate, RestartDecision
from actors.messages import (
    CallResult,
    CloseRequest,
    MarketInfo,
    MarkPriceTick,
    Message,
    OpenSignal,
    OrderUpdate,
    PauseRequest,
    Recover,
    TicksReady,
    TimerFired,
    UnquarantineRequest,
)
from actors.model import ExchangeStatus, Key, MarketRules, Side, Status
from actors.ports import (
    Fenced,
    NullMetrics,
    SignalSeen,
    Snapshot,
    StaleVersion,
    StoreUnavailable,
)
from actors.position_actor import PositionActor, PositionShell
from actors.restarting import HANDED_BACK, RESTART_TIMER
from actors.save_first import PERSIST_RETRY_S, PERSIST_TIMER
from actors.state import (
    Commit,
    ControlOutcome,
    JournalEvent,
    JournalKind,
    Policy,
    Position,
    SignalRecord,
    SymbolState,
)
from actors.transition import tick_band
from actors.unwritten import count_for, merge
from testkit.store import InMemoryStore
from testkit.world import signal

KEY = Key("main", "BTCUSDT")
T0 = 1000.0
BOOM = RuntimeError("boom")


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t


class Record:
    """One list of everything the shell did outside itself, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def take(self) -> list[tuple[Any, ...]]:
        out, self.log = self.log, []
        return out


class Timers:
    def __init__(self, rec: Record) -> None:
        self.rec = rec

    def start(self, key: Key, name: Any, delay: float) -> None:
        assert key == KEY
        self.rec.log.append(("timer", name.kind.value, delay))

    def cancel(self, key: Key, name: Any) -> None:
        assert key == KEY
        self.rec.log.append(("cancel", name.kind.value))

    def cancel_key(self, key: Key) -> None:
        self.rec.log.append(("cancel_key",))


class Metrics(NullMetrics):
    def __init__(self, rec: Record) -> None:
        self.rec = rec
        self.handled_types: list[str] = []
        self.seconds: list[float] = []
        self.decisions: list[float] = []

    def commit_failed(self, reason: str) -> None:
        self.rec.log.append(("commit_failed", reason))

    def dead_letter(self, reason: str) -> None:
        self.rec.log.append(("dead_letter", reason))

    def handled(self, message_type: str, seconds: float) -> None:
        self.handled_types.append(message_type)
        self.seconds.append(seconds)

    def tick_decision(self, seconds: float) -> None:
        self.decisions.append(seconds)


class Host:
    def __init__(self, rec: Record) -> None:
        self.rec = rec
        self.decisions: deque[RestartDecision] = deque()
        self.retire_ok = True

    def deliver(self, msg: Message) -> object:
        self.rec.log.append(("deliver", msg))
        return None

    def submit(self, effect: Any) -> None:
        self.rec.log.append(("submit", type(effect).__name__))

    def request_sync(self, key: Key, reason: str) -> None:
        self.rec.log.append(("sync", reason))

    def signal_decided(self, rec: SignalRecord) -> None:
        self.rec.log.append(("signal", rec.signal_id, rec.outcome.value, rec.reason, rec.replay))

    def control_decided(self, outcome: ControlOutcome) -> None:
        self.rec.log.append(("control", outcome.command, str(outcome.outcome), outcome.ok))

    def clear_quarantine(self, key: Key) -> None:
        assert key == KEY
        self.rec.log.append(("clear_quarantine",))

    def on_crash(self, key: Key, exc: BaseException) -> RestartDecision:
        assert key == KEY
        self.rec.log.append(("crash", repr(exc)))
        return self.decisions.popleft() if self.decisions else RestartDecision(2.0, False)

    def retire(self, key: Key, ref: Any) -> bool:
        self.rec.log.append(("retire",))
        return self.retire_ok

    def not_owner(self, key: Key, why: str, certain: bool) -> None:
        assert key == KEY
        self.rec.log.append(("not_owner", why, certain))


class Store(InMemoryStore):
    """The in-memory store, keeping the quarantine flag, recording every commit (its cause,
    control flag and journal details) and raising what ``raises`` holds, one per commit;
    ``load_raises``: one per load."""

    def __init__(self, rec: Record) -> None:
        super().__init__()
        self.rec = rec
        self.raises: list[BaseException] = []
        self.load_raises: list[BaseException] = []
        self.ids_raise: list[BaseException] = []
        self.quarantined = False
        self.paused = False

    def allocate_ids(self, n: int) -> list[int]:
        self.rec.log.append(("allocate_ids", n))
        if self.ids_raise:
            raise self.ids_raise.pop(0)
        return list(super().allocate_ids(n))

    def load(self, key: Key) -> Snapshot:
        if self.load_raises:
            raise self.load_raises.pop(0)
        return replace(super().load(key), quarantined=self.quarantined, paused=self.paused)

    def commit(self, commit: Commit) -> None:
        control = None if commit.control is None else commit.control.flag
        details = tuple(tuple(sorted(e.detail.items())) for e in commit.events)
        self.rec.log.append(("commit", type(commit.cause).__name__, control, details))
        if self.raises:
            raise self.raises.pop(0)
        super().commit(commit)
        if commit.control is not None and commit.control.flag == "quarantined":
            self.quarantined = commit.control.value
        if commit.control is not None and commit.control.flag == "paused":
            self.paused = commit.control.value


class Shell(PositionShell):
    def __init__(self, key: Key, deps: ActorDeps, cell: ActorCell) -> None:
        super().__init__(key, deps, cell)
        self.inbox: list[Any] = []
        self.stopped = False

    def _self_ref(self) -> Any:
        return self

    def _stop_self(self) -> None:
        self.stopped = True

    def _queued_tells(self) -> list[Message]:
        told = [m for m in self.inbox if isinstance(m, HANDED_BACK)]
        self.inbox = [m for m in self.inbox if not isinstance(m, HANDED_BACK)]
        return told


class Lines(logging.Handler):
    """The shell's log lines at WARNING and above: (level, message, the ``key`` extra, whether
    a traceback is attached)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[str, str, str | None, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(
            (
                record.levelname,
                record.getMessage(),
                getattr(record, "key", None),
                record.exc_info is not None and record.exc_info[0] is not None,
            )
        )


class Rig:
    def __init__(self, policy: Policy | None = None, own_ids: bool = False) -> None:
        self.log = Lines()
        logging.getLogger("actors.position_actor").addHandler(self.log)
        self.rec = Record()
        self.clock = Clock()
        self.host = Host(self.rec)
        self.store = Store(self.rec)
        self.metrics = Metrics(self.rec)
        ids = itertools.count(1)
        deps = ActorDeps(
            self.store,
            Timers(self.rec),
            self.clock,
            self.metrics,
            policy or Policy(),
            self.host,
            ids=None if own_ids else lambda: next(ids),
        )
        self.shell = Shell(KEY, deps, ActorCell(KEY, T0))

    def lines(self) -> list[tuple[str, str, str | None, bool]]:
        out, self.log.lines = self.log.lines, []
        return out

    def tell(self, *msgs: Any) -> list[tuple[Any, ...]]:
        for m in msgs:
            self.shell.on_receive(m)
        return self.rec.take()


@pytest.fixture(autouse=True)
def _no_handler_left() -> Iterator[None]:
    yield
    logger = logging.getLogger("actors.position_actor")
    for h in [h for h in logger.handlers if isinstance(h, Lines)]:
        logger.removeHandler(h)


def tick(price: float = 100.0, at: float = T0) -> MarkPriceTick:
    return MarkPriceTick(KEY, price, at, None, None, at)


def sig(sid: str) -> OpenSignal:
    return signal(signal_id=sid, account="main")


def ready() -> Rig:
    """Started, the market known and a fresh mark price: a signal is decided at once."""
    rig = Rig()
    rig.shell.on_start()
    rig.tell(MarketInfo(KEY, CallResult.FOUND, 100.0, MarketRules(), T0, ""), tick())
    return rig


ACCEPTED_S1 = [
    ("commit", "OpenSignal", None, ((),)),
    ("signal", "s1", "accepted", "", False),
    ("submit", "PlaceOrder"),
]


# -- ownership (I7) --------------------------------------------------------------------------


def test_a_fenced_write_drops_the_entry_refuses_the_signal_and_tells_the_host() -> None:
    rig = ready()
    rig.store.raises = [Fenced("epoch 3 < 4")]
    assert rig.tell(sig("s1")) == [
        ("commit", "OpenSignal", None, ((),)),
        ("commit_failed", "fenced"),
        ("not_owner", "epoch 3 < 4", True),
        ("signal", "s1", "rejected", "ownership_lock_lost", False),
    ]
    assert rig.lines() == [
        ("WARNING", "fenced for main:BTCUSDT on OpenSignal: epoch 3 < 4", "main:BTCUSDT", False)
    ]
    assert rig.shell.get_state().position is None and rig.shell.unwritten() == 0
    assert not rig.shell._restart_pending


def test_a_fenced_protective_write_drops_what_waits_to_be_written() -> None:
    """A close that cannot be written waits in the outage buffer; fenced, it is not ours to
    write any more: the buffer is emptied, no signal to refuse."""
    rig = ready()
    rig.tell(sig("s1"))
    rig.store.down = True
    out = rig.tell(CloseRequest(KEY))
    assert ("commit_failed", "unavailable") in out and rig.shell.unwritten() == 1
    rig.store.down = False
    rig.store.raises = [Fenced("lost")]
    assert rig.tell(TimerFired(KEY, PERSIST_TIMER)) == [
        ("commit", "CloseRequest", None, ((("reason", "manual"), ("why", "close request")),)),
        ("commit_failed", "fenced"),
        ("not_owner", "lost", True),
    ]
    assert rig.lines()[-1] == (
        "WARNING",
        "fenced for main:BTCUSDT on TimerFired: lost",
        "main:BTCUSDT",
        False,
    )
    assert rig.shell.unwritten() == 0 and rig.shell.cell.report.unwritten == 0


def test_a_stale_version_reloads_and_tries_the_message_once_more() -> None:
    rig = ready()
    rig.store.raises = [StaleVersion("v7")]
    assert rig.tell(sig("s1")) == [
        ("commit", "OpenSignal", None, ((),)),
        ("commit_failed", "stale_version"),
        ("not_owner", "v7", False),
        *ACCEPTED_S1,
    ]
    pos = rig.shell.get_state().position
    assert pos is not None and pos.id == 2 and pos.status is Status.PENDING_ENTRY
    assert rig.shell._retry is None and not rig.shell._restart_pending


def test_a_message_stale_twice_is_dead_lettered() -> None:
    rig = ready()
    rig.store.raises = [StaleVersion("a"), StaleVersion("b")]
    assert rig.tell(sig("s1")) == [
        ("commit", "OpenSignal", None, ((),)),
        ("commit_failed", "stale_version"),
        ("not_owner", "a", False),
        ("commit", "OpenSignal", None, ((),)),
        ("commit_failed", "stale_version"),
        ("not_owner", "b", False),
        ("dead_letter", "stale_twice"),
    ]
    assert rig.lines() == [
        ("WARNING", "stale version for main:BTCUSDT on OpenSignal: a", "main:BTCUSDT", False),
        ("WARNING", "stale version for main:BTCUSDT on OpenSignal: b", "main:BTCUSDT", False),
        (
            "ERROR",
            f"dead letter for main:BTCUSDT: {sig('s1')!r} met a stale version twice",
            "main:BTCUSDT",
            False,
        ),
    ]
    assert rig.shell._retry is None and not rig.shell._restart_pending
    assert rig.tell(sig("s2"))[1] == ("signal", "s2", "accepted", "", False)


def test_a_failing_not_owner_report_does_not_stop_the_reload() -> None:
    rig = ready()

    def broken(key: Key, why: str, certain: bool) -> None:
        raise RuntimeError("host down")

    rig.host.not_owner = broken  # type: ignore[method-assign]
    rig.store.raises = [StaleVersion("v")]
    assert rig.tell(sig("s1")) == [
        ("commit", "OpenSignal", None, ((),)),
        ("commit_failed", "stale_version"),
        *ACCEPTED_S1,
    ]
    assert rig.lines() == [
        ("WARNING", "stale version for main:BTCUSDT on OpenSignal: v", "main:BTCUSDT", False),
        ("ERROR", "not_owner report failed for main:BTCUSDT", None, True),
    ]


# -- crash, restart in place, retry once (I3, I6) ----------------------------------------------


def test_a_crash_restarts_after_the_delay_stashing_and_refusing_signals_meanwhile() -> None:
    rig = ready()
    rig.store.raises = [BOOM]
    assert rig.tell(sig("s1"), sig("s2"), tick(101.0)) == [
        ("commit", "OpenSignal", None, ((),)),
        ("crash", "RuntimeError('boom')"),
        ("timer", "__restart", 2.0),
        ("signal", "s2", "rejected", "restarting", False),
    ]
    assert not rig.shell.cell.report.idle and rig.shell._retry is not None
    assert rig.shell.get_state().last_price == 100.0  # the tick waits in the stash
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == ACCEPTED_S1
    assert rig.shell.get_state().last_price == 101.0
    assert rig.shell._retry is None and not rig.shell._stash


def test_a_message_that_crashes_twice_is_dead_lettered_and_the_symbol_may_be_quarantined() -> None:
    rig = ready()
    rig.store.raises = [BOOM, RuntimeError("bang")]
    rig.host.decisions.extend([RestartDecision(0.0, False), RestartDecision(0.0, True)])
    assert rig.tell(sig("s1")) == [
        ("commit", "OpenSignal", None, ((),)),
        ("crash", "RuntimeError('boom')"),
        ("commit", "OpenSignal", None, ((),)),
        ("dead_letter", "crashed_twice"),
        ("crash", "RuntimeError('bang')"),
        ("commit", "OpenSignal", "quarantined", ((("error", "RuntimeError('bang')"),),)),
    ]
    assert rig.lines() == [
        (
            "ERROR",
            "actor main:BTCUSDT crashed on OpenSignal: RuntimeError('boom')",
            "main:BTCUSDT",
            True,
        ),
        (
            "ERROR",
            "actor main:BTCUSDT crashed on OpenSignal: RuntimeError('bang')",
            "main:BTCUSDT",
            True,
        ),
        (
            "ERROR",
            f"dead letter for main:BTCUSDT: {sig('s1')!r} crashed twice",
            "main:BTCUSDT",
            False,
        ),
        ("ERROR", "symbol main:BTCUSDT quarantined: no new entries", "main:BTCUSDT", False),
    ]
    report = rig.shell.cell.report
    assert report.quarantined and not rig.shell._restart_pending
    assert rig.tell(sig("s2")) == [
        ("commit", "OpenSignal", None, ()),
        ("signal", "s2", "rejected", "quarantined", False),
    ]


def test_a_crash_in_a_stashed_message_keeps_the_rest_for_the_next_restart() -> None:
    """Restarted, the retried message and the stash are handled in order; one that crashes
    again stops the run: the rest stays stashed, in order, for the next incarnation."""
    rig = ready()
    rig.store.raises = [BOOM]
    rig.tell(sig("s1"), PauseRequest(KEY, True, "p1"), PauseRequest(KEY, False, "p2"))
    assert [type(m).__name__ for m in rig.shell._stash] == ["PauseRequest", "PauseRequest"]
    rig.store.raises = [RuntimeError("again")]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == [
        ("commit", "OpenSignal", None, ((),)),
        ("dead_letter", "crashed_twice"),
        ("crash", "RuntimeError('again')"),
        ("timer", "__restart", 2.0),
    ]
    assert [m.request_id for m in rig.shell._stash] == ["p1", "p2"]  # type: ignore[union-attr]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == [
        ("commit", "PauseRequest", "paused", ((("changed", True),),)),
        ("control", "pause", "paused", True),
        ("commit", "PauseRequest", "paused", ((("changed", True),),)),
        ("control", "resume", "resumed", True),
    ]


def test_lifting_the_quarantine_while_restarting_restarts_now() -> None:
    rig = ready()
    rig.store.raises = [BOOM]
    rig.host.decisions.append(RestartDecision(30.0, True))
    rig.tell(sig("s1"))
    assert rig.shell.cell.report.quarantined
    # The restart hands the message that crashed over first: still quarantined then.
    assert rig.tell(UnquarantineRequest(KEY, "u1")) == [
        ("clear_quarantine",),
        ("cancel", "__restart"),
        ("commit", "OpenSignal", None, ()),
        ("signal", "s1", "rejected", "quarantined", False),
        ("commit", "UnquarantineRequest", "quarantined", ((("changed", True),),)),
        ("clear_quarantine",),
        ("control", "unquarantine", "unquarantined", True),
    ]
    assert not rig.shell.cell.report.quarantined and not rig.store.quarantined


def test_a_quarantine_not_stored_is_written_again_at_the_next_load() -> None:
    rig = ready()
    rig.store.raises = [BOOM, StoreUnavailable("down")]
    rig.host.decisions.append(RestartDecision(5.0, True))
    assert rig.tell(sig("s1")) == [
        ("commit", "OpenSignal", None, ((),)),
        ("crash", "RuntimeError('boom')"),
        ("commit", "OpenSignal", "quarantined", ((("error", "RuntimeError('boom')"),),)),
        ("timer", "__restart", 5.0),
    ]
    assert not rig.store.quarantined
    assert rig.lines() == [
        (
            "ERROR",
            "actor main:BTCUSDT crashed on OpenSignal: RuntimeError('boom')",
            "main:BTCUSDT",
            True,
        ),
        ("ERROR", "symbol main:BTCUSDT quarantined: no new entries", "main:BTCUSDT", False),
        (
            "ERROR",
            "quarantine of main:BTCUSDT not stored (written again at the next load): down",
            "main:BTCUSDT",
            False,
        ),
    ]
    out = rig.tell(TimerFired(KEY, RESTART_TIMER))
    assert out[0] == ("commit", "Recover", "quarantined", ((("error", ""),),))
    assert rig.store.quarantined and rig.shell.get_state().quarantined
    assert out[1:] == [
        ("commit", "OpenSignal", None, ()),
        ("signal", "s1", "rejected", "quarantined", False),
    ]


# -- start and the store -------------------------------------------------------------------------


def test_the_store_down_at_start_is_waited_for_not_a_crash() -> None:
    rig = Rig()
    rig.store.load_raises = [StoreUnavailable("db down")]
    rig.shell.on_start()
    assert rig.rec.take() == [("commit_failed", "unavailable"), ("timer", "__restart", 1.0)]
    assert PERSIST_RETRY_S == 1.0 and rig.shell._restart_pending and rig.shell._store_wait
    assert not rig.shell.cell.report.idle
    # Meanwhile: a signal refused store_unavailable; a lifted quarantine waits (no restart).
    assert rig.tell(sig("s1"), UnquarantineRequest(KEY, "u1")) == [
        ("signal", "s1", "rejected", "store_unavailable", False),
    ]
    assert [type(m).__name__ for m in rig.shell._stash] == ["UnquarantineRequest"]
    rig.store.load_raises = [StoreUnavailable("still")]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == [
        ("commit_failed", "unavailable"),
        ("timer", "__restart", 1.0),
    ]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == [
        ("commit", "UnquarantineRequest", "quarantined", ((("changed", False),),)),
        ("clear_quarantine",),
        ("control", "unquarantine", "not_quarantined", True),
    ]
    assert rig.lines() == [
        (
            "WARNING",
            "store unavailable, loading main:BTCUSDT again in 1.0s: db down",
            "main:BTCUSDT",
            False,
        ),
        (
            "WARNING",
            "store unavailable, loading main:BTCUSDT again in 1.0s: still",
            "main:BTCUSDT",
            False,
        ),
    ]
    assert not rig.shell._store_wait and not rig.shell._restart_pending


def test_a_load_that_crashes_at_start_is_a_crash() -> None:
    rig = Rig()
    rig.store.load_raises = [BOOM]
    rig.shell.on_start()
    assert rig.rec.take() == [("crash", "RuntimeError('boom')"), ("timer", "__restart", 2.0)]
    assert not rig.shell._store_wait
    assert rig.tell(sig("s1")) == [("signal", "s1", "rejected", "restarting", False)]
    rig.store.load_raises = [RuntimeError("reload")]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == [
        ("crash", "RuntimeError('reload')"),
        ("timer", "__restart", 2.0),
    ]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == []
    assert not rig.shell._restart_pending
    assert rig.lines() == [
        ("ERROR", "load failed for main:BTCUSDT", "main:BTCUSDT", True),
        ("ERROR", "reload failed for main:BTCUSDT: RuntimeError('reload')", "main:BTCUSDT", False),
    ]


def test_a_quarantine_decided_at_a_failed_load_is_stored_with_its_cause() -> None:
    rig = Rig()
    rig.store.load_raises = [BOOM]
    rig.host.decisions.append(RestartDecision(0.0, True))
    rig.shell.on_start()
    assert rig.rec.take() == [
        ("crash", "RuntimeError('boom')"),
        ("commit", "Recover", "quarantined", ((("error", "RuntimeError('boom')"),),)),
    ]
    assert rig.shell.get_state().quarantined and rig.shell.cell.report.quarantined


def test_a_barrier_is_answered_and_changes_nothing() -> None:
    rig = ready()
    report = rig.shell.cell.report
    assert (report.quarantined, report.idle, report.unwritten) == (False, True, 0)
    assert report.quarantined is False
    assert rig.shell.on_receive(Barrier()) is True
    assert rig.shell.on_receive(tick(100.5)) is None
    assert rig.rec.take() == []


# -- passivation and handing back (I3) -------------------------------------------------------


def test_an_idle_actor_passivates_and_hands_later_messages_to_the_router() -> None:
    rig = ready()
    assert rig.shell.cell.report.idle
    assert rig.tell(Passivate()) == [("retire",)]
    assert rig.shell._retired and rig.shell.stopped
    assert rig.tell(Passivate(), sig("s1")) == [("deliver", sig("s1"))]


def test_an_actor_that_is_not_idle_or_not_retired_stays() -> None:
    rig = ready()
    rig.tell(sig("s1"))
    assert rig.tell(Passivate()) == [] and not rig.shell._retired
    rig = ready()
    rig.host.retire_ok = False
    assert rig.tell(Passivate()) == [("retire",)]
    assert not rig.shell._retired and not rig.shell.stopped


def test_stopping_hands_back_the_retry_the_held_the_stash_and_the_inbox_in_order() -> None:
    rig = ready()
    rig.store.raises = [BOOM]
    rig.tell(sig("s1"), PauseRequest(KEY, True, "p1"))
    rig.shell.inbox = [Barrier(), CloseRequest(KEY), Recover(KEY)]
    rig.shell.on_stop()
    assert rig.rec.take() == [
        ("deliver", sig("s1")),
        ("deliver", PauseRequest(KEY, True, "p1")),
        ("deliver", CloseRequest(KEY)),
        ("deliver", Recover(KEY)),
    ]
    assert rig.shell.inbox == [Barrier()] and rig.shell._retry is None
    rig.shell.on_stop()
    assert rig.rec.take() == []


def test_a_deferred_signal_is_handed_back_before_the_stash() -> None:
    rig = Rig()
    rig.shell.on_start()
    rig.tell(tick())  # no market yet: a signal waits for it
    assert rig.tell(sig("s1")) == [
        ("timer", "__defer", 0.5),  # the first to wait arms the poll
        ("submit", "FetchMarket"),
        ("timer", "__defer", 0.5),  # offered again after the message: waits again
        ("timer", "__defer", 0.5),  # and the poll is re-armed
    ]
    rig.shell.on_stop()
    assert rig.rec.take() == [("deliver", sig("s1"))]


def test_a_failure_escaping_the_actor_is_counted_and_hands_the_mailbox_back() -> None:
    rig = ready()
    rig.host.decisions.append(RestartDecision(1.0, True))
    rig.shell.inbox = [sig("s9")]
    rig.shell.on_failure(RuntimeError, BOOM, None)
    assert rig.rec.take() == [
        ("crash", "RuntimeError('boom')"),
        ("commit", "Recover", "quarantined", ((("error", "RuntimeError('boom')"),),)),
        ("deliver", sig("s9")),
    ]
    assert rig.shell._quarantined


def test_a_failure_without_an_exception_and_with_a_broken_host_still_hands_back() -> None:
    rig = ready()

    def broken(key: Key, exc: BaseException) -> RestartDecision:
        raise RuntimeError("host gone")

    rig.host.on_crash = broken  # type: ignore[method-assign]
    rig.shell.inbox = [sig("s9")]
    rig.shell.on_failure(None, None, None)
    assert rig.rec.take() == [("deliver", sig("s9"))]
    assert rig.lines() == [
        ("ERROR", "reporting the failure of main:BTCUSDT failed", None, True),
    ]
    rig = ready()
    rig.shell.inbox = [sig("s9")]

    def no_deliver(msg: Message) -> object:
        raise RuntimeError("router gone")

    rig.host.deliver = no_deliver  # type: ignore[method-assign]
    rig.shell.on_failure(None, None, None)  # never raises
    assert rig.rec.take() == [("crash", "RuntimeError('unknown failure')")]
    assert rig.lines() == [("ERROR", "handing back the mailbox of main:BTCUSDT failed", None, True)]


# -- message handling ----------------------------------------------------------------------------


def test_an_operator_request_the_store_cannot_take_is_answered_store_unavailable() -> None:
    rig = ready()
    rig.store.raises = [StoreUnavailable("down")]
    out = rig.tell(UnquarantineRequest(KEY, "u1"))
    assert out[-1] == ("control", "unquarantine", "store_unavailable", False)


def test_a_full_waiting_room_refuses_the_signal_busy() -> None:
    rig = Rig()
    rig.shell.on_start()
    rig.tell(tick())
    rig.tell(*[sig(f"w{i}") for i in range(MAX_DEFERRED)])
    assert rig.tell(sig("over")) == [
        ("signal", "over", "rejected", "busy", False),
        ("timer", "__defer", 0.5),
        ("timer", "__defer", 0.5),
    ]


def test_a_deferred_signal_that_crashes_keeps_the_rest_waiting() -> None:
    rig = Rig()
    rig.shell.on_start()
    rig.tell(tick())
    rig.tell(sig("w1"), sig("w2"))
    rig.store.raises = [BOOM]
    out = rig.tell(MarketInfo(KEY, CallResult.FOUND, 100.0, MarketRules(), T0, ""))
    assert out == [
        ("commit", "OpenSignal", None, ((),)),
        ("crash", "RuntimeError('boom')"),
        ("timer", "__restart", 2.0),
        ("timer", "__defer", 0.5),
    ]
    assert [s for s, _ in rig.shell._deferred.take()] == [sig("w2")]


def test_a_persist_timer_that_crashes_restarts_the_actor() -> None:
    rig = ready()
    rig.tell(sig("s1"))
    rig.store.down = True
    rig.tell(CloseRequest(KEY))
    rig.store.down = False
    rig.store.raises = [BOOM]
    assert rig.tell(TimerFired(KEY, PERSIST_TIMER)) == [
        ("commit", "CloseRequest", None, ((("reason", "manual"), ("why", "close request")),)),
        ("crash", "RuntimeError('boom')"),
        ("timer", "__restart", 2.0),
    ]
    assert rig.lines()[-1] == (
        "ERROR",
        "actor main:BTCUSDT crashed on TimerFired: RuntimeError('boom')",
        "main:BTCUSDT",
        True,
    )


def test_the_shell_counts_each_message_it_handles_once() -> None:
    rig = ready()
    rig.tell(sig("s1"), TimerFired(KEY, DEFER_TIMER))
    assert rig.metrics.handled_types == ["MarketInfo", "MarkPriceTick", "OpenSignal"]


def _decided_after_a_reload(memory: int) -> list[str]:
    rig = Rig(replace(Policy(), recent_signal_memory=memory))
    rig.shell.on_start()
    rig.tell(MarketInfo(KEY, CallResult.FOUND, 100.0, MarketRules(), T0, ""), tick())
    rig.tell(sig("r0"), sig("r1"), sig("r2"))
    rig.store.raises = [StaleVersion("v")]
    rig.tell(PauseRequest(KEY, True, "p"))  # stale: reloaded from the store
    return [r.signal_id for r in rig.shell.get_state().decided]


def test_a_reload_keeps_only_the_most_recent_decisions() -> None:
    assert _decided_after_a_reload(2) == ["r1", "r2"]
    assert _decided_after_a_reload(0) == []
    assert _decided_after_a_reload(32) == ["r0", "r1", "r2"]


def test_a_signal_the_store_has_seen_is_answered_with_its_record_or_as_a_duplicate() -> None:
    """The store refuses the signal's id as seen (a replay older than the actor's memory):
    answered with the stored decision (``replay``) when there is one, else ``duplicate``."""
    rig = ready()
    rig.store.raises = [SignalSeen("s1 seen")]
    assert rig.tell(sig("s1")) == [
        ("commit", "OpenSignal", None, ((),)),
        ("signal", "s1", "duplicate", "signal_replayed", False),
    ]
    assert rig.shell.get_state().position is None
    rig.tell(sig("s2"))
    rig = ready()
    rig.store.raises = [SignalSeen("s1 seen")]

    def recorded(account: str, signal_id: str) -> SignalRecord | None:
        return SignalRecord.refused(sig(signal_id), "too_late", 5.0)

    rig.store.recorded_signal = recorded  # type: ignore[method-assign]
    assert rig.tell(sig("s1"))[1:] == [("signal", "s1", "rejected", "too_late", True)]


def _protected(rig: Rig) -> TickSlot:
    """A filled position with its stop resting, and the actor's tick slot learnt from a
    first wake-up: with the stop confirmed and no take-profit, every price is inside the
    band (none changes anything durable), so every later tick is parked."""
    rig.tell(sig("s1"))
    rig.tell(OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, T0, "e1"))
    rig.tell(OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, T0, "s1"))
    slot = TickSlot()
    slot.put(tick(100.2))
    rig.tell(TicksReady(KEY, slot))
    assert tick_band(rig.shell.get_state(), Policy()) == (-math.inf, math.inf)
    return slot


def test_a_wake_up_whose_tick_was_taken_handles_nothing() -> None:
    rig = ready()
    slot = _protected(rig)
    handled = list(rig.metrics.handled_types)
    assert rig.tell(TicksReady(KEY, slot)) == []
    assert rig.metrics.handled_types == handled


def test_a_parked_tick_is_applied_before_the_state_is_read() -> None:
    rig = ready()
    slot = _protected(rig)
    assert not slot.put(tick(100.4, T0 + 1))  # inside the band: parked, no wake-up
    assert rig.shell.get_state().last_price == 100.4
    assert rig.rec.take() == []


def test_a_restarting_actor_reads_its_state_without_the_parked_tick() -> None:
    rig = ready()
    slot = _protected(rig)
    rig.store.raises = [BOOM]
    rig.tell(PauseRequest(KEY, True, "p"))
    assert rig.shell._restart_pending
    slot.put(tick(100.4, T0 + 1))
    assert rig.shell.get_state().last_price == 100.2


def test_the_pykka_adapter_hands_back_only_queued_tells_of_domain_messages() -> None:
    """:class:`PositionActor` without its thread (never started): its mailbox is pykka's
    inbox; a stop request is queued there, an ``ask`` and a stop stay queued, the tells of
    :data:`HANDED_BACK` types come out in order."""
    rig = ready()
    deps = rig.shell._deps
    actor = PositionActor(KEY, deps, ActorCell(KEY, T0))
    assert actor._self_ref() is actor.actor_ref
    actor.actor_ref.tell(sig("a"))
    actor.actor_ref.ask(sig("asked"), block=False)
    actor.actor_ref.tell(Barrier())
    actor._stop_self()
    actor.actor_ref.tell(CloseRequest(KEY))
    assert actor._queued_tells() == [sig("a"), CloseRequest(KEY)]
    left = []
    while not actor.actor_inbox.empty():
        left.append(actor.actor_inbox.get())
    assert [type(e.message).__name__ for e in left] == ["OpenSignal", "Barrier", "_ActorStop"]
    assert left[0].reply_to is not None


# -- the outage buffer's folding (actors.unwritten) -----------------------------------------


def _pos(pid: int, version: int) -> Position:
    return Position(
        id=pid,
        key=KEY,
        side=Side.LONG,
        status=Status.ACTIVE,
        source="s",
        requested_qty=1.0,
        stop_price=90.0,
        created_at=T0,
        updated_at=T0,
        signal_id=f"x{pid}",
        version=version,
    )


def _ev(kind: JournalKind) -> JournalEvent:
    return JournalEvent(1, kind, Status.ACTIVE, Status.ACTIVE, T0, {})


def test_merged_commits_keep_the_first_version_every_event_and_a_signal() -> None:
    rec = SignalRecord.refused(sig("m"), "x", T0)
    a = Commit(KEY, sig("m"), _pos(1, 2), 1, (_ev(JournalKind.STOP_INTENT),), rec)
    b = Commit(KEY, CloseRequest(KEY), _pos(1, 3), 2, (_ev(JournalKind.CLOSING),))
    c = Commit(KEY, Recover(KEY), _pos(2, 1), 0, (_ev(JournalKind.RECOVERING),))
    merged = merge([a, b, c])
    assert merged == [
        Commit(KEY, CloseRequest(KEY), _pos(1, 3), 1, a.events + b.events, rec),
        c,
    ]
    assert merge([b, a])[0].signal == rec  # the later one's, else the earlier one's
    assert count_for([a, b, c], merged[0]) == 2
    assert count_for([c], merged[1]) == 1
    assert count_for([a, c], a) == 1
    assert count_for([c, a], a) == 1


def test_without_an_id_source_the_actor_takes_blocks_of_eight_from_the_store() -> None:
    rig = Rig(own_ids=True)
    rig.shell.on_start()
    rig.tell(MarketInfo(KEY, CallResult.FOUND, 100.0, MarketRules(), T0, ""), tick())
    out = rig.tell(sig("s1"))
    assert out[0] == ("allocate_ids", 8) and out[2] == ("signal", "s1", "accepted", "", False)
    pos = rig.shell.get_state().position
    assert pos is not None and pos.id == 1


def test_before_a_load_the_state_is_the_actors_own_empty_one() -> None:
    rig = Rig()
    rig.store.load_raises = [StoreUnavailable("down")]
    rig.shell.on_start()
    assert rig.shell.get_state() == SymbolState(KEY)


def test_a_tick_parked_under_the_band_is_handed_back_as_this_keys_wake_up() -> None:
    rig = ready()
    slot = _protected(rig)
    slot.put(tick(100.4, T0 + 1))  # parked
    rig.shell.on_stop()
    assert rig.rec.take() == [("deliver", TicksReady(KEY, slot))]


def test_handling_times_and_tick_to_decision_latency_are_measured() -> None:
    """Each message's handling time (wall clock, small and positive) and, for a tick that
    woke the actor, the time from its frame's arrival to the decision (the clock's)."""
    rig = ready()
    slot = TickSlot()
    slot.put(MarkPriceTick(KEY, 100.2, T0, None, None, T0 - 0.25))
    rig.tell(TicksReady(KEY, slot))
    assert rig.metrics.seconds and all(0.0 <= s < 5.0 for s in rig.metrics.seconds)
    assert rig.metrics.decisions == [0.25]


def test_no_position_id_from_the_store_refuses_the_signal_store_unavailable() -> None:
    rig = Rig(own_ids=True)
    rig.shell.on_start()
    rig.tell(MarketInfo(KEY, CallResult.FOUND, 100.0, MarketRules(), T0, ""), tick())
    rig.store.ids_raise = [StoreUnavailable("down")]
    out = rig.tell(sig("s1"))
    assert out[:2] == [("allocate_ids", 8), ("commit_failed", "unavailable")]
    assert out[-1] == ("signal", "s1", "rejected", "store_unavailable", False)
    assert rig.lines()[0] == (
        "ERROR",
        "store unavailable, no position id for main:BTCUSDT: down",
        "main:BTCUSDT",
        False,
    )


def test_a_reload_takes_what_the_store_holds_and_keeps_what_the_exchange_said() -> None:
    """Closed position, bought, paused: from the store; the last mark and the market's
    rules: kept from before the reload (not durable)."""
    rig = ready()
    rig.tell(sig("s1"), OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, T0, "e1"))
    rig.clock.t = T0 + 5
    rig.tell(
        CloseRequest(KEY), OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 99.0, T0, "c1")
    )
    rig.tell(PauseRequest(KEY, True, "p"))
    before = rig.shell.get_state()
    assert before.last_closed_at == T0 + 5 and before.bought and before.paused
    rig.store.raises = [StaleVersion("v")]
    rig.tell(PauseRequest(KEY, False, "q"))  # stale: reloaded, then handled again
    st = rig.shell.get_state()
    assert (st.last_closed_at, st.bought, st.paused) == (T0 + 5, True, False)
    assert (st.last_price, st.market) == (before.last_price, before.market)
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSED


def test_only_activity_or_a_change_of_idleness_moves_last_activity() -> None:
    rig = ready()
    assert rig.shell.cell.report.last_activity == T0
    rig.clock.t = T0 + 10
    rig.tell(tick(100.5, T0 + 10))  # a mark price on an idle actor: not activity
    assert rig.shell.cell.report.last_activity == T0
    rig.tell(sig("s1"))
    assert rig.shell.cell.report.last_activity == T0 + 10
    rig.clock.t = T0 + 20
    rig.tell(tick(100.6, T0 + 20))  # not idle: every message counts
    assert rig.shell.cell.report.last_activity == T0 + 20


def test_a_waiting_signal_is_refused_once_it_waited_mark_wait_s() -> None:
    """Offered again on each poll with the time it first arrived; at ``mark_wait_s`` (3 s)
    exactly, its last offer: refused for what it still waits for."""
    rig = Rig()
    rig.shell.on_start()
    rig.tell(tick())
    rig.tell(sig("w1"))
    for dt in (1.0, 2.0, 2.9):
        rig.clock.t = T0 + dt
        assert rig.tell(TimerFired(KEY, DEFER_TIMER)) == [("timer", "__defer", 0.5)] * 2
    rig.clock.t = T0 + 3.0
    assert rig.tell(TimerFired(KEY, DEFER_TIMER)) == [
        ("commit", "OpenSignal", None, ()),
        ("signal", "w1", "rejected", "no_mark_price", False),
    ]
    assert rig.metrics.handled_types.count("OpenSignal") == 1  # offered again: not counted
