"""Tests written to kill mutants of the actor shell's edges (``make mutate``): what a stored
quarantine carries (its cause, with the reason, and when it was decided), the key on the
shell's own log lines, the status report after an operator lifts a quarantine, a dead letter's
reason, a retired actor's parked tick, and the pykka adapter's constructor.

The shell (:class:`actors.position_actor.PositionShell` with
:class:`actors.restarting.RestartingShell`) is driven through the hooks a runner calls, on
the test's thread, with the recording fakes of :mod:`tests.unit.test_kills_shell`; the store
here records each commit whole (its key, its cause itself, its flag, each event's kind, time
and detail), and the log lines are taken from INFO up with their ``key``. Each test asserts
the whole ordered record; the docstrings say what each pins.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from actors.conflation import TickSlot
from actors.host import ActorCell, ActorDeps, Passivate, RestartDecision, StatusReport
from actors.messages import (
    CallResult,
    MarketInfo,
    PauseRequest,
    Recover,
    TicksReady,
    TimerFired,
    UnquarantineRequest,
)
from actors.model import MarketRules, Status
from actors.ports import StoreUnavailable
from actors.position_actor import PositionActor
from actors.restarting import RESTART_TIMER
from actors.state import Commit, Policy
from testkit.store import InMemoryStore
from tests.unit.test_kills_shell import (
    BOOM,
    KEY,
    T0,
    Clock,
    Host,
    Metrics,
    Record,
    Shell,
    Store,
    Timers,
    sig,
    tick,
)

LOGGER = "actors.position_actor"
#: When the tests below decide things (the clock moved on from ``T0``: a time taken from it
#: is told apart from the start).
T1 = T0 + 7.0
MARKET = MarketInfo(KEY, CallResult.FOUND, 100.0, MarketRules(), T0, "")


class WholeStore(Store):
    """:class:`tests.unit.test_kills_shell.Store` recording each commit whole: its key, its
    cause (the message itself, as stored with the journal), its control flag, and each
    event's kind, time and detail."""

    def commit(self, commit: Commit) -> None:
        control = None if commit.control is None else commit.control.flag
        events = tuple((str(e.kind), e.at, tuple(sorted(e.detail.items()))) for e in commit.events)
        self.rec.log.append(("commit", commit.key, commit.cause, control, events))
        if self.raises:
            raise self.raises.pop(0)
        InMemoryStore.commit(self, commit)
        if commit.control is not None and commit.control.flag == "quarantined":
            self.quarantined = commit.control.value
        if commit.control is not None and commit.control.flag == "paused":
            self.paused = commit.control.value


