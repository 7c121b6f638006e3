"""A fault armed with ``client_id`` fires only on requests placing or cancelling an order
whose client id matches its pattern: on Bybit, where one endpoint places entries, stops and
closes, it is how a test refuses the stops alone."""

from __future__ import annotations

import pytest

from sim.faults import Fault, FaultBoard

pytestmark = pytest.mark.timeout(10)


def test_the_pattern_picks_the_kind_of_order() -> None:
    f = Fault("busy", path="/v5/order/create", method="POST", client_id="ps*s*")
    assert f.matches("POST", "/v5/order/create", "BTCUSDT", "ps12s1")
    assert not f.matches("POST", "/v5/order/create", "BTCUSDT", "ps12e1")
    assert not f.matches("POST", "/v5/order/create", "BTCUSDT", "ps12c1")
    # A request that names no order (a lookup, a list) never matches a client-id fault.
    assert not f.matches("POST", "/v5/order/create", "BTCUSDT", None)


def test_without_a_pattern_every_client_id_matches() -> None:
    f = Fault("busy", path="/v5/order/create", method="POST")
    assert f.matches("POST", "/v5/order/create", None, None)
    assert f.matches("POST", "/v5/order/create", None, "anything")


def test_the_board_counts_down_only_on_matching_requests() -> None:
    board = FaultBoard(seed=1)
    board.add(Fault("busy", path="/v5/order/create", client_id="ps*s*", count=2))
    assert board.take("busy", "POST", "/v5/order/create", "X", "ps1e1") is None
    assert board.take("busy", "POST", "/v5/order/create", "X", "ps1s1") is not None
    assert board.take("busy", "POST", "/v5/order/create", "X", "ps1e2") is None
    assert board.take("busy", "POST", "/v5/order/create", "X", "ps1s2") is not None
    assert board.take("busy", "POST", "/v5/order/create", "X", "ps1s3") is None
    assert board.list() == []


def test_the_control_api_takes_the_pattern() -> None:
    f = Fault.from_json({"kind": "error_code", "client_id": "ps*e*", "code": -2019})
    assert f.client_id == "ps*e*" and f.to_json()["client_id"] == "ps*e*"
