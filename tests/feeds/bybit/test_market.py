"""Bybit's mark prices end to end: ``tickers.<symbol>`` from sim/bybit through the real
websocket-client into :class:`MarkPriceFeed` with the :class:`BybitTickers` wire.

The sim sends a snapshot on subscription and a delta per price move; deltas without
``markPrice`` and hostile messages are published straight on the sim's stream hub, so they
travel the real socket.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from actors.model import Key
from infra.feeds import BybitTickers, CountingFeedMetrics, MarkPriceFeed
from sim.bybit import BybitExchange
from tests.feeds.bybit.conftest import PUBLIC, SYMBOL, Recorder
from tests.feeds.conftest import FAST, SyncRecorder, stopped, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

ETH = "ETHUSDT"


def tickers_feed(
    bybit: BybitExchange,
    sink: Recorder,
    symbols: dict[str, list[str]],
    syncs: SyncRecorder | None = None,
    metrics: CountingFeedMetrics | None = None,
) -> MarkPriceFeed:
    return MarkPriceFeed(
        bybit.ws_url + PUBLIC,
        symbols,
        sink,
        request_sync=syncs,
        name="bybit-market",
        backoff=FAST,
        metrics=metrics,
        poll_s=0.05,
        silence_timeout_s=None,
        wire=BybitTickers,
    )


@pytest.fixture
def market(
    bybit: BybitExchange,
    recorder: Recorder,
    syncs: SyncRecorder,
    feed_metrics: CountingFeedMetrics,
) -> Iterator[MarkPriceFeed]:
    feed = tickers_feed(bybit, recorder, {"main": [SYMBOL, ETH]}, syncs, feed_metrics)
    feed.start()
    try:
        assert bybit.wait_for_subscribers(f"tickers.{SYMBOL}")
        assert bybit.wait_for_subscribers(f"tickers.{ETH}")
        yield feed
    finally:
        stopped(feed)


def delta(symbol: str, ts: int, **fields: str) -> str:
    return json.dumps(
        {
            "topic": f"tickers.{symbol}",
            "type": "delta",
            "data": {"symbol": symbol, **fields},
            "cs": 1,
            "ts": ts,
        }
    )


def test_snapshot_then_deltas_become_ticks(
    bybit: BybitExchange, market: MarkPriceFeed, recorder: Recorder
) -> None:
    recorder.wait_tick(lambda t: t.key == Key("main", SYMBOL) and t.price == 60_000.0)
    bybit.set_price(SYMBOL, 60_123.4)
    tick = recorder.wait_tick(lambda t: t.price == pytest.approx(60_123.4))
    assert tick.key == Key("main", SYMBOL) and tick.event_time > 0
    assert tick.price == bybit.mark_price(SYMBOL)
    assert isinstance(market.wire, BybitTickers) and market.wire.snapshots == 2


def test_a_delta_without_mark_price_yields_the_merged_mark_never_zero(
    bybit: BybitExchange, market: MarkPriceFeed, recorder: Recorder
) -> None:
    recorder.wait_tick(lambda t: t.key.symbol == SYMBOL)
    ts = 4_000_000_000_000  # later than any sim message
    bybit.hub.publish(f"tickers.{SYMBOL}", delta(SYMBOL, ts, bid1Price="59999.0"))
    tick = recorder.wait_tick(lambda t: t.event_time == ts / 1000)
    assert tick.price == 60_000.0 and tick.key.symbol == SYMBOL
    assert all(t.price > 0 and math.isfinite(t.price) for t in recorder.ticks)
    assert market.refused == {}


def test_hostile_ticker_messages_are_refused_and_the_mark_kept(
    bybit: BybitExchange,
    market: MarkPriceFeed,
    recorder: Recorder,
    feed_metrics: CountingFeedMetrics,
) -> None:
    recorder.wait_tick(lambda t: t.key.symbol == SYMBOL)
    topic = f"tickers.{SYMBOL}"
    hostile = [
        ('{"topic": "tickers.BTCUSDT", "type": "delta", "data": {', "malformed_json"),
        (delta(SYMBOL, 1, markPrice="NaN"), "bad_price"),
        (delta(SYMBOL, 1, markPrice="-5"), "bad_price"),
        (delta(SYMBOL, 1, markPrice="0"), "bad_price"),
        (delta(SYMBOL, 1, markPrice="1e400"), "bad_price"),
        (delta(SYMBOL, 1, markPrice="1e300"), "bad_price"),
        (delta(SYMBOL, 1, markPrice="abc"), "bad_price"),
        (delta("SOLUSDT", 1, markPrice="150"), "unknown_symbol"),
        (
            json.dumps({"topic": "orderbook.1.BTCUSDT", "type": "delta", "data": {}}),
            "unknown_topic",
        ),
        (
            json.dumps({"topic": topic, "type": "delta", "data": {"markPrice": "1"}}),
            "bad_event_time",
        ),
        (json.dumps({"topic": topic, "type": "weird", "data": {}, "ts": 1}), "unexpected_shape"),
        ("[1, 2, 3]", "unexpected_shape"),
    ]
    for text, _ in hostile:
        bybit.hub.publish(topic, text)
    expected: dict[str, int] = {}
    for _, reason in hostile:
        expected[reason] = expected.get(reason, 0) + 1
    wait_until(lambda: dict(market.refused) == expected, 5.0, f"refused {expected}")
    assert dict(feed_metrics.errors_of("bybit-market")) == expected
    assert all(t.price > 0 and math.isfinite(t.price) and t.price < 1e15 for t in recorder.ticks)
    assert isinstance(market.wire, BybitTickers) and market.wire.mark(SYMBOL) == 60_000.0
    bybit.set_price(SYMBOL, 61_000.0)  # the feed is still alive and delivering
    recorder.wait_tick(lambda t: t.price == 61_000.0)
    assert market.runner.stats().connections == 1


def test_a_dropped_connection_resubscribes_and_asks_every_account_to_sync(
    bybit: BybitExchange, recorder: Recorder, syncs: SyncRecorder
) -> None:
    feed = tickers_feed(bybit, recorder, {"a": [SYMBOL], "b": [SYMBOL, ETH]}, syncs)
    feed.start()
    try:
        assert bybit.wait_for_subscribers(f"tickers.{ETH}")
        recorder.wait_tick(lambda t: t.key == Key("b", ETH))  # both snapshots were read
        recorder.wait_tick(lambda t: t.key == Key("a", SYMBOL))
        assert bybit.drop_streams("market") == 1
        assert feed.runner.wait_connected(2)
        assert syncs.wait_for("stream reconnect", 2)
        assert sorted(a for a, _ in syncs.calls) == ["a", "b"]
        assert bybit.wait_for_subscribers(f"tickers.{ETH}")
        bybit.set_price(ETH, 3_100.0)
        recorder.wait_tick(lambda t: t.key == Key("b", ETH) and t.price == 3_100.0)
        assert isinstance(feed.wire, BybitTickers) and feed.wire.snapshots == 4
    finally:
        stopped(feed)


def test_an_unknown_symbol_is_refused_alone(
    bybit: BybitExchange, recorder: Recorder, feed_metrics: CountingFeedMetrics
) -> None:
    """The sim (like Bybit) refuses a whole subscribe request for one bad topic: the wire
    asks again topic by topic, so the good symbols still tick."""
    feed = tickers_feed(bybit, recorder, {"main": [SYMBOL, "NOPEUSDT"]}, metrics=feed_metrics)
    feed.start()
    try:
        wait_until(lambda: feed.refused["subscribe_refused"] == 1, 5.0, "refused once")
        recorder.wait_tick(lambda t: t.key.symbol == SYMBOL)
        bybit.set_price(SYMBOL, 60_500.0)
        recorder.wait_tick(lambda t: t.price == 60_500.0)
        assert feed_metrics.errors_of("bybit-market")["subscribe_refused"] == 1
        assert isinstance(feed.wire, BybitTickers)
        assert feed.wire.session.refused_topics == {"tickers.NOPEUSDT"}
        assert feed.runner.stats().connections == 1
    finally:
        stopped(feed)


def test_application_pings_are_answered(bybit: BybitExchange, recorder: Recorder) -> None:
    feed = MarkPriceFeed(
        bybit.ws_url + PUBLIC,
        {"main": [SYMBOL]},
        recorder,
        backoff=FAST,
        poll_s=0.02,
        silence_timeout_s=None,
        wire=lambda url, syms: BybitTickers(url, syms, ping_interval_s=0.05, pong_timeout_s=2.0),
    )
    feed.start()
    try:
        assert isinstance(feed.wire, BybitTickers)
        session = feed.wire.session
        wait_until(lambda: session.pongs >= 3, 5.0, "three pongs")
        assert feed.runner.stats().connections == 1
    finally:
        stopped(feed)
