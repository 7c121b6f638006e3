"""Passivation happens with the sync running (issue 14, item 2).

The periodic sync tells every live actor what the exchange shows, every interval, and mark
prices arrive several times a second. Neither may keep an idle actor alive: an actor with no
position and nothing pending passivates ``passivate_after_s`` after its last real activity,
and it is started again when something about its symbol arrives (a signal, an order of ours
on the exchange). Here a real :class:`~supervision.sync.SyncService` runs on its own thread
over the in-memory exchange; the actors' time is a manual clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.messages import CloseRequest, MarkPriceTick
from actors.model import CloseReason, Key, OrderKind, Status
from actors.ports import OrderRequest
from actors.state import Policy, Reentry
from supervision.sync import SyncService
from testkit.waiting import poll
from testkit.world import ACCOUNT, World, signal

pytestmark = pytest.mark.timeout(60)

SYMBOLS = [f"S{i}USDT" for i in range(6)]
HELD = Key(ACCOUNT, SYMBOLS[0])
CLOSED = [Key(ACCOUNT, s) for s in SYMBOLS[1:]]


@pytest.fixture
def world() -> Iterator[World]:
    with World(prices=dict.fromkeys(SYMBOLS, 100.0), policy=Policy(reentry=Reentry.ALLOW)) as w:
        yield w


@pytest.fixture
def sync(world: World) -> Iterator[SyncService]:
    """The real sync service over the world's exchange; the test starts it."""
    svc = SyncService(
        {ACCOUNT: world.exchange},
        world.sup.tell,
        world.sup.keys,
        interval_s=0.01,
        clock=world.clock.now,
    )
    try:
        yield svc
    finally:
        svc.stop()


def _rounds(w: World, sync: SyncService, n: int) -> None:
    """Wait for ``n`` more sync rounds, then until every actor has handled what they told
    (an ask queues behind the observations already in each mailbox)."""
    target = sync.rounds + n
    poll(lambda: sync.rounds >= target, 10.0, f"{n} sync rounds")
    for key in w.sup.keys():
        w.sup.state(key)


def _ticks(w: World, price: float) -> None:
    now = w.clock.now()
    for s in SYMBOLS:
        w.sup.tell_tick(MarkPriceTick(Key(ACCOUNT, s), price, now, received_at=now))


def _open_then_close(w: World) -> None:
    w.tell(*(signal(s, stop=90.0) for s in SYMBOLS))
    w.settle()
    w.tell(*(CloseRequest(k, CloseReason.MANUAL, "op") for k in CLOSED))
    w.settle()
    for k in CLOSED:
        st = w.sup.state(k)
        assert st.position is not None and st.position.status is Status.CLOSED
    held = w.sup.state(HELD).position
    assert held is not None and held.status is Status.ACTIVE


def test_idle_actors_passivate_on_time_whatever_the_sync_and_the_ticks_do(
    world: World, sync: SyncService
) -> None:
    w = world
    _open_then_close(w)
    sync.start()
    _rounds(w, sync, 2)
    w.clock.advance(w.sup.config.passivate_after_s + 1.0)
    # After the clock moved: "nothing here" observations and mark prices reach every actor.
    _ticks(w, 101.0)
    _rounds(w, sync, 3)
    _ticks(w, 102.0)
    _rounds(w, sync, 1)
    assert w.sup.passivate_idle() == len(CLOSED)
    poll(lambda: set(w.sup.keys()) == {HELD}, 10.0, "closed symbols passivated")

    # The sync and the ticks go on; neither starts a passivated actor again.
    before = w.sup.ticks_without_actor
    for price in (103.0, 104.0, 105.0):
        _ticks(w, price)
        _rounds(w, sync, 2)
    assert set(w.sup.keys()) == {HELD}
    assert w.sup.ticks_without_actor - before == 3 * len(CLOSED)
    sizes = w.sup.structure_sizes()
    assert (sizes["actors"], sizes["cells"], sizes["tick_slots"]) == (1, 1, 1)
    assert w.sup.passivate_idle() == 0  # the open position's actor stays

    # Something about a passivated symbol arrives: its actor starts again and acts.
    w.tell(signal(CLOSED[0].symbol, stop=90.0))
    poll(lambda: CLOSED[0] in w.sup.keys(), 10.0, "actor started by a signal")

    def protected() -> bool:
        pos = w.sup.state(CLOSED[0]).position
        return pos is not None and pos.status is Status.ACTIVE

    poll(protected, 10.0, "a new position, protected")  # (no settle: the sync keeps telling)


def test_an_order_of_ours_on_a_passivated_symbol_starts_its_actor_and_is_swept(
    world: World, sync: SyncService
) -> None:
    w = world
    _open_then_close(w)
    sync.start()
    w.clock.advance(w.sup.config.passivate_after_s + 1.0)
    _rounds(w, sync, 2)
    assert w.sup.passivate_idle() == len(CLOSED)
    poll(lambda: set(w.sup.keys()) == {HELD}, 10.0, "closed symbols passivated")
    # A stop of ours that no open position needs appears on a passivated symbol.
    orphan = CLOSED[1]
    w.exchange.stream = False  # no order update: only the sync can tell
    w.exchange.place_order(
        OrderRequest(orphan, "ps9999s1", OrderKind.STOP_LOSS, "sell", 1.0, 80.0, True, True)
    )
    poll(lambda: orphan in w.sup.keys(), 10.0, "the sync started the actor again")
    poll(lambda: not w.exchange.open_orders(orphan.symbol), 10.0, "the orphan is cancelled")
    assert set(w.sup.keys()) == {HELD, orphan}
