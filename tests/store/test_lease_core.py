"""Fencing in the core, on in-memory ports (I7): the worker pool's gate, the actor's answer to
a stale version or a refused epoch, the supervisor's activation, deactivation and held
signals, and the orphan rule for another installation's orders.

No database here (the epoch check itself is ``tests/store/test_lease.py``); nothing sleeps:
waits poll a condition with a deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from actors.effects import CancelOrder, PlaceOrder
from actors.messages import CloseRequest, OrderUpdate, SyncObservation
from actors.model import (
    CloseReason,
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    OrderKind,
    Side,
    Status,
)
from actors.ports import Fenced, StaleVersion
from actors.state import (
    Commit,
    Installation,
    Policy,
    Reentry,
    SignalRecord,
    SymbolState,
    Transition,
)
from actors.transition import Context, transition
from actors.workers import ExchangeWorkers
from supervision.supervisor import Supervisor, SupervisorConfig
from supervision.timers import ManualClock
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore
from testkit.waiting import poll
from testkit.world import ACCOUNT, CountingMetrics, World, signal
from tests.unit.test_workers import WAIT, GatedExchange, Outcomes, place

pytestmark = pytest.mark.timeout(30)

KEY = Key(ACCOUNT, "BTCUSDT")


def stop(cid: str) -> PlaceOrder:
    """A stop-loss placement of a position of its own (``s2`` of position 2): queued stops of
    one position replace each other in the pool, which these tests are not about."""
    p = place(cid, OrderKind.STOP_LOSS)
    return replace(p, position_id=int("".join(ch for ch in cid if ch.isdigit()) or 1))


# --- the worker pool's gate ----------------------------------------------------------------


class Gate:
    """The lease keeper's token as the pool sees it: an epoch, or None (fenced)."""

    def __init__(self, epoch: int | None = 1) -> None:
        self.epoch = epoch
        self.asked = 0

    def __call__(self) -> int | None:
        self.asked += 1
        return self.epoch


