"""End to end: the real supervisor and actors, the ccxt adapter, the sim over HTTP.

Store: the in-memory store (the PostgreSQL one is tested elsewhere). Clock: the real one,
with the supervisor's timer thread running. Order updates come only from REST replies,
lookups and the sync (no WebSocket feed here). Waits poll ``sup.state(key)`` with deadlines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from actors.messages import OpenSignal
from actors.model import CloseReason, Key, OrderKind, OrderState, Side, Status
from actors.ports import SystemClock
from actors.state import Policy, Position, Reentry
from infra.exchange import CcxtExchange
from sim import SimExchange
from supervision.supervisor import Supervisor, SupervisorConfig
from supervision.sync import SyncService
from testkit.store import InMemoryStore
from tests.exchange.conftest import ACCOUNT, KEY, SYMBOL, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

UNIFIED = "BTC/USDT:USDT"


@dataclass
class Live:
    sim: SimExchange
    exchange: CcxtExchange
    store: InMemoryStore
    sup: Supervisor
    sync: SyncService

    def position(self, key: Key = KEY) -> Position | None:
        return self.sup.state(key).position

    def wait_status(self, status: Status, key: Key = KEY, timeout: float = 10.0) -> Position:
        def reached() -> Position | None:
            pos = self.position(key)
            return pos if pos is not None and pos.status is status else None

        pos: Position = wait_until(reached, timeout, 0.02, f"{key} reaches {status.value}")
        return pos

    def entries_sent(self) -> int:
        return sum(1 for e in self.sim.order_log() if e.endpoint == "order" and e.symbol == SYMBOL)


@pytest.fixture
def live(sim: SimExchange, exchange: CcxtExchange) -> Iterator[Live]:
    store = InMemoryStore()
    sup = Supervisor(
        store,
        {ACCOUNT: exchange},
        SystemClock(),
        config=SupervisorConfig(policy=Policy(reentry=Reentry.ALLOW), shutdown_grace_s=5.0),
    )
    sync = SyncService({ACCOUNT: exchange}, sup.tell, sup.keys, clock=time.time)
    sup.start()
    try:
        yield Live(sim, exchange, store, sup, sync)
    finally:
        assert sup.stop(grace_s=5.0), "supervisor did not stop cleanly"


def signal(signal_id: str = "sig-1", size: float = 0.01, stop: float = 58000.0) -> OpenSignal:
    return OpenSignal(KEY, signal_id, "sniper", Side.LONG, size, stop)


def assert_protected(live: Live, pos: Position) -> None:
    sl = pos.latest(OrderKind.STOP_LOSS)
    assert sl is not None and sl.state is OrderState.ACCEPTED
    resting = [o for o in live.sim.open_orders() if o.client_id == sl.client_id]
    assert len(resting) == 1
    assert resting[0].kind == "algo" and resting[0].close_position
    assert resting[0].trigger_price == pytest.approx(pos.stop_price, rel=1e-4)


def test_signal_to_protected_position(live: Live) -> None:
    """(a) signal -> entry through ccxt -> fill -> stop-loss placed and confirmed -> active."""
    live.sup.tell(signal())
    pos = live.wait_status(Status.ACTIVE)
    assert pos.qty == pytest.approx(0.01)
    assert pos.entry_price == pytest.approx(60000.0)
    entry = pos.latest(OrderKind.ENTRY)
    assert entry is not None and entry.state is OrderState.FILLED and entry.exchange_id
    assert live.sim.orders_sent(entry.client_id) == 1
    assert_protected(live, pos)
    assert live.sim.positions()[SYMBOL].qty == pytest.approx(0.01)
    (stored,) = live.store.positions(KEY)
    assert stored.status is Status.ACTIVE


def test_s3_entry_in_flight_and_sync_at_the_same_instant(live: Live) -> None:
    """(b) S3 with a latency fault: the sync runs while the entry request is delayed."""
    live.sim.add_fault("latency", latency_s=0.5, path="/fapi/v1/order", method="POST")
    live.sup.tell(signal())
    wait_until(lambda: live.entries_sent() == 1, 5.0, 0.005, "entry reached the sim")
    syncs = [threading.Thread(target=live.sync.sync_once, args=(ACCOUNT,)) for _ in range(2)]
    for t in syncs:
        t.start()
    for t in syncs:
        t.join(5.0)
    pos = live.wait_status(Status.ACTIVE)
    live.sync.sync_once(ACCOUNT)  # and once more after the fill: still the same position
    assert live.wait_status(Status.ACTIVE).id == pos.id
    assert len(live.store.positions(KEY)) == 1
    assert live.entries_sent() == 1
    assert live.sim.positions()[SYMBOL].qty == pytest.approx(0.01)
    assert_protected(live, pos)


def test_s3_sync_sees_the_fill_before_the_reply(live: Live) -> None:
    """(b') The field report's race: the order is filled, its reply is late, the sync runs."""
    live.sim.add_fault("timeout", hold_s=0.8, path="/fapi/v1/order", method="POST")
    live.sup.tell(signal())
    wait_until(lambda: SYMBOL in live.sim.positions(), 5.0, 0.005, "entry filled on the sim")
    assert live.sync.sync_once(ACCOUNT) == 1  # the reply is still held by the exchange
    pos = live.wait_status(Status.ACTIVE)
    entry = pos.latest(OrderKind.ENTRY)
    assert entry is not None
    fills = [ev for ev in live.store.journal(KEY) if ev.kind == "entry_fill"]
    assert [ev.detail.get("via") for ev in fills] == ["sync"]  # the sync saw it first
    # The late reply arrives (a duplicate report of the same fill): nothing doubles.
    assert live.sup.drain_calls(5.0), "entry call still in flight"
    assert len(live.store.positions(KEY)) == 1
    assert live.entries_sent() == 1
    assert live.sim.positions()[SYMBOL].qty == pytest.approx(0.01)
    assert live.wait_status(Status.ACTIVE).qty == pytest.approx(0.01)
    assert_protected(live, pos)


def test_unknown_entry_outcome_is_resolved_by_lookup(live: Live) -> None:
    """503/-1007 after the order executed: UNKNOWN, then a lookup by client id finds it."""
    live.sim.add_fault("http_503", path="/fapi/v1/order", method="POST")
    live.sup.tell(signal())
    pos = live.wait_status(Status.ACTIVE)
    entry = pos.latest(OrderKind.ENTRY)
    assert entry is not None
    assert live.sim.orders_sent(entry.client_id) == 1
    assert live.entries_sent() == 1
    assert_protected(live, pos)


def test_position_opened_elsewhere_is_adopted_and_protected(live: Live, outsider: Any) -> None:
    """(c) a position opened on the exchange by someone else: the sync adopts and protects."""
    outsider.create_order(UNIFIED, "market", "buy", 0.02)
    assert live.sync.sync_once(ACCOUNT) == 1
    pos = live.wait_status(Status.ACTIVE)
    assert pos.source == "sync"
    assert pos.qty == pytest.approx(0.02)
    assert pos.stop_price == pytest.approx(60000.0 * (1 - Policy().default_stop_pct))
    assert_protected(live, pos)
    ours = [e for e in live.sim.order_log() if e.client_id.startswith("ps")]
    assert [e.endpoint for e in ours] == ["algoOrder"]


def test_adopted_position_whose_stop_would_trigger_is_closed(live: Live, outsider: Any) -> None:
    """The exchange refuses the stop with -2021 (would trigger): the actor closes at market."""
    outsider.create_order(UNIFIED, "market", "buy", 0.02)
    live.sim.set_price(SYMBOL, 58000.0)  # below the adoption stop (entry - 2 %)
    live.sync.sync_once(ACCOUNT)
    pos = live.wait_status(Status.CLOSED)
    assert pos.close_reason is CloseReason.EMERGENCY
    assert SYMBOL not in live.sim.positions()
    codes = [e.code for e in live.sim.order_log() if e.endpoint == "algoOrder"]
    assert codes == [-2021]


def test_position_closed_on_the_exchange_is_seen_by_the_sync(live: Live, outsider: Any) -> None:
    """(d) the position is closed on the exchange (by hand): the sync closes ours."""
    live.sup.tell(signal())
    live.wait_status(Status.ACTIVE)
    outsider.create_order(UNIFIED, "market", "sell", 0.01, None, {"reduceOnly": True})
    assert SYMBOL not in live.sim.positions()
    live.sync.sync_once(ACCOUNT)
    pos = live.wait_status(Status.CLOSED)
    assert pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE
    # The stop-loss left behind is canceled by the actor.
    wait_until(lambda: live.sim.open_orders() == [], 5.0, 0.02, "stop canceled")
    (stored,) = live.store.positions(KEY)
    assert stored.status is Status.CLOSED


def test_a_streamed_mark_price_and_cached_rules_need_no_rest_round_trip(live: Live) -> None:
    """The first tick of a symbol brings the market's rules the adapter holds (loaded with
    the markets): a signal arriving with a fresh streamed price is decided and its entry sent
    without asking the exchange for the mark price and rules (``premiumIndex``)."""
    from actors.messages import MarkPriceTick

    assert live.exchange.cached_market_rules(SYMBOL) is not None
    before = live.sim.limits.snapshot()["by_path"].get("GET /fapi/v1/premiumIndex", 0)
    live.sup.tell_tick(MarkPriceTick(KEY, 60_000.0, time.time(), received_at=time.time()))
    live.sup.tell(signal())
    live.wait_status(Status.ACTIVE)
    after = live.sim.limits.snapshot()["by_path"].get("GET /fapi/v1/premiumIndex", 0)
    assert after == before
