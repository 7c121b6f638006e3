"""Hostile frames on Bybit's private stream: each is refused with a log line and a metric by
reason (or, when it is the exchange moving a position, asks for a sync), the connection is
kept, and the next real fill is still delivered. Frames travel the real socket (published on
the sim's stream hub); silent or broken servers are raw ones (``tests.feeds.rawserver``).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from infra.feeds import BybitCredentials, BybitUserStream, CountingFeedMetrics
from sim.bybit import BybitExchange
from sim.websocket import OP_TEXT, encode_frame, read_frame
from tests.feeds.bybit.conftest import ACCOUNT, CCXT_SYMBOL, SYMBOL, Recorder, user_stream
from tests.feeds.conftest import FAST, SyncRecorder, stopped, wait_until
from tests.feeds.rawserver import RawServer, server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def order_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "category": "linear",
        "symbol": SYMBOL,
        "orderId": "x-1",
        "orderLinkId": "h1",
        "orderStatus": "Filled",
        "cumExecQty": "0.01",
        "avgPrice": "60000",
        "stopOrderType": "",
        "updatedTime": "1700000000000",
    }
    row.update(fields)
    return row


def message(topic: str, *rows: dict[str, Any]) -> str:
    return json.dumps({"id": "h", "topic": topic, "creationTime": 1700000000000, "data": rows})


HOSTILE = [
    ('{"topic": "order", "data": [', "malformed_json"),
    ("[]", "unexpected_shape"),
    ('{"topic": "order", "data": {}}', "unexpected_shape"),
    (json.dumps({"data": []}), "unexpected_shape"),
    (message("greeks"), "unknown_topic"),
    (message("order", order_row(cumExecQty="NaN")), "bad_quantity"),
    (message("order", order_row(cumExecQty="-1")), "bad_quantity"),
    (message("order", order_row(cumExecQty="1e400")), "bad_quantity"),
    (message("order", order_row(cumExecQty="1e300")), "bad_quantity"),
    (message("order", order_row(avgPrice="Infinity")), "bad_price"),
    (message("order", order_row(avgPrice=[1])), "bad_price"),
    (message("order", order_row(orderStatus="")), "missing_status"),
    (message("order", order_row(symbol=None)), "missing_symbol"),
    (
        message("order", order_row(updatedTime="soon")).replace("1700000000000", "-1"),
        "bad_event_time",
    ),
    (message("order", "not a row"), "unexpected_shape"),  # type: ignore[arg-type]
]
IGNORED = [
    message("order", order_row(category="spot")),  # a spot order of the unified account
    message("order", order_row(orderLinkId="")),  # placed by hand
    message("order", order_row(orderStatus="SomethingNew")),  # a status nothing acts on
    message("wallet", {"coin": []}),
    message("execution", {"symbol": SYMBOL, "execType": "Funding"}),
]


def test_hostile_rows_are_refused_by_reason_and_the_next_fill_arrives(
    bybit: BybitExchange,
    client: Any,
    private: BybitUserStream,
    recorder: Recorder,
    feed_metrics: CountingFeedMetrics,
) -> None:
    stream = f"{ACCOUNT}|order"
    for text, _ in HOSTILE:
        bybit.hub.publish(stream, text)
    for text in IGNORED:
        bybit.hub.publish(stream, text)
    expected: dict[str, int] = {}
    for _, reason in HOSTILE:
        expected[reason] = expected.get(reason, 0) + 1
    wait_until(lambda: dict(private.refused) == expected, 5.0, f"refused {expected}")
    wait_until(lambda: private.ignored >= len(IGNORED), 5.0, "ignored")
    assert dict(feed_metrics.errors_of("main:user")) == expected
    assert recorder.updates() == []  # nothing half-parsed was told
    client.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    assert recorder.wait_update("e1", "filled").filled_qty == pytest.approx(0.01)
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.01)
    assert private.runner.stats().connections == 1


def test_a_bad_row_does_not_cost_its_neighbours(
    bybit: BybitExchange, private: BybitUserStream, recorder: Recorder
) -> None:
    bybit.hub.publish(
        f"{ACCOUNT}|order",
        message("order", order_row(cumExecQty="NaN"), order_row(orderLinkId="h2")),
    )
    assert recorder.wait_update("h2", "filled").filled_qty == 0.01
    wait_until(lambda: private.refused == {"bad_quantity": 1}, 5.0, "the bad row counted")


def test_the_exchange_moving_a_position_asks_for_a_sync(
    bybit: BybitExchange, private: BybitUserStream, syncs: SyncRecorder, recorder: Recorder
) -> None:
    bybit.hub.publish(
        f"{ACCOUNT}|order", message("order", order_row(orderLinkId="", createType="CreateByLiq"))
    )
    bybit.hub.publish(
        f"{ACCOUNT}|execution", message("execution", {"symbol": SYMBOL, "execType": "AdlTrade"})
    )
    bybit.hub.publish(
        f"{ACCOUNT}|position",
        message("position", {"symbol": SYMBOL, "positionStatus": "Liq", "size": "0"}),
    )
    assert syncs.wait_for("account update", 3)
    assert recorder.updates() == [] and private.refused == {}


def test_an_oversized_message_is_dropped_and_the_connection_kept(
    bybit: BybitExchange,
    client: Any,
    recorder: Recorder,
    syncs: SyncRecorder,
    feed_metrics: CountingFeedMetrics,
) -> None:
    s = user_stream(bybit, recorder, syncs, feed_metrics, hard_max_frame_bytes=64 * 1024)
    s.start()
    try:
        assert syncs.wait_for("stream connected")
        huge = message("order", order_row(orderLinkId="big", pad="x" * 200_000))
        bybit.hub.publish(f"{ACCOUNT}|order", huge)
        wait_until(lambda: s.runner.stats().oversized == 1, 5.0, "oversized")
        client.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
        recorder.wait_update("e1", "filled")
        assert recorder.updates("big") == []
        assert feed_metrics.errors_of("main:user")["oversized"] == 1
        assert s.runner.stats().connections == 1
    finally:
        stopped(s)


def test_a_refused_subscription_is_counted_and_retried(
    bybit: BybitExchange,
    recorder: Recorder,
    syncs: SyncRecorder,
    feed_metrics: CountingFeedMetrics,
) -> None:
    """An account without permission for a topic: the sim refuses unknown topics the same
    way, so one is added to the stream's list."""
    s = user_stream(bybit, recorder, syncs, feed_metrics)
    s.session.topics = (*s.session.topics, "greeks")
    s.start()
    try:
        wait_until(lambda: s.refused["subscribe_refused"] >= 2, 10.0, "refused twice")
    finally:
        stopped(s)
    assert feed_metrics.errors_of("main:user")["subscribe_refused"] >= 2
    assert s.runner.stats().ends.get("subscribe_refused", 0) >= 1
    assert syncs.reasons() == []