class OrderMetrics(CountingMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.orders: list[tuple[str, str, str]] = []

    def order(self, kind: str, op: str, result: str) -> None:
        self.orders.append((kind, op, result))


@pytest.fixture
def gated() -> Iterator[Callable[[int], tuple[ExchangeWorkers, GatedExchange, Outcomes, Gate]]]:
    made: list[tuple[ExchangeWorkers, GatedExchange]] = []

    def make(max_workers: int) -> tuple[ExchangeWorkers, GatedExchange, Outcomes, Gate]:
        ex, out, gate = GatedExchange(), Outcomes(), Gate()
        w = ExchangeWorkers("acct", ex, out, max_workers, OrderMetrics(), gate=gate)
        made.append((w, ex))
        return w, ex, out, gate

    yield make
    for w, ex in made:
        ex.release()
        w.shutdown(WAIT)


def test_a_call_leaves_only_while_the_gate_gives_an_epoch(
    gated: Callable[[int], tuple[ExchangeWorkers, GatedExchange, Outcomes, Gate]],
) -> None:
    w, ex, out, gate = gated(2)
    w.submit(stop("s1"))
    assert out.wait_for("s1") and ex.snapshot() == ["s1"]
    gate.epoch = None  # fenced
    w.submit(stop("s2"))
    assert w.drain(WAIT)
    assert ex.snapshot() == ["s1"], "a call left while fenced"
    assert "s2" not in out.by_id(), "a fenced call is not answered: nobody acts on it here"
    assert w.fenced_drops == 1
    metrics = w._metrics
    assert isinstance(metrics, OrderMetrics)
    assert ("stop_loss", "place", "fenced") in metrics.orders


def test_the_gate_is_asked_again_immediately_before_the_call(
    gated: Callable[[int], tuple[ExchangeWorkers, GatedExchange, Outcomes, Gate]],
) -> None:
    """Queued while the lease held, then fenced (or the epoch moved on) before a worker was
    free: the call never reaches the exchange."""
    w, ex, out, gate = gated(1)
    ex.gate("s1")
    w.submit(stop("s1"))
    assert ex.wait_started("s1")  # the only worker is busy
    w.submit(stop("s2"))
    w.submit(stop("s3"))
    gate.epoch = None  # s2 was queued under epoch 1: fenced now
    ex.release("s1")
    assert out.wait_for("s1")
    gate.epoch = 2  # a new lease (this process took the account again): s3 is epoch 1's
    assert w.drain(WAIT)
    assert ex.snapshot() == ["s1"]
    assert set(out.by_id()) == {"s1"} and w.fenced_drops == 2
    w.submit(stop("s4"))  # under epoch 2: goes
    assert out.wait_for("s4") and ex.snapshot() == ["s1", "s4"]


def test_drop_queued_drops_what_waits_and_spares_what_runs(
    gated: Callable[[int], tuple[ExchangeWorkers, GatedExchange, Outcomes, Gate]],
) -> None:
    w, ex, out, _ = gated(1)
    ex.gate("s1")
    for cid in ("s1", "s2", "s3"):
        w.submit(stop(cid))
    assert ex.wait_started("s1")
    assert w.drop_queued() == 2 and w.in_flight == 1
    ex.release("s1")
    assert w.drain(WAIT) and w.in_flight == 0
    assert ex.snapshot() == ["s1"] and set(out.by_id()) == {"s1"}


def test_a_gate_that_raises_counts_as_closed(
    gated: Callable[[int], tuple[ExchangeWorkers, GatedExchange, Outcomes, Gate]],
) -> None:
    ex, out = GatedExchange(), Outcomes()

    def broken() -> int | None:
        raise RuntimeError("keeper bug")

    w = ExchangeWorkers("acct", ex, out, 1, gate=broken)
    try:
        w.submit(stop("s1"))
        assert w.drain(WAIT) and ex.snapshot() == [] and w.fenced_drops == 1
    finally:
        w.shutdown(WAIT)


# --- the actor: a refused epoch, a stale version --------------------------------------------


def _listen(w: World) -> tuple[list[tuple[str, str, bool]], list[SignalRecord]]:
    reports: list[tuple[str, str, bool]] = []
    answers: list[SignalRecord] = []
    w.sup.ownership_listeners.append(lambda a, why, certain: reports.append((a, why, certain)))
    w.sup.signal_listeners.append(answers.append)
    return reports, answers


def test_a_refused_epoch_drops_the_transition_and_fences_without_a_crash() -> None:
    with World() as w:
        reports, answers = _listen(w)
        w.tell(signal(signal_id="before"))
        w.settle()
        pos = w.state().position
        assert pos is not None and pos.status is Status.ACTIVE
        sent = len(w.exchange.log)
        real = w.store.commit

        def fenced(c: Commit) -> None:
            raise Fenced("epoch 1 is not current; the lease is at epoch 2")

        w.store.commit = fenced  # type: ignore[method-assign,assignment]
        try:
            w.tell(CloseRequest(KEY, CloseReason.MANUAL))  # would send a close order
            w.tell(signal(signal_id="during"))  # its refusal would be written
            w.settle()
        finally:
            w.store.commit = real  # type: ignore[method-assign]
        assert len(w.exchange.log) == sent, "an order left after the epoch was refused"
        assert reports and all(a == ACCOUNT and certain for a, _, certain in reports)
        refused = [r for r in answers if r.signal_id == "during"]
        assert [(r.reason, r.retry) for r in refused] == [("ownership_lock_lost", True)]
        assert w.sup.stats().restarts == 0 and w.sup.stats().quarantined == ()


def test_a_stale_version_reloads_and_retries_never_quarantines() -> None:
    with World() as w:
        reports, answers = _listen(w)
        real = w.store.commit
        stale_left = [12]

        def sometimes_stale(c: Commit) -> None:
            if stale_left[0] > 0 and c.position is not None:
                stale_left[0] -= 1
                if stale_left[0] % 2 == 1:  # every other write: the retry goes through
                    raise StaleVersion("position 1: expected v1, found v2")
            real(c)

        w.store.commit = sometimes_stale  # type: ignore[method-assign,assignment]
        w.tell(signal(signal_id="s1"))
        w.settle()
        for price in (101.0, 103.0, 106.0, 110.0, 115.0, 121.0):
            w.exchange.set_price("BTCUSDT", price)
            w.settle()
        w.store.commit = real  # type: ignore[method-assign]
        assert stale_left[0] == 0, "the test injected what it meant to"
        assert [(r.signal_id, r.outcome.value) for r in answers] == [("s1", "accepted")]
        assert w.exchange.count(kind=OrderKind.ENTRY) == 1
        assert w.sup.stats().restarts == 0 and w.sup.stats().quarantined == ()
        assert reports and not any(certain for _, _, certain in reports)
        state = w.state()
        assert state.position is not None and state.position.status is Status.ACTIVE


# --- the supervisor: inactive accounts, held signals, deactivation ------------------------


class Token:
    def __init__(self) -> None:
        self.epoch: int | None = None

    def __call__(self, account: str) -> int | None:
        return self.epoch


def _gated_world(hold_s: float = 30.0) -> tuple[Supervisor, InMemoryStore, InMemoryExchange, Token]:
    clock = ManualClock()
    store, ex, token = InMemoryStore(), InMemoryExchange(ACCOUNT), Token()
    ex.use_clock(clock.now)
    sup = Supervisor(
        store,
        {ACCOUNT: ex},
        clock,
        config=SupervisorConfig(policy=Policy(reentry=Reentry.ALLOW)),
        metrics=CountingMetrics(),
        gate=token,
        hold_s=hold_s,
    )
    ex.listener = sup.tell
    clock.on_advance(sup.timers.fire_due)
    return sup, store, ex, token


def test_an_account_not_owned_here_runs_nothing_and_holds_its_signals() -> None:
    sup, _, ex, token = _gated_world()
    answers: list[SignalRecord] = []
    sup.signal_listeners.append(answers.append)
    try:
        assert sup.tell(signal(signal_id="early")) is True  # held, not answered
        assert sup.tell(OrderUpdate(KEY, "ps9s1", ExchangeStatus.NEW, 0.0, None, 1.0)) is False
        assert sup.keys() == [] and answers == [] and sup.held_signals(ACCOUNT) == 1
        assert sup.dropped_not_owner[ACCOUNT] == 1
        token.epoch = 1
        assert sup.activate(ACCOUNT) == []
        sup.set_entries_open(ACCOUNT, True)  # after the takeover's first sync
        poll(lambda: answers, WAIT, "the held signal decided")
        assert [(r.signal_id, r.outcome.value) for r in answers] == [("early", "accepted")]
        poll(lambda: ex.count(kind=OrderKind.ENTRY) == 1, WAIT, "its entry sent")
    finally:
        assert sup.stop(grace_s=5.0)


def test_deactivation_stops_the_actors_and_holds_new_signals() -> None:
    sup, store, ex, token = _gated_world()
    answers: list[SignalRecord] = []
    sup.signal_listeners.append(answers.append)
    try:
        token.epoch = 1
        sup.activate(ACCOUNT)
        sup.set_entries_open(ACCOUNT, True)
        sup.tell(signal(signal_id="first"))
        poll(lambda: any(p.stop_confirmed for p in store.open_positions()), WAIT, "protected")
        refs = [sup._actors[k] for k in sup.keys()]
        token.epoch = None
        stopped = sup.deactivate(ACCOUNT)
        poll(stopped, WAIT, "actors stopped")
        assert all(not r.is_alive() for r in refs) and sup.keys() == []
        sup.tell(signal(signal_id="while-fenced"))
        ex.set_price("BTCUSDT", 130.0)  # events for the account: nobody here acts on them
        assert [r.signal_id for r in answers] == ["first"]
        assert sup.held_signals(ACCOUNT) == 1 and sup.keys() == []
        # Taken again (a new epoch): the position is recovered, the held signal decided.
        token.epoch = 2
        assert sup.activate(ACCOUNT) == [KEY]
        sup.set_entries_open(ACCOUNT, True)
        poll(lambda: len(answers) == 2, WAIT, "held signal answered")
        assert answers[1].reason == "position_open"
    finally:
        assert sup.stop(grace_s=5.0)


def test_held_signals_expire() -> None:
    sup, _, _, token = _gated_world(hold_s=0.0)
    answers: list[SignalRecord] = []
    sup.signal_listeners.append(answers.append)
    try:
        sup.tell(signal(signal_id="stale"))
        token.epoch = 1
        sup.activate(ACCOUNT)
        sup.set_entries_open(ACCOUNT, True)
        assert answers == [] and sup.held_signals(ACCOUNT) == 0
    finally:
        assert sup.stop(grace_s=5.0)


# --- the orphan rule: another installation's orders -----------------------------------------


MINE = Installation(111111)
FOREIGN_STOP = ExchangeOrder("ps1222222s1", "sell", 0.0, True, 90.0)
OUR_ORPHAN = ExchangeOrder("ps7111111s1", "sell", 0.0, True, 90.0)


def _sync(policy: Policy, position: ExchangePosition | None, *orders: ExchangeOrder) -> Transition:
    state = SymbolState(KEY, last_price=100.0, last_price_at=1.0)
    obs = SyncObservation(KEY, position, orders, 2.0)
    ids = iter(range(5111111, 10**9, 1_000_000))
    return transition(state, obs, Context(2.0, policy, next(ids)))


def test_the_sweep_cancels_only_our_orders() -> None:
    t = _sync(Policy(installation=MINE), None, FOREIGN_STOP, OUR_ORPHAN)
    cancels = [e.client_id for e in t.effects if isinstance(e, CancelOrder)]
    assert cancels == ["ps7111111s1"]
    # Without an installation (unit tests, in-memory fakes) every ps… order is ours, as before.
    t = _sync(Policy(), None, FOREIGN_STOP)
    assert [e.client_id for e in t.effects if isinstance(e, CancelOrder)] == ["ps1222222s1"]


def test_another_installations_position_is_not_adopted() -> None:
    xp = ExchangePosition(Side.LONG, 1.0, 100.0)
    t = _sync(Policy(installation=MINE), xp, FOREIGN_STOP)
    assert t.state.position is None and t.commit is None
    t = _sync(Policy(installation=MINE), xp)  # nobody's stop rests: ours to protect
    assert t.state.position is not None and t.state.position.source == "sync"
