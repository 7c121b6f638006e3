"""Tests written to kill mutants of the actor shell's pure parts (``make mutate``): the tick
band the actor publishes (:func:`actors.transition.tick_band` and :class:`actors.band.TickBand`
over a real :class:`actors.conflation.TickSlot`) and the signals that wait
(:class:`actors.deferral.DeferredSignals`). No thread: each part is driven through its public
methods with recording fakes for its collaborators. The docstrings say what each pins.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import pytest

from actors.band import BAND_ROUNDS, TickBand
from actors.conflation import TickSlot
from actors.deferral import DEFER_POLL_S, DEFER_TIMER, MAX_DEFERRED, DeferredSignals
from actors.messages import (
    MarkPriceTick,
    Message,
    OrderUpdate,
    PauseRequest,
    Recover,
    TicksReady,
    TimerId,
)
from actors.model import ExchangeStatus, Key, Side, Status
from actors.ports import NullMetrics
from actors.save_first import PERSIST_RETRY_S, PERSIST_TIMER, SaveFirst, Write
from actors.state import Commit, ControlChange, Policy, SymbolState
from actors.transition import Context, tick_band, transition
from actors.unwritten import UnwrittenCommits
from testkit.store import InMemoryStore
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy()
EVERYTHING = (-math.inf, math.inf)


def tick(price: float, at: float = NOW, low: float | None = None) -> MarkPriceTick:
    return MarkPriceTick(KEY, price, at, low, None, at)


def held(
    side: Side = Side.LONG, *, tp: float | None = None, trail: float | None = None
) -> SymbolState:
    """A filled position of 1.0 at 100, stop 90 (110 for a short), not yet confirmed."""
    stop = 90.0 if side is Side.LONG else 110.0
    if tp is not None and side is Side.SHORT:
        tp = min(tp, 99.0)
    sig = signal(side=side, stop=stop, tp=tp, trailing=trail, signal_id="b1")
    ctx = Context(NOW, POLICY, 1)
    st = transition(priced(KEY, at=NOW), sig, ctx).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW, "x")
    return transition(st, fill, ctx).state


def confirmed(st: SymbolState) -> SymbolState:
    rest = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW, "y")
    out = transition(st, rest, Context(NOW, POLICY, 1)).state
    assert out.position is not None and out.position.status is Status.ACTIVE
    return out


# -- the band ------------------------------------------------------------------------------


def test_no_band_without_a_filled_position_in_protection() -> None:
    """Nothing to guard (no position, an unfilled entry, a closing or a closed one, or a
    symbol seen flat): every price is inside, the band is everything."""
    assert tick_band(SymbolState(KEY), POLICY) == EVERYTHING
    st = transition(priced(KEY, at=NOW), signal(signal_id="b0"), Context(NOW, POLICY, 1)).state
    assert tick_band(st, POLICY) == EVERYTHING
    flat = held()
    flat = SymbolState(KEY, position=flat.position, flat_seen_at=NOW)
    assert tick_band(flat, POLICY) == EVERYTHING


def test_the_band_of_a_long_ends_a_hair_inside_its_stop_and_take_profit() -> None:
    """Unconfirmed stop 90 and take-profit 120: the band is (90, 120) narrowed by a relative
    1e-9 at each end, so a tick at the stop or the take-profit wakes the actor; once the stop
    rests, the low end opens."""
    lo, hi = tick_band(held(tp=120.0), POLICY)
    assert lo == 90.0 + 90.0 * 1e-9 and hi == 120.0 - 120.0 * 1e-9
    lo, hi = tick_band(confirmed(held(tp=120.0)), POLICY)
    assert lo == -math.inf and hi == 120.0 - 120.0 * 1e-9
    assert tick_band(confirmed(held()), POLICY) == EVERYTHING


def test_the_band_of_a_short_is_the_mirror() -> None:
    """A short: the unconfirmed stop bounds from above, the take-profit from below."""
    lo, hi = tick_band(held(Side.SHORT, tp=80.0), POLICY)
    assert lo == 80.0 + 80.0 * 1e-9 and hi == 110.0 - 110.0 * 1e-9
    lo, hi = tick_band(confirmed(held(Side.SHORT)), POLICY)
    assert (lo, hi) == EVERYTHING


def test_a_trailing_band_ends_where_the_stop_would_move() -> None:
    """Active with trailing distance 5 (step 2.5): the band's top is stop + step + distance
    (97.5), below it nothing moves; for a short, stop - step - distance. Not active (stop
    unconfirmed): the trailing end does not apply."""
    lo, hi = tick_band(confirmed(held(trail=5.0)), POLICY)
    assert lo == -math.inf and hi == 97.5 - 97.5 * 1e-9
    lo, hi = tick_band(confirmed(held(Side.SHORT, trail=5.0)), POLICY)
    assert lo == 102.5 + 102.5 * 1e-9 and hi == math.inf
    lo, hi = tick_band(held(trail=5.0), POLICY)
    assert hi == math.inf


def test_the_band_agrees_with_the_transition_inside_and_at_the_stop_and_take_profit() -> None:
    """Just inside the band a tick changes nothing durable (the band is what the feed may
    park); at the unconfirmed stop and at the take-profit it does."""
    ctx = Context(NOW, POLICY, 1)
    for st in (held(tp=120.0), confirmed(held(trail=5.0)), held(Side.SHORT, tp=80.0)):
        lo, hi = tick_band(st, POLICY)
        for price in (lo * (1 + 1e-12), hi * (1 - 1e-12)):
            if math.isfinite(price):
                assert transition(st, tick(price), ctx).commit is None, (st.position, price)
    assert transition(held(tp=120.0), tick(90.0), ctx).commit is not None
    assert transition(held(tp=120.0), tick(120.0), ctx).commit is not None


# -- TickBand over a real slot ---------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.delivered: list[Message] = []
        self.dispatched: list[MarkPriceTick] = []

    def deliver(self, m: Message) -> None:
        self.delivered.append(m)

    def dispatch(self, t: MarkPriceTick) -> None:
        self.dispatched.append(t)


def test_a_wake_up_hands_over_the_tick_and_when_its_frame_arrived() -> None:
    """``wake`` learns the slot and takes its tick: the tick, and its arrival when the slot
    woke the actor for it; an empty slot gives (None, None)."""
    slot = TickSlot()
    rec = Recorder()
    band = TickBand(KEY, rec.deliver)
    assert band.take_parked() is None and band.slot is None
    assert slot.put(tick(100.0, at=5.0))
    got, woke = band.wake(TicksReady(KEY, slot))
    assert band.slot is slot and got is not None and got.price == 100.0 and woke == 5.0
    assert band.wake(TicksReady(KEY, slot)) == (None, None)


def test_publish_parks_prices_inside_and_dispatches_one_left_outside() -> None:
    """Published (95, 105): a tick at 100 is parked (no wake-up), taken by ``take_parked``; a
    band tightened under a parked tick dispatches it and asks the band again, at most
    ``BAND_ROUNDS`` times, then releases (every tick wakes). Halted: no band at all."""
    slot = TickSlot()
    rec = Recorder()
    band = TickBand(KEY, rec.deliver)
    band.publish(lambda: (95.0, 105.0), rec.dispatch, lambda: False)  # no slot yet: nothing
    slot.put(tick(100.0))
    band.wake(TicksReady(KEY, slot))
    band.publish(lambda: (95.0, 105.0), rec.dispatch, lambda: False)
    assert not slot.put(tick(101.0)), "inside the band: parked"
    parked = band.take_parked()
    assert parked is not None and parked.price == 101.0
    assert not slot.put(tick(102.0))
    band.publish(lambda: (103.0, 110.0), rec.dispatch, lambda: False)
    assert [t.price for t in rec.dispatched] == [102.0]
    asked = []

    def moving() -> tuple[float, float]:
        # The price keeps moving: each new band finds a tick parked under the last one.
        asked.append(1)
        slot.set_band((0.0, 1000.0))
        assert not slot.put(tick(100.0 + len(asked)))
        return (200.0, 300.0)

    rec.dispatched.clear()
    band.publish(moving, rec.dispatch, lambda: False)
    assert len(asked) == BAND_ROUNDS
    assert [t.price for t in rec.dispatched] == [101.0, 102.0, 103.0, 104.0][:BAND_ROUNDS]
    assert slot.put(tick(250.0)), "given up on a band: every tick wakes"
    halted = TickBand(KEY, rec.deliver)
    s2 = TickSlot()
    s2.put(tick(100.0))
    halted.wake(TicksReady(KEY, s2))
    halted.publish(lambda: (95.0, 105.0), rec.dispatch, lambda: True)
    assert s2.put(tick(100.0)), "no band while halted: every tick wakes"


def test_release_hands_a_parked_tick_back_through_the_router() -> None:
    """A tick parked under the band when the band is dropped is not left behind: a
    ``TicksReady`` for the key goes to the router; with nothing parked, nothing does."""
    slot = TickSlot()
    rec = Recorder()
    band = TickBand(KEY, rec.deliver)
    band.release()
    assert rec.delivered == [] and band.hand_back() is None
    slot.put(tick(100.0))
    band.wake(TicksReady(KEY, slot))
    band.publish(lambda: (95.0, 105.0), rec.dispatch, lambda: False)
    assert not slot.put(tick(100.5))
    band.release()
    assert rec.delivered == [TicksReady(KEY, slot)]
    rec.delivered.clear()
    band.release()
    assert rec.delivered == []


# -- signals that wait -------------------------------------------------------------------------


class Timers:
    def __init__(self) -> None:
        self.started: list[tuple[Key, TimerId, float]] = []

    def start(self, key: Key, name: TimerId, delay: float) -> None:
        self.started.append((key, name, delay))

    def cancel(self, key: Key, name: TimerId) -> None:
        raise AssertionError("never cancelled")


def test_waiting_signals_arm_one_poll_and_come_back_in_order() -> None:
    """The first signal to wait arms the poll (``DEFER_TIMER`` in ``DEFER_POLL_S``), the
    next ones do not; ``take`` gives them all in arrival order and empties the queue;
    ``keep`` puts some back at the end; ``rearm`` polls again only while any wait; at most
    ``MAX_DEFERRED`` wait."""
    timers = Timers()
    d = DeferredSignals(KEY, timers)
    d.rearm()
    assert timers.started == []
    a, b = signal(signal_id="d1"), signal(signal_id="d2")
    assert d.add(a, 1.0) and d.add(b, 2.0)
    assert timers.started == [(KEY, DEFER_TIMER, DEFER_POLL_S)]
    assert len(d) == 2
    assert d.take() == [(a, 1.0), (b, 2.0)] and len(d) == 0
    d.keep([(b, 2.0)])
    assert len(d) == 1
    d.rearm()
    assert timers.started == [(KEY, DEFER_TIMER, DEFER_POLL_S)] * 2
    for i in range(MAX_DEFERRED - 1):
        assert d.add(signal(signal_id=f"x{i}"), 3.0)
    assert len(d) == MAX_DEFERRED
    assert not d.add(signal(signal_id="over"), 4.0)
    assert len(d) == MAX_DEFERRED
    assert timers.started == [(KEY, DEFER_TIMER, DEFER_POLL_S)] * 2


# -- save first ---------------------------------------------------------------------------------


class Metrics(NullMetrics):
    def __init__(self) -> None:
        self.failed: list[str] = []

    def commit_failed(self, reason: str) -> None:
        self.failed.append(reason)


def saving() -> tuple[SaveFirst, InMemoryStore, Timers, Metrics]:
    store, timers, metrics = InMemoryStore(), Timers(), Metrics()
    return SaveFirst(KEY, store, timers, metrics), store, timers, metrics


def entry_commit() -> Commit:
    t = transition(priced(KEY, at=NOW), signal(signal_id="w1"), Context(NOW, POLICY, 1))
    assert t.commit is not None and t.commit.risk_increasing
    return t.commit


def fill_commit() -> Commit:
    st = transition(priced(KEY, at=NOW), signal(signal_id="w1"), Context(NOW, POLICY, 1)).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW, "x")
    t = transition(st, fill, Context(NOW, POLICY, 1))
    assert t.commit is not None and not t.commit.risk_increasing
    return t.commit


def test_a_commit_is_written_and_an_entry_is_refused_while_the_store_is_down() -> None:
    """Store up: written. Down: an entry's intent is refused (no order without it, I2), the
    failure counted ``unavailable``, nothing held, no timer."""
    sf, store, timers, metrics = saving()
    assert sf.write(entry_commit()) is Write.WRITTEN
    assert store.commits == 1
    sf, store, timers, metrics = saving()
    store.down = True
    assert sf.write(entry_commit()) is Write.REFUSED
    assert metrics.failed == ["unavailable"] and len(sf.unwritten) == 0
    assert timers.started == []


def test_a_protective_commit_is_held_and_written_when_the_store_is_back() -> None:
    """Down: a protective commit (a fill) is held, the persist timer armed
    (``PERSIST_TIMER`` in ``PERSIST_RETRY_S``); while held, a further protective commit
    queues behind it and an entry is refused even with the store up; a flush while still
    down re-arms the timer, a flush once up writes them all and empties the buffer."""
    sf, store, timers, metrics = saving()
    store.commit(entry_commit())
    store.down = True
    fill = fill_commit()
    assert sf.write(fill) is Write.HELD
    assert timers.started == [(KEY, PERSIST_TIMER, PERSIST_RETRY_S)]
    assert len(sf.unwritten) == 1 and metrics.failed == ["unavailable"]
    store.down = False
    assert sf.write(entry_commit()) is Write.REFUSED
    store.down = True
    sf.flush()
    assert timers.started == [(KEY, PERSIST_TIMER, PERSIST_RETRY_S)] * 2
    assert len(sf.unwritten) == 1
    store.down = False
    sf.flush()
    assert len(sf.unwritten) == 0
    assert [p.qty for p in store.positions(KEY)] == [1.0]
    sf.flush()  # nothing held: nothing to do
    assert timers.started == [(KEY, PERSIST_TIMER, PERSIST_RETRY_S)] * 2


def test_a_commit_without_a_position_is_not_held() -> None:
    """A commit with no position (a pause) is dropped while the store is down: only
    protective position commits are worth holding."""
    sf, store, _, _ = saving()
    pause = transition(priced(KEY, at=NOW), PauseRequest(KEY, True), Context(NOW, POLICY, 1))
    assert pause.commit is not None
    store.down = True
    assert sf.write(pause.commit) is Write.REFUSED and len(sf.unwritten) == 0


def test_a_signal_the_store_has_decided_before_is_seen() -> None:
    """The store's signal history already has the id (an old replay the actor's memory no
    longer holds): ``SEEN``, and nothing is counted as a failure."""
    sf, _, _, metrics = saving()
    assert sf.write(entry_commit()) is Write.WRITTEN
    assert sf.write(entry_commit()) is Write.SEEN
    assert metrics.failed == []


def test_the_quarantine_is_stored_with_its_reason() -> None:
    """The quarantine is written as the stored flag with a ``quarantined`` journal event
    carrying the error (cut at 200); a store that refuses it is logged, never raised."""
    sf, store, _, _ = saving()
    sf.quarantine(Recover(KEY), "boom" * 100, NOW)
    (ev,) = store.journal(KEY)
    assert (ev.kind, ev.position_id, ev.at) == ("quarantined", None, NOW)
    assert dict(ev.detail) == {"error": ("boom" * 100)[:200]}
    store.down = True
    sf.quarantine(Recover(KEY), "", NOW)  # logged, not raised


class RecordingStore(InMemoryStore):
    """The in-memory store, keeping every commit it was handed (written or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[Commit] = []

    def commit(self, commit: Commit) -> None:
        self.handed.append(commit)
        super().commit(commit)


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, object, object]]:
    return [
        (r.levelname, r.getMessage(), getattr(r, "key", None), getattr(r, "position_id", None))
        for r in caplog.records
        if r.name.startswith("actors")
    ]


