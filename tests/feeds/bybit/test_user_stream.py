"""Bybit's private stream end to end: sim/bybit, the real websocket-client, orders placed with
the real ccxt; what the feed tells is checked against the sim's own ledger.

The sim writes an order's private messages before its REST reply (the default), so the stream
reports every fill; the recording sink sees exactly what the supervisor would be told.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.model import ExchangeStatus, Key
from infra.feeds import BybitUserStream, CountingFeedMetrics
from sim.bybit import BybitExchange
from tests.feeds.bybit.conftest import (
    ACCOUNT,
    CCXT_SYMBOL,
    SYMBOL,
    Recorder,
    user_stream,
)
from tests.feeds.conftest import SyncRecorder, stopped, wait_until
from tests.sim.bybit.conftest import make_bybit_ccxt

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

KEY = Key(ACCOUNT, SYMBOL)


def test_a_market_fill_arrives_as_one_order_update(
    bybit: BybitExchange, client: Any, private: BybitUserStream, recorder: Recorder
) -> None:
    order = client.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    upd = recorder.wait_update("e1", "filled")
    assert upd.key == KEY and upd.filled_qty == pytest.approx(0.01)
    assert upd.avg_price == pytest.approx(60_000.0)
    assert upd.exchange_id == order["id"]
    assert upd.event_time > 0
    # the exchange's own ledger: the position is what the stream reported as filled
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(upd.filled_qty)
    assert [u.status for u in recorder.updates("e1")] == [ExchangeStatus.FILLED]
    assert private.refused == {} and private.undelivered == 0


def test_a_triggered_stop_keeps_its_client_id_to_the_fill(
    bybit: BybitExchange, client: Any, private: BybitUserStream, recorder: Recorder
) -> None:
    client.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    stop = client.create_order(
        CCXT_SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", "stopLossPrice": 58_000}
    )
    placed = recorder.wait_update("s1", "new")
    assert placed.filled_qty == 0 and placed.avg_price is None
    assert placed.exchange_id == stop["id"]
    bybit.set_price(SYMBOL, 57_500.0)
    done = recorder.wait_update("s1", "filled")
    assert done.filled_qty == pytest.approx(0.01) and done.avg_price == pytest.approx(57_500.0)
    assert done.exchange_id == stop["id"], "one id from placement to fill"
    statuses = [u.status.value for u in recorder.updates("s1")]
    assert statuses == ["new", "triggered", "filled"]
    assert SYMBOL not in bybit.positions(ACCOUNT)


def test_a_cancelled_stop_is_reported_cancelled(
    client: Any, private: BybitUserStream, recorder: Recorder
) -> None:
    client.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    client.create_order(
        CCXT_SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", "stopLossPrice": 58_000}
    )
    client.cancel_order(None, CCXT_SYMBOL, {"orderLinkId": "s1"})
    assert recorder.wait_update("s1", "canceled").filled_qty == 0


def test_partial_fills_are_cumulative(
    bybit: BybitExchange, client: Any, private: BybitUserStream, recorder: Recorder
) -> None:
    bybit.add_fault("partial_fill", parts=3, part_interval_s=0.02)
    client.create_order(CCXT_SYMBOL, "market", "buy", 0.03, None, {"clientOrderId": "p1"})
    recorder.wait_update("p1", "filled", 0.03)
    filled = [u.filled_qty for u in recorder.updates("p1")]
    assert filled == pytest.approx([0.01, 0.02, 0.03])
    assert bybit.positions(ACCOUNT)[SYMBOL].qty == pytest.approx(0.03)


def test_duplicated_and_reordered_messages_neither_lose_nor_double(
    bybit: BybitExchange, client: Any, private: BybitUserStream, recorder: Recorder
) -> None:
    """Every message twice, each operation's messages reversed: each order's last
    cumulative quantity is still the exchange's, and nothing is missing."""
    bybit.add_fault("ws_duplicate", count=None)
    bybit.add_fault("ws_reorder", count=None)
    ids = [f"d{i}" for i in range(5)]
    for cid in ids:
        client.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": cid})
    assert recorder.wait(lambda: all(len(recorder.updates(c)) >= 2 for c in ids))
    for cid in ids:
        ups = recorder.updates(cid)
        assert len(ups) == 2 and [u.filled_qty for u in ups] == pytest.approx([0.01, 0.01])
    top = sum(max(u.filled_qty for u in recorder.updates(c)) for c in ids)
    assert top == pytest.approx(bybit.positions(ACCOUNT)[SYMBOL].qty) == pytest.approx(0.05)


def test_a_dropped_connection_is_reconnected_resubscribed_and_resynced(
    bybit: BybitExchange,
    client: Any,
    private: BybitUserStream,
    recorder: Recorder,
    syncs: SyncRecorder,
) -> None:
    assert bybit.drop_streams("user") == 1
    assert syncs.wait_for("stream reconnect"), syncs.reasons()
    assert private.runner.wait_connected(2)
    assert bybit.wait_for_user_streams(1)
    client.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "after"})
    assert recorder.wait_update("after", "filled").filled_qty == pytest.approx(0.01)
    assert syncs.reasons() == ["stream connected", "stream reconnect"]
    assert private.runner.stats().ends.get("dropped") == 1


def test_orders_of_another_account_are_not_heard(
    bybit: BybitExchange, private: BybitUserStream, recorder: Recorder
) -> None:
    other = make_bybit_ccxt(bybit.base_url, "key-other", "secret-other")
    try:
        other.load_markets()
        other.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "o1"})
    finally:
        other.session.close()
    mine = make_bybit_ccxt(bybit.base_url)
    try:
        mine.load_markets()
        mine.create_order(CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "m1"})
    finally:
        mine.session.close()
    recorder.wait_update("m1", "filled")
    assert recorder.updates("o1") == []


def test_a_refused_auth_is_logged_counted_retried_and_keeps_the_secret(
    bybit: BybitExchange,
    recorder: Recorder,
    syncs: SyncRecorder,
    feed_metrics: CountingFeedMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "wrong-secret-4f1d9"
    caplog.set_level(logging.DEBUG)
    s = user_stream(bybit, recorder, syncs, feed_metrics, secret=secret)
    s.start()
    try:
        wait_until(lambda: s.refused["auth_refused"] >= 2, 10.0, "auth refused twice")
    finally:
        stopped(s)
    assert feed_metrics.errors_of("main:user")["auth_refused"] >= 2
    assert s.runner.stats().ends.get("auth_refused", 0) >= 1
    assert syncs.reasons() == [] and recorder.messages == []
    assert "auth_refused" in caplog.text and "Invalid apikey or signature" in caplog.text
    assert secret not in caplog.text


def test_the_sync_is_asked_only_once_the_subscription_is_in_place(
    bybit: BybitExchange, recorder: Recorder, feed_metrics: CountingFeedMetrics
) -> None:
    """A sync asked before the subscription would leave a gap: an event between the sync's
    snapshot and the subscription would be in neither. At the moment of the request the
    exchange already sends this account's orders to the stream."""
    subscribed: list[int] = []
    syncs = SyncRecorder(
        forward=lambda account, reason: subscribed.append(bybit.hub.subscribers(f"{account}|order"))
    )
    s = user_stream(bybit, recorder, syncs, feed_metrics)
    s.start()
    try:
        assert syncs.wait_for("stream connected")
    finally:
        stopped(s)
    assert subscribed == [1]
