"""A request that waited in the account's limiter leaves with a fresh signature.

The exchange refuses a signed request older than ``recvWindow`` (Binance -1021, Bybit
10002). The limiter may hold a request for seconds (a back-off the exchange asked for, the
order limits): were its timestamp taken before the wait, an entry or a stop-loss held 1 s
with a 300 ms window would be refused for its age. On both venues, against the sim, which
checks every request's timestamp against its window.
"""

from __future__ import annotations

import pytest

from actors.messages import CallResult
from actors.model import ExchangeStatus, Key, OrderKind
from actors.ports import OrderRequest
from infra.exchange import CcxtExchange
from tests.venues import VENUES, executed, make_sim, venue_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.mark.parametrize("venue", VENUES)
def test_an_entry_held_by_a_back_off_is_signed_when_it_leaves(venue: str) -> None:
    with make_sim(venue, {"BTCUSDT": 60_000.0}) as sim:
        ex = CcxtExchange(
            "main", venue_config(venue, sim, enable_rate_limit=True, recv_window_ms=300)
        )
        try:
            ex.load_markets()
            # The exchange asks for a 1 s pause: the next request waits that long.
            sim.add_fault("http_429", retry_after_s=1, count=1)
            key = Key("main", "BTCUSDT")
            first = ex.fetch_market(key)
            assert first.result is CallResult.UNKNOWN and first.reason == "rate_limited"
            reply = ex.place_order(OrderRequest(key, "ps1e1", OrderKind.ENTRY, "buy", 0.01))
        finally:
            ex.close()
        # Without a fresh signature: REJECTED clock_skew, the exchange refusing its age.
        assert (reply.result, reply.status) == (CallResult.ACCEPTED, ExchangeStatus.FILLED), reply
        assert executed(sim, "ps1e1") == 1
