"""I7 on Bybit: ccxt's bybit stamps ``X-BAPI-TIMESTAMP`` with ``nonce()`` as Binance's
stamps ``timestamp``, so the same fence holds: a place or cancel stamped after the lease
lapsed is never sent (the sim's order and cancel logs are the record), and lookups after
the placement (Bybit's status lookup) are not fenced."""

from __future__ import annotations

import pytest

from actors.messages import CallResult
from infra.exchange import CcxtExchange
from sim.bybit import BybitExchange
from tests.exchange.bybit.conftest import ACCOUNT, KEY, SYMBOL
from tests.exchange.conftest import entry, stop
from tests.exchange.test_lease_fence import Lease

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_a_place_after_the_lease_lapsed_is_refused_and_never_sent(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    exchange.fence_with(Lease(0.0))
    reply = exchange.place_order(entry("ps1e1"))
    assert (reply.result, reply.reason) == (CallResult.REJECTED, "lease_lapsed")
    assert bybit.order_log(ACCOUNT) == []
    assert SYMBOL not in bybit.positions(ACCOUNT)


def test_a_cancel_after_the_lease_lapsed_is_unknown_and_never_sent(
    bybit: BybitExchange, exchange: CcxtExchange
) -> None:
    lease = Lease(5.0)
    exchange.fence_with(lease)
    placed = exchange.place_order(entry("ps1e1"))
    assert placed.status == "filled"  # the status lookup after it went, unfenced
    assert exchange.place_order(stop("ps1s1", 58_000.0)).result is CallResult.ACCEPTED
    lease.left = 0.0
    reply = exchange.cancel_order(KEY, "ps1s1", True)
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "lease_lapsed")
    assert bybit.cancel_log(ACCOUNT) == []
    assert [o.client_id for o in bybit.open_orders(ACCOUNT)] == ["ps1s1"]
    # Lookups are reads: they go whatever the lease says.
    assert exchange.lookup_order(KEY, "ps1s1", True).result is CallResult.FOUND
