"""Scenarios S1–S8 (README, "How the races are removed") on the whole product, on every venue.

The in-memory variants (``test_seeds.py``) prove the design with messages into actors; these
run the product as shipped on each venue of :data:`tests.venues.VENUES`: the
:class:`~supervision.app.App` with the embedded PostgreSQL, the real ccxt over HTTP and the
real websocket-client on the sim speaking that venue's wire (Binance USD-M or Bybit v5), the
account's exchange streams and sync, and signals from a strategy server (the sim's signal
feed) answered on the feed. Every count that matters is read from the exchange's own books
(the sim's order log, positions and resting orders), not from the product's state. S5 (a
crash, then recovery before new entries) is ``tests/store/test_recovery.py``, parametrised
over the venues the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors.model import CloseReason, Status
from actors.state import Position
from infra.config import parse_config
from infra.store import PostgresStore
from sim import SimExchange
from sim.signals import SignalFeed
from sim.symbols import DEFAULT_SYMBOLS
from supervision.app import App
from testkit.waiting import poll
from tests.venues import ENTRY_IDS, STOP_IDS, VENUES, executed, make_sim, resting_stops, sent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ACCOUNT = "main"
TOKEN = "live-scenarios-token"
SOURCES = ("sniper", "whale_copy", "trending", "volume")
#: Order sizes over the exchange's minimum notional (5 USDT) at the sim's start prices.
SIZE = {
    "BTCUSDT": 0.01,
    "ETHUSDT": 0.1,
    "BNBUSDT": 1.0,
    "SOLUSDT": 2.0,
    "XRPUSDT": 500.0,
    "DOGEUSDT": 90.0,
    "ADAUSDT": 30.0,
}


@dataclass
class Live:
    """One venue's sim and signal feed, the product (restartable) on a fresh database."""

    venue: str
    sim: SimExchange
    feed: SignalFeed
    dsn: str
    workdir: Path
    risk: dict[str, Any] = field(default_factory=dict)
    app: App | None = None
    store: PostgresStore | None = None

    def start(self) -> App:
        doc: dict[str, Any] = {
            "accounts": {
                ACCOUNT: {
                    "exchange": self.venue,
                    "rest_url": self.sim.base_url,
                    "ws_url": self.sim.ws_url,
                    "symbols": list(DEFAULT_SYMBOLS),
                    "credentials": "dummy",
                    "enable_rate_limit": False,
                    "timeout_s": 3.0,
                }
            },
            "database": {"dsn": self.dsn},
            "metrics": {"address": "127.0.0.1:0"},
            "sync": {"interval_s": 0.3},
            "supervisor": {"shutdown_grace_s": 5.0},
            "signal_policy": {"reentry": "allow"},
            "risk": dict(self.risk),
            "feeds": {"signal_url": self.feed.url},
        }
        app = self.app = App(parse_config(doc, {"PS_FEED_TOKEN": TOKEN}))
        try:
            app.start()
        except BaseException:
            app.shutdown()
            self.app = None
            raise
        assert self.feed.wait_for_clients(1, 30.0), "the product did not connect to the feed"
        if self.store is None:
            self.store = PostgresStore(self.dsn, migrate_schema=False)
        return app

    def stop(self) -> None:
        app, self.app = self.app, None
        if app is not None:
            assert app.shutdown(), "the product did not stop cleanly"
            assert self.feed.wait_for_no_clients(10.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def send(self, symbol: str, sid: str, source: str = "sniper", stop_pct: float = 0.02) -> None:
        price = self.sim.mark_price(symbol)
        self.feed.send_signal(
            {
                "signal_id": sid,
                "source": source,
                "account": ACCOUNT,
                "symbol": symbol,
                "side": "long",
                "size": SIZE[symbol],
                "stop_loss": round(price * (1 - stop_pct), 6),
                "created_at": time.time(),
            }
        )

    def ack(self, sid: str, timeout: float = 20.0) -> dict[str, Any]:
        got = self.feed.wait_for_ack(sid, timeout)
        assert got is not None, f"signal {sid} not answered in {timeout}s"
        return got

    def positions(self, symbol: str) -> list[Position]:
        assert self.store is not None
        return [p for p in self.store.positions(ACCOUNT) if p.key.symbol == symbol]

    def wait(self, symbol: str, cond: Callable[[list[Position]], bool], what: str) -> None:
        seen: list[list[Position]] = [[]]

        def reached() -> bool:
            seen[0] = self.positions(symbol)
            return cond(seen[0])

        try:
            poll(reached, 30.0, what, 0.05)
        except AssertionError:
            tail = [e for e in self.sim.order_log() if e.symbol == symbol][-10:]
            raise AssertionError(f"{what}: {seen[0]}; orders: {tail}") from None

    def protected(self, symbol: str) -> bool:
        """On the exchange: a position on ``symbol`` with exactly one stop of ours resting,
        and the database agreeing (active, the stop confirmed)."""
        on_exchange = self.sim.positions().get(symbol)
        ours = [p for p in self.positions(symbol) if not p.status.terminal]
        return (
            on_exchange is not None
            and len(resting_stops(self.sim, symbol)) == 1
            and len(ours) == 1
            and ours[0].status is Status.ACTIVE
            and ours[0].stop_confirmed
            and abs(ours[0].qty - abs(on_exchange.qty)) < 1e-9
        )

    def wait_protected(self, symbol: str) -> None:
        try:
            poll(lambda: self.protected(symbol), 30.0, f"{symbol} protected", 0.05)
        except AssertionError:
            raise AssertionError(
                f"{symbol} not protected: db {self.positions(symbol)}, exchange"
                f" {self.sim.positions().get(symbol)}, stops {resting_stops(self.sim, symbol)}"
            ) from None


@pytest.fixture(params=VENUES)
def live(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> Iterator[Live]:
    venue: str = request.param
    with make_sim(venue, DEFAULT_SYMBOLS) as sim, SignalFeed(token=TOKEN) as feed:
        lv = Live(venue, sim, feed, pg_dsn, tmp_path)
        try:
            yield lv
        finally:
            lv.stop()
            if lv.store is not None:
                lv.store.close()


def test_s1_four_sources_one_entry_and_the_history_survives_a_restart(live: Live) -> None:
    """Four strategy modules signal the same token, a failed buy is not "bought", and the
    decided ids are still known after a restart."""
    sym = "BTCUSDT"
    live.start()
    live.sim.add_fault("reject_2019", symbol=sym, client_id=ENTRY_IDS)
    live.send(sym, "s1-first")
    assert live.ack("s1-first")["outcome"] == "accepted"
    live.wait(sym, lambda ps: [p.status for p in ps] == [Status.FAILED], "the first entry failed")
    assert executed(live.sim, ENTRY_IDS, sym) == 0
    assert sym not in live.sim.positions()

    for s in SOURCES:
        live.send(sym, f"s1-burst-{s}", source=s)
    outcomes = {s: live.ack(f"s1-burst-{s}")["outcome"] for s in SOURCES}
    assert sorted(outcomes.values()) == ["accepted", "duplicate", "duplicate", "duplicate"]
    live.wait_protected(sym)
    assert executed(live.sim, ENTRY_IDS, sym) == 1

    live.restart()
    (accepted,) = (s for s, o in outcomes.items() if o == "accepted")
    live.feed.acks.pop(f"s1-burst-{accepted}")
    live.send(sym, f"s1-burst-{accepted}", source=accepted)
    replay = live.ack(f"s1-burst-{accepted}")
    assert replay["replay"] is True and replay["outcome"] == "accepted"
    live.wait_protected(sym)
    assert executed(live.sim, ENTRY_IDS, sym) == 1, "a replayed id bought again"
    assert [p.status for p in live.positions(sym)] == [Status.FAILED, Status.ACTIVE]


def test_s2_identical_signals_at_once_make_one_position(live: Live) -> None:
    sym = "ETHUSDT"
    live.start()
    start = threading.Barrier(6)

    def fire(i: int) -> None:
        start.wait()
        live.send(sym, "s2-same")
        live.send(sym, f"s2-twin-{i}", source="whale_copy")

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    outcomes = [live.ack(f"s2-twin-{i}")["outcome"] for i in range(6)]
    outcomes.append(live.ack("s2-same")["outcome"])
    assert outcomes.count("accepted") == 1, outcomes
    live.wait_protected(sym)
    assert len(live.positions(sym)) == 1
    assert executed(live.sim, ENTRY_IDS, sym) == 1


def test_s3_the_sync_sees_the_fill_before_the_reply_and_no_second_row(live: Live) -> None:
    sym = "BNBUSDT"
    live.start()
    # The entry executes at once; its reply is held 1.5 s (five syncs run meanwhile).
    live.sim.add_fault("timeout", hold_s=1.5, symbol=sym, client_id=ENTRY_IDS)
    live.send(sym, "s3")
    assert live.ack("s3")["outcome"] == "accepted"
    live.wait_protected(sym)
    assert len(live.positions(sym)) == 1
    assert executed(live.sim, ENTRY_IDS, sym) == 1


def test_s4_a_failed_entry_ends_failed_flat_and_a_retry_is_a_new_attempt(live: Live) -> None:
    sym = "SOLUSDT"
    live.start()
    live.sim.add_fault("reject_2019", symbol=sym, client_id=ENTRY_IDS)
    live.send(sym, "s4-first")
    live.wait(sym, lambda ps: [p.status for p in ps] == [Status.FAILED], "failed")
    (failed,) = live.positions(sym)
    assert failed.fail_reason == "rejected:insufficient_funds"
    assert sym not in live.sim.positions()
    live.send(sym, "s4-retry")
    live.wait_protected(sym)
    first, retry = live.positions(sym)
    assert retry.id != first.id
    tried = {e.client_id for e in sent(live.sim, ENTRY_IDS, sym)}
    assert len(tried) == 2, tried
    assert executed(live.sim, ENTRY_IDS, sym) == 1


def test_s6_the_intent_is_committed_first_and_the_actor_answers_while_the_order_is_out(
    live: Live,
) -> None:
    sym = "XRPUSDT"
    live.start()
    live.sim.add_fault("latency", latency_s=2.0, symbol=sym, client_id=ENTRY_IDS)
    live.send(sym, "s6-a")
    poll(lambda: any(e.symbol == sym for e in live.sim.order_log()), 10.0, "entry sent")
    # The order is on its way (held 2 s by the exchange): the intent is already durable,
    # and the actor answers another signal at once.
    assert [p.status for p in live.positions(sym)] == [Status.PENDING_ENTRY]
    live.send(sym, "s6-b", source="trending")
    second = live.ack("s6-b", timeout=1.5)
    assert (second["outcome"], second["reason"]) == ("duplicate", "position_open")
    assert executed(live.sim, ENTRY_IDS, sym) == 0, "the entry was not still in flight"
    live.wait_protected(sym)
    assert executed(live.sim, ENTRY_IDS, sym) == 1


def test_s7_fills_on_the_stream_before_the_reply_are_all_applied(live: Live) -> None:
    sym = "DOGEUSDT"
    live.start()
    # Three parts: the first with the reply, the others on the account's stream only.
    live.sim.add_fault("partial_fill", parts=3, part_interval_s=0.2, symbol=sym)
    live.send(sym, "s7")
    poll(
        lambda: abs(getattr(live.sim.positions().get(sym), "qty", 0.0) - SIZE[sym]) < 1e-9,
        15.0,
        "all three parts filled on the exchange",
    )
    live.wait_protected(sym)
    (pos,) = live.positions(sym)
    assert pos.qty == pytest.approx(SIZE[sym])
    assert executed(live.sim, ENTRY_IDS, sym) == 1


def test_s8_a_fill_whose_stop_is_refused_is_closed(live: Live) -> None:
    sym = "ADAUSDT"
    live.risk = {"sl_max_attempts": 3}
    live.start()
    live.sim.add_fault("busy", symbol=sym, client_id=STOP_IDS, count=3, retry_after_s=1)
    live.send(sym, "s8")
    live.wait(
        sym,
        lambda ps: (
            [(p.status, p.close_reason) for p in ps] == [(Status.CLOSED, CloseReason.EMERGENCY)]
        ),
        "closed at market after three refused stops",
    )
    assert sym not in live.sim.positions(), "the exchange still holds the position"
    stops = sent(live.sim, STOP_IDS, sym)
    assert [e.outcome for e in stops].count("accepted") == 0, stops
    assert len(stops) == 3, stops
    assert resting_stops(live.sim, sym) == []


def test_every_venue_the_product_knows_runs_the_scenarios() -> None:
    """A third venue added to the product without a sim here would skip every scenario."""
    from infra.exchange import VENUES as PRODUCT_VENUES

    assert set(VENUES) == set(PRODUCT_VENUES)
