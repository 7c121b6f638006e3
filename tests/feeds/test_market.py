"""Mark prices from the sim's WebSocket streams to the actors, through real websocket-client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.conflation import TickSlot
from actors.model import Key
from infra.feeds import CountingFeedMetrics, MarkPriceFeed
from sim import SimExchange
from tests.feeds.conftest import (
    ACCOUNT,
    FAST,
    KEY,
    SYMBOL,
    Local,
    SyncRecorder,
    make_local,
    stopped,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

ETH = "ETHUSDT"


@pytest.fixture
def market(
    sim: SimExchange, local: Local, syncs: SyncRecorder, feed_metrics: CountingFeedMetrics
) -> Iterator[MarkPriceFeed]:
    feed = MarkPriceFeed(
        sim.ws_url,
        {ACCOUNT: [SYMBOL, ETH]},
        local.sup,
        request_sync=syncs,
        backoff=FAST,
        metrics=feed_metrics,
    )
    feed.start()
    try:
        assert feed.runner.wait_connected(1, 5.0)
        assert sim.wait_for_subscribers("btcusdt@markPrice@1s", 1, 5.0)
        yield feed
    finally:
        stopped(feed)


def last_price(local: Local, key: Key = KEY) -> float | None:
    return local.sup.state(key).last_price


def test_mark_prices_reach_the_actors(
    sim: SimExchange, local: Local, market: MarkPriceFeed, feed_metrics: CountingFeedMetrics
) -> None:
    sim.set_price(SYMBOL, 61_234.5)
    sim.set_price(ETH, 3_100.25)
    wait_until(lambda: last_price(local) == 61_234.5, 5.0, "BTCUSDT tick handled")
    wait_until(lambda: last_price(local, Key(ACCOUNT, ETH)) == 3_100.25, 5.0, "ETH tick")
    assert market.ticks == 2
    assert feed_metrics.messages["market"] == 2
    assert not market.refused
    assert feed_metrics.lags["market"] and all(lag < 5 for lag in feed_metrics.lags["market"])


def test_a_burst_is_conflated_and_the_newest_price_wins(
    sim: SimExchange, local: Local, market: MarkPriceFeed
) -> None:
    local.sup.state(KEY)  # the actor exists before the burst
    stats = sim.blast_mark_prices(5_000, [SYMBOL])
    assert stats["frames"] == 5_000
    final = sim.mark_price(SYMBOL)
    wait_until(lambda: market.ticks == 5_000, 10.0, "every frame parsed")
    wait_until(lambda: last_price(local) == final, 5.0, "newest price handled")
    slot = local.sup._slots[KEY]
    assert isinstance(slot, TickSlot)
    assert slot.conflated > 0, "a 5,000-frame burst into one actor was not conflated"
    assert slot.take() is None  # nothing left behind


def test_one_tick_per_account_trading_the_symbol(sim: SimExchange) -> None:
    world = make_local(sim.mark_prices(), accounts=("a", "b"))
    feed = MarkPriceFeed(sim.ws_url, {"a": [SYMBOL], "b": [SYMBOL, ETH]}, world.sup, backoff=FAST)
    try:
        feed.start()
        assert feed.runner.wait_connected(1, 5.0)
        assert sim.wait_for_subscribers("ethusdt@markPrice@1s", 1, 5.0)
        sim.set_price(SYMBOL, 59_000.0)
        keys = [Key("a", SYMBOL), Key("b", SYMBOL)]
        wait_until(
            lambda: all(world.sup.state(k).last_price == 59_000.0 for k in keys), 5.0, "both"
        )
        assert Key("a", ETH) not in world.sup.keys()
    finally:
        stopped(feed)
        assert world.sup.stop(5.0)


def test_dropped_stream_reconnects_and_requests_a_sync(
    sim: SimExchange,
    local: Local,
    market: MarkPriceFeed,
    syncs: SyncRecorder,
    feed_metrics: CountingFeedMetrics,
) -> None:
    assert sim.drop_streams("market") == 1
    assert market.runner.wait_connected(2, 5.0)
    assert syncs.wait_for("stream reconnect")
    assert feed_metrics.reconnects["market"] >= 1
    assert sim.wait_for_subscribers("btcusdt@markPrice@1s", 1, 5.0)
    sim.set_price(SYMBOL, 60_500.0)
    wait_until(lambda: last_price(local) == 60_500.0, 5.0, "tick after reconnect")


def test_silent_stream_is_closed_and_reconnected(
    sim: SimExchange, local: Local, syncs: SyncRecorder
) -> None:
    feed = MarkPriceFeed(
        sim.ws_url,
        {ACCOUNT: [SYMBOL]},
        local.sup,
        request_sync=syncs,
        backoff=FAST,
        silence_timeout_s=0.3,
        poll_s=0.05,
    )
    feed.start()
    try:
        assert feed.runner.wait_connected(2, 5.0), "no reconnect after 0.3 s of silence"
        assert feed.runner.stats().ends.get("silence", 0) >= 1
        assert syncs.wait_for("stream reconnect")
    finally:
        stopped(feed)


def test_bad_frames_are_refused_and_counted(
    sim: SimExchange,
    local: Local,
    market: MarkPriceFeed,
    feed_metrics: CountingFeedMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = sim.hub  # publish raw text on the stream the feed listens to
    stream = "btcusdt@markPrice@1s"
    for text in (
        '{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"nan"}',  # bad_price
        "not json",  # malformed_json (once wrapped in {"stream","data"})
        "[1,2]",  # unexpected_shape, twice
    ):
        hub.publish(stream, text)
    sim.set_price(SYMBOL, 60_100.0)  # and a good one after them
    wait_until(lambda: last_price(local) == 60_100.0, 5.0, "good tick after bad frames")
    assert dict(market.refused) == {"bad_price": 1, "malformed_json": 1, "unexpected_shape": 2}
    assert feed_metrics.errors_of("market")
    assert "refused mark-price frame" in caplog.text
