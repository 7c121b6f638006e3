"""Every fault the sim injects ends in the right port outcome, and no order is sent twice.

The adapter never re-sends: an UNKNOWN outcome is resolved by looking the order up by its
client id (what the actor does), and the sim's order log proves each id arrived once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from actors.messages import CallResult
from actors.ports import OrderReply
from infra.exchange import CcxtExchange
from sim import SimExchange
from tests.exchange.conftest import KEY, SYMBOL, entry, sim_config, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

ORDER = {"path": "/fapi/v1/order", "method": "POST"}
ALGO = {"path": "/fapi/v1/algoOrder", "method": "POST"}


def resolve(ex: CcxtExchange, cid: str, trigger: bool = False, timeout: float = 5.0) -> OrderReply:
    """What the actor does after UNKNOWN: look the order up by client id until it is found."""

    def found() -> OrderReply | None:
        reply = ex.lookup_order(KEY, cid, trigger)
        return reply if reply.result is CallResult.FOUND else None

    result: OrderReply = wait_until(found, timeout, 0.05, f"lookup {cid}")
    return result


def test_latency_below_the_timeout_is_just_slow(sim: SimExchange, exchange: CcxtExchange) -> None:
    sim.add_fault("latency", latency_s=0.3, **ORDER)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, "filled")
    assert sim.orders_sent("ps1e1") == 1


def test_latency_beyond_the_timeout_is_unknown_then_found(
    sim: SimExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    ex = make_exchange(timeout_s=0.3)
    ex.load_markets()
    sim.add_fault("latency", latency_s=0.8, **ORDER)
    reply = ex.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "timeout")
    # The exchange acts after its delay: the lookup finds the order, filled, placed once.
    assert resolve(ex, "ps1e1").status == "filled"
    assert sim.orders_sent("ps1e1") == 1
    assert sim.positions()[SYMBOL].qty == pytest.approx(0.01)


def test_502_is_unknown_and_the_lookup_finds_nothing(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    sim.add_fault("http_502", **ORDER)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "unavailable")
    assert exchange.lookup_order(KEY, "ps1e1", False).result is CallResult.NOT_FOUND
    (log,) = sim.order_log()
    assert log.outcome == "not_executed"
    assert sim.positions() == {}


def test_503_1007_after_acting_is_unknown_and_the_order_is_there(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    sim.add_fault("http_503", **ORDER)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "timeout")
    assert resolve(exchange, "ps1e1").status == "filled"
    assert sim.orders_sent("ps1e1") == 1
    assert sim.positions()[SYMBOL].qty == pytest.approx(0.01)


def test_503_on_a_stop_then_lookup_shows_it_resting(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1"))
    sim.add_fault("http_503", **ALGO)
    reply = exchange.place_order(stop("ps1s1", 58000.0))
    assert reply.result is CallResult.UNKNOWN
    assert resolve(exchange, "ps1s1", trigger=True).status == "new"
    assert sim.orders_sent("ps1s1") == 1


def test_429_is_a_refusal_with_the_retry_after_header(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    sim.add_fault("http_429", retry_after_s=3, **ORDER)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason, reply.retry_after) == (
        CallResult.REJECTED,
        "rate_limited",
        3.0,
    )
    assert sim.order_log()[0].outcome == "not_executed"
    assert sim.positions() == {}
    # The actor retries after the delay with the same id: placed once.
    assert exchange.place_order(entry("ps1e1")).status == "filled"
    assert sim.positions()[SYMBOL].qty == pytest.approx(0.01)


def test_429_on_a_lookup_is_unknown_with_retry_after(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    exchange.place_order(entry("ps1e1"))
    sim.add_fault("http_429", retry_after_s=2, path="/fapi/v1/order", method="GET")
    reply = exchange.lookup_order(KEY, "ps1e1", False)
    assert (reply.result, reply.retry_after) == (CallResult.UNKNOWN, 2.0)


def test_timeout_after_accepting_is_unknown_then_found(
    sim: SimExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    ex = make_exchange(timeout_s=0.3)
    ex.load_markets()
    sim.add_fault("timeout", hold_s=2.0, **ORDER)
    reply = ex.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "timeout")
    assert resolve(ex, "ps1e1").status == "filled"
    assert sim.orders_sent("ps1e1") == 1


def test_dropped_connection_is_unknown_then_found(sim: SimExchange, exchange: CcxtExchange) -> None:
    sim.add_fault("timeout", close=True, **ORDER)
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "network")
    assert resolve(exchange, "ps1e1").status == "filled"
    assert sim.orders_sent("ps1e1") == 1


def test_dropped_connection_on_a_stop(sim: SimExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    sim.add_fault("timeout", close=True, **ALGO)
    assert exchange.place_order(stop("ps1s1", 58000.0)).result is CallResult.UNKNOWN
    assert resolve(exchange, "ps1s1", trigger=True).status == "new"
    # Sent again by the state machine (a missing stop is re-sent with the same id): the
    # exchange refuses the duplicate id, the adapter reports it as already placed.
    again = exchange.place_order(stop("ps1s1", 58000.0))
    assert (again.result, again.reason) == (CallResult.ACCEPTED, "duplicate")
    assert len(sim.open_orders()) == 1


def test_margin_rejection(sim: SimExchange, exchange: CcxtExchange) -> None:
    sim.add_fault("reject_2019")
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "insufficient_funds")
    assert sim.positions() == {}
    assert sim.orders_sent("ps1e1") == 1


def test_not_found_for_a_moment(sim: SimExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    sim.add_fault("not_found", count=2)
    assert exchange.lookup_order(KEY, "ps1e1", False).result is CallResult.NOT_FOUND
    assert exchange.lookup_order(KEY, "ps1e1", False).result is CallResult.NOT_FOUND
    assert exchange.lookup_order(KEY, "ps1e1", False).status == "filled"
    assert sim.orders_sent("ps1e1") == 1


def test_partial_fills_then_the_rest(sim: SimExchange, exchange: CcxtExchange) -> None:
    sim.add_fault("partial_fill", parts=3, part_interval_s=0.05)
    reply = exchange.place_order(entry("ps1e1", qty=0.03))
    assert (reply.result, reply.status) == (CallResult.ACCEPTED, "partially_filled")
    assert reply.filled_qty == pytest.approx(0.01)

    def filled() -> OrderReply | None:
        r = exchange.lookup_order(KEY, "ps1e1", False)
        return r if r.status == "filled" else None

    done: OrderReply = wait_until(filled, 5.0, 0.02, "rest of the fills")
    assert done.filled_qty == pytest.approx(0.03)
    assert sim.orders_sent("ps1e1") == 1


def test_unreachable_exchange_is_a_refusal(sim: SimExchange) -> None:
    """Connection refused: the request never left, so the order was certainly not placed."""
    ex = CcxtExchange("main", sim_config(sim, timeout_s=1.0))
    try:
        ex.load_markets()
        sim.stop()
        reply = ex.place_order(entry("ps1e1"))
        assert (reply.result, reply.reason, reply.retry_after) == (
            CallResult.REJECTED,
            "unreachable",
            0.5,
        )
        assert ex.lookup_order(KEY, "ps1e1", False).result is CallResult.UNKNOWN
        assert ex.cancel_order(KEY, "ps1e1", False).result is CallResult.UNKNOWN
    finally:
        ex.close()


def test_open_order_lists_that_lag_behind(sim: SimExchange, exchange: CcxtExchange) -> None:
    """A4: the sync's view of open orders can be a moment old; lookups by id are current."""
    exchange.place_order(entry("ps1e1"))
    exchange.place_order(stop("ps1s1", 58000.0))
    placed = time.time()
    # The lag is measured on the exchange's clock: let 0.3 s pass on it.
    wait_until(lambda: time.time() > placed + 0.3, 2.0, 0.02, "0.3 s on the clock")
    sim.add_fault("lag_open_orders", lag_s=0.2, count=2)  # the two lists of one fetch
    exchange.place_order(stop("ps1s2", 57000.0))  # placed within the lag: missing
    assert exchange.cancel_order(KEY, "ps1s1", True).status == "canceled"  # still listed
    view = exchange.fetch_account("main")
    assert [o.client_id for o in view.open_orders[SYMBOL]] == ["ps1s1"]
    assert view.positions[SYMBOL].qty == pytest.approx(0.01)  # positions are current
    assert exchange.lookup_order(KEY, "ps1s2", True).status == "new"
    assert exchange.lookup_order(KEY, "ps1s1", True).status == "canceled"
    assert sim.list_faults() == []
    view = exchange.fetch_account("main")
    assert [o.client_id for o in view.open_orders[SYMBOL]] == ["ps1s2"]


