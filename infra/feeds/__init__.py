"""WebSocket feeds: mark prices, user-data streams and the signal feed (websocket-client).

Binance USD-M (:class:`UserDataStream`, :class:`MarkPriceFeed`'s default wire) and Bybit v5
(:class:`BybitUserStream`, :class:`BybitTickers`) deliver the same messages;
:func:`feeds_from_config` picks them by the account's ``exchange``.

Each feed runs on its own thread (:class:`ReconnectingWebSocket`: backoff with jitter, silence
and ping watchdogs), parses with the pure functions of :mod:`infra.feeds.parsing` and delivers
to a :class:`FeedSink` (the supervisor, or the app's intake). :func:`feeds_from_config` builds
them from the process configuration; :class:`FeedMetrics` is what they report.
"""

from infra.backoff import Backoff
from infra.feeds.bybit_market import BybitTickers
from infra.feeds.bybit_session import BybitCredentials, BybitSession
from infra.feeds.bybit_user import BybitUserStream
from infra.feeds.market import BinanceMarkPrices, MarkPriceFeed, MarkPriceWire
from infra.feeds.metrics import CountingFeedMetrics, FeedMetrics, NullFeedMetrics
from infra.feeds.parsing import (
    MarkPrice,
    Refusal,
    SignalRules,
    parse_mark_prices,
    parse_signal,
    parse_user_event,
)
from infra.feeds.signals import SignalFeedClient, SignalFeedStats, TokenBucket
from infra.feeds.sink import FeedSink, SyncRequest
from infra.feeds.user_stream import (
    ListenKeyError,
    ListenKeyMissing,
    ListenKeySource,
    UserDataStream,
)
from infra.feeds.wiring import STREAMS, Feed, VenueStreams, bybit_stream_urls, feeds_from_config
from infra.feeds.ws_client import Connect, ReconnectingWebSocket

__all__ = [
    "STREAMS",
    "Backoff",
    "BinanceMarkPrices",
    "BybitCredentials",
    "BybitSession",
    "BybitTickers",
    "BybitUserStream",
    "Connect",
    "CountingFeedMetrics",
    "Feed",
    "FeedMetrics",
    "FeedSink",
    "ListenKeyError",
    "ListenKeyMissing",
    "ListenKeySource",
    "MarkPrice",
    "MarkPriceFeed",
    "MarkPriceWire",
    "NullFeedMetrics",
    "ReconnectingWebSocket",
    "Refusal",
    "SignalFeedClient",
    "SignalFeedStats",
    "SignalRules",
    "SyncRequest",
    "TokenBucket",
    "UserDataStream",
    "VenueStreams",
    "bybit_stream_urls",
    "feeds_from_config",
    "parse_mark_prices",
    "parse_signal",
    "parse_user_event",
]