def test_save_first_tells_the_operator_what_it_did(caplog: pytest.LogCaptureFixture) -> None:
    """The log lines of save-first name the symbol (``key``) and, for a held commit, the
    position: an entry dropped (ERROR), a protective commit held (ERROR), an old replay seen
    (INFO, the store's words), the store back (INFO)."""
    caplog.set_level(logging.INFO)
    k = str(KEY)
    sf, store, _, _ = saving()
    store.down = True
    sf.write(entry_commit())
    assert _records(caplog) == [
        (
            "ERROR",
            f"store unavailable, transition dropped for {k}: injected: database down",
            k,
            None,
        )
    ]
    caplog.clear()
    store.down = False
    store.commit(entry_commit())
    store.down = True
    sf.write(fill_commit())
    assert _records(caplog) == [
        (
            "ERROR",
            f"store unavailable for {k}; protecting anyway, write retried: injected: database down",
            k,
            1,
        )
    ]
    caplog.clear()
    store.down = False
    sf.flush()
    assert _records(caplog) == [
        ("INFO", f"store back: unwritten transitions persisted for {k}", None, None)
    ]
    caplog.clear()
    sf2, _, _, _ = saving()
    sf2.write(entry_commit())
    sf2.write(entry_commit())
    assert [r[0] for r in _records(caplog)] == ["INFO"]
    assert _records(caplog)[0][1].startswith("signal 'w1'") and _records(caplog)[0][2] == k


