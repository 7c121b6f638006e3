"""PostgreSQL stops and starts under a running supervisor (real store, ccxt, sim).

While it is down: no new entry starts (its intent cannot be written; the signal is refused
``store_unavailable`` at once, never decided late), the open position keeps
its stop on the exchange, the actor keeps handling ticks, and a close goes ahead (protection
beats write-ahead). When it is back: the transitions written meanwhile land, nothing
committed before is lost, and entries start again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from actors.messages import CloseRequest, MarkPriceTick, OpenSignal
from actors.model import CloseReason, Key, Side, Status
from actors.ports import SystemClock
from actors.state import Policy, Reentry, SignalRecord
from infra.exchange import CcxtExchange, VenueConfig
from infra.store import EmbeddedPostgres, PostgresStore
from sim import SimExchange
from supervision.restart import RestartPolicy
from supervision.supervisor import Supervisor, SupervisorConfig
from testkit.waiting import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ACCOUNT = "main"
BTC = Key(ACCOUNT, "BTCUSDT")
ETH = Key(ACCOUNT, "ETHUSDT")


def _until(cond: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    poll(cond, timeout, what, 0.02)


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    with SimExchange({"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}, seed=3) as s:
        yield s


def test_an_outage_stops_entries_keeps_protection_and_loses_nothing(
    pg_private: tuple[EmbeddedPostgres, str], sim: SimExchange
) -> None:
    server, dsn = pg_private
    store = PostgresStore(dsn, migrate_schema=False, pool_max=4, timeout=1.0)
    exchange = CcxtExchange(
        ACCOUNT,
        VenueConfig(base_url=sim.base_url, require_credentials=False, enable_rate_limit=False),
    )
    sup = Supervisor(
        store,
        {ACCOUNT: exchange},
        SystemClock(),
        config=SupervisorConfig(
            policy=Policy(reentry=Reentry.ALLOW),
            shutdown_grace_s=2.0,
            # strict, so that counting the outage as crashes would quarantine ETH at once
            restart=RestartPolicy(max_restarts=1, window_s=60.0, min_backoff_s=0.05),
        ),
    )
    decided: list[SignalRecord] = []
    sup.signal_listeners.append(decided.append)
    sup.start()
    try:
        sup.tell(OpenSignal(BTC, "btc-1", "sniper", Side.LONG, 0.01, 58_000.0))

        def active(key: Key) -> bool:
            p = sup.state(key).position
            return p is not None and p.status is Status.ACTIVE and p.stop_confirmed

        _until(lambda: active(BTC), "BTC protected")
        before = [e.event.kind for e in store.journal(ACCOUNT, "BTCUSDT")]

        server.stop(mode="fast")
        # No new entry: its intent cannot be written.
        sup.tell(OpenSignal(ETH, "eth-1", "sniper", Side.LONG, 0.1, 2_900.0))
        # The open position keeps its stop on the exchange; ticks are still handled.
        assert any(o.kind == "algo" and o.symbol == "BTCUSDT" for o in sim.open_orders())
        sup.tell_tick(MarkPriceTick(BTC, 60_123.0, time.time()))
        _until(lambda: sup.state(BTC).last_price == 60_123.0, "tick handled while down")
        # A close goes ahead although it cannot be written now.
        sup.tell(CloseRequest(BTC, CloseReason.MANUAL, "operator"))
        _until(lambda: "BTCUSDT" not in sim.positions(), "closed on the exchange while down")
        pos = sup.state(BTC).position
        assert pos is not None and pos.status is Status.CLOSED
        # Several seconds of outage: still no entry order for the signal that came meanwhile.
        assert not [e for e in sim.order_log() if e.symbol == "ETHUSDT"]
        assert sup.state(ETH).position is None

        server.start()

        def written() -> bool:
            try:
                btc = [p for p in store.positions(ACCOUNT) if p.key == BTC]
            except Exception:
                return False
            return [p.status for p in btc] == [Status.CLOSED]

        _until(written, "the close written once the database is back", timeout=30)
        after = [e.event.kind for e in store.journal(ACCOUNT, "BTCUSDT")]
        assert after[: len(before)] == before, "something committed before the outage was lost"
        assert "closing" in after and "closed" in after
        # The signal that came during the outage was refused then (no entry decided late,
        # B6), as a refusal that allows a retry; sent again now, it opens. The outage did
        # not count as crashes of the symbol (no quarantine).
        eth_answers = [(r.outcome.value, r.reason, r.retry) for r in decided if r.key == ETH]
        assert eth_answers == [("rejected", "store_unavailable", True)]
        sup.tell(OpenSignal(ETH, "eth-1", "sniper", Side.LONG, 0.1, 2_900.0))
        _until(lambda: active(ETH), "ETH protected after the outage")
        assert not sup.state(ETH).quarantined
        eth = [p for p in store.positions(ACCOUNT) if p.key == ETH]
        assert len(eth) == 1 and eth[0].signal_id == "eth-1"
    finally:
        sup.stop(grace_s=2.0)
        exchange.close()
        store.close()
