"""Bybit's private and public streams through the real websocket-client: authentication,
the order / execution / position messages of a fill and of a triggered stop, the public
``tickers.<symbol>`` snapshot and deltas, ping/pong, and the stream faults (drops,
duplicates, reordering) shared with Binance's front.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sim.bybit import BybitExchange
from tests.sim.bybit.conftest import SYMBOL, auth_frame, private_reader
from tests.sim.conftest import WsReader

pytestmark = pytest.mark.timeout(30)

Make = Callable[[str], WsReader]


def _topics(messages: list[Any]) -> list[str]:
    return [m.get("topic", m.get("op", "?")) for m in messages]


def test_auth_refuses_a_bad_signature_an_unknown_key_and_an_expired_request(
    bybit: BybitExchange, stream: Make
) -> None:
    reader = stream(f"{bybit.ws_url}/v5/private")
    reader.app.send(json.dumps({"op": "subscribe", "args": ["order"], "req_id": "early"}))
    early = reader.get()
    assert early["success"] is False and early["ret_msg"] == "Request not authorized"
    reader.app.send(auth_frame(secret="wrong"))
    assert reader.get()["success"] is False
    reader.app.send(auth_frame(key="nobody"))
    assert reader.get()["success"] is False
    reader.app.send(auth_frame(expires_in_ms=-1_000))
    assert reader.get() == {
        "success": False,
        "ret_msg": "Params Error",
        "conn_id": early["conn_id"],
        "op": "auth",
    }
    reader.app.send(auth_frame())
    ok = reader.get()
    assert ok["success"] is True and ok["op"] == "auth" and ok["conn_id"] == early["conn_id"]


def test_ping_pong_on_both_streams(bybit: BybitExchange, stream: Make) -> None:
    public = stream(f"{bybit.ws_url}/v5/public/linear")
    public.app.send(json.dumps({"op": "ping", "req_id": "p1"}))
    pong = public.get()
    assert pong["op"] == "ping" and pong["ret_msg"] == "pong" and pong["req_id"] == "p1"
    private = stream(f"{bybit.ws_url}/v5/private")
    private.app.send(json.dumps({"op": "ping", "req_id": "p2"}))
    pong = private.get()
    assert pong["op"] == "pong" and pong["req_id"] == "p2" and pong["args"][0].isdigit()


def test_a_market_fill_on_the_private_stream(
    bybit: BybitExchange, client: Any, stream: Make
) -> None:
    reader = private_reader(bybit, stream)
    order = client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    # user_events_first: the messages were written before the REST reply
    got = [reader.get(1.0) for _ in range(3)]
    assert _topics(got) == ["execution", "order", "position"]
    (execution,) = got[0]["data"]
    assert execution["orderId"] == order["id"] and execution["orderLinkId"] == "e1"
    assert execution["execQty"] == "0.01000" and execution["execPrice"] == "60000.0"
    assert execution["execType"] == "Trade" and execution["side"] == "Buy"
    (row,) = got[1]["data"]
    assert row["orderStatus"] == "Filled" and row["cumExecQty"] == "0.01000"
    assert row["leavesQty"] == "0.00000" and row["category"] == "linear"
    assert row["avgPrice"] == "60000.0"
    (pos,) = got[2]["data"]
    assert pos["symbol"] == "BTCUSDT" and pos["side"] == "Buy" and pos["size"] == "0.01000"
    assert reader.drain(0.2) == []  # wallet is not subscribed


def test_a_triggered_stop_on_the_private_stream(
    bybit: BybitExchange, client: Any, stream: Make
) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    reader = private_reader(bybit, stream, ("order", "execution", "position", "wallet"))
    stop = client.create_order(
        SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", "stopLossPrice": 58_000}
    )
    placed = reader.get()
    assert placed["topic"] == "order"
    assert placed["data"][0]["orderStatus"] == "Untriggered"
    assert placed["data"][0]["orderId"] == stop["id"]
    bybit.set_price("BTCUSDT", 57_500)
    got = [reader.get() for _ in range(5)]
    assert _topics(got) == ["order", "execution", "order", "position", "wallet"]
    assert got[0]["data"][0]["orderStatus"] == "Triggered"
    assert got[1]["data"][0]["orderId"] == stop["id"]  # one id from placement to fill
    assert got[1]["data"][0]["stopOrderType"] == "Stop"
    done = got[2]["data"][0]
    assert (done["orderStatus"], done["orderId"], done["orderLinkId"]) == (
        "Filled",
        stop["id"],
        "s1",
    )
    assert done["triggerPrice"] == "58000.0" and done["triggerDirection"] == 2
    assert got[3]["data"][0]["size"] == "0.00000" and got[3]["data"][0]["side"] == ""
    assert float(got[4]["data"][0]["totalWalletBalance"]) == pytest.approx(
        bybit.wallet_balance("main")
    )


def test_a_cancelled_stop_is_deactivated(bybit: BybitExchange, client: Any, stream: Make) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01)
    reader = private_reader(bybit, stream, ("order",))
    client.create_order(
        SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", "stopLossPrice": 58_000}
    )
    client.cancel_order(None, SYMBOL, {"orderLinkId": "s1"})
    states = [reader.get()["data"][0]["orderStatus"] for _ in range(2)]
    assert states == ["Untriggered", "Deactivated"]


def test_private_streams_are_per_account(bybit: BybitExchange, stream: Make) -> None:
    reader = private_reader(bybit, stream)
    other = stream(f"{bybit.ws_url}/v5/private")
    other.app.send(auth_frame("key-other", "secret-other"))
    assert other.get()["success"] is True
    other.app.send(json.dumps({"op": "subscribe", "args": ["order"]}))
    assert other.get()["success"] is True
    assert bybit.wait_for_user_streams(2)
    with bybit.lock:  # an order of "other" only
        _, events = bybit.engine_of("other").place_market("ETHUSDT", "BUY", 0.1)
        bybit.enqueue_user_events(events, "other")
    assert other.get()["data"][0]["symbol"] == "ETHUSDT"
    assert reader.drain(0.2) == []


def test_unknown_topics_are_refused(bybit: BybitExchange, stream: Make) -> None:
    public = stream(f"{bybit.ws_url}/v5/public/linear")
    public.app.send(json.dumps({"op": "subscribe", "args": ["tickers.NOPEUSDT"], "req_id": "1"}))
    answer = public.get()
    assert answer["success"] is False and "tickers.NOPEUSDT" in answer["ret_msg"]
    private = private_reader(bybit, stream, ())
    private.app.send(json.dumps({"op": "subscribe", "args": ["tickers.BTCUSDT"]}))
    assert private.get()["success"] is False


def test_public_tickers_snapshot_then_deltas(bybit: BybitExchange, stream: Make) -> None:
    reader = stream(f"{bybit.ws_url}/v5/public/linear")
    reader.app.send(
        json.dumps(
            {"op": "subscribe", "args": ["tickers.BTCUSDT", "tickers.ETHUSDT"], "req_id": "t"}
        )
    )
    answer = reader.get()
    assert answer == {
        "success": True,
        "ret_msg": "",
        "conn_id": answer["conn_id"],
        "req_id": "t",
        "op": "subscribe",
    }
    snapshots = [reader.get(), reader.get()]
    assert [s["type"] for s in snapshots] == ["snapshot", "snapshot"]
    assert snapshots[0]["topic"] == "tickers.BTCUSDT"
    assert snapshots[0]["data"]["markPrice"] == "60000.0"
    assert snapshots[0]["data"]["fundingRate"] and snapshots[0]["data"]["nextFundingTime"]
    assert bybit.wait_for_subscribers("tickers.BTCUSDT")
    bybit.set_price("BTCUSDT", 60_123.4)
    delta = reader.get()
    assert delta["topic"] == "tickers.BTCUSDT" and delta["type"] == "delta"
    assert delta["data"] == {
        "symbol": "BTCUSDT",
        "lastPrice": "60123.4",
        "markPrice": "60123.4",
        "indexPrice": "60123.4",
        "bid1Price": "60123.3",
        "ask1Price": "60123.5",
    }
    assert delta["cs"] > snapshots[1]["cs"] and delta["ts"] > 0
    reader.app.send(json.dumps({"op": "unsubscribe", "args": ["tickers.BTCUSDT"]}))
    assert reader.get()["success"] is True
    bybit.set_prices({"BTCUSDT": 60_000.0, "ETHUSDT": 3_001.0})
    assert reader.get()["topic"] == "tickers.ETHUSDT"
    assert reader.drain(0.2) == []


def test_random_walk_pushes_deltas(bybit: BybitExchange, stream: Make) -> None:
    reader = stream(f"{bybit.ws_url}/v5/public/linear")
    reader.app.send(json.dumps({"op": "subscribe", "args": ["tickers.SOLUSDT"]}))
    reader.get()
    assert reader.get()["type"] == "snapshot"
    bybit.start_random_walk(0.02)
    try:
        deltas = [reader.get() for _ in range(3)]
    finally:
        bybit.stop_random_walk()
    assert all(d["type"] == "delta" and d["data"]["symbol"] == "SOLUSDT" for d in deltas)


def test_dropped_streams_can_reconnect(bybit: BybitExchange, stream: Make) -> None:
    public = stream(f"{bybit.ws_url}/v5/public/linear")
    private = private_reader(bybit, stream)
    assert bybit.drop_streams("market") == 1
    assert public.closed.wait(5)
    assert not private.closed.is_set()
    assert bybit.drop_streams("user") == 1
    assert private.closed.wait(5)
    again = private_reader(bybit, stream)
    assert bybit.wait_for_user_streams(1)
    assert bybit.drop_streams("all") == 1
    assert again.closed.wait(5)


def test_duplicate_and_reorder_faults(bybit: BybitExchange, client: Any, stream: Make) -> None:
    reader = private_reader(bybit, stream, ("order", "execution"))
    bybit.add_fault("ws_duplicate", count=1)
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    assert _topics(reader.drain(0.3)) == ["execution", "execution", "order"]
    bybit.add_fault("ws_reorder")
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e2"})
    assert _topics(reader.drain(0.3)) == ["order", "execution"]


def test_partial_fill_parts_follow_on_the_stream(
    bybit: BybitExchange, client: Any, stream: Make
) -> None:
    reader = private_reader(bybit, stream, ("order",))
    bybit.add_fault("partial_fill", parts=3, part_interval_s=0.01)
    order = client.create_order(SYMBOL, "market", "buy", 0.03, None, {"clientOrderId": "p1"})
    states = [reader.get()["data"][0] for _ in range(3)]
    assert [s["orderStatus"] for s in states] == ["PartiallyFilled", "PartiallyFilled", "Filled"]
    assert [s["cumExecQty"] for s in states] == ["0.01000", "0.02000", "0.03000"]
    assert all(s["orderId"] == order["id"] for s in states)


def test_events_after_the_reply_when_configured(
    bybit: BybitExchange, client: Any, stream: Make
) -> None:
    reader = private_reader(bybit, stream, ("order",))
    bybit.user_events_first = False
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    assert reader.get()["data"][0]["orderLinkId"] == "e1"


def test_default_account_messages_are_kept_unheard(bybit: BybitExchange) -> None:
    with bybit.lock:
        _, events = bybit.engine.place_market("BTCUSDT", "SELL", 0.01, client_order_id="d1")
        bybit.enqueue_user_events(events)
    topics = [m["topic"] for m in bybit.user_events()]
    assert topics == ["execution", "order", "position", "wallet"]


def test_a_stop_refused_when_it_triggers_is_rejected(
    bybit: BybitExchange, client: Any, stream: Make
) -> None:
    """The shared ``reject_on_trigger`` fault, and the natural case: the position it would
    reduce was closed meanwhile (the sim keeps resting reduce-only orders then)."""
    client.create_order(SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": "e1"})
    client.create_order(
        SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", "stopLossPrice": 58_000}
    )
    client.create_order(
        SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s2", "stopLossPrice": 57_000}
    )
    reader = private_reader(bybit, stream, ("order",))
    bybit.add_fault("reject_on_trigger", symbol="BTCUSDT")
    bybit.set_price("BTCUSDT", 57_900)
    assert [m["data"][0]["orderStatus"] for m in reader.drain(0.3)] == ["Rejected"]
    assert bybit.positions("main")["BTCUSDT"].qty == 0.02
    client.create_order(
        SYMBOL, "market", "sell", 0.02, None, {"clientOrderId": "c1", "reduceOnly": True}
    )
    reader.drain(0.3)
    bybit.set_price("BTCUSDT", 56_000)  # s2 triggers on a flat position
    assert [m["data"][0]["orderStatus"] for m in reader.drain(0.3)] == ["Rejected"]
    history = client.fetch_canceled_and_closed_orders(SYMBOL, None, None, {"trigger": True})
    assert {o["clientOrderId"]: o["status"] for o in history} == {
        "s1": "rejected",
        "s2": "rejected",
    }


def test_a_mark_price_blast_sends_ticker_deltas(bybit: BybitExchange, stream: Make) -> None:
    reader = stream(f"{bybit.ws_url}/v5/public/linear")
    reader.app.send(json.dumps({"op": "subscribe", "args": ["tickers.BTCUSDT"]}))
    reader.get()
    reader.get()  # the snapshot
    stats = bybit.blast_mark_prices(200, ["BTCUSDT", "ETHUSDT"], step_pct=0.0, drift_pct=0.0001)
    assert stats["frames"] == 200 and stats["deliveries"] == 100  # BTCUSDT's half
    deltas = [reader.get() for _ in range(100)]
    prices = [float(d["data"]["markPrice"]) for d in deltas]
    assert prices == sorted(prices) and prices[-1] == bybit.mark_price("BTCUSDT")
    assert reader.drain(0.2) == []
