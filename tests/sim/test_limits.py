"""The sim's model of Binance's request limits (``sim.limits``), and the routes the
benchmarks drive it with (seeding a state, cancelling stops, the stops view, the overloaded
exchange, a trending blast, the signal feed's ``/send`` and ``/acks``)."""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from sim import SignalFeed, SimExchange
from sim.limits import BINANCE_USDM, LimitBook, RateLimit, weight_of
from tests.sim.conftest import make_ccxt

pytestmark = pytest.mark.timeout(30)

SMALL = (
    RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 50),
    RateLimit("ORDERS", "MINUTE", 1, 3),
)


def http(method: str, url: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), json.loads(err.read())


@pytest.fixture
def small() -> Iterator[SimExchange]:
    with SimExchange({"BTCUSDT": 60_000.0}, enforce_rate_limits=True, rate_limits=SMALL) as ex:
        yield ex


def test_exchange_info_publishes_the_limits_it_enforces(small: SimExchange) -> None:
    status, _, info = http("GET", small.base_url + "/fapi/v1/exchangeInfo")
    assert status == 200
    assert info["rateLimits"] == [lim.to_json() for lim in SMALL]
    with SimExchange({"BTCUSDT": 1.0}) as default:
        _, _, info = http("GET", default.base_url + "/fapi/v1/exchangeInfo")
    assert info["rateLimits"] == [lim.to_json() for lim in BINANCE_USDM]


def test_every_reply_carries_the_usage_and_orders_count() -> None:
    with SimExchange({"BTCUSDT": 60_000.0}) as sim:
        client = make_ccxt(sim.base_url)
        try:
            client.load_markets()  # exchangeInfo: weight 1
            assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "1"
            client.fetch_open_orders()  # without a symbol: 40
            assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "41"
            assert "X-MBX-ORDER-COUNT-10S" not in client.last_response_headers
            client.create_order("BTC/USDT:USDT", "market", "buy", 0.01)  # weight 0, 1 order
            h = client.last_response_headers
            assert (h["X-MBX-USED-WEIGHT-1M"], h["X-MBX-ORDER-COUNT-10S"]) == ("41", "1")
            assert h["X-MBX-ORDER-COUNT-1M"] == "1"
        finally:
            client.close()
        snap = sim.limits.snapshot()
        assert (snap["enforce"], snap["orders"], snap["refused_total"]) == (False, 1, 0)


def test_over_a_limit_the_request_is_refused_429_and_not_done(small: SimExchange) -> None:
    client = make_ccxt(small.base_url)
    try:
        client.load_markets()
        for i in range(3):
            client.create_order("BTC/USDT:USDT", "market", "buy", 0.01, {"clientOrderId": f"a{i}"})
        status, headers, body = http(
            "POST",
            small.base_url + "/fapi/v1/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01"
            f"&newClientOrderId=a3&timestamp={int(time.time() * 1000)}",
        )
    finally:
        client.close()
    assert status == 429 and body["code"] == -1015
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-MBX-ORDER-COUNT-1M"] == "3"
    log = small.order_log()
    assert [e.outcome for e in log] == ["accepted"] * 3 + ["not_executed"]
    assert log[-1].faults == ["rate_limit"]
    assert small.positions()["BTCUSDT"].qty == pytest.approx(0.03)
    snap = small.limits.snapshot()
    assert snap["refused"] == {"X-MBX-ORDER-COUNT-1M": 1} and snap["orders"] == 3


def test_weight_over_the_limit_is_refused_minus_1003(small: SimExchange) -> None:
    url = small.base_url + "/fapi/v1/openOrders?timestamp="
    for _ in range(1):  # 40 of 50
        assert http("GET", url + str(int(time.time() * 1000)))[0] == 200
    status, _, body = http("GET", url + str(int(time.time() * 1000)))
    assert (status, body["code"]) == (429, -1003)
    status, _, _ = http("GET", small.base_url + "/fapi/v1/ping")  # 1 more still fits
    assert status == 200


def test_counters_reset_when_the_window_ends() -> None:
    book = LimitBook((RateLimit("ORDERS", "SECOND", 1, 1),), enforce=True)
    assert book.charge("POST", "/fapi/v1/order", {}, 10_000).refused is None
    refused = book.charge("POST", "/fapi/v1/order", {}, 10_999)
    assert refused.refused is not None and refused.retry_after_s == 1
    assert book.charge("POST", "/fapi/v1/order", {}, 11_000).refused is None


def test_weights_follow_binance() -> None:
    assert weight_of("GET", "/fapi/v1/openOrders", {}) == 40
    assert weight_of("GET", "/fapi/v1/openOrders", {"symbol": "X"}) == 1
    assert weight_of("GET", "/fapi/v3/positionRisk", {}) == 5
    assert weight_of("POST", "/fapi/v1/algoOrder", {"symbol": "X"}) == 0
    assert weight_of("GET", "/fapi/v1/something/new", {}) == 1


