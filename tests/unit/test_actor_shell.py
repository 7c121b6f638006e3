"""The actor shell and the supervisor: write-before-effects, crashes, restarts, quarantine,
no lost message, store outages, passivation, keyed timers and a clean stop."""

from __future__ import annotations

import threading

import pytest

from actors.messages import MarkPriceTick, TicksReady, TimerFired, TimerId, TimerKind
from actors.model import ExchangeStatus, Key, OrderKind, Status
from actors.state import Commit, Policy, Reentry
from supervision.restart import RestartPolicy, RestartTracker
from supervision.timers import ManualClock, TimerService
from testkit.world import ACCOUNT, World, signal

pytestmark = pytest.mark.timeout(30)
KEY = Key(ACCOUNT, "BTCUSDT")


def test_no_effect_when_the_intent_cannot_be_written() -> None:
    with World() as w:
        w.store.fail_commits = 1
        w.tell(signal(signal_id="a"))
        w.settle()
        assert w.exchange.log == []
        assert w.store.positions() == []
        assert w.metrics.signals[("sniper", "rejected", "store_unavailable")] == 1
        w.tell(signal(signal_id="b"))  # the store is back: a new signal opens normally
        w.settle()
        assert w.positions()[0].status is Status.ACTIVE


def test_outage_keeps_protection_and_persists_when_back() -> None:
    with World() as w:
        w.exchange.prices["ETHUSDT"] = 50.0
        w.tell(MarkPriceTick(Key(ACCOUNT, "ETHUSDT"), 50.0, 0.0))
        held = threading.Event()
        w.exchange.hold[OrderKind.ENTRY] = held
        w.exchange.stream = False  # the fill comes with the reply, after the outage began
        w.tell(signal())
        w.wait_for(lambda: w.exchange.calls_waiting == 1)
        w.store.down = True  # the database goes away with the entry in flight
        held.set()
        w.settle()
        # The fill was protected although nothing could be written.
        assert w.state().position.status is Status.ACTIVE  # type: ignore[union-attr]
        assert len(w.exchange.open_orders("BTCUSDT")) == 1
        assert w.store.positions()[0].status is Status.PENDING_ENTRY
        w.tell(MarkPriceTick(KEY, 101.0, 0.0))  # ticks still handled
        w.tell(signal(signal_id="refused", symbol="ETHUSDT", stop=45.0))
        w.settle()
        assert w.state().last_price == 101.0
        assert w.metrics.signals[("sniper", "rejected", "store_unavailable")] == 1
        w.store.down = False
        w.advance(1.5)  # the persist timer retries the write
        [p] = w.store.positions(KEY)
        assert p.status is Status.ACTIVE
        assert p.version == w.state().position.version  # type: ignore[union-attr]


def test_crash_restarts_from_store_and_keeps_the_mailbox() -> None:
    with World() as w:
        crashes = [True]
        w.store.crash_when = lambda c: bool(crashes and crashes.pop())
        gate = threading.Event()
        w.exchange.gate = gate
        w.tell(signal(signal_id="boom"))  # crashes in its commit, retried after restart
        w.tell(signal(signal_id="second", source="volume"))
        w.settle(calls=False)
        gate.set()
        w.settle()
        assert len(w.positions()) == 1
        assert w.positions()[0].status is Status.ACTIVE
        assert w.metrics.signals[("volume", "duplicate", "position_open")] == 1
        assert w.sup.stats().restarts == 1
        assert not w.metrics.dead


def test_a_message_that_crashes_twice_is_dead_lettered() -> None:
    with World() as w:
        w.store.crash_when = lambda c: c.signal is not None and c.signal.signal_id == "poison"
        w.tell(signal(signal_id="poison"))
        w.settle()
        w.advance(1.0)  # the second restart backs off
        assert w.metrics.dead["crashed_twice"] == 1
        w.store.crash_when = None
        w.tell(signal(signal_id="fine"))
        w.settle()
        assert w.positions()[0].status is Status.ACTIVE


def test_too_many_crashes_quarantine_the_symbol_but_protection_stays() -> None:
    restart = RestartPolicy(max_restarts=2, window_s=60)
    with World(restart=restart) as w:
        w.tell(signal(signal_id="open"))
        w.settle()
        w.store.crash_when = lambda c: c.signal is not None
        for i in range(3):
            w.tell(signal(signal_id=f"crash-{i}"))
            w.settle()
            w.advance(restart.max_backoff_s + 1)
        w.store.crash_when = None
        w.advance(restart.max_backoff_s + 1)  # the last backoff runs out; the stash is handled
        assert str(KEY) in w.sup.stats().quarantined
        assert w.state().quarantined
        w.tell(signal(signal_id="after", source="trending"))
        w.settle()
        # The open position is still there and protected; stops still work.
        pos = w.state().position
        assert pos is not None and pos.status is Status.ACTIVE
        assert len(w.exchange.open_orders("BTCUSDT")) == 1, w.exchange.orders
        w.exchange.set_price("BTCUSDT", 80.0)
        w.settle()
        assert w.state().position.status is Status.CLOSED  # type: ignore[union-attr]
        w.tell(signal(signal_id="after-close", source="trending"))
        w.settle()
        assert w.metrics.signals[("trending", "rejected", "quarantined")] == 2


def test_stale_writer_fails_loudly() -> None:
    with World() as w:
        w.tell(signal())
        w.settle()
        p = w.positions()[0]
        bad = Commit(KEY, TimerFired(KEY, TimerId(TimerKind.LOOKUP, "x")), p, p.version - 1, ())
        from actors.ports import StaleVersion

        with pytest.raises(StaleVersion):
            w.store.commit(bad)


