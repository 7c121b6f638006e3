"""I9 end to end: nothing of ours is left behind, nothing is re-placed on a lagging list, and a
position is closed by what closed it. Real supervisor and actors, the real ccxt adapter over
HTTP to the sim, the sync running; order updates come from REST replies, lookups and the
sync only (no user stream here), so the sync's view is what the actor must get right.

Observed before the fix: a 429 on one cancel left a replaced stop resting, recorded
cancelled; it flattened a later position on the symbol. With open-order lists lagging 3 s the
sync placed a fresh stop 197 times in 55 s. Positions closed by their own stop were recorded
``closed_on_exchange`` when the sync saw them flat before the stream's event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from actors.messages import CloseRequest, OpenSignal
from actors.model import CloseReason, OrderKind, OrderState, Side, Status
from actors.ports import SystemClock
from actors.state import Policy, Position, Reentry
from infra.exchange import CcxtExchange
from sim import SimExchange
from sim.faults import CANCEL_PATHS
from supervision.supervisor import Supervisor, SupervisorConfig
from supervision.sync import SyncService
from testkit.store import InMemoryStore
from tests.exchange.conftest import ACCOUNT, KEY, SYMBOL, sim_config, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

POLICY = Policy(
    reentry=Reentry.ALLOW,
    cooldown_s=0.0,
    cancel_retry_delay_s=0.2,
    stop_grace_s=1.0,
    flat_confirm_s=1.0,
    mark_wait_s=20.0,
)


@dataclass
class Live:
    sim: SimExchange
    sup: Supervisor
    sync: SyncService
    other: CcxtExchange  # another client on the account (a person at the exchange's UI)

    def position(self) -> Position | None:
        return self.sup.state(KEY).position

    def wait(self, what: str, cond: object, timeout: float = 15.0) -> Position:
        def ok() -> Position | None:
            p = self.position()
            return p if p is not None and cond(p) else None  # type: ignore[operator]

        found: Position = wait_until(ok, timeout, 0.02, what)
        return found

    def stops_resting(self) -> list[str]:
        return [o.client_id for o in self.sim.open_orders() if o.kind == "algo"]

    def syncs(self, n: int) -> None:
        """Wait until ``n`` more sync rounds went by (the sync runs every 0.2 s)."""
        target = self.sync.rounds + n
        wait_until(lambda: self.sync.rounds >= target, n * 0.2 + 10.0, 0.05, f"{n} syncs")

    def stop_placements(self) -> list[str]:
        return [e.client_id for e in self.sim.order_log() if e.endpoint == "algoOrder"]


@pytest.fixture
def live(sim: SimExchange) -> Iterator[Live]:
    exchange = CcxtExchange(ACCOUNT, sim_config(sim, retry_after_s=0.2))
    other = CcxtExchange(ACCOUNT, sim_config(sim))
    sup = Supervisor(
        InMemoryStore(),
        {ACCOUNT: exchange},
        SystemClock(),
        config=SupervisorConfig(policy=POLICY, shutdown_grace_s=5.0),
    )
    sync = SyncService({ACCOUNT: exchange}, sup.tell, sup.keys, interval_s=0.2, clock=time.time)
    sup.start()
    sync.start()
    try:
        yield Live(sim, sup, sync, other)
    finally:
        sync.stop()
        assert sup.stop(grace_s=5.0), "supervisor did not stop cleanly"
        exchange.close()
        other.close()


def _open(live: Live, sid: str, stop_price: float = 58_000.0) -> Position:
    live.sup.tell(OpenSignal(KEY, sid, "sniper", Side.LONG, 0.01, stop_price))
    return live.wait(f"{sid} protected", lambda p: p.signal_id == sid and p.stop_confirmed)


def test_a_stop_whose_cancel_meets_429s_is_cancelled_before_the_next_entry(live: Live) -> None:
    first = _open(live, "one")
    live.sim.add_fault("http_429", path=CANCEL_PATHS, method="DELETE", retry_after_s=1, count=3)
    live.sup.tell(CloseRequest(KEY, CloseReason.MANUAL, "operator"))
    closed = live.wait("first closed", lambda p: p.id == first.id and p.status is Status.CLOSED)
    old_stop = closed.latest(OrderKind.STOP_LOSS)
    assert old_stop is not None
    # The cancel was refused: the stop is not recorded cancelled while it rests.
    if old_stop.client_id in live.stops_resting():
        assert old_stop.state is OrderState.PENDING_CANCEL
    live.sup.tell(OpenSignal(KEY, "two", "sniper", Side.LONG, 0.01, 58_000.0))
    second = live.wait("second protected", lambda p: p.signal_id == "two" and p.stop_confirmed)
    # When the second entry was sent, the first position's stop was gone from the exchange.
    log = live.sim.order_log()
    entry_at = next(e.seq for e in log if e.client_id == f"ps{second.id}e1")
    cancels = [f for f in live.sim.list_faults() if f.kind == "http_429"]
    assert cancels == []  # every 429 was met: the cancel was retried through them
    assert old_stop.client_id not in live.stops_resting()
    assert live.stops_resting() == [f"ps{second.id}s1"]
    assert all(e.seq < entry_at for e in log if e.client_id == old_stop.client_id)
    first_now = live.sup.state(KEY).position
    assert first_now is not None and first_now.id == second.id


def test_the_sync_cancels_a_resting_order_of_ours_that_no_position_needs(live: Live) -> None:
    pos = _open(live, "one")
    reply = live.other.place_order(stop("ps999s1", 57_000.0))  # a leftover nobody knows
    assert reply.result.value == "accepted"
    wait_until(lambda: "ps999s1" not in live.stops_resting(), 10.0, 0.05, "orphan cancelled")
    assert live.stops_resting() == [f"ps{pos.id}s1"]  # the live stop stays


def test_lagging_open_order_lists_do_not_make_the_sync_place_stops(live: Live) -> None:
    live.sim.add_fault("lag_open_orders", lag_s=3.0, count=None)
    pos = _open(live, "one")
    # Thirty sync rounds (every 0.2 s), the first fifteen of which do not list the new stop.
    live.syncs(30)
    assert live.stop_placements() == [f"ps{pos.id}s1"]  # so never two resting at once
    # A real loss: someone cancels the stop at the exchange. One re-placement, no more.
    assert live.other.cancel_order(KEY, f"ps{pos.id}s1", True).status == "canceled"
    again = live.wait("protected again", lambda p: p.stop_seq == 2 and p.stop_confirmed)
    live.syncs(25)
    assert live.stop_placements() == [f"ps{pos.id}s1", f"ps{again.id}s2"]
    assert live.stops_resting() == [f"ps{again.id}s2"]


def test_a_position_closed_by_its_stop_is_recorded_so_when_the_sync_sees_it_first(
    live: Live,
) -> None:
    pos = _open(live, "one", stop_price=59_000.0)
    live.sim.set_price(SYMBOL, 58_500.0)  # the stop triggers on the exchange
    closed = live.wait("closed", lambda p: p.id == pos.id and p.status is Status.CLOSED)
    assert closed.close_reason is CloseReason.STOP_LOSS
    assert live.sim.positions().get(SYMBOL) is None
