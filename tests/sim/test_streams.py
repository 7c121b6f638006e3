"""Mark-price, combined and user-data streams through the real websocket-client."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import websocket

from sim import SimExchange
from tests.sim.conftest import SYMBOL, WsReader, user_stream_url

pytestmark = pytest.mark.timeout(30)

MARK_FIELDS = {"e", "E", "s", "p", "i", "P", "r", "T"}


def test_mark_price_single_streams(sim: SimExchange, ws_reader: Callable[..., WsReader]) -> None:
    plain = ws_reader(f"{sim.ws_url}/ws/btcusdt@markPrice")
    fast = ws_reader(f"{sim.ws_url}/ws/btcusdt@markPrice@1s")
    assert sim.wait_for_subscribers("btcusdt@markPrice") and sim.wait_for_subscribers(
        "btcusdt@markPrice@1s"
    )
    sim.set_price("BTCUSDT", 60_123.4)
    sim.set_price("ETHUSDT", 3_001.0)  # another symbol: not on these streams
    for reader in (plain, fast):
        ev = reader.get()
        assert set(ev) == MARK_FIELDS
        assert ev["e"] == "markPriceUpdate" and ev["s"] == "BTCUSDT" and ev["p"] == "60123.40000000"
        assert all(isinstance(ev[k], str) for k in ("p", "i", "P", "r"))
        assert isinstance(ev["E"], int) and isinstance(ev["T"], int)
    assert plain.drain(0.1) == []


def test_combined_stream_and_all_market_array(
    sim: SimExchange, ws_reader: Callable[..., WsReader]
) -> None:
    combined = ws_reader(f"{sim.ws_url}/stream?streams=btcusdt@markPrice/ethusdt@markPrice@1s")
    arr = ws_reader(f"{sim.ws_url}/ws/!markPrice@arr")
    arr1s = ws_reader(f"{sim.ws_url}/stream?streams=!markPrice@arr@1s")
    assert sim.wait_for_subscribers("ethusdt@markPrice@1s") and sim.wait_for_subscribers(
        "!markPrice@arr@1s"
    )
    sim.set_prices({"BTCUSDT": 61_000.0, "ETHUSDT": 3_100.0, "SOLUSDT": 151.0})
    got = {m["stream"]: m["data"] for m in (combined.get(), combined.get())}
    assert got["btcusdt@markPrice"]["p"] == "61000.00000000"
    assert got["ethusdt@markPrice@1s"]["s"] == "ETHUSDT"
    whole = arr.get()
    assert [e["s"] for e in whole] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    wrapped = arr1s.get()
    assert wrapped["stream"] == "!markPrice@arr@1s" and len(wrapped["data"]) == 3


def test_subscribe_and_list_over_an_open_connection(sim: SimExchange) -> None:
    ws = websocket.create_connection(f"{sim.ws_url}/ws", timeout=5)
    try:
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["solusdt@markPrice"], "id": 1}))
        assert json.loads(ws.recv()) == {"result": None, "id": 1}
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert json.loads(ws.recv()) == {"result": ["solusdt@markPrice"], "id": 2}
        sim.set_price("SOLUSDT", 152.5)
        assert json.loads(ws.recv())["p"] == "152.50000000"
        ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["solusdt@markPrice"], "id": 3}))
        assert json.loads(ws.recv()) == {"result": None, "id": 3}
    finally:
        ws.close()


def test_unknown_stream_is_refused(sim: SimExchange) -> None:
    for path in ("/ws/nosuchusdt@markPrice", "/ws/not-a-listen-key", "/elsewhere"):
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(sim.ws_url + path, timeout=5)


def _events(reader: WsReader, n: int) -> list[dict[str, Any]]:
    return [reader.get() for _ in range(n)]


def test_user_stream_market_fill(
    sim: SimExchange, client: Any, ws_reader: Callable[..., WsReader]
) -> None:
    reader = ws_reader(user_stream_url(sim, client))
    assert sim.wait_for_user_streams(1)
    order = client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "m1"})
    new, trade, account = _events(reader, 3)
    assert new["e"] == trade["e"] == "ORDER_TRADE_UPDATE"
    o = new["o"]
    assert (o["s"], o["c"], o["S"], o["o"], o["x"], o["X"], o["i"]) == (
        "BTCUSDT",
        "m1",
        "BUY",
        "MARKET",
        "NEW",
        "NEW",
        int(order["id"]),
    )
    t = trade["o"]
    assert (t["x"], t["X"], t["l"], t["z"], t["L"], t["ap"]) == (
        "TRADE",
        "FILLED",
        "0.01000",
        "0.01000",
        "60000.0",
        "60000.0",
    )
    assert t["ot"] == "MARKET" and t["ps"] == "BOTH" and t["R"] is False and t["N"] == "USDT"
    assert {"f", "q", "p", "sp", "T", "t", "rp", "cp", "wt", "m", "b", "a"} <= set(t)
    assert account["e"] == "ACCOUNT_UPDATE" and account["a"]["m"] == "ORDER"
    (row,) = account["a"]["P"]
    assert (row["s"], row["pa"], row["ps"]) == ("BTCUSDT", "0.01000", "BOTH")
    assert float(row["ep"]) == 60_000.0
    assert account["a"]["B"][0]["a"] == "USDT"


def test_user_stream_stop_trigger(
    sim: SimExchange, client: Any, ws_reader: Callable[..., WsReader]
) -> None:
    reader = ws_reader(user_stream_url(sim, client))
    assert sim.wait_for_user_streams(1)
    client.create_order(SYMBOL, "market", "buy", 0.02)
    reader.drain(0.1)
    stop = client.create_order(
        SYMBOL,
        "market",
        "sell",
        None,
        params={"triggerPrice": 59_000, "clientOrderId": "sl-7", "closePosition": True},
    )
    placed = reader.get()
    assert (
        placed["e"] == "ALGO_UPDATE" and placed["o"]["X"] == "NEW" and placed["o"]["caid"] == "sl-7"
    )
    assert (
        placed["o"]["aid"] == int(stop["id"])
        and placed["o"]["o"] == "STOP_MARKET"
        and placed["o"]["cp"] is True
    )
    sim.set_price("BTCUSDT", 58_950.0)
    seq = _events(reader, 6)
    assert [(m["e"], m["o"].get("X") if "o" in m else None) for m in seq] == [
        ("ALGO_UPDATE", "TRIGGERING"),
        ("ALGO_UPDATE", "TRIGGERED"),
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "FILLED"),
        ("ACCOUNT_UPDATE", None),
        ("ALGO_UPDATE", "FINISHED"),
    ]
    triggered, new, filled, account, finished = seq[1], seq[2], seq[3], seq[4], seq[5]
    assert triggered["o"]["ai"] == str(new["o"]["i"]) and triggered["o"]["act"] == "MARKET"
    assert (
        new["o"]["c"] == "sl-7" and new["o"]["ot"] == "STOP_MARKET" and new["o"]["sp"] == "59000.0"
    )
    assert (
        filled["o"]["z"] == "0.02000"
        and filled["o"]["ap"] == "58950.0"
        and filled["o"]["cp"] is True
    )
    assert account["a"]["P"][0]["pa"] == "0.00000"
    fin = finished["o"]
    assert (fin["caid"], fin["ai"], fin["aq"], fin["ap"]) == (
        "sl-7",
        str(new["o"]["i"]),
        "0.02000",
        "58950.0",
    )


def test_events_are_written_before_the_rest_reply(sim: SimExchange, client: Any) -> None:
    ws = websocket.create_connection(user_stream_url(sim, client), timeout=5)
    try:
        assert sim.wait_for_user_streams(1)
        client.create_order(SYMBOL, "market", "buy", 0.01)
        ws.settimeout(0.0)  # the frames must already be in the socket when the reply is
        first = [json.loads(ws.recv()) for _ in range(3)]
        assert [m["e"] for m in first] == [
            "ORDER_TRADE_UPDATE",
            "ORDER_TRADE_UPDATE",
            "ACCOUNT_UPDATE",
        ]
        sim.user_events_first = False  # the knob: events follow the reply
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "late"})
        ws.settimeout(5.0)
        late = [json.loads(ws.recv()) for _ in range(3)]
        assert [m["o"]["c"] for m in late[:2]] == ["late", "late"]
    finally:
        ws.close()


def test_delete_listen_key_closes_user_stream(
    sim: SimExchange, client: Any, ws_reader: Callable[..., WsReader]
) -> None:
    reader = ws_reader(user_stream_url(sim, client))
    assert sim.wait_for_user_streams(1)
    client.fapiPrivateDeleteListenKey()
    assert reader.closed.wait(5)


@pytest.mark.timeout(60)
def test_blast_mark_prices_reaches_websocket_client(
    sim: SimExchange, ws_reader: Callable[..., WsReader]
) -> None:
    reader = ws_reader(
        f"{sim.ws_url}/stream?streams=btcusdt@markPrice/ethusdt@markPrice", skip_utf8=True
    )
    assert sim.wait_for_subscribers("ethusdt@markPrice")
    stats = sim.blast_mark_prices(5_000, ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    assert stats["frames"] == 5_000
    assert stats["deliveries"] == 3_334  # SOLUSDT has no subscriber
    received = [reader.get(10) for _ in range(3_334)]
    assert {m["data"]["s"] for m in received} == {"BTCUSDT", "ETHUSDT"}
    paced = sim.blast_mark_prices(50, ["BTCUSDT"], rate_per_s=500)
    assert paced["seconds"] >= 0.09