def test_idle_actor_is_passivated_and_recreated_on_demand() -> None:
    with World(policy=Policy(reentry=Reentry.ALLOW)) as w:
        w.tell(MarkPriceTick(Key(ACCOUNT, "ETHUSDT"), 50.0, 0.0))
        w.tell(signal())
        w.settle()
        w.clock.advance(120)
        assert w.sup.passivate_idle() == 1  # BTCUSDT has a position: it stays
        w.wait_for(lambda: Key(ACCOUNT, "ETHUSDT") not in w.sup.keys())
        assert KEY in w.sup.keys()
        w.tell(MarkPriceTick(Key(ACCOUNT, "ETHUSDT"), 51.0, 0.0))
        w.settle()
        assert w.state("ETHUSDT").last_price == 51.0


def test_messages_queued_behind_a_stop_are_rerouted_not_dropped() -> None:
    with World() as w:
        w.tell(MarkPriceTick(KEY, 100.0, 0.0))
        w.settle()
        ref = w.sup._actors[KEY]
        w.sup.retire(KEY, ref)
        # Stop first, then queue messages behind the stop: pykka would drop these.
        ref.stop(block=False)
        try:
            for p in (101.0, 102.0, 103.0):
                ref.tell(MarkPriceTick(KEY, p, 0.0))
        except Exception:
            pass
        ref.actor_stopped.wait(5)
        w.wait_for(lambda: KEY in w.sup.keys())
        w.settle()
        assert w.state().last_price == 103.0


def test_messages_queued_behind_a_failure_are_rerouted_and_the_crash_counted() -> None:
    """Something escaping on_receive stops the actor (pykka): on_failure counts the crash and
    hands the inbox back, like a stop does."""
    gate = threading.Event()

    class Boom:
        def take(self) -> MarkPriceTick | None:
            gate.wait(5)
            raise RuntimeError("boom")

        def take_parked(self) -> MarkPriceTick | None:
            return None

        def set_band(self, band: tuple[float, float] | None) -> bool:
            return False

    with World() as w:
        w.tell(MarkPriceTick(KEY, 100.0, 0.0))
        w.settle()
        restarts = w.sup.stats().restarts
        ref = w.sup._actors[KEY]
        ref.tell(TicksReady(KEY, Boom()))
        ref.tell(MarkPriceTick(KEY, 105.0, 0.0))  # queued behind the failure
        gate.set()
        assert ref.actor_stopped.wait(5)
        w.wait_for(lambda: w.sup._actors.get(KEY) not in (None, ref))
        w.settle()
        assert w.state().last_price == 105.0
        assert w.sup.stats().restarts == restarts + 1


def test_keyed_timer_supersedes_older_one() -> None:
    clock = ManualClock()
    fired: list[TimerFired] = []
    timers = TimerService(clock.now, fired.append)  # type: ignore[arg-type]
    clock.on_advance(timers.fire_due)
    timers.start(KEY, TimerId(TimerKind.LOOKUP, "x"), 1.0)
    timers.start(KEY, TimerId(TimerKind.LOOKUP, "x"), 5.0)
    timers.start(KEY, TimerId(TimerKind.LOOKUP, "other"), 2.0)
    clock.advance(3.0)
    assert fired == [TimerFired(KEY, TimerId(TimerKind.LOOKUP, "other"))]
    timers.cancel(KEY, TimerId(TimerKind.LOOKUP, "x"))
    clock.advance(10.0)
    assert fired == [TimerFired(KEY, TimerId(TimerKind.LOOKUP, "other"))]
    assert timers.pending() == 0


def test_restart_backoff_and_intensity() -> None:
    policy = RestartPolicy(max_restarts=5, window_s=60, min_backoff_s=0.1, max_backoff_s=10)

    class Zero:
        def random(self) -> float:
            return 0.0

    t = RestartTracker(policy, Zero())  # type: ignore[arg-type]
    delays = [t.on_crash(1000.0 + i).delay for i in range(5)]
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8]
    sixth = t.on_crash(1006.0)
    assert sixth.quarantine and sixth.delay == 10
    quiet = RestartTracker(policy, Zero())  # type: ignore[arg-type]
    quiet.on_crash(0.0)
    assert quiet.on_crash(61.0).delay == 0.0  # the count resets after a quiet window


def test_stop_leaves_nothing_and_refuses_late_messages() -> None:
    w = World()
    for i in range(50):
        w.tell(MarkPriceTick(Key(ACCOUNT, f"S{i}USDT"), 1.0, 0.0))
    w.settle()
    assert len(w.sup.keys()) == 50
    w.close()
    assert not w.sup.tell(MarkPriceTick(KEY, 1.0, 0.0))
    assert w.metrics.dead["shutting_down"] == 1


def test_nan_fill_price_and_garbage_signal_ids_do_not_crash() -> None:
    from actors.messages import OrderUpdate

    with World() as w:
        w.exchange.stream = False
        w.tell(signal(signal_id="x" * 5000), signal(signal_id="bad\x00id", source="s\x00"))
        w.settle()
        assert w.metrics.outcomes()["rejected"] == 2
        for rec in w.store.signals():
            assert len(rec.signal_id) <= 64 and rec.signal_id.isprintable()
            assert rec.source.isprintable()
        w.tell(signal(signal_id="fine"))
        w.settle()
        pos = w.positions()[0]
        nan = float("nan")
        w.tell(OrderUpdate(KEY, pos.orders[0].client_id, ExchangeStatus.FILLED, 1.0, nan, nan))
        w.settle()
        assert w.state().position.entry_price == 100.0  # type: ignore[union-attr]
        assert not w.metrics.dead