def _talk(s: RawServer, answer: bool, pong: bool) -> None:
    """A raw Bybit-ish private endpoint: answers auth and subscribe when ``answer``, pings
    when ``pong``; otherwise reads and stays silent."""

    def behaviour(conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        conn.settimeout(5.0)
        try:
            while True:
                _, opcode, payload = read_frame(rfile, 1 << 20)
                if opcode != OP_TEXT:
                    continue
                req = json.loads(payload)
                op = req.get("op")
                if (op in ("auth", "subscribe") and answer) or (op == "ping" and pong):
                    reply = {"success": True, "ret_msg": "", "op": op, "req_id": req.get("req_id")}
                    conn.sendall(encode_frame(OP_TEXT, json.dumps(reply).encode()))
        except (EOFError, OSError, ValueError):
            return

    s.behaviour = behaviour


@pytest.mark.parametrize(
    ("answer", "pong", "reason"),
    [(False, False, "auth_timeout"), (True, False, "ping_timeout")],
)
def test_a_dead_connection_is_detected_and_replaced(
    answer: bool, pong: bool, reason: str, recorder: Recorder, syncs: SyncRecorder
) -> None:
    with server() as s:
        _talk(s, answer, pong)
        stream = BybitUserStream(
            ACCOUNT,
            s.url,
            BybitCredentials("k", "secret-never-logged"),
            recorder,
            request_sync=syncs,
            backoff=FAST,
            poll_s=0.02,
            ping_interval_s=0.1,
            pong_timeout_s=0.2,
            reply_timeout_s=0.3,
        )
        stream.start()
        try:
            wait_until(lambda: stream.runner.stats().ends.get(reason, 0) >= 1, 10.0, reason)
            assert stream.runner.wait_connected(2)
            if answer:
                assert syncs.wait_for("stream reconnect")
        finally:
            stopped(stream)
    if answer:
        assert syncs.reasons()[:2] == ["stream connected", "stream reconnect"]
    else:
        assert syncs.reasons() == []
    assert stream.refused.get(reason, 0) >= (0 if answer else 1)
