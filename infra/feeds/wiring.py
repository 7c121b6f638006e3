"""Build every feed from the process configuration (for ``supervision.wiring.wire_feeds``).

:func:`feeds_from_config` returns, unstarted:

* one :class:`MarkPriceFeed` per venue and distinct mark-price URL (accounts on the same
  exchange share one connection; each tick goes to every account that lists the symbol);
* one user stream per account, chosen by the account's ``exchange`` (:data:`STREAMS`):

  - ``binanceusdm``: a :class:`UserDataStream`, its listen key from the account's exchange
    adapter when ``accounts`` maps the account to one that has ``listen_keys`` (a
    :class:`ListenKeySource`: :class:`infra.exchange.CcxtExchange`; the calls share the
    account's ccxt client and limiter); otherwise the stream cannot get a key and says so;
  - ``bybit``: a :class:`~infra.feeds.bybit_user.BybitUserStream` on ``<ws_url>/v5/private``,
    authenticated with the account's API key pair; its mark prices from
    ``<ws_url>/v5/public/linear`` (:class:`~infra.feeds.bybit_market.BybitTickers`).
    ``ws_url`` is the stream host (production ``wss://stream.bybit.com``; the sim's
    ``ws://127.0.0.1:<port>``); a ``ws_url`` already ending in one of those paths (or
    ``/v5``) is cut back to the host first (:func:`bybit_stream_urls`);
* one :class:`SignalFeedClient` when ``[feeds] signal_url`` is set (token from
  ``PS_FEED_TOKEN``; max age from ``[signal_policy] max_signal_age_s``).

``[feeds] exchange_streams = false`` leaves out the first two. An account whose exchange has
no entry in :data:`STREAMS` is an error (``ValueError``), not a silent account without
streams. ``silence_timeout_s`` is the
mark-price silence limit; the user stream and the signal feed (quiet by nature) ping every
third of it and give up on a missing pong after another third.

Usage in ``wire_feeds``::

    from infra.feeds import feeds_from_config
    return feeds_from_config(config, app.intake, app.sync.request, app.metrics,
                             accounts=app.infra.exchanges)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from infra.backoff import Backoff
from infra.config import AccountConfig, Config
from infra.feeds.bybit_market import PUBLIC_PATH, BybitTickers
from infra.feeds.bybit_session import BybitCredentials
from infra.feeds.bybit_user import BybitUserStream
from infra.feeds.market import MarkPriceFeed, WireFactory
from infra.feeds.metrics import FeedMetrics
from infra.feeds.parsing import SignalRules
from infra.feeds.signals import SignalFeedClient
from infra.feeds.sink import FeedSink, SyncRequest
from infra.feeds.user_stream import (
    ListenKeyError,
    ListenKeySource,
    UserDataStream,
)

__all__ = [
    "BYBIT_WS_URL",
    "STREAMS",
    "Feed",
    "StreamTiming",
    "VenueStreams",
    "bybit_stream_urls",
    "feeds_from_config",
]

log = logging.getLogger(__name__)

Feed = MarkPriceFeed | UserDataStream | BybitUserStream | SignalFeedClient
UserStream = UserDataStream | BybitUserStream

BYBIT_WS_URL = "wss://stream.bybit.com"
"""Bybit's production stream host (``/v5/private``, ``/v5/public/linear``)."""
BYBIT_PRIVATE_PATH = "/v5/private"


