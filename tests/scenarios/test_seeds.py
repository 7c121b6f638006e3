"""Scenarios S1–S8 from the field reports (README, "How the races are removed"), proven with
messages into actors.

Each test's docstring names the naive design it would catch. These run on the in-memory ports
(same Protocols as the real adapters); the PostgreSQL, ccxt and WebSocket variants live in the
integration folders.
"""

from __future__ import annotations

import threading

import pytest

from actors.messages import CloseRequest, MarkPriceTick, SyncObservation
from actors.model import CloseReason, Key, OrderKind, Side, Status
from actors.state import Policy, Reentry, SignalOutcome
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore
from testkit.world import ACCOUNT, World, signal

pytestmark = pytest.mark.timeout(30)

KEY = Key(ACCOUNT, "BTCUSDT")
SOURCES = ("sniper", "whale_copy", "trending", "volume")


def test_s1_four_sources_one_entry_history_survives_restart() -> None:
    """Naive design: each strategy module checks its own "bought" list, and a failed buy is
    written to the history anyway — four modules buy the same token, and a failure blocks
    every later retry. Here: one entry per symbol whatever the sources, duplicates recorded per
    source, a failed entry does not count as bought, and the history survives a restart."""
    store = InMemoryStore()
    exchange = InMemoryExchange(ACCOUNT, {"BTCUSDT": 100.0})
    policy = Policy(reentry=Reentry.NEVER)
    # A failed entry first: it must not count as "bought".
    exchange.reject[OrderKind.ENTRY] = ["insufficient_funds"]
    with World(policy=policy, store=store, exchange=exchange) as w:
        w.tell(signal(source="sniper"))
        w.settle()
        assert [p.status for p in w.positions()] == [Status.FAILED]
        w.tell(*(signal(source=s, signal_id=f"burst-{s}") for s in SOURCES))
        w.settle()
        assert exchange.count(kind=OrderKind.ENTRY) == 2
        opened = [p for p in w.positions() if p.status is Status.ACTIVE]
        assert len(opened) == 1
        dups = {r.source for r in store.signals() if r.outcome is SignalOutcome.DUPLICATE}
        assert len(dups) == 3 and dups < set(SOURCES)
    # Restart: a new supervisor over the same store and exchange; "never again" still holds
    # after the position is closed, and a replayed id is recognised.
    with World(policy=policy, store=store, exchange=exchange) as w2:
        w2.sup.recover()
        w2.settle()
        w2.tell(CloseRequest(KEY, CloseReason.MANUAL, "op-1"))
        w2.settle()
        closed = w2.state().position
        assert closed is not None and closed.status is Status.CLOSED
        w2.tell(signal(source="volume", signal_id="later"), signal(signal_id="burst-sniper"))
        w2.settle()
    reasons = {r.signal_id: r.reason for r in store.signals()}
    assert reasons["later"] == "never_again"
    assert w2.metrics.signals[("sniper", "duplicate", "signal_replayed")] == 1
    assert exchange.count(kind=OrderKind.ENTRY) == 2
    assert not exchange.positions


