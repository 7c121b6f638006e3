"""The account's request limiter (``infra.exchange.limits``) against the sim enforcing
Binance's limits, through the real ccxt over HTTP.

The sims here publish small limits (orders per 2 s) in their ``exchangeInfo`` so that a
window passes quickly; the adapter reads them from there, as it reads Binance's. Nothing is
asserted about how fast anything is: only what was sent, in which order, whether it waited,
and whether the exchange refused anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ccxt
import pytest

from actors.messages import CallResult
from actors.model import Key, OrderKind
from actors.ports import OrderRequest
from infra.exchange import BINANCE_USDM, CcxtExchange
from infra.exchange.limits import AccountLimiter, Cost, Limit, Priority, RateBudgetExhausted
from infra.feeds import ListenKeyError, ListenKeyMissing
from sim import SimExchange
from sim.limits import BINANCE_USDM as SIM_BINANCE
from sim.limits import RateLimit
from testkit.waiting import poll
from tests.exchange.conftest import ACCOUNT, sim_config, stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SMALL = (
    RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 2400),
    RateLimit("ORDERS", "SECOND", 2, 10),
    RateLimit("ORDERS", "MINUTE", 1, 1200),
)
SYMBOLS = [f"S{i:03d}USDT" for i in range(40)]


@pytest.fixture
def limited() -> Iterator[Callable[..., SimExchange]]:
    made: list[SimExchange] = []

    def make(limits: tuple[RateLimit, ...] = SMALL) -> SimExchange:
        sim = SimExchange(
            dict.fromkeys(SYMBOLS, 100.0),
            enforce_rate_limits=True,
            rate_limits=limits,
            wallet_usdt=1e9,
        ).start()
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.stop()


@pytest.fixture
def adapters() -> Iterator[Callable[..., CcxtExchange]]:
    made: list[CcxtExchange] = []

    def make(sim: SimExchange, **changes: Any) -> CcxtExchange:
        ex = CcxtExchange(ACCOUNT, sim_config(sim, enable_rate_limit=True, **changes))
        ex.load_markets()
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.close()


def entry_req(i: int) -> OrderRequest:
    side = "buy" if i % 2 == 0 else "sell"
    return OrderRequest(
        Key(ACCOUNT, SYMBOLS[i % len(SYMBOLS)]), f"ps{i}e1", OrderKind.ENTRY, side, 1
    )


def stop_req(i: int, symbol: str) -> OrderRequest:
    return OrderRequest(
        Key(ACCOUNT, symbol), f"ps{i}s1", OrderKind.STOP_LOSS, "sell", 1, 90.0, close_position=True
    )


def close_req(i: int, symbol: str) -> OrderRequest:
    return OrderRequest(
        Key(ACCOUNT, symbol), f"ps{i}c1", OrderKind.CLOSE, "sell", 1, reduce_only=True
    )


def test_the_limits_come_from_exchange_info(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange]
) -> None:
    ex = adapters(limited())
    assert ex.limiter is not None
    assert {(lim.kind, lim.window_s, lim.limit) for lim in ex.limiter.limits} == {
        ("REQUEST_WEIGHT", 60.0, 2400),
        ("ORDERS", 2.0, 10),
        ("ORDERS", 60.0, 1200),
    }


def test_a_burst_the_limits_allow_goes_out_without_waiting(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange]
) -> None:
    """100 orders on four threads under Binance's own limits (300 per 10 s): none waits,
    none refused. ccxt's throttle would have spaced them 200 ms apart."""
    sim = limited(SIM_BINANCE)
    ex = adapters(sim)
    assert ex.limiter is not None
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda i: ex.place_order(entry_req(i)), range(100)))
    assert all(r.result is CallResult.ACCEPTED for r in replies)
    assert ex.limiter.stats().waited == 0
    assert sim.limits.snapshot()["refused_total"] == 0
    assert sim.limits.snapshot()["orders"] == 100


def test_a_burst_over_the_limits_is_spread_without_a_single_429(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange]
) -> None:
    """25 stop-losses where 10 fit in 2 s: every one is accepted, some waited, the exchange
    refused none."""
    sim = limited()
    ex = adapters(sim)
    assert ex.limiter is not None
    for i in range(25):  # positions to protect, straight in the engine
        sim.seed([{"symbol": SYMBOLS[i], "side": "BUY", "qty": 1, "client_id": f"x{i}"}], [])
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda i: ex.place_order(stop_req(i, SYMBOLS[i])), range(25)))
    assert [r.result for r in replies] == [CallResult.ACCEPTED] * 25
    snap = sim.limits.snapshot()
    assert snap["refused_total"] == 0
    assert snap["peak"]["X-MBX-ORDER-COUNT-2S"] <= 10
    assert ex.limiter.stats().waited > 0