def test_enforcement_is_a_switch() -> None:
    with SimExchange({"BTCUSDT": 60_000.0}, rate_limits=SMALL) as sim:
        url = sim.base_url + "/fapi/v1/openOrders?timestamp="
        for _ in range(3):  # 120 of 50, not enforced
            assert http("GET", url + str(int(time.time() * 1000)))[0] == 200
        _status, _, body = http(
            "POST", sim.base_url + "/_sim/config", {"enforce_rate_limits": True}
        )
        assert body["enforce_rate_limits"] is True
        assert http("GET", url + str(int(time.time() * 1000)))[0] == 429
        assert http("GET", sim.base_url + "/_sim/limits")[2]["refused_total"] == 1


# --- the routes the benchmarks use -----------------------------------------------------------


def test_seed_cancel_stops_and_the_stops_view() -> None:
    with SimExchange({"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}) as sim:
        base = sim.base_url
        body = {
            "orders": [{"symbol": "BTCUSDT", "side": "BUY", "qty": 0.01, "client_id": "ps1e1"}],
            "stops": [
                {"symbol": "BTCUSDT", "side": "SELL", "trigger": 58_000, "client_id": "ps1s1"},
                {"symbol": "ETHUSDT", "side": "SELL", "trigger": 1, "client_id": "bad id!"},
            ],
        }
        _, _, got = http("POST", base + "/_sim/seed", body)
        assert (got["orders"], got["stops"], len(got["errors"])) == (1, 1, 1)
        assert sim.order_log() == []  # straight into the engine, not through REST
        _, _, view = http("GET", base + "/_sim/stops")
        assert view == {
            "BTCUSDT": {
                "mark": 60_000.0,
                "qty": 0.01,
                "stops": [["ps1s1", "SELL", "STOP_MARKET", 58_000.0]],
            }
        }
        _, _, got = http("POST", base + "/_sim/cancel_stops", {"symbols": ["BTCUSDT"]})
        assert got == {"cancelled": 1}
        assert sim.open_orders() == []
        assert any(
            e.get("e") == "ALGO_UPDATE" and e["o"]["X"] == "CANCELED" for e in sim.user_events()
        )


def test_busy_fault_answers_503_with_retry_after_and_does_nothing() -> None:
    with SimExchange({"BTCUSDT": 60_000.0}) as sim:
        sim.add_fault("busy", retry_after_s=8)
        status, headers, body = http(
            "POST",
            sim.base_url + "/fapi/v1/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01"
            f"&timestamp={int(time.time() * 1000)}",
        )
        assert (status, body["code"], headers["Retry-After"]) == (503, -1008, "8")
        assert sim.positions() == {}
        assert sim.order_log()[0].outcome == "rejected"


def test_a_trending_blast_makes_every_frame_a_new_high() -> None:
    with SimExchange({"BTCUSDT": 60_000.0}) as sim:
        ws = websocket.create_connection(sim.ws_url + "/ws/btcusdt@markPrice", timeout=5)
        try:
            assert sim.wait_for_subscribers("btcusdt@markPrice", 1)
            stats = sim.blast_mark_prices(20, ["BTCUSDT"], step_pct=0.0, drift_pct=0.001)
            prices = [float(json.loads(ws.recv())["p"]) for _ in range(20)]
        finally:
            ws.close()
    assert stats["frames"] == 20
    assert all(b > a for a, b in itertools.pairwise(prices))


def test_signal_feed_sends_paced_over_http_and_logs_the_acks() -> None:
    with SignalFeed() as feed:
        ws = websocket.create_connection(feed.url, timeout=5)
        try:
            assert feed.wait_for_clients(1)
            base = feed.url.replace("ws://", "http://").rsplit("/", 1)[0]
            sigs = [{"signal_id": f"s{i}", "created_at": 0} for i in range(3)]
            status, _, got = http("POST", base + "/send", {"signals": sigs, "stamp": True})
            assert status == 200 and got["sent"] == 3 and len(got["times"]) == 3
            frames = [json.loads(ws.recv()) for _ in range(3)]
            assert [f["signal_id"] for f in frames] == ["s0", "s1", "s2"]
            assert all(
                abs(f["created_at"] - t) < 1e-6 for f, t in zip(frames, got["times"], strict=True)
            )
            ws.send(json.dumps({"ack": "s1", "outcome": "accepted"}))
            assert feed.wait_for_received(1)
            _, _, acks = http("GET", base + "/acks?since=0")
            assert acks["next"] == 1 and acks["acks"][0][1]["ack"] == "s1"
            _, _, later = http("GET", base + f"/acks?since={acks['next']}")
            assert later["acks"] == []
        finally:
            ws.close()