def test_s2_identical_signals_at_once_one_position() -> None:
    """Naive design: check-then-insert on a shared table from two threads — both see "no
    position" and both buy. Here both land in one actor's mailbox: one position."""
    with World() as w:
        start = threading.Barrier(8)

        def fire(i: int) -> None:
            start.wait()
            w.tell(signal(source="sniper", signal_id="same-id"))
            w.tell(signal(source="sniper", signal_id=f"twin-{i}"))

        threads = [threading.Thread(target=fire, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        w.settle()
        assert len(w.positions("BTCUSDT")) == 1
        assert w.exchange.count(kind=OrderKind.ENTRY) == 1
        outcomes = w.metrics.outcomes()
        assert outcomes["accepted"] == 1
        assert outcomes["duplicate"] == 15


def test_s3_sync_during_entry_is_reconciled_not_inserted() -> None:
    """Naive design: the periodic sync looks for an `active` row, finds none while the opener
    sleeps between placing the order and recording it, and inserts a second position. Here the
    sync observation goes to the same actor and is reconciled into the entry in flight."""
    with World() as w:
        w.exchange.stream = False
        held = threading.Event()
        w.exchange.hold[OrderKind.ENTRY] = held
        w.tell(signal())
        w.wait_for(lambda: "BTCUSDT" in w.exchange.positions)
        w.sync(calls=False)  # the order is filled on the exchange, its reply in flight
        # reconciled into the entry: protected (the stop's reply comes back on a worker)
        w.wait_for(lambda: (p := w.state().position) is not None and p.status is Status.ACTIVE)
        assert len(w.positions("BTCUSDT")) == 1
        held.set()
        w.settle()
        w.sync()
        assert len(w.positions("BTCUSDT")) == 1
        assert w.exchange.count(kind=OrderKind.ENTRY) == 1
        assert w.state().position.status is Status.ACTIVE  # type: ignore[union-attr]
        assert len(w.exchange.open_orders("BTCUSDT")) == 1  # one stop-loss


def test_s4_failed_entry_is_terminal_and_retry_is_clean() -> None:
    """Naive design: a failed entry is rolled back but its row is left half-open, and the
    retry opens a new row beside it. Here the attempt ends `failed` with its reason, the
    exchange stays flat, and a retry is a new position with a new client order id."""
    with World() as w:
        w.exchange.reject[OrderKind.ENTRY] = ["insufficient_funds"]
        w.tell(signal(signal_id="first"))
        w.settle()
        [failed] = w.positions()
        assert failed.status is Status.FAILED
        assert failed.fail_reason == "rejected:insufficient_funds"
        assert not w.exchange.positions
        # An entry whose outcome stays unknown and is never found also fails, flat.
        w.exchange.lose = 1
        w.tell(signal(signal_id="second"))
        w.settle()
        w.advance(w.sup.config.policy.lookup_deadline_s + 1)
        for _ in range(60):
            w.advance(w.sup.config.policy.lookup_delay_s)
        lost = w.positions()[1]
        assert lost.status is Status.FAILED and lost.fail_reason == "entry_not_found"
        w.tell(signal(signal_id="retry"))
        w.settle()
        ids = [p.id for p in w.positions()]
        assert len(set(ids)) == 3
        retry = w.positions()[2]
        assert retry.status is Status.ACTIVE
        entry_ids = {r.client_id for r in w.exchange.log if r.kind is OrderKind.ENTRY}
        assert len(entry_ids) == 3


def test_s5_recovery_before_new_entries() -> None:
    """Naive design: after a crash the new process ignores rows stuck in `entry_placed`, a new
    signal opens a second position and the first one sits unprotected. Here every
    non-terminal position is recovered and resolved against the exchange (lookup by client
    order id) before that symbol accepts an entry."""
    store = InMemoryStore()
    exchange = InMemoryExchange(ACCOUNT, {"BTCUSDT": 100.0})
    exchange.stream = False
    held = threading.Event()
    exchange.hold[OrderKind.ENTRY] = held
    w1 = World(store=store, exchange=exchange)
    w1.tell(signal())
    w1.wait_for(lambda: "BTCUSDT" in exchange.positions)
    # The process dies with the order filled on the exchange and unacknowledged here.
    w1.sup.stop(grace_s=0.0)
    assert [p.status for p in store.positions()] == [Status.PENDING_ENTRY]
    exchange.hold.clear()
    with World(store=store, exchange=exchange) as w2:
        w2.sup.recover()
        w2.tell(signal(source="whale_copy"))
        w2.settle()
        assert [p.status for p in store.positions()] == [Status.ACTIVE]
        assert w2.metrics.signals[("whale_copy", "duplicate", "position_open")] == 1
        assert exchange.count(kind=OrderKind.ENTRY) == 1
        assert len(exchange.open_orders("BTCUSDT")) == 1
    held.set()
    w1.sup.drain_calls(5)


def test_s6_intent_committed_before_order_and_actor_never_blocked() -> None:
    """Naive design: a lock is released before the 1–3 s market order finishes, and another
    iteration reads the old flag and buys again. Here the intent is committed before the
    order leaves, the actor keeps handling messages while the order is in flight, and the
    result comes back as a message."""
    with World() as w:
        seen_in_store: list[Status] = []
        w.exchange.on_place = lambda req: seen_in_store.extend(
            p.status for p in w.store.positions() if req.client_id.startswith(f"ps{p.id}")
        )
        gate = threading.Event()
        w.exchange.gate = gate
        w.tell(signal(signal_id="a"))
        w.wait_for(lambda: w.exchange.calls_waiting == 1)
        # The order is in flight; the actor still answers and refuses a second entry.
        w.tell(signal(signal_id="b", source="trending"))
        w.tell(MarkPriceTick(KEY, 101.0, 0.0))
        w.settle(calls=False)
        st = w.state()
        assert st.last_price == 101.0
        assert st.position is not None and st.position.status is Status.PENDING_ENTRY
        assert w.metrics.signals[("trending", "duplicate", "position_open")] == 1
        gate.set()
        w.settle()
        assert seen_in_store[0] is Status.PENDING_ENTRY
        assert w.exchange.count(kind=OrderKind.ENTRY) == 1
        assert w.state().position.status is Status.ACTIVE  # type: ignore[union-attr]


def test_s7_updates_before_registration_are_applied_in_order() -> None:
    """Naive design: WebSocket updates for a new position are dropped for 300–500 ms because
    the position is not registered yet. Here the actor exists from the first message on, and
    fills that arrive before the order's REST reply (and in parts) are all applied."""
    with World() as w:
        w.exchange.partial_parts = 3
        w.exchange.events_before_reply = True
        w.tell(MarkPriceTick(KEY, 100.0, 0.0))  # ticks before the signal are handled too
        w.tell(signal(size=3.0))
        w.settle()
        pos = w.state().position
        assert pos is not None and pos.qty == pytest.approx(1.0)
        assert pos.status is Status.ACTIVE  # protected from the first part on
        w.exchange.finish_partials()
        w.settle()
        pos = w.state().position
        assert pos is not None and pos.qty == pytest.approx(3.0)
        entry = pos.latest(OrderKind.ENTRY)
        assert entry is not None and entry.filled_qty == pytest.approx(3.0)
        assert w.exchange.positions["BTCUSDT"].qty == pytest.approx(3.0)
        assert w.metrics.dead == {}


def test_s8_unprotectable_fill_is_closed() -> None:
    """Naive design: a rollback leaves the exchange position open without a stop-loss. Here a
    fill is protected within one stop-loss round trip, or — after bounded retries — closed at
    market; a local guard closes on ticks while the stop is not confirmed."""
    policy = Policy(reentry=Reentry.ALLOW, sl_max_attempts=3)
    with World(policy=policy) as w:
        w.exchange.reject[OrderKind.STOP_LOSS] = ["exchange_overloaded"] * 3
        w.tell(signal())
        w.settle()
        for _ in range(3):
            w.advance(policy.sl_retry_delay_s)
        pos = w.positions()[0]
        assert pos.status is Status.CLOSED and pos.close_reason is CloseReason.EMERGENCY
        assert w.exchange.count(kind=OrderKind.STOP_LOSS) == 3
        assert not w.exchange.positions
        # A stop that would trigger at once: close immediately.
        w.exchange.reject[OrderKind.STOP_LOSS] = ["would_trigger"]
        w.tell(signal(signal_id="again"))
        w.settle()
        assert w.positions()[1].close_reason is CloseReason.EMERGENCY
        assert not w.exchange.positions
        # Local stop guard: the stop is in flight, the price crosses it.
        held = threading.Event()
        w.exchange.hold[OrderKind.STOP_LOSS] = held
        w.exchange.stream = False  # the stop's acknowledgement comes only with its reply
        w.tell(signal(signal_id="guarded", stop=95.0))
        w.wait_for(lambda: w.exchange.calls_waiting == 1)
        w.tell(MarkPriceTick(KEY, 94.0, 0.0))
        w.settle(calls=False)
        guarded = w.state().position
        assert guarded is not None and guarded.status in (Status.CLOSING, Status.CLOSED)
        held.set()
        w.settle()
        assert w.positions()[2].close_reason is CloseReason.STOP_LOSS
        assert not w.exchange.positions


def test_sync_adopts_unknown_exchange_position_and_closes_vanished_one() -> None:
    """Naive design: a position on the exchange that the database does not know is ignored
    (unprotected), and one closed on the exchange stays `active` forever."""
    with World() as w:
        w.exchange.open_position("ETHUSDT", Side.SHORT, 2.0, 50.0)
        w.exchange.prices["ETHUSDT"] = 50.0
        w.sync()
        [adopted] = w.positions("ETHUSDT")
        assert adopted.source == "sync" and adopted.status is Status.ACTIVE
        assert adopted.stop_price == pytest.approx(51.0)
        w.exchange.positions.clear()
        w.clock.advance(1)
        w.sync()
        # Flat on the exchange: its stop is looked up first (it may have closed it, I9's
        # close reasons); nothing filled it, so after flat_confirm_s it closed on the exchange.
        assert w.positions("ETHUSDT")[0].status is Status.ACTIVE
        w.advance(Policy().flat_confirm_s)
        closed = w.positions("ETHUSDT")[0]
        assert closed.status is Status.CLOSED
        assert closed.close_reason is CloseReason.CLOSED_ON_EXCHANGE
        # A stale observation (taken before the fill) does not close a fresh position.
        w.tell(signal())
        w.settle()
        w.tell(SyncObservation(KEY, None, (), observed_at=w.clock.now() - 10))
        w.settle()
        assert w.state().position.status is Status.ACTIVE  # type: ignore[union-attr]
