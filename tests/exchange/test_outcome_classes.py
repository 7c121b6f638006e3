"""One adapter-level test per outcome class of the error mapping, against the sim.

Each class of the table in :mod:`infra.exchange.errors` is produced here by one sim
``add_fault`` call on a stop-loss of an open position (the order whose outcome matters
most), through the real ccxt over HTTP. ``ELSEWHERE`` names the classes that come from the
request or the adapter's state rather than from a fault, and the test that covers each.
``test_every_reason_has_a_test`` fails when a new reason appears without a case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from actors.messages import CallResult
from infra.exchange import CcxtExchange, Reason
from sim import SimExchange
from sim.faults import CANCEL_PATHS
from tests.exchange.conftest import KEY, entry, stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

ALGO = {"path": "/fapi/v1/algoOrder", "method": "POST"}
DEFAULT_RETRY = 0.5  # sim_config's retry_after_s


@dataclass(frozen=True)
class Case:
    """A stop-loss placement meeting one sim fault, and what the adapter must answer."""

    reason: str
    result: CallResult
    fault: dict[str, Any]
    retry_after: float | None = None
    rests: bool = False  # whether the stop is on the exchange afterwards
    status: str | None = None

    @property
    def id(self) -> str:
        return self.reason


def err(code: int, status: int = 400, **more: Any) -> dict[str, Any]:
    return {"kind": "error_code", "code": code, "status": status, **more}


PLACE_CASES = [
    Case("duplicate", CallResult.ACCEPTED, err(-4116, act=True), rests=True, status="new"),
    Case("duplicate_unverified", CallResult.UNKNOWN, err(-4116)),
    Case("rate_limited", CallResult.REJECTED, {"kind": "http_429", "retry_after_s": 4}, 4.0),
    Case("busy", CallResult.REJECTED, err(-1008, 503), DEFAULT_RETRY),
    Case("clock_skew", CallResult.REJECTED, err(-1021), DEFAULT_RETRY),
    Case("would_trigger", CallResult.REJECTED, err(-2021)),
    Case("insufficient_funds", CallResult.REJECTED, {"kind": "reject_2019"}),
    Case("reduce_only", CallResult.REJECTED, err(-2022)),
    Case("auth", CallResult.REJECTED, err(-2015, 401)),
    Case("bad_symbol", CallResult.REJECTED, err(-1121)),
    Case("market_closed", CallResult.REJECTED, err(-4000, msg="Market is closed.")),
    Case("not_fillable", CallResult.REJECTED, err(-5021)),
    Case("invalid", CallResult.REJECTED, err(-1111)),
    Case("refused", CallResult.REJECTED, err(-4131)),
    Case("exchange_error:-9999", CallResult.REJECTED, err(-9999)),
    Case("timeout", CallResult.UNKNOWN, {"kind": "http_503"}, rests=True),
    Case("exchange_unknown", CallResult.UNKNOWN, err(-1001, 500, act=True), rests=True),
    Case("unavailable", CallResult.UNKNOWN, {"kind": "http_502"}),
    Case("network", CallResult.UNKNOWN, {"kind": "timeout", "close": True}, rests=True),
    Case("error:ValueError", CallResult.UNKNOWN, {"kind": "bad_response"}, rests=True),
]

ELSEWHERE = {
    "invalid:amount": "test_market_rules.py::test_quantity_the_market_cannot_take_is_refused…",
    "invalid:price": "test_market_rules.py::test_trigger_price_out_of_the_market_bounds_…",
    "local:": "test_market_rules.py::test_absurd_stop_on_a_market_without_a_price_bound_…",
    "duplicate_id_mismatch": "test_market_rules.py::test_duplicate_id_held_by_an_order_of_…",
    "unreachable": "test_faults.py::test_unreachable_exchange_is_a_refusal",
    "lease_lapsed": "test_lease_fence.py::test_a_place_after_the_lease_lapsed_is_refused_…",
    "markets_unavailable": "test_adapter.py::test_markets_unavailable_is_a_refusal_with_retry…",
    "not_found": "test_lookup_and_cancel_classes (below)",
    "bad_mark_price": "test_market_rules.py::test_fetch_market_reply_without_a_usable_price…",
}


@pytest.mark.parametrize("case", PLACE_CASES, ids=lambda c: c.id)
def test_stop_loss_outcome_class(sim: SimExchange, exchange: CcxtExchange, case: Case) -> None:
    assert exchange.place_order(entry("ps1e1")).status == "filled"
    options = dict(case.fault)
    kind = options.pop("kind")
    sim.add_fault(kind, **ALGO, **options)
    reply = exchange.place_order(stop("ps1s1", 58_000.0))
    assert (reply.result, reply.reason, reply.retry_after) == (
        case.result,
        case.reason,
        case.retry_after,
    )
    assert type(reply.reason) is str
    if case.status is not None:
        assert reply.status == case.status
    resting = [o.client_id for o in sim.open_orders() if o.kind == "algo"]
    assert resting == (["ps1s1"] if case.rests else [])
    assert sim.list_faults() == []  # the one fault fired


def test_every_reason_has_a_test() -> None:
    covered = {c.reason for c in PLACE_CASES} | set(ELSEWHERE)
    for reason in Reason:
        value = str(reason)
        if value == "local":
            value = "local:"
        assert value in covered, f"no outcome-class test for reason {value!r}"
    # Parameterised reasons are covered by one example each.
    assert any(r.startswith("exchange_error:") for r in covered)
    assert any(r.startswith("error:") for r in covered)


# -- cancels and lookups -------------------------------------------------------------------


@pytest.mark.parametrize("trigger", [True, False], ids=["algo", "plain"])
def test_rate_limited_cancel_is_unknown_with_the_exchanges_retry_after(
    sim: SimExchange, exchange: CcxtExchange, trigger: bool
) -> None:
    """A3: a 429 aimed at cancels only (both cancel endpoints, DELETE) reaches ccxt with
    its Retry-After; nothing is cancelled, other calls are untouched."""
    exchange.place_order(entry("ps1e1"))
    exchange.place_order(stop("ps1s1", 58_000.0))
    sim.add_fault("http_429", path=CANCEL_PATHS, method="DELETE", retry_after_s=9, count=None)
    assert exchange.lookup_order(KEY, "ps1s1", True).status == "new"  # GET: not affected
    cid = "ps1s1" if trigger else "ps1e1"
    reply = exchange.cancel_order(KEY, cid, trigger)
    assert (reply.result, reply.reason, reply.retry_after) == (
        CallResult.UNKNOWN,
        "rate_limited",
        9.0,
    )
    assert [o.client_id for o in sim.open_orders()] == ["ps1s1"]
    sim.clear_faults()
    assert exchange.cancel_order(KEY, "ps1s1", True).status == "canceled"


def test_lookup_and_cancel_classes(sim: SimExchange, exchange: CcxtExchange) -> None:
    exchange.place_order(entry("ps1e1"))
    exchange.place_order(stop("ps1s1", 58_000.0))
    # lookups: FOUND, NOT_FOUND (a moment of "not found"), UNKNOWN (502, 429)
    assert exchange.lookup_order(KEY, "ps1s1", True).result is CallResult.FOUND
    sim.add_fault("not_found")
    assert exchange.lookup_order(KEY, "ps1s1", True).result is CallResult.NOT_FOUND
    sim.add_fault("http_502", path="/fapi/v1/algoOrder", method="GET")
    reply = exchange.lookup_order(KEY, "ps1s1", True)
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "unavailable")
    # cancels: UNKNOWN before acting (502) and after acting (503: it IS cancelled)
    sim.add_fault("http_502", path="/fapi/v1/algoOrder", method="DELETE")
    reply = exchange.cancel_order(KEY, "ps1s1", True)
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "unavailable")
    assert len(sim.open_orders()) == 1
    sim.add_fault("http_503", path="/fapi/v1/algoOrder", method="DELETE")
    reply = exchange.cancel_order(KEY, "ps1s1", True)
    assert (reply.result, reply.reason) == (CallResult.UNKNOWN, "timeout")
    assert sim.open_orders() == []
    assert exchange.lookup_order(KEY, "ps1s1", True).status == "canceled"
    # NOT_FOUND: nothing open with that id any more
    assert exchange.cancel_order(KEY, "ps1s1", True).result is CallResult.NOT_FOUND