def test_the_quarantine_commit_carries_the_flag_and_its_note(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The quarantine is one commit with no position: the flag ``quarantined`` set with the
    note "repeated crashes: <error>" (cut at 200), its cause, and the event; without an
    error the note is "repeated crashes". A store that refuses it: one ERROR line."""
    store = RecordingStore()
    sf = SaveFirst(KEY, store, Timers(), Metrics())
    cause = Recover(KEY)
    sf.quarantine(cause, "e" * 300, NOW)
    (c,) = store.handed
    assert (c.key, c.cause, c.position, c.expected_version) == (KEY, cause, None, 0)
    assert c.control == ControlChange("quarantined", True, ("repeated crashes: " + "e" * 300)[:200])
    sf.quarantine(cause, "", NOW)
    assert store.handed[-1].control == ControlChange("quarantined", True, "repeated crashes")
    assert dict(store.handed[-1].events[0].detail) == {"error": ""}
    caplog.set_level(logging.INFO)
    store.down = True
    sf.quarantine(cause, "boom", NOW)
    assert [(r.levelname, r.getMessage(), getattr(r, "key", None)) for r in caplog.records] == [
        (
            "ERROR",
            f"quarantine of {KEY} not stored (written again at the next load): "
            "injected: database down",
            str(KEY),
        )
    ]


class BareSource:
    """A TickSource that is not a TickSlot (no ``woken``): its tick never counts as a wake."""

    def __init__(self, t: MarkPriceTick) -> None:
        self._t: MarkPriceTick | None = t

    def take(self) -> MarkPriceTick | None:
        t, self._t = self._t, None
        return t

    def take_parked(self) -> MarkPriceTick | None:
        return None

    def set_band(self, band: tuple[float, float] | None) -> bool:
        return False


def test_a_wake_up_reports_its_arrival_only_for_a_tick_that_woke_the_actor() -> None:
    """A tick taken from a slot that did not wake the actor for it (a parked one, or a
    source that is no TickSlot) has no wake-up time."""
    band = TickBand(KEY, Recorder().deliver)
    got, woke = band.wake(TicksReady(KEY, BareSource(tick(100.0, at=5.0))))
    assert got is not None and woke is None
    slot = TickSlot()
    slot.set_band((90.0, 110.0))
    assert not slot.put(tick(100.0, at=6.0))  # parked: it woke nobody
    got, woke = band.wake(TicksReady(KEY, slot))
    assert got is not None and got.price == 100.0 and woke is None


def test_held_commits_of_one_position_are_one_write_that_keeps_the_last_cause() -> None:
    """Two held commits of one position flush as one write: the symbol, the later cause and
    position, the first expected version, all the events, and the signal record one of
    them carried; the buffer empties once written (one commit stands for both)."""
    store = RecordingStore()
    first = entry_commit()
    store.commit(first)
    held = UnwrittenCommits()
    fill = fill_commit()
    assert fill.position is not None
    later = Commit(KEY, Recover(KEY), replace(fill.position, version=3), 2, fill.events)
    held.append(fill)
    held.append(later)
    assert held.flush(store) and len(held) == 0
    (merged,) = store.handed[1:]
    assert (merged.key, merged.cause, merged.position) == (KEY, later.cause, later.position)
    assert merged.expected_version == fill.expected_version
    assert merged.events == fill.events + later.events
    assert merged.signal == fill.signal
