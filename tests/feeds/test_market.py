"""Mark prices from the sim's WebSocket streams to the actors, through real websocket-client."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import pytest

from actors.conflation import TickSlot
from actors.messages import MarkPriceTick
from actors.model import Key
from infra.feeds import CountingFeedMetrics, MarkPriceFeed
from sim import SimExchange
from sim.websocket import OP_TEXT, encode_frame
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
from tests.feeds.rawserver import server

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


def started(local: Local, *keys: Key) -> None:
    """Start the symbols' actors: a mark price starts none (``Supervisor.tell_tick``)."""
    for key in keys:
        local.sup.state(key)


def test_mark_prices_reach_the_actors(
    sim: SimExchange, local: Local, market: MarkPriceFeed, feed_metrics: CountingFeedMetrics
) -> None:
    started(local, KEY, Key(ACCOUNT, ETH))
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
    handled = local.metrics.handled_n
    stats = sim.blast_mark_prices(5_000, [SYMBOL])
    assert stats["frames"] == 5_000
    final = sim.mark_price(SYMBOL)
    wait_until(lambda: market.ticks == 5_000 and not market.pending, 10.0, "every frame parsed")
    wait_until(lambda: last_price(local) == final, 5.0, "newest price handled")
    wakeups = local.metrics.handled_n - handled - 1  # minus the state() ask's own message, if any
    assert wakeups < 2_500, f"a 5,000-frame burst woke the actor {wakeups} times"
    assert market.delivered < market.ticks  # coalesced per batch in the feed ...
    slot = local.sup._slots[KEY]
    assert isinstance(slot, TickSlot)
    assert slot.take() is None  # ... and nothing left behind in the slot


class _Recorder:
    def __init__(self) -> None:
        self.ticks: list[MarkPriceTick] = []

    def tell(self, msg: object) -> bool:
        return True

    def tell_tick(self, tick: MarkPriceTick) -> bool:
        self.ticks.append(tick)
        return True


def test_one_read_is_one_tick_with_the_extremes_for_the_stop_guard() -> None:
    """Three prices arrive in one socket read: one tick per account, the newest price, and the
    lowest and highest of the three (the stop guard must see a cross inside the batch)."""

    def frame(price: float, e: int) -> bytes:
        data = {"e": "markPriceUpdate", "E": e, "s": SYMBOL, "p": f"{price:.2f}"}
        return encode_frame(OP_TEXT, json.dumps({"stream": "x", "data": data}).encode())

    def talk(conn: socket.socket) -> None:
        conn.sendall(frame(59_000, 1000) + frame(61_000, 1001) + frame(60_500, 1002))
        with contextlib.suppress(OSError):
            conn.recv(100)

    sink = _Recorder()
    with server(talk) as s:
        feed = MarkPriceFeed(
            f"ws://127.0.0.1:{s.port}", {"a": [SYMBOL], "b": [SYMBOL]}, sink, backoff=FAST
        )
        feed.start()
        try:
            wait_until(lambda: len(sink.ticks) >= 2, 5.0, "one tick per account")
        finally:
            stopped(feed)
    a, b = sink.ticks[:2]
    assert {a.key, b.key} == {Key("a", SYMBOL), Key("b", SYMBOL)}
    assert (a.price, a.event_time, a.lowest, a.highest) == (60_500.0, 1.002, 59_000.0, 61_000.0)
    assert feed.ticks == 3 and feed.delivered == 1


def test_one_tick_per_account_trading_the_symbol(sim: SimExchange) -> None:
    world = make_local(sim.mark_prices(), accounts=("a", "b"))
    feed = MarkPriceFeed(sim.ws_url, {"a": [SYMBOL], "b": [SYMBOL, ETH]}, world.sup, backoff=FAST)
    try:
        feed.start()
        assert feed.runner.wait_connected(1, 5.0)
        assert sim.wait_for_subscribers("ethusdt@markPrice@1s", 1, 5.0)
        keys = [Key("a", SYMBOL), Key("b", SYMBOL)]
        for k in keys:
            world.sup.state(k)  # a mark price starts no actor
        sim.set_price(SYMBOL, 59_000.0)
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
    started(local, KEY)
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
    started(local, KEY)
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