def test_stop_rejected_when_it_triggers(sim: SimExchange, exchange: CcxtExchange) -> None:
    """A stop the exchange accepted can still be rejected at trigger time: the position stays."""
    exchange.place_order(entry("ps1e1"))
    exchange.place_order(stop("ps1s1", 58000.0))
    sim.add_fault("reject_on_trigger", symbol=SYMBOL)
    sim.set_price(SYMBOL, 57900.0)
    assert exchange.lookup_order(KEY, "ps1s1", True).status == "rejected"
    assert sim.positions()[SYMBOL].qty == pytest.approx(0.01)
    assert exchange.fetch_account("main").open_orders == {}


def test_busy_refuses_without_acting_and_is_no_rate_limit(
    sim: SimExchange, make_exchange: Callable[..., CcxtExchange]
) -> None:
    """An overloaded exchange (503 -1008, Retry-After: 7): the stop is refused ``busy`` with
    that back-off, nothing rests, and the account's limiter does not hold the next request
    back (only a 429 or 418 does)."""
    exchange = make_exchange(enable_rate_limit=True)
    exchange.place_order(entry("ps1e1"))
    sim.add_fault("busy", retry_after_s=7)
    reply = exchange.place_order(stop("ps1s1", 58000.0))
    assert (reply.result, reply.reason, reply.retry_after) == (CallResult.REJECTED, "busy", 7.0)
    assert exchange.fetch_account("main").open_orders == {}
    assert exchange.place_order(stop("ps1s2", 58000.0)).result is CallResult.ACCEPTED
    assert exchange.limiter is not None and exchange.limiter.stats().blocked == 0


def test_every_fault_kind_is_covered() -> None:
    """A new REST fault kind in the sim must get a test here (stream faults are not ours)."""
    from sim import FAULT_KINDS

    covered = {
        "latency",
        "http_502",
        "http_503",
        "http_429",
        "timeout",
        "reject_2019",
        "not_found",
        "partial_fill",
        "lag_open_orders",
        "reject_on_trigger",
        "error_code",  # test_outcome_classes.py
        "bad_response",  # test_outcome_classes.py, test_market_rules.py
        "busy",
    }
    rest_kinds = {k for k in FAULT_KINDS if not k.startswith("ws_")}
    assert rest_kinds <= covered, sorted(rest_kinds - covered)
