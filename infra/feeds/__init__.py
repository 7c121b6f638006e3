"""WebSocket feeds: mark prices, user-data streams and the signal feed (websocket-client).

Each feed runs on its own thread (:class:`ReconnectingWebSocket`: backoff with jitter, silence
and ping watchdogs), parses with the pure functions of :mod:`infra.feeds.parsing` and delivers
to a :class:`FeedSink` (the supervisor, or the app's intake). :func:`feeds_from_config` builds
them from the process configuration; :class:`FeedMetrics` is what they report.
"""

from infra.backoff import Backoff
from infra.feeds.market import MarkPriceFeed
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
from infra.feeds.wiring import Feed, feeds_from_config
from infra.feeds.ws_client import Connect, ReconnectingWebSocket

__all__ = [
    "Backoff",
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
    "NullFeedMetrics",
    "ReconnectingWebSocket",
    "Refusal",
    "SignalFeedClient",
    "SignalFeedStats",
    "SignalRules",
    "SyncRequest",
    "TokenBucket",
    "UserDataStream",
    "feeds_from_config",
    "parse_mark_prices",
    "parse_signal",
    "parse_user_event",
]