class Lines(logging.Handler):
    """The shell's log lines from INFO up: (level, message, the ``key`` extra)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage(), getattr(record, "key", None)))


class Rig:
    def __init__(self) -> None:
        self.log = Lines()
        logger = logging.getLogger(LOGGER)
        logger.addHandler(self.log)
        self.level = logger.level
        logger.setLevel(logging.INFO)
        self.rec = Record()
        self.clock = Clock()
        self.host = Host(self.rec)
        self.store = WholeStore(self.rec)
        self.metrics = Metrics(self.rec)
        ids = itertools.count(1)
        self.deps = ActorDeps(
            self.store,
            Timers(self.rec),
            self.clock,
            self.metrics,
            Policy(),
            self.host,
            ids=lambda: next(ids),
        )
        self.shell = Shell(KEY, self.deps, ActorCell(KEY, T0))

    def lines(self) -> list[tuple[str, str, str | None]]:
        out, self.log.lines = self.log.lines, []
        return out

    def tell(self, *msgs: Any) -> list[tuple[Any, ...]]:
        for m in msgs:
            self.shell.on_receive(m)
        return self.rec.take()


@pytest.fixture(autouse=True)
def _no_handler_left() -> Iterator[None]:
    level = logging.getLogger(LOGGER).level
    yield
    logger = logging.getLogger(LOGGER)
    for h in [h for h in logger.handlers if isinstance(h, Lines)]:
        logger.removeHandler(h)
    logger.setLevel(level)


def ready() -> Rig:
    """Started, the market known and a fresh mark price: a signal is decided at once."""
    rig = Rig()
    rig.shell.on_start()
    rig.tell(MARKET, tick())
    rig.lines()
    return rig


def quarantine_event(error: str, at: float = T1) -> tuple[str, float, tuple[Any, ...]]:
    return ("quarantined", at, (("error", error),))


# -- what a stored quarantine carries -----------------------------------------------------------


def test_a_quarantine_decided_at_a_failed_load_stores_why_and_when() -> None:
    """No message caused the crash (the load itself failed): the quarantine is stored with a
    :class:`Recover` of this key saying ``load failed`` as its cause (what the journal and the
    operator's history show) and the time it was decided; then the restart (no delay) loads
    the symbol quarantined."""
    rig = Rig()
    rig.clock.t = T1
    rig.store.load_raises = [BOOM]
    rig.host.decisions.append(RestartDecision(0.0, True))
    rig.shell.on_start()
    assert rig.rec.take() == [
        ("crash", "RuntimeError('boom')"),
        (
            "commit",
            KEY,
            Recover(KEY, "load failed"),
            "quarantined",
            (quarantine_event("RuntimeError('boom')"),),
        ),
    ]
    assert rig.lines() == [
        ("ERROR", "load failed for main:BTCUSDT", "main:BTCUSDT"),
        ("ERROR", "symbol main:BTCUSDT quarantined: no new entries", "main:BTCUSDT"),
    ]
    assert rig.store.quarantined and rig.shell.get_state().quarantined


def test_a_quarantine_decided_at_a_failed_reload_stores_why() -> None:
    """A reload after a crash fails too and the restart policy quarantines then: the cause is
    again the reload's (``load failed``), not the message that crashed first."""
    rig = ready()
    rig.clock.t = T1
    rig.store.raises = [BOOM]
    rig.host.decisions.extend([RestartDecision(3.0, False), RestartDecision(3.0, True)])
    rig.tell(PauseRequest(KEY, True, "p"))
    rig.store.load_raises = [RuntimeError("reload")]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == [
        ("crash", "RuntimeError('reload')"),
        (
            "commit",
            KEY,
            Recover(KEY, "load failed"),
            "quarantined",
            (quarantine_event("RuntimeError('reload')"),),
        ),
        ("timer", "__restart", 3.0),
    ]


def test_a_failure_escaping_the_actor_stores_its_quarantine_as_actor_failed() -> None:
    """Something escaped the actor (pykka's ``on_failure``): no message is known as the
    cause, so the stored quarantine says ``actor failed``, with the time it was decided; the
    mailbox goes back to the router after it."""
    rig = ready()
    rig.clock.t = T1
    rig.host.decisions.append(RestartDecision(1.0, True))
    rig.shell.inbox = [sig("s9")]
    rig.shell.on_failure(RuntimeError, BOOM, None)
    assert rig.rec.take() == [
        ("crash", "RuntimeError('boom')"),
        (
            "commit",
            KEY,
            Recover(KEY, "actor failed"),
            "quarantined",
            (quarantine_event("RuntimeError('boom')"),),
        ),
        ("deliver", sig("s9")),
    ]
    assert rig.lines() == [
        ("ERROR", "symbol main:BTCUSDT quarantined: no new entries", "main:BTCUSDT"),
    ]


def test_a_quarantine_decided_on_a_message_stores_that_message_as_its_cause() -> None:
    """The message that crashed twice is the stored cause; the quarantine's time is the
    clock's when it was decided."""
    rig = ready()
    rig.clock.t = T1
    rig.store.raises = [BOOM]
    rig.host.decisions.append(RestartDecision(5.0, True))
    pause = PauseRequest(KEY, True, "p")
    assert rig.tell(pause) == [
        ("commit", KEY, pause, "paused", (("paused", T1, (("changed", True),)),)),
        ("crash", "RuntimeError('boom')"),
        ("commit", KEY, pause, "quarantined", (quarantine_event("RuntimeError('boom')"),)),
        ("timer", "__restart", 5.0),
    ]


# -- an operator lifts a quarantine -------------------------------------------------------------


def test_lifting_a_quarantine_reports_a_symbol_not_quarantined_and_logs_it_for_the_key() -> None:
    """A live actor, quarantined after a crash: the operator's lift is written, the crash
    count cleared, the decision logged for this key and reported; the status report the
    supervisor reads says exactly ``quarantined=False`` (a bool: the live view and the
    readiness check read it), idle again."""
    rig = ready()
    rig.store.raises = [BOOM]
    rig.host.decisions.append(RestartDecision(0.0, True))
    rig.tell(sig("s1"))
    assert rig.shell.cell.report.quarantined is True
    rig.lines()
    rig.clock.t = T1
    lift = UnquarantineRequest(KEY, "u1")
    assert rig.tell(lift) == [
        ("commit", KEY, lift, "quarantined", (("unquarantined", T1, (("changed", True),)),)),
        ("clear_quarantine",),
        ("control", "unquarantine", "unquarantined", True),
    ]
    assert rig.lines() == [("INFO", "operator unquarantine: unquarantined", "main:BTCUSDT")]
    assert rig.shell.cell.report == StatusReport(
        status=None,
        last_activity=T1,
        idle=True,
        quarantined=False,
        unwritten=0,
        mark=100.0,
    )


# -- a dead letter's reason -------------------------------------------------------------------


def test_an_operator_request_the_store_cannot_take_is_a_dead_letter_store_unavailable() -> None:
    """A pause (no position: nothing to protect) that cannot be written is dropped: counted
    as a dead letter with the reason ``store_unavailable``, and the operator is answered
    ``store_unavailable``; nothing changed (not paused)."""
    rig = ready()
    rig.clock.t = T1
    rig.store.raises = [StoreUnavailable("down")]
    pause = PauseRequest(KEY, True, "p")
    assert rig.tell(pause) == [
        ("commit", KEY, pause, "paused", (("paused", T1, (("changed", True),)),)),
        ("commit_failed", "unavailable"),
        ("dead_letter", "store_unavailable"),
        ("control", "pause", "store_unavailable", False),
    ]
    assert rig.lines() == [
        ("ERROR", "store unavailable, transition dropped for main:BTCUSDT: down", "main:BTCUSDT"),
        ("INFO", "operator pause: store_unavailable", "main:BTCUSDT"),
    ]
    assert not rig.shell.get_state().paused


# -- a retired actor ------------------------------------------------------------------------------


def test_a_retired_actor_leaves_its_parked_tick_to_its_successor() -> None:
    """An idle actor publishes the band of everything (no position): every later price is
    parked in its slot. Once it has retired (passivated), reading its state does not apply
    the parked tick (it is the successor's: the price it carries is newer than anything this
    incarnation will do); at the stop the wake-up owed for it goes back to the router."""
    rig = ready()
    slot = TickSlot()
    slot.put(tick(100.2))
    assert rig.tell(TicksReady(KEY, slot)) == []
    assert rig.tell(Passivate()) == [("retire",)]
    assert not slot.put(tick(100.4, T0 + 1))  # inside the band: parked, no wake-up
    st = rig.shell.get_state()
    assert (st.last_price, st.last_price_at) == (100.2, T0)
    assert rig.rec.take() == []
    rig.shell.on_stop()
    assert rig.rec.take() == [("deliver", TicksReady(KEY, slot))]
    assert slot.take() == tick(100.4, T0 + 1)


# -- the pykka adapter ----------------------------------------------------------------------


def test_the_pykka_adapter_is_the_actor_of_its_key_and_reports_into_its_cell() -> None:
    """:class:`PositionActor` built (never started: no thread) and driven through the hooks
    pykka would call: it loads and decides for the key it was given (its commits carry it)
    and publishes its status into the cell the supervisor holds."""
    rig = Rig()
    cell = ActorCell(KEY, T0)
    actor = PositionActor(KEY, rig.deps, cell)
    assert (actor.key, actor.cell) == (KEY, cell)
    actor.on_start()
    for m in (MARKET, tick(), sig("s1")):
        actor.on_receive(m)
    out = rig.rec.take()
    assert out[0][:3] == ("commit", KEY, sig("s1"))
    assert out[1:] == [("signal", "s1", "accepted", "", False), ("submit", "PlaceOrder")]
    report = cell.report
    assert (report.status, report.idle, report.mark) == (Status.PENDING_ENTRY, False, 100.0)
    assert report.position is not None and report.position.key == KEY


# -- what the shell logs and publishes ----------------------------------------------------------


def test_each_decision_is_logged_for_its_key() -> None:
    """The lines an operator greps a symbol's history by carry its key: a signal's decision
    and each status change of its position."""
    rig = ready()
    rig.tell(sig("s1"))
    assert rig.lines() == [
        ("INFO", "signal s1 from sniper accepted", "main:BTCUSDT"),
        ("INFO", "position 1 - -> pending_entry (entry_intent)", "main:BTCUSDT"),
    ]


def test_a_load_counts_as_activity() -> None:
    """An actor that has just loaded (started, or restarted in place) counts as active then,
    also with nothing to do: the supervisor passivates only an actor idle for
    ``passivate_after_s`` since."""
    rig = Rig()
    rig.clock.t = T1
    rig.shell.on_start()
    assert rig.rec.take() == []
    assert rig.shell.cell.report == StatusReport(
        status=None, last_activity=T1, idle=True, quarantined=False, unwritten=0
    )


def test_a_paused_a_quarantined_or_a_waiting_symbol_is_not_idle() -> None:
    """Idle (so passivated after a while) means nothing to keep: a paused symbol stays (the
    metrics and the live view show it), and so does a quarantined one, and one with a signal
    waiting for its market; resumed, it is idle again."""
    rig = ready()
    assert rig.shell.cell.report.idle
    rig.tell(PauseRequest(KEY, True, "p"))
    assert rig.shell.cell.report.idle is False
    rig.tell(PauseRequest(KEY, False, "q"))
    assert rig.shell.cell.report.idle is True
    rig = ready()
    rig.store.raises = [BOOM]
    rig.host.decisions.append(RestartDecision(0.0, True))
    rig.tell(sig("s1"))
    report = rig.shell.cell.report
    assert (report.quarantined, report.idle, rig.shell._restart_pending) == (True, False, False)
    rig = Rig()
    rig.shell.on_start()
    rig.tell(tick(), sig("w1"))
    assert rig.shell.cell.report.idle is False


# -- signals that wait ----------------------------------------------------------------------------


def test_a_waiting_signal_that_crashes_keeps_every_later_one_waiting_in_order() -> None:
    """Three signals wait for the market; it comes and the first crashes: it is retried after
    the restart, the two after it keep waiting (in arrival order, none lost, none twice) and
    are decided after the retried one."""
    rig = Rig()
    rig.shell.on_start()
    rig.tell(tick())
    rig.tell(sig("w1"), sig("w2"), sig("w3"))
    rig.store.raises = [BOOM]
    intent = (("entry_intent", T0, ()),)
    assert rig.tell(MARKET) == [
        ("commit", KEY, sig("w1"), None, intent),
        ("crash", "RuntimeError('boom')"),
        ("timer", "__restart", 2.0),
        ("timer", "__defer", 0.5),  # the two left wait on
    ]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == [
        ("commit", KEY, sig("w1"), None, intent),
        ("signal", "w1", "accepted", "", False),
        ("submit", "PlaceOrder"),
        ("commit", KEY, sig("w2"), None, ()),
        ("signal", "w2", "duplicate", "position_open", False),
        ("commit", KEY, sig("w3"), None, ()),
        ("signal", "w3", "duplicate", "position_open", False),
    ]
    assert not rig.shell._deferred