def bybit_stream_urls(ws_url: str) -> tuple[str, str]:
    """The private and public (linear) stream URLs of a Bybit stream host ``ws_url``."""
    base = ws_url.rstrip("/")
    for suffix in (BYBIT_PRIVATE_PATH, PUBLIC_PATH, "/v5"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base + BYBIT_PRIVATE_PATH, base + PUBLIC_PATH


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """What every exchange stream of one process shares (from ``[feeds]``): ping interval,
    pong timeout and silence limit, backoff, metrics, clock."""

    ping_s: float
    pong_s: float
    silence_s: float | None
    backoff: Backoff | None
    metrics: FeedMetrics | None
    clock: Callable[[], float]


@dataclass(frozen=True, slots=True)
class VenueStreams:
    """How one venue's exchange streams are built from an account's configuration.

    ``market_url``: the mark-price URL of an account (accounts with the same one share a
    feed); ``wire``: the mark-price wire (``None``: Binance's); ``user``: the account's user
    stream, from (account, adapters, sink, request_sync, timing)."""

    market_url: Callable[[AccountConfig], str]
    wire: Callable[[StreamTiming], WireFactory | None]
    user: Callable[
        [AccountConfig, Iterable[str] | None, FeedSink, SyncRequest | None, StreamTiming],
        UserStream,
    ]


def _binance_user(
    acc: AccountConfig,
    accounts: Iterable[str] | None,
    sink: FeedSink,
    request_sync: SyncRequest | None,
    t: StreamTiming,
) -> UserStream:
    return UserDataStream(
        acc.name,
        acc.ws_url,
        _listen_keys(accounts, acc.name),
        sink,
        request_sync=request_sync,
        ping_interval_s=t.ping_s,
        pong_timeout_s=t.pong_s,
        backoff=t.backoff,
        metrics=t.metrics,
        clock=t.clock,
    )


def _bybit_user(
    acc: AccountConfig,
    accounts: Iterable[str] | None,
    sink: FeedSink,
    request_sync: SyncRequest | None,
    t: StreamTiming,
) -> UserStream:
    del accounts  # Bybit's private stream signs with the key pair itself: no listen key
    if not acc.api_key or not acc.api_secret:
        log.warning("account %s: no API key pair: its Bybit private stream cannot log in", acc.name)
    return BybitUserStream(
        acc.name,
        bybit_stream_urls(acc.ws_url)[0],
        BybitCredentials(acc.api_key, acc.api_secret),
        sink,
        request_sync=request_sync,
        ping_interval_s=min(20.0, t.ping_s),
        pong_timeout_s=t.pong_s,
        backoff=t.backoff,
        metrics=t.metrics,
        clock=t.clock,
    )


STREAMS: Mapping[str, VenueStreams] = {
    "binanceusdm": VenueStreams(
        market_url=lambda acc: acc.ws_url.rstrip("/"),
        wire=lambda t: None,
        user=_binance_user,
    ),
    "bybit": VenueStreams(
        market_url=lambda acc: bybit_stream_urls(acc.ws_url)[1],
        wire=lambda t: partial(
            BybitTickers,
            ping_interval_s=min(20.0, t.ping_s),
            pong_timeout_s=t.pong_s,
            silence_timeout_s=t.silence_s,
        ),
        user=_bybit_user,
    ),
}
"""The exchange streams of each venue (the account's ``exchange``, as in
:data:`infra.exchange.venues.VENUES`). A third venue adds one entry."""


def _streams_of(acc: AccountConfig) -> VenueStreams:
    streams = STREAMS.get(acc.exchange)
    if streams is None:
        raise ValueError(
            f"account {acc.name}: no exchange streams for exchange {acc.exchange!r} "
            f"(known: {', '.join(STREAMS)})"
        )
    return streams


class _NoListenKeys:
    """The listen-key source of an account without an exchange adapter that gives keys."""

    def __init__(self, account: str) -> None:
        self.account = account

    def create(self) -> str:
        raise ListenKeyError(f"account {self.account}: no exchange adapter gives listen keys")

    def keepalive(self) -> None:
        self.create()


def _listen_keys(accounts: Iterable[str] | None, name: str) -> ListenKeySource:
    """The listen-key source of account ``name``: its adapter's, when ``accounts`` maps it."""
    adapter = accounts.get(name) if isinstance(accounts, Mapping) else None
    keys = getattr(adapter, "listen_keys", None)
    if isinstance(keys, ListenKeySource):
        return keys
    log.warning(
        "account %s: no exchange adapter gives listen keys: its user stream cannot connect", name
    )
    return _NoListenKeys(name)


def feeds_from_config(
    config: Config,
    sink: FeedSink,
    request_sync: SyncRequest | None,
    metrics: FeedMetrics | None = None,
    *,
    accounts: Iterable[str] | None = None,
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.time,
) -> Sequence[Feed]:
    """The feeds for ``accounts`` (default: every configured account). See the module doc.

    ``accounts`` may map each name to the account's exchange adapter (``App.infra.exchanges``):
    the user streams take their listen keys from it.
    """
    names = sorted(config.accounts if accounts is None else set(accounts) & set(config.accounts))
    silence = config.feeds.silence_timeout_s
    third = max(1.0, silence / 3)
    out: list[Feed] = []
    if config.feeds.exchange_streams and names:
        timing = StreamTiming(third, third, silence, backoff, metrics, clock)
        by_url: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}
        for name in names:
            acc = config.accounts[name]
            market_url = _streams_of(acc).market_url(acc)
            by_url.setdefault((acc.exchange, market_url), {})[name] = tuple(acc.symbols)
        for i, ((venue, market_url), symbols) in enumerate(sorted(by_url.items())):
            out.append(
                MarkPriceFeed(
                    market_url,
                    symbols,
                    sink,
                    request_sync=request_sync,
                    name="market" if len(by_url) == 1 else f"market{i + 1}",
                    silence_timeout_s=silence,
                    ping_interval_s=third,
                    backoff=backoff,
                    metrics=metrics,
                    clock=clock,
                    wire=STREAMS[venue].wire(timing),
                )
            )
        for name in names:
            acc = config.accounts[name]
            out.append(_streams_of(acc).user(acc, accounts, sink, request_sync, timing))
    url = config.feeds.signal_url
    if url:
        rules = SignalRules(
            accounts={n: frozenset(config.accounts[n].symbols) for n in names},
            policy=config.policy(),
        )
        out.append(
            SignalFeedClient(
                url,
                sink,
                rules,
                token=config.feeds.token,
                acks=config.feeds.signal_acks,
                ping_interval_s=third,
                pong_timeout_s=third,
                backoff=backoff,
                metrics=metrics,
                clock=clock,
            )
        )
    return out
