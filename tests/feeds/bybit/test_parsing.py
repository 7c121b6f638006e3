"""Unit tests: Bybit's frames parsed (pure functions), the request session driven by a fake
clock, and the tickers wire's merge of deltas into the snapshot."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from actors.model import ExchangeStatus
from infra.feeds import BybitCredentials, BybitSession, BybitTickers
from infra.feeds.parsing import (
    ORDER_STATUS,
    AccountEvent,
    OpReply,
    OrderEvent,
    OtherEvent,
    Refusal,
    TickerUpdate,
    parse_bybit_private,
    parse_bybit_ticker,
)

pytestmark = pytest.mark.timeout(10)


def order(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "orderId": "oid-1",
        "orderLinkId": "ps1e1",
        "orderStatus": "Filled",
        "cumExecQty": "0.010",
        "avgPrice": "60000.5",
        "stopOrderType": "",
        "updatedTime": "1700000000123",
    }
    row.update(fields)
    return row


def frame(topic: str, *rows: Any, t: Any = 1700000000000) -> bytes:
    return json.dumps({"id": "1", "topic": topic, "creationTime": t, "data": list(rows)}).encode()


def one(data: bytes) -> object:
    events, bad = parse_bybit_private(data)
    assert len(events) + len(bad) == 1, (events, bad)
    return (events or bad)[0]


def test_an_order_row_is_an_order_event() -> None:
    ev = one(frame("order", order()))
    assert ev == OrderEvent(
        "BTCUSDT", "ps1e1", ExchangeStatus.FILLED, 0.01, 60000.5, 1700000000.123, "oid-1"
    )


def test_a_conditional_order_is_algo_and_keeps_its_ids() -> None:
    for status, expected in (
        ("Untriggered", ExchangeStatus.NEW),
        ("Triggered", ExchangeStatus.TRIGGERED),
        ("Filled", ExchangeStatus.FILLED),
        ("Deactivated", ExchangeStatus.CANCELED),
        ("Rejected", ExchangeStatus.REJECTED),
    ):
        ev = one(frame("order", order(orderStatus=status, stopOrderType="Stop", avgPrice="")))
        assert isinstance(ev, OrderEvent)
        assert (ev.status, ev.algo, ev.order_id, ev.client_id) == (expected, True, "oid-1", "ps1e1")
        assert ev.avg_price is None


def test_every_bybit_status_maps_or_is_unknown() -> None:
    assert ORDER_STATUS["PartiallyFilledCanceled"] is ExchangeStatus.CANCELED
    assert ORDER_STATUS["Cancelled"] is ExchangeStatus.CANCELED
    ev = one(frame("order", order(orderStatus="Brand-new")))
    assert isinstance(ev, OrderEvent) and ev.status is None


def test_empty_values_read_as_nothing_filled() -> None:
    ev = one(frame("order", order(orderStatus="New", cumExecQty="", avgPrice="0")))
    assert isinstance(ev, OrderEvent) and ev.filled_qty == 0 and ev.avg_price is None


def test_the_row_time_wins_and_the_message_time_stands_in() -> None:
    ev = one(frame("order", order(updatedTime=None)))
    assert isinstance(ev, OrderEvent) and ev.event_time == 1700000000.0
    bad = one(frame("order", order(updatedTime="x"), t=None))
    assert bad == Refusal("bad_event_time", "BTCUSDT")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"cumExecQty": "nan"}, "bad_quantity"),
        ({"cumExecQty": -0.5}, "bad_quantity"),
        ({"cumExecQty": "1e16"}, "bad_quantity"),
        ({"cumExecQty": True}, "bad_quantity"),
        ({"avgPrice": "-1"}, "bad_price"),
        ({"avgPrice": "inf"}, "bad_price"),
        ({"orderStatus": None}, "missing_status"),
        ({"symbol": ""}, "missing_symbol"),
    ],
)
def test_bad_rows_are_refused(fields: dict[str, Any], reason: str) -> None:
    r = one(frame("order", order(**fields)))
    assert isinstance(r, Refusal) and r.reason == reason


def test_rows_that_are_not_ours_are_other_events() -> None:
    assert one(frame("order", order(category="spot"))) == OtherEvent("order:spot")
    assert one(frame("order", order(orderLinkId=""))) == OtherEvent("order_without_link_id")
    assert one(frame("wallet", {"coin": []})) == OtherEvent("wallet")
    assert one(frame("execution", {"symbol": "BTCUSDT", "execType": "Trade"})) == OtherEvent(
        "execution"
    )
    assert one(frame("position", {"symbol": "BTCUSDT", "positionStatus": "Normal"})) == (
        OtherEvent("position")
    )


def test_the_exchange_moving_a_position_is_an_account_event() -> None:
    liq = one(frame("order", order(orderLinkId="", createType="CreateByLiq")))
    assert isinstance(liq, AccountEvent) and liq.symbols == ("BTCUSDT",)
    adl = one(frame("order", order(createType="CreateByAdl_PassThrough")))
    assert isinstance(adl, AccountEvent)
    ours = one(frame("order", order(createType="CreateByStopLoss")))
    assert isinstance(ours, OrderEvent), "a stop of ours is an order, not the exchange's"
    bust = one(frame("execution", {"symbol": "ETHUSDT", "execType": "BustTrade"}))
    assert isinstance(bust, AccountEvent) and bust.reason == "BustTrade"
    pos = one(frame("position", {"symbol": "ETHUSDT", "positionStatus": "Adl"}))
    assert isinstance(pos, AccountEvent) and pos.reason == "position Adl"


def test_one_bad_row_leaves_the_others() -> None:
    events, bad = parse_bybit_private(frame("order", order(cumExecQty="x"), order(orderId="b")))
    assert [e.order_id for e in events if isinstance(e, OrderEvent)] == ["b"]
    assert [r.reason for r in bad] == ["bad_quantity"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'"text"', "unexpected_shape"),
        (b'{"data": []}', "unexpected_shape"),
        (b'{"topic": "order", "data": {}}', "unexpected_shape"),
        (b'{"topic": "greeks", "data": []}', "unknown_topic"),
        (b'{"topic": "order", "data": [1]}', "unexpected_shape"),
    ],
)
def test_bad_frames_are_refused(data: bytes, reason: str) -> None:
    r = one(data)
    assert isinstance(r, Refusal) and r.reason == reason


def test_replies_are_op_replies() -> None:
    auth = b'{"success": false, "ret_msg": "Invalid apikey", "op": "auth", "conn_id": "c"}'
    assert one(auth) == OpReply("auth", False, "Invalid apikey")
    pong = b'{"req_id": "ping-1-3", "op": "pong", "args": ["1700"], "conn_id": "c"}'
    assert one(pong) == OpReply("pong", True, "", "ping-1-3")
    odd = b'{"success": false, "ret_msg": "error:request not json or invalid"}'
    assert one(odd) == OpReply("", False, "error:request not json or invalid")


def ticker(kind: str = "delta", ts: Any = 1700000000500, **data: Any) -> bytes:
    return json.dumps(
        {"topic": "tickers.BTCUSDT", "type": kind, "data": {"symbol": "BTCUSDT", **data}, "ts": ts}
    ).encode()


def test_tickers_parse() -> None:
    assert parse_bybit_ticker(ticker("snapshot", markPrice="60000.1")) == TickerUpdate(
        "BTCUSDT", True, 60000.1, 1700000000.5
    )
    assert parse_bybit_ticker(ticker(bid1Price="1")) == TickerUpdate(
        "BTCUSDT", False, None, 1700000000.5
    )
    assert parse_bybit_ticker(ticker(markPrice="")) == TickerUpdate(
        "BTCUSDT", False, None, 1700000000.5
    )
    for bad in ("NaN", "-1", "0", "1e400", "1e15", [1], True):
        r = parse_bybit_ticker(ticker(markPrice=bad))
        assert isinstance(r, Refusal) and r.reason == "bad_price", bad
    r = parse_bybit_ticker(ticker(ts="later", markPrice="1"))
    assert isinstance(r, Refusal) and r.reason == "bad_event_time"
    other = json.dumps({"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "X"}})
    r = parse_bybit_ticker(other)
    assert isinstance(r, Refusal) and r.reason == "missing_symbol"
    pong = b'{"success": true, "ret_msg": "pong", "op": "ping", "req_id": "p"}'
    assert parse_bybit_ticker(pong) == OpReply("ping", True, "pong", "p")


def test_the_wire_merges_deltas_into_the_snapshot() -> None:
    wire = BybitTickers("ws://x/v5/public/linear", ["BTCUSDT"])
    sent: list[str] = []
    wire.opened(1, sent.append)
    before, bad = wire.parse(ticker(bid1Price="1"), sent.append)
    assert before == [] and [r.reason for r in bad] == ["no_mark_yet"]
    prices, _ = wire.parse(ticker("snapshot", ts=1, markPrice="100"), sent.append)
    assert [(p.price, p.event_time) for p in prices] == [(100.0, 0.001)]
    prices, _ = wire.parse(ticker(ts=2, bid1Price="99"), sent.append)
    assert [(p.price, p.event_time) for p in prices] == [(100.0, 0.002)]
    prices, bad = wire.parse(ticker(ts=3, markPrice="NaN"), sent.append)
    assert prices == [] and wire.mark("BTCUSDT") == 100.0
    prices, _ = wire.parse(ticker(ts=4, markPrice="101"), sent.append)
    assert [p.price for p in prices] == [101.0]
    wire.opened(2, sent.append)  # a new connection starts from its own snapshot
    assert wire.mark("BTCUSDT") is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def requests(sent: list[str]) -> list[dict[str, Any]]:
    return [json.loads(s) for s in sent]


def test_the_auth_request_is_signed_and_the_secret_never_shown() -> None:
    creds = BybitCredentials("k1", "s3cr3t")
    assert "s3cr3t" not in repr(creds)
    sent: list[str] = []
    session = BybitSession("t", ["order"], creds, clock=lambda: 1700000000.0)
    session.opened(1, sent.append)
    (auth,) = requests(sent)
    key, expires, sig = auth["args"]
    assert auth["op"] == "auth" and key == "k1" and expires == 1700000010000
    expected = hmac.new(b"s3cr3t", b"GET/realtime1700000010000", hashlib.sha256).hexdigest()
    assert sig == expected


def test_subscribe_after_auth_and_ready_once_confirmed() -> None:
    sent: list[str] = []
    session = BybitSession("t", ["order", "execution", "position"], BybitCredentials("k", "s"))
    session.opened(1, sent.append)
    assert session.reply(OpReply("auth", True), sent.append).ready is False
    sub = requests(sent)[1]
    assert sub["op"] == "subscribe" and sub["args"] == ["order", "execution", "position"]
    step = session.reply(OpReply("subscribe", True, "", sub["req_id"]), sent.append)
    assert step.ready and session.ready


def test_a_refused_auth_or_subscription_of_the_private_stream_reconnects() -> None:
    sent: list[str] = []
    session = BybitSession("t", ["order"], BybitCredentials("k", "s"))
    session.opened(1, sent.append)
    step = session.reply(OpReply("auth", False, "Invalid apikey"), sent.append)
    assert step.reconnect == "auth_refused" and step.refusal is not None
    assert step.refusal.detail == "Invalid apikey"
    session.opened(2, sent.append)
    session.reply(OpReply("auth", True), sent.append)
    rid = requests(sent)[-1]["req_id"]
    step = session.reply(OpReply("subscribe", False, "no permission", rid), sent.append)
    assert step.reconnect == "subscribe_refused" and not step.ready


def test_a_refused_chunk_is_asked_again_topic_by_topic() -> None:
    sent: list[str] = []
    topics = [f"tickers.S{i}USDT" for i in range(12)]
    session = BybitSession("t", topics, chunk=10)
    session.opened(1, sent.append)
    first, second = requests(sent)
    assert len(first["args"]) == 10 and len(second["args"]) == 2
    assert (
        session.reply(OpReply("subscribe", True, "", second["req_id"]), sent.append).ready is False
    )
    session.reply(OpReply("subscribe", False, "handler not found", first["req_id"]), sent.append)
    singles = requests(sent)[2:]
    assert [s["args"] for s in singles] == [[t] for t in topics[:10]]
    step = None
    for s in singles:
        ok = s["args"] != ["tickers.S3USDT"]
        step = session.reply(
            OpReply("subscribe", ok, "" if ok else "nope", s["req_id"]), sent.append
        )
    assert step is not None and step.ready and step.reconnect is None
    assert session.refused_topics == {"tickers.S3USDT"}


def test_pings_are_due_and_a_missing_answer_ends_the_connection() -> None:
    clock = Clock()
    sent: list[str] = []
    session = BybitSession(
        "t", ["tickers.BTCUSDT"], ping_interval_s=20, pong_timeout_s=10, monotonic=clock
    )
    session.opened(1, sent.append)
    session.reply(OpReply("subscribe", True, "", requests(sent)[0]["req_id"]), sent.append)
    clock.now += 19.9
    assert session.idle(sent.append).reconnect is None and len(sent) == 1
    clock.now += 0.1
    session.idle(sent.append)
    ping = requests(sent)[-1]
    assert ping["op"] == "ping"
    session.reply(OpReply("ping", True, "pong", ping["req_id"]), sent.append)
    assert session.pongs == 1
    clock.now += 20
    session.idle(sent.append)  # the next ping
    clock.now += 10.1
    assert session.idle(sent.append).reconnect == "ping_timeout"


def test_an_unanswered_auth_times_out() -> None:
    clock = Clock()
    session = BybitSession("t", ["order"], BybitCredentials("k", "s"), monotonic=clock)
    session.opened(1, lambda s: None)
    clock.now += 10.5
    step = session.idle(lambda s: None)
    assert step.reconnect == "auth_timeout" and step.refusal == Refusal("auth_timeout")


def test_the_tickers_wire_ends_a_connection_that_stopped_ticking() -> None:
    """Pongs keep the runner's own silence watchdog quiet: the wire watches tickers."""
    clock = Clock()
    sent: list[str] = []
    wire = BybitTickers("ws://x", ["BTCUSDT"], silence_timeout_s=30.0, monotonic=clock)
    wire.opened(1, sent.append)
    clock.now += 60  # not subscribed yet: the subscription's own timeout applies
    assert wire.idle(sent.append)[1] == "subscribe_timeout"
    wire.opened(2, sent.append)
    rid = requests(sent)[-1]["req_id"]
    wire.parse(
        json.dumps({"success": True, "op": "subscribe", "req_id": rid}).encode(), sent.append
    )
    clock.now += 20
    wire.parse(ticker("snapshot", markPrice="1"), sent.append)
    clock.now += 29
    assert wire.idle(sent.append) == (None, None)
    answer = {
        "success": True,
        "ret_msg": "pong",
        "op": "ping",
        "req_id": requests(sent)[-1]["req_id"],
    }
    wire.parse(json.dumps(answer).encode(), sent.append)
    clock.now += 2
    refusal, reconnect = wire.idle(sent.append)
    assert reconnect == "silence" and refusal is not None and refusal.reason == "silence"