def test_the_syncs_reads_stay_under_the_weight_limit(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange]
) -> None:
    """A sync round costs 85 weight (positions 5, open orders and conditional orders without
    a symbol 40 each); with 300 a window, five rounds are spread, none refused."""
    sim = limited((RateLimit("REQUEST_WEIGHT", "SECOND", 2, 300), *SMALL[1:]))
    ex = adapters(sim)
    for _ in range(5):
        ex.fetch_account(ACCOUNT)
    snap = sim.limits.snapshot()
    assert snap["refused_total"] == 0
    assert snap["peak"]["X-MBX-USED-WEIGHT-2S"] <= 300
    assert ex.limiter is not None and ex.limiter.stats().waited > 0


def test_a_429_with_retry_after_is_honoured(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange]
) -> None:
    """After a 429 (Retry-After: 2) the next request, of any kind, leaves only once the two
    seconds have passed; the refused order is reported rate_limited with that back-off."""
    sim = limited()
    ex = adapters(sim)
    sim.add_fault("http_429", retry_after_s=2, path="/fapi/v1/order", method="POST")
    refused = ex.place_order(entry_req(0))
    assert (refused.result, refused.reason, refused.retry_after) == (
        CallResult.REJECTED,
        "rate_limited",
        2.0,
    )
    ok = ex.place_order(entry_req(1))
    assert ok.result is CallResult.ACCEPTED
    first, second = sim.order_log()
    assert first.outcome == "not_executed" and "http_429" in first.faults
    assert second.time - first.time >= 2.0
    assert ex.limiter is not None and ex.limiter.stats().blocked == 1


def test_stops_and_closes_go_before_entries_when_the_budget_is_short(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange]
) -> None:
    """Entries may use 80 % of the order budget: with 8 of 10 spent by entries, two more
    entries wait for the window while a stop-loss and a close that come after them go at
    once (protection first)."""
    sim = limited()
    ex = adapters(sim)
    for i in range(8):
        assert ex.place_order(entry_req(i)).result is CallResult.ACCEPTED
    sim.seed([{"symbol": "S039USDT", "side": "BUY", "qty": 2, "client_id": "x"}], [])
    waiting = [threading.Thread(target=ex.place_order, args=(entry_req(i),)) for i in (8, 9)]
    for t in waiting:
        t.start()
    assert ex.limiter is not None
    lim = ex.limiter
    poll(lambda: len(lim._waiting) == 2, 5.0, "two entries waiting for the budget")
    assert ex.place_order(stop_req(90, "S039USDT")).result is CallResult.ACCEPTED
    assert ex.place_order(close_req(91, "S039USDT")).result is CallResult.ACCEPTED
    for t in waiting:
        t.join(10)
    ids = [e.client_id for e in sim.order_log()]
    assert ids[8:10] == ["ps90s1", "ps91c1"], ids
    assert sorted(ids[10:]) == ["ps8e1", "ps9e1"]
    assert sim.limits.snapshot()["refused_total"] == 0


def test_usage_reported_by_the_exchange_is_counted(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange], outsider_of: Any
) -> None:
    """Someone else on the same account placed 8 orders: our next order's reply says the
    account is at 9, and the limiter counts those 9 from then on (it does not believe its own
    count of 1)."""
    sim = limited((SMALL[0], RateLimit("ORDERS", "MINUTE", 1, 1200)))
    ex = adapters(sim)
    other = outsider_of(sim)
    for i in range(8):
        other.create_order("S000/USDT:USDT", "market", "buy", 1, params={"clientOrderId": f"o{i}"})
    assert ex.place_order(entry_req(0)).result is CallResult.ACCEPTED
    assert ex.limiter is not None
    stats = ex.limiter.stats()
    assert stats.corrected >= 1
    assert stats.usage["x-mbx-order-count-1m"] == 9


