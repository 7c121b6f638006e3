"""Build every feed from the process configuration (for ``supervision.wiring.wire_feeds``).

:func:`feeds_from_config` returns, unstarted:

* one :class:`MarkPriceFeed` per distinct ``ws_url`` (accounts on the same exchange share one
  connection; each tick goes to every account that lists the symbol);
* one :class:`UserDataStream` per account, its listen key from the account's exchange adapter
  when ``accounts`` maps the account to one that has ``listen_keys`` (a
  :class:`ListenKeySource`: :class:`infra.exchange.CcxtExchange`; the calls share the
  account's ccxt client and limiter); otherwise the stream cannot get a key and says so;
* one :class:`SignalFeedClient` when ``[feeds] signal_url`` is set (token from
  ``PS_FEED_TOKEN``; max age from ``[signal_policy] max_signal_age_s``).

``[feeds] exchange_streams = false`` leaves out the first two. ``silence_timeout_s`` is the
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

from infra.backoff import Backoff
from infra.config import Config
from infra.feeds.market import MarkPriceFeed
from infra.feeds.metrics import FeedMetrics
from infra.feeds.parsing import SignalRules
from infra.feeds.signals import SignalFeedClient
from infra.feeds.sink import FeedSink, SyncRequest
from infra.feeds.user_stream import (
    ListenKeyError,
    ListenKeySource,
    UserDataStream,
)

__all__ = ["Feed", "feeds_from_config"]

log = logging.getLogger(__name__)

Feed = MarkPriceFeed | UserDataStream | SignalFeedClient


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
        by_url: dict[str, dict[str, tuple[str, ...]]] = {}
        for name in names:
            acc = config.accounts[name]
            by_url.setdefault(acc.ws_url, {})[name] = tuple(acc.symbols)
        for i, (ws_url, symbols) in enumerate(sorted(by_url.items())):
            out.append(
                MarkPriceFeed(
                    ws_url,
                    symbols,
                    sink,
                    request_sync=request_sync,
                    name="market" if len(by_url) == 1 else f"market{i + 1}",
                    silence_timeout_s=silence,
                    ping_interval_s=third,
                    backoff=backoff,
                    metrics=metrics,
                    clock=clock,
                )
            )
        for name in names:
            acc = config.accounts[name]
            out.append(
                UserDataStream(
                    name,
                    acc.ws_url,
                    _listen_keys(accounts, name),
                    sink,
                    request_sync=request_sync,
                    ping_interval_s=third,
                    pong_timeout_s=third,
                    backoff=backoff,
                    metrics=metrics,
                    clock=clock,
                )
            )
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
