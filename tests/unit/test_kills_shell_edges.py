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
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors.conflation import TickSlot
from actors.deferral import MAX_DEFERRED
from actors.host import ActorCell, ActorDeps, Passivate, RestartDecision, StatusReport
from actors.messages import (
    CallResult,
    CloseRequest,
    MarketInfo,
    OrderUpdate,
    PauseRequest,
    Recover,
    SyncObservation,
    TicksReady,
    TimerFired,
    UnquarantineRequest,
)
from actors.model import ExchangeOrder, ExchangeStatus, MarketRules, Status
from actors.ports import StaleVersion, StoreUnavailable
from actors.position_actor import PositionActor
from actors.restarting import RESTART_TIMER
from actors.state import Commit, Policy, SignalRecord
from testkit.store import InMemoryStore
from testkit.world import signal
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
    event's kind, time and detail. ``meanwhile``: what happens elsewhere while a commit is
    being written (one a commit; e.g. the feed parks a tick), before it raises or returns."""

    def __init__(self, rec: Record) -> None:
        super().__init__(rec)
        self.meanwhile: list[Callable[[], object]] = []

    def commit(self, commit: Commit) -> None:
        control = None if commit.control is None else commit.control.flag
        events = tuple((str(e.kind), e.at, tuple(sorted(e.detail.items()))) for e in commit.events)
        self.rec.log.append(("commit", commit.key, commit.cause, control, events))
        if self.meanwhile:
            self.meanwhile.pop(0)()
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
    def __init__(self, policy: Policy | None = None) -> None:
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
            policy or Policy(),
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


def test_a_waiting_signal_is_not_decided_while_the_actor_restarts() -> None:
    """A signal waits for the market; its wait is over (``mark_wait_s``) when an operator's
    pause crashes the actor. Nothing is decided while it restarts: after the restart the
    pause is handled again first, then the waiting signal, refused for the pause (not for
    what it waited for, decided on a state the restart had not reloaded yet)."""
    rig = Rig()
    rig.shell.on_start()
    rig.tell(tick(), sig("w1"))
    rig.clock.t = T0 + 3.0
    rig.store.raises = [BOOM]
    pause = PauseRequest(KEY, True, "p")
    paused = ("commit", KEY, pause, "paused", (("paused", T0 + 3.0, (("changed", True),)),))
    assert rig.tell(pause) == [
        paused,
        ("crash", "RuntimeError('boom')"),
        ("timer", "__restart", 2.0),
    ]
    assert rig.tell(TimerFired(KEY, RESTART_TIMER)) == [
        paused,
        ("control", "pause", "paused", True),
        ("commit", KEY, sig("w1"), None, ()),
        ("signal", "w1", "rejected", "paused", False),
    ]


def test_a_full_waiting_room_refuses_a_signal_busy_and_keeps_the_waiting_ones() -> None:
    """The waiting room is full: one more signal is refused ``busy`` (counted, logged for the
    key, reported), nothing written for it; the ones waiting wait on (the poll re-armed)."""
    rig = Rig()
    rig.shell.on_start()
    rig.tell(tick(), *[sig(f"w{i}") for i in range(MAX_DEFERRED)])
    rig.lines()
    assert rig.tell(sig("over")) == [
        ("signal", "over", "rejected", "busy", False),
        ("timer", "__defer", 0.5),
        ("timer", "__defer", 0.5),
    ]
    assert rig.lines() == [("INFO", "signal over from sniper rejected (busy)", "main:BTCUSDT")]


# -- answering a replay -----------------------------------------------------------------------


def test_an_expired_signal_decided_before_is_answered_with_that_decision() -> None:
    """A signal past its expiry whose id the store has a decision for (a replay older than
    the actor's memory) is answered with that decision, marked a replay; nothing is written
    (the first decision stands)."""
    rig = ready()

    def recorded(account: str, signal_id: str) -> SignalRecord | None:
        assert (account, signal_id) == ("main", "o1")
        return SignalRecord.refused(sig(signal_id), "too_late", 5.0)

    rig.store.recorded_signal = recorded  # type: ignore[method-assign]
    old = signal(signal_id="o1", account="main", expires_at=T0 - 1)
    assert rig.tell(old) == [("signal", "o1", "rejected", "too_late", True)]
    assert rig.lines() == [
        (
            "INFO",
            "signal o1 from sniper replayed, decided before: rejected (too_late)",
            "main:BTCUSDT",
        )
    ]


# -- a reload -------------------------------------------------------------------------------------


def test_a_paused_symbol_stays_paused_across_a_reload() -> None:
    """The pause is the store's: a signal met a stale version, the actor reloads and tries
    it again, and it is refused ``paused`` (no entry on a paused symbol after a reload)."""
    rig = ready()
    rig.tell(PauseRequest(KEY, True, "p"))
    rig.store.raises = [StaleVersion("v")]
    refused = ("commit", KEY, sig("s1"), None, ())
    assert rig.tell(sig("s1")) == [
        refused,
        ("commit_failed", "stale_version"),
        ("not_owner", "v", False),
        refused,
        ("signal", "s1", "rejected", "paused", False),
    ]
    st = rig.shell.get_state()
    assert st.paused is True and rig.shell.cell.report.paused is True


def test_a_reload_with_an_open_position_recovers_it_for_this_key() -> None:
    """Reloaded (a stale version) with a position open: the actor recovers it first (a
    :class:`Recover` of this key from the start, journalled as the cause), then handles the
    message again."""
    rig = ready()
    rig.tell(sig("s1"))
    rig.store.raises = [StaleVersion("v")]
    pause = PauseRequest(KEY, True, "p")
    paused = ("commit", KEY, pause, "paused", (("paused", T0, (("changed", True),)),))
    assert rig.tell(pause) == [
        paused,
        ("commit_failed", "stale_version"),
        ("not_owner", "v", False),
        ("commit", KEY, Recover(KEY, "start"), None, (("recovering", T0, ()),)),
        ("sync", "recovery"),
        ("submit", "LookupOrder"),
        paused,
        ("control", "pause", "paused", True),
    ]


def test_a_quarantine_not_stored_is_written_again_at_the_next_load_saying_so() -> None:
    """The quarantine could not be stored when it was decided: the next load writes it, with
    a :class:`Recover` of this key saying ``quarantine not stored`` as its cause and no
    error, at the time of that load."""
    rig = ready()
    rig.store.raises = [BOOM, StoreUnavailable("down")]
    rig.host.decisions.append(RestartDecision(5.0, True))
    rig.tell(sig("s1"))
    assert not rig.store.quarantined
    rig.clock.t = T1
    out = rig.tell(TimerFired(KEY, RESTART_TIMER))
    assert out == [
        (
            "commit",
            KEY,
            Recover(KEY, "quarantine not stored"),
            "quarantined",
            (quarantine_event(""),),
        ),
        ("commit", KEY, sig("s1"), None, ()),
        ("signal", "s1", "rejected", "quarantined", False),
    ]
    assert rig.store.quarantined


def test_a_reload_keeps_the_one_decision_a_memory_of_one_holds() -> None:
    """``recent_signal_memory`` 1: a reload keeps the last decision (a replay of it is still
    answered from memory)."""
    rig = Rig(Policy(recent_signal_memory=1))
    rig.shell.on_start()
    rig.tell(MARKET, tick(), sig("r0"), sig("r1"))
    rig.store.raises = [StaleVersion("v")]
    rig.tell(PauseRequest(KEY, True, "p"))
    assert [r.signal_id for r in rig.shell.get_state().decided] == ["r1"]


def test_the_store_down_at_start_publishes_a_busy_unquarantined_report() -> None:
    """Waiting for the store at start: the report says not idle (not passivated meanwhile)
    and not quarantined (a bool), nothing else known."""
    rig = Rig()
    rig.store.load_raises = [StoreUnavailable("down")]
    rig.shell.on_start()
    assert rig.shell.cell.report == StatusReport(
        status=None, last_activity=T0, idle=False, quarantined=False, unwritten=0
    )


# -- the tick band --------------------------------------------------------------------------------


def _learn_slot(rig: Rig) -> TickSlot:
    """The actor learns its tick slot from a first wake-up; idle, its band is everything."""
    slot = TickSlot()
    slot.put(tick(100.2))
    assert rig.tell(TicksReady(KEY, slot)) == []
    return slot


def test_a_tick_parked_while_the_actor_crashes_goes_back_through_the_router() -> None:
    """The feed parks a tick (inside the band) while the actor writes a message that then
    crashes: restarting, the actor drops its band, and the wake-up owed for the parked tick
    goes to the router, so the price is not stranded in the slot."""
    rig = ready()
    slot = _learn_slot(rig)
    rig.store.meanwhile = [lambda: slot.put(tick(100.4, T0 + 1))]
    rig.store.raises = [BOOM]
    pause = PauseRequest(KEY, True, "p")
    assert rig.tell(pause) == [
        ("commit", KEY, pause, "paused", (("paused", T0, (("changed", True),)),)),
        ("crash", "RuntimeError('boom')"),
        ("timer", "__restart", 2.0),
        ("deliver", TicksReady(KEY, slot)),
    ]
    assert slot.take() == tick(100.4, T0 + 1)


def test_a_tick_parked_during_a_fill_is_applied_once_the_band_excludes_it() -> None:
    """The feed parks a price below the stop (85, under the band of everything) while the
    actor writes the entry's fill; the new band (the stop guard's, above 90) excludes it, so
    the actor applies it at once: the local stop guard closes the position."""
    rig = ready()
    slot = _learn_slot(rig)
    rig.tell(sig("s1"))
    below = tick(85.0, T0 + 1)
    rig.store.meanwhile = [lambda: slot.put(below)]
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, T0, "e1")
    assert rig.tell(fill) == [
        (
            "commit",
            KEY,
            fill,
            None,
            (
                ("entry_fill", T0, (("price", 100.0), ("qty", 1.0), ("via", "stream"))),
                ("stop_intent", T0, (("client_id", "ps1s1"), ("why", "first fill"))),
            ),
        ),
        ("timer", "sl_deadline", 10.0),
        ("submit", "PlaceOrder"),
        (
            "commit",
            KEY,
            below,
            None,
            (("closing", T0, (("reason", "stop_loss"), ("why", "local_stop_guard"))),),
        ),
        ("submit", "PlaceOrder"),
    ]
    st = rig.shell.get_state()
    assert st.position is not None and st.position.status is Status.CLOSING
    assert st.last_price == 85.0


def test_a_trailing_position_parks_prices_below_where_its_stop_would_move() -> None:
    """Active (stop 90 resting) with a trailing distance of 5: the band's top is where the
    stop would move (90 + step 2.5 + 5 = 97.5); below it a price is parked, above it wakes
    the actor."""
    rig = ready()
    slot = _learn_slot(rig)
    rig.tell(
        signal(signal_id="t1", account="main", trailing=5.0),
        OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, T0, "e1"),
        OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, T0, "s1"),
    )
    st = rig.shell.get_state()
    assert st.position is not None and st.position.status is Status.ACTIVE
    assert not slot.put(tick(97.4, T0 + 1))
    assert slot.put(tick(97.6, T0 + 2))


# -- idleness and activity ------------------------------------------------------------------------


def test_a_sync_that_ends_a_busy_spell_counts_as_activity() -> None:
    """A closed position whose entry filled late beyond what it held keeps the actor busy
    (not idle) until a sync shows that rest gone; that sync (no position, no order: by
    itself not activity) ends the spell, so the idle time counts from it. A later mark
    price on the idle actor does not move it."""
    rig = ready()
    rig.tell(
        sig("s1"),
        OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.5, 100.0, T0, "e1"),
        CloseRequest(KEY),
        OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 0.5, 99.0, T0, "c1"),
        OrderUpdate(KEY, "ps1s1", ExchangeStatus.CANCELED, 0.0, None, T0, "s1"),
        OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, T0, "e1"),
    )
    report = rig.shell.cell.report
    assert (report.status, report.idle, report.last_activity) == (Status.CLOSED, False, T0)
    rig.clock.t = T1
    nothing = SyncObservation(KEY, None, (), T1)
    assert rig.tell(nothing) == [
        (
            "commit",
            KEY,
            nothing,
            None,
            (("qty_from_sync", T1, (("qty", 1.0), ("why", "late entry fill gone"))),),
        )
    ]
    report = rig.shell.cell.report
    assert (report.status, report.idle, report.last_activity) == (Status.CLOSED, True, T1)
    rig.clock.t = T1 + 5
    rig.tell(tick(100.5, T1 + 5))
    assert rig.shell.cell.report.last_activity == T1


# -- effects ----------------------------------------------------------------------------------


def test_an_orphan_cancel_is_warned_of_for_its_key() -> None:
    """A sync shows an order of ours that no position needs: cancelled, with a warning line
    that names the key (the operator finds the symbol by it)."""
    rig = ready()
    stray = ExchangeOrder("ps9s1", "sell", 1.0, True, 90.0, True, "x9")
    assert rig.tell(SyncObservation(KEY, None, (stray,), T0)) == [("submit", "CancelOrder")]
    assert rig.lines() == [
        (
            "WARNING",
            "cancelling ps9s1: an order of ours that no open position needs",
            "main:BTCUSDT",
        )
    ]