@pytest.fixture
def outsider_of() -> Iterator[Callable[[SimExchange], Any]]:
    made: list[Any] = []

    def make(sim: SimExchange) -> Any:
        client = ccxt.binanceusdm(
            {
                "apiKey": "other",
                "secret": "other",
                "enableRateLimit": False,
                "options": dict(BINANCE_USDM.options),
            }
        )
        client.urls["api"] = BINANCE_USDM.api_urls(sim.base_url)
        client.load_markets()
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


# --- the limiter alone (a manual clock) ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_request_that_cannot_fit_in_its_bound_is_refused_at_once() -> None:
    clock = Clock()
    lim = AccountLimiter([Limit("ORDERS", 10.0, 5)], reserve=0.2, slack_s=0.0, clock=clock)
    for _ in range(4):
        assert lim.acquire(Cost(0, 1), Priority.ENTRY, 1.0) == 0.0
    with pytest.raises(RateBudgetExhausted) as err:
        lim.acquire(Cost(0, 1), Priority.ENTRY, 1.0)  # entries stop at 80 %: 4 of 5
    assert err.value.retry_after == pytest.approx(10.0)
    assert lim.acquire(Cost(0, 1), Priority.PROTECT, 1.0) == 0.0  # the reserve
    assert lim.stats().refused == 1


def test_the_syncs_reads_leave_room_for_lookups_and_protection() -> None:
    """Reads may use 60 % of the weight, lookups of entries 80 %, protection all of it."""
    lim = AccountLimiter([Limit("REQUEST_WEIGHT", 60.0, 100)], slack_s=0.0, clock=Clock())
    assert lim.acquire(Cost(60, 0), Priority.READ, 1.0) == 0.0
    with pytest.raises(RateBudgetExhausted):
        lim.acquire(Cost(1, 0), Priority.READ, 1.0)
    assert lim.acquire(Cost(20, 0), Priority.RESOLVE, 1.0) == 0.0
    with pytest.raises(RateBudgetExhausted):
        lim.acquire(Cost(1, 0), Priority.RESOLVE, 1.0)
    assert lim.acquire(Cost(20, 0), Priority.PROTECT, 1.0) == 0.0


def test_closed_limiter_refuses_waiting_requests() -> None:
    lim = AccountLimiter([Limit("ORDERS", 60.0, 1)], slack_s=0.0)
    lim.acquire(Cost(0, 1), Priority.PROTECT, 1.0)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            lim.acquire(Cost(0, 1), Priority.PROTECT, 120.0)
        except RateBudgetExhausted as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    with pytest.raises(RateBudgetExhausted):  # 60 s to wait, bound 1 s: refused at once
        lim.acquire(Cost(0, 1), Priority.PROTECT, 1.0)
    t.start()
    poll(lambda: len(lim._waiting) == 1, 5.0, "a request waiting")
    lim.close()
    t.join(5)
    assert not t.is_alive() and len(errors) == 1


def test_stop_refused_by_the_limiter_is_rate_limited_and_not_sent(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange]
) -> None:
    sim = limited((RateLimit("ORDERS", "MINUTE", 1, 1), SMALL[0]))
    ex = adapters(sim, timeout_s=0.5)
    assert ex.place_order(entry_req(0)).result is CallResult.ACCEPTED
    reply = ex.place_order(stop("ps0s1", 90.0, key=Key(ACCOUNT, SYMBOLS[0])))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "rate_limited")
    assert reply.retry_after is not None and reply.retry_after > 30
    assert [e.client_id for e in sim.order_log()] == ["ps0e1"]


def test_listen_key_calls_go_through_the_accounts_limiter(
    limited: Callable[..., SimExchange], adapters: Callable[..., CcxtExchange]
) -> None:
    """The user stream's POST/PUT listenKey are counted by the account's limiter like any
    other request, and a limiter that refuses keeps them from leaving."""
    sim = limited()
    ex = adapters(sim)
    assert ex.limiter is not None
    ex.pool.client()  # this thread's client exists: only the listen-key calls are counted
    before = ex.limiter.stats().requests
    key = ex.listen_keys.create()
    assert ex.limiter.stats().requests == before + 1
    ex.listen_keys.keepalive()
    assert ex.limiter.stats().requests == before + 2
    assert sim.listen_keys() == [key]
    sim.delete_listen_key(key)
    ex.limiter.close()
    with pytest.raises(ListenKeyError) as refused:
        ex.listen_keys.create()
    assert not isinstance(refused.value, ListenKeyMissing) and refused.value.status is None
    assert sim.listen_keys() == [], "the refused request never reached the exchange"
