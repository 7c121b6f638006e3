"""Feeds built from the process configuration, and the metrics interface binding."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import pytest

from infra.config import parse_config
from infra.exchange import CcxtExchange
from infra.feeds import (
    FeedMetrics,
    ListenKeyError,
    MarkPriceFeed,
    SignalFeedClient,
    UserDataStream,
    feeds_from_config,
)
from infra.metrics import PrometheusMetrics
from sim import SignalFeed, SimExchange
from supervision.wiring import Service
from tests.exchange.conftest import sim_config
from tests.feeds.conftest import (
    ACCOUNT,
    FAST,
    KEY,
    SYMBOL,
    Local,
    SyncRecorder,
    stopped,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

TOKEN = "wiring-token-5ee1"


def config(sim: SimExchange, signals: SignalFeed | None, **feeds: Any) -> Any:
    data: dict[str, Any] = {
        "accounts": {
            ACCOUNT: {
                "rest_url": sim.base_url,
                "ws_url": sim.ws_url,
                "symbols": [SYMBOL, "ETHUSDT"],
                "credentials": "dummy",
            },
            "second": {
                "rest_url": sim.base_url,
                "ws_url": sim.ws_url,
                "symbols": [SYMBOL],
                "credentials": "dummy",
            },
        },
        "feeds": {"silence_timeout_s": 30.0, **feeds},
    }
    if signals is not None:
        data["feeds"]["signal_url"] = signals.url
    return parse_config(data, {"PS_FEED_TOKEN": TOKEN})


def test_prometheus_metrics_is_a_feed_metrics() -> None:
    """Each of the five :class:`FeedMetrics` calls lands in its own Prometheus series (mypy
    checks the methods structurally; this checks that each one records what it is told)."""
    m: FeedMetrics = PrometheusMetrics()
    m.feed_message("signals")
    m.feed_message("signals")
    m.feed_parse_error("signals", "malformed_json")
    m.ws_reconnect("main:user")
    m.ws_lag("market", 0.01)
    m.ws_lag("market", -1.0)  # a clock ahead of ours: counted as no lag, not negative
    m.feed_up("market", True)
    m.feed_up("main:user", False)
    assert isinstance(m, PrometheusMetrics)
    sample = m.registry.get_sample_value
    assert sample("ps_feed_messages_total", {"feed": "signals"}) == 2.0
    assert (
        sample("ps_feed_parse_errors_total", {"feed": "signals", "reason": "malformed_json"}) == 1.0
    )
    assert sample("ps_ws_reconnects_total", {"feed": "main:user"}) == 1.0
    assert sample("ps_ws_lag_seconds_count", {"feed": "market"}) == 2.0
    assert sample("ps_ws_lag_seconds_sum", {"feed": "market"}) == pytest.approx(0.01)
    assert sample("ps_feed_up", {"feed": "market"}) == 1.0
    assert sample("ps_feed_up", {"feed": "main:user"}) == 0.0


def test_feeds_from_config_builds_and_runs_every_feed(sim: SimExchange, local: Local) -> None:
    syncs = SyncRecorder()
    metrics = PrometheusMetrics()
    exchange = CcxtExchange(ACCOUNT, sim_config(sim))  # the user stream's listen keys
    with contextlib.closing(exchange), SignalFeed("127.0.0.1", 0, token=TOKEN) as signals:
        feeds = feeds_from_config(
            config(sim, signals),
            local.sup,
            syncs,
            metrics,
            accounts={ACCOUNT: exchange},
            backoff=FAST,
        )
        kinds = sorted(type(f).__name__ for f in feeds)
        assert kinds == ["MarkPriceFeed", "SignalFeedClient", "UserDataStream"]
        market = next(f for f in feeds if isinstance(f, MarkPriceFeed))
        assert market.symbols == {SYMBOL, "ETHUSDT"} and market.accounts == (ACCOUNT,)
        user = next(f for f in feeds if isinstance(f, UserDataStream))
        sig = next(f for f in feeds if isinstance(f, SignalFeedClient))
        assert sig.rules.accounts == {ACCOUNT: frozenset({SYMBOL, "ETHUSDT"})}
        assert sig.rules.policy.max_signal_age_s == 30.0  # checked by the actor, after replays
        for f in feeds:
            f.start()
        try:
            for f in feeds:
                assert f.runner.wait_connected(1, 5.0), f
            assert syncs.wait_for("stream connected")
            local.sup.state(KEY)  # a mark price starts no actor: start it first
            sim.set_price(SYMBOL, 60_321.0)
            wait_until(lambda: local.sup.state(KEY).last_price == 60_321.0, 5.0, "tick")
            signals.send_signal(
                {
                    "signal_id": "w1",
                    "source": "s",
                    "account": ACCOUNT,
                    "symbol": SYMBOL,
                    "side": "long",
                    "size": 0.01,
                    "stop_loss": 58_000.0,
                }
            )
            wait_until(lambda: sig.stats().accepted == 1, 5.0, "signal accepted")
            assert user.listen_key_prefix.endswith("…")
        finally:
            stopped(*feeds)
    text = metrics_text(metrics)
    assert 'ps_feed_messages_total{feed="market"}' in text
    assert 'ps_feed_up{feed="main:user"} 0.0' in text


def metrics_text(m: PrometheusMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(m.registry).decode()


def test_feeds_are_app_services(sim: SimExchange, local: Local) -> None:
    """What ``supervision.wiring.wire_feeds`` returns: start() and a bounded, idempotent stop().
    A feed never started stops at once and runs nothing; a started one runs until stop(), and
    a second stop() changes nothing."""
    feeds = feeds_from_config(config(sim, None), local.sup, None)
    services: Sequence[Service] = feeds
    assert len(services) == 3, "the market feed and a user stream per account"
    for s in services:
        t0 = time.monotonic()
        s.stop()  # never started: a no-op
        s.stop()
        assert time.monotonic() - t0 < 1.0, f"{s!r}: stopping a feed never started waited"
    assert not any(f.running for f in feeds)
    (market,) = [f for f in feeds if isinstance(f, MarkPriceFeed)]
    market.start()
    try:
        assert market.runner.wait_connected(1, 5.0)
        assert market.running
    finally:
        stopped(market)
    stopped(market)  # idempotent: the second stop finds nothing to stop


def test_signal_acks_can_be_turned_off(sim: SimExchange, local: Local) -> None:
    with SignalFeed("127.0.0.1", 0, token=TOKEN) as signals:
        on = feeds_from_config(config(sim, signals), local.sup, None)
        off = feeds_from_config(config(sim, signals, signal_acks=False), local.sup, None)
    assert [f.acks_enabled for f in on if isinstance(f, SignalFeedClient)] == [True]
    assert [f.acks_enabled for f in off if isinstance(f, SignalFeedClient)] == [False]


def test_exchange_streams_off_and_no_signal_url(sim: SimExchange, local: Local) -> None:
    assert feeds_from_config(config(sim, None, exchange_streams=False), local.sup, None) == []
    both = feeds_from_config(config(sim, None), local.sup, None)
    assert sorted(type(f).__name__ for f in both) == [
        "MarkPriceFeed",
        "UserDataStream",
        "UserDataStream",
    ]
    market = next(f for f in both if isinstance(f, MarkPriceFeed))
    assert market.accounts == (ACCOUNT, "second")


def test_a_user_stream_without_an_exchange_adapter_cannot_get_a_listen_key(
    sim: SimExchange, local: Local
) -> None:
    """Listen keys come only from the account's adapter (its client and limiter): given
    account names alone, the stream says it has none instead of calling the exchange."""
    feeds = feeds_from_config(config(sim, None), local.sup, None, accounts=[ACCOUNT])
    (user,) = [f for f in feeds if isinstance(f, UserDataStream)]
    with pytest.raises(ListenKeyError, match="no exchange adapter"):
        user.listen_keys.create()
    assert sim.listen_keys() == []
