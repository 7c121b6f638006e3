"""I7 at the last moment: a place or cancel leaves only while the account's lease is valid
when the request is stamped (:mod:`infra.exchange.client`), with the real ccxt client
against the sim. The sim's own order and cancel logs are the record: a fenced request is
never received there."""

from __future__ import annotations

import pytest

from actors.messages import CallResult
from infra.exchange import CcxtExchange
from sim import SimExchange
from tests.exchange.conftest import KEY, SYMBOL, entry, stop


class Lease:
    """A lease whose validity the test sets; counts how often the adapter asked."""

    def __init__(self, left: float | None) -> None:
        self.left = left
        self.asked = 0

    def __call__(self) -> float | None:
        self.asked += 1
        return self.left


def test_a_place_after_the_lease_lapsed_is_refused_and_never_sent(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    lease = Lease(0.0)
    exchange.fence_with(lease)
    reply = exchange.place_order(entry("ps1e1", qty=0.01))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "lease_lapsed")
    assert lease.asked == 1
    assert sim.order_log() == []
    assert SYMBOL not in sim.positions()


def test_a_place_without_a_lease_is_refused(sim: SimExchange, exchange: CcxtExchange) -> None:
    exchange.fence_with(Lease(None))  # this process does not hold the account
    assert exchange.place_order(entry("ps1e1")).reason == "lease_lapsed"
    assert sim.order_log() == []


def test_orders_leave_while_the_lease_is_valid(sim: SimExchange, exchange: CcxtExchange) -> None:
    lease = Lease(2.5)
    exchange.fence_with(lease)
    assert exchange.place_order(entry("ps1e1", qty=0.01)).result is CallResult.ACCEPTED
    assert [e.client_id for e in sim.order_log()] == ["ps1e1"]
    assert lease.asked >= 1


def test_a_cancel_after_the_lease_lapsed_is_unknown_and_never_sent(
    sim: SimExchange, exchange: CcxtExchange
) -> None:
    lease = Lease(5.0)
    exchange.fence_with(lease)
    exchange.place_order(entry("ps1e1"))
    assert exchange.place_order(stop("ps1s1", 58000.0)).result is CallResult.ACCEPTED
    lease.left = -0.001
    reply = exchange.cancel_order(KEY, "ps1s1", True)
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "lease_lapsed")
    assert sim.cancel_log() == []
    view = exchange.fetch_account(KEY.account)
    assert [o.client_id for o in view.open_orders[SYMBOL]] == ["ps1s1"]
    # Reading is not fenced: the stop can still be looked up.
    assert exchange.lookup_order(KEY, "ps1s1", True).result is CallResult.FOUND


@pytest.mark.parametrize("left", [None, 0.0])
def test_reads_are_not_fenced(sim: SimExchange, exchange: CcxtExchange, left: float | None) -> None:
    lease = Lease(left)
    exchange.fence_with(lease)
    assert exchange.fetch_account(KEY.account).positions == {}
    assert exchange.lookup_order(KEY, "ps9e1", False).result is CallResult.NOT_FOUND
    assert lease.asked == 0
