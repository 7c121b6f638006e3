"""One account's ccxt clients (one per calling thread) and the venue's markets they share.

Who calls: :class:`~infra.exchange.ccxt_adapter.CcxtExchange`, from the account's worker
threads and the sync thread, several at once.

Thread safety: **one ccxt client per calling thread** (``threading.local``). A ccxt sync
client is not safe to share: it holds a ``requests.Session``, mutates ``options`` and
per-request state (``last_http_response``, the limiter's timestamp) during a call. A lock
around one shared client would be safe too, but it would serialise the account's calls, so
one slow order (1-3 s on a busy exchange, S6) would hold up every lookup and stop-loss of the
other symbols - exactly what the per-account worker pool exists to avoid. What the clients
share is read-only or locked: the markets (loaded once, lazily, with retry, by one client
and handed to the others with ``set_markets_from_exchange``) and the rate limiter (one per
account, :class:`~infra.exchange.limits.AccountLimiter`), so ``enable_rate_limit`` keeps
the account as a whole under the exchange's limits, protective orders first. The clients of
threads that ended are closed when a new thread asks for one.

Failure: :meth:`ClientPool.load_markets` raises :class:`MarketsUnavailable` after the
configured attempts (the next call tries again); the symbol lookups raise
:class:`UnknownSymbol`. Markets never reload: a change of a symbol's filters on the
exchange is picked up by a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from actors.model import MarketRules
from infra.exchange.client import client_class, new_client
from infra.exchange.errors import describe
from infra.exchange.limits import AccountLimiter, Limit
from infra.exchange.translate import rules_of_market
from infra.exchange.venues import Credentials, Venue, VenueConfig

__all__ = ["ClientPool", "MarketsUnavailable", "UnknownSymbol"]

log = logging.getLogger(__name__)


class MarketsUnavailable(Exception):
    """The venue's markets could not be loaded (after the configured attempts)."""


class UnknownSymbol(KeyError):
    """An exchange symbol id (or unified symbol) that the loaded markets do not have."""


class ClientPool:
    """The per-thread ccxt clients of ``account`` and the venue's markets (module docstring).

    The pool holds the account's limiter (:attr:`limiter`, None with
    ``enable_rate_limit=False`` or a venue without limits), shared by every client. Call
    :meth:`close` at shutdown.
    """

    def __init__(
        self,
        account: str,
        venue: Venue,
        config: VenueConfig,
        credentials: Credentials,
    ) -> None:
        self.account = account
        self.venue = venue
        self.config = config
        self._credentials = credentials
        self.limiter: AccountLimiter | None = (
            AccountLimiter(
                [Limit(kind, window, limit) for kind, window, limit in venue.rate_limits],
                reserve=config.limiter_reserve,
            )
            if config.enable_rate_limit and venue.rate_limits
            else None
        )
        client_class(venue)  # an unknown ccxt class fails here, at construction
        self._local = threading.local()
        self._lock = threading.Lock()  # the client registry
        self._markets_lock = threading.Lock()
        self._source: Any = None  # the client that loaded the markets (never used after)
        self._clients: dict[int, tuple[threading.Thread, Any]] = {}
        self._to_unified: dict[str, str] = {}
        self._to_id: dict[str, str] = {}
        self._rules: dict[str, MarketRules] = {}  # by exchange symbol id; markets never reload
        self._lease: Callable[[], float | None] | None = None  # see fence_with

    @property
    def loaded(self) -> bool:
        """True once the markets are loaded (never False again)."""
        return self._source is not None

    @property
    def to_id(self) -> Mapping[str, str]:
        """Unified symbol -> exchange symbol id of the venue's markets (empty before loading)."""
        return self._to_id

    @property
    def client_count(self) -> int:
        """How many per-thread clients are registered (those of ended threads are closed and
        dropped when the next thread asks for its client)."""
        with self._lock:
            return len(self._clients)

    def fence_with(self, seconds_left: Callable[[], float | None]) -> None:
        """Fence every later place and cancel of this account with ``seconds_left()``: the
        validity its lease has left here, or ``None`` when this process does not hold it
        (:mod:`infra.exchange.client`, I7). Called once at start, before any order; called
        on worker threads as each request is stamped, so it must not block."""
        self._lease = seconds_left

    def _lease_left(self) -> float | None:
        lease = self._lease
        return float("inf") if lease is None else lease()

    def _new_client(self) -> Any:
        client = new_client(self.venue, self.config, self._credentials, self.limiter)
        client.ps_lease = self._lease_left
        return client

    def load_markets(self) -> None:
        """Load the venue's markets once (idempotent, thread-safe).

        Tries ``markets_attempts`` times with a doubling delay; raises
        :class:`MarketsUnavailable` when every attempt failed (the next call tries again).
        """
        if self._source is not None:
            return
        with self._markets_lock:
            if self._source is not None:
                return
            cfg = self.config
            attempts = max(1, cfg.markets_attempts)
            last: Exception | None = None
            for attempt in range(attempts):
                client = self._new_client()
                try:
                    client.load_markets()
                except Exception as exc:
                    last = exc
                    client.close()
                    log.warning(
                        "account %s: loading markets failed (attempt %d/%d): %s",
                        self.account,
                        attempt + 1,
                        attempts,
                        describe(exc),
                    )
                    if attempt + 1 < attempts:
                        time.sleep(cfg.markets_retry_delay_s * 2**attempt)
                    continue
                self._index_markets(client.markets)
                self._source = client
                log.info(
                    "account %s: %d %s markets loaded",
                    self.account,
                    len(self._to_unified),
                    self.venue.name,
                )
                return
            detail = describe(last) if last is not None else "no attempt"
            raise MarketsUnavailable(f"{self.venue.name} markets: {detail}") from last

    def _index_markets(self, markets: Mapping[str, Mapping[str, Any]]) -> None:
        to_unified: dict[str, str] = {}
        for symbol, m in markets.items():
            if m.get("type") != self.venue.market_type:
                continue
            if bool(m.get("linear")) is not self.venue.linear:
                continue
            to_unified[str(m["id"])] = symbol
        self._to_unified = to_unified
        self._to_id = {v: k for k, v in to_unified.items()}

    def client(self) -> Any:
        """This thread's ccxt client (created on first use, with the shared markets; loads
        the markets if needed, so it may raise :class:`MarketsUnavailable`)."""
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        self.load_markets()
        client = self._new_client()
        client.set_markets_from_exchange(self._source)
        self._local.client = client
        me = threading.current_thread()
        with self._lock:
            dead = [i for i, (t, _) in self._clients.items() if not t.is_alive()]
            for i in dead:
                _, old = self._clients.pop(i)
                old.close()
            self._clients[id(me)] = (me, client)
        return client

    def close(self) -> None:
        """Close every client's HTTP session (pooled connections) and refuse the requests
        waiting for the limiter. Safe to call twice."""
        if self.limiter is not None:
            self.limiter.close()
        with self._lock:
            clients = [c for _, c in self._clients.values()]
            self._clients.clear()
        if self._source is not None:
            clients.append(self._source)
        for c in clients:
            try:
                c.close()
            except Exception:  # pragma: no cover - closing is best effort
                log.debug("closing a ccxt client failed", exc_info=True)
        self._local = threading.local()

    # -- symbols and rules ----------------------------------------------------------------

    @property
    def symbols(self) -> frozenset[str]:
        """Exchange symbol ids of the venue's markets (loads markets if needed)."""
        self.load_markets()
        return frozenset(self._to_unified)

    def unified(self, symbol_id: str) -> str:
        """``BTCUSDT`` -> ``BTC/USDT:USDT`` (raises :class:`UnknownSymbol`)."""
        self.load_markets()
        try:
            return self._to_unified[symbol_id]
        except KeyError:
            raise UnknownSymbol(symbol_id) from None

    def exchange_id(self, unified: str) -> str:
        """``BTC/USDT:USDT`` -> ``BTCUSDT`` (raises :class:`UnknownSymbol`)."""
        self.load_markets()
        try:
            return self._to_id[unified]
        except KeyError:
            raise UnknownSymbol(unified) from None

    def cached_market_rules(self, symbol_id: str) -> MarketRules | None:
        """The market's rules when the markets are loaded already, else None; no I/O."""
        rules = self._rules.get(symbol_id)
        if rules is not None or self._source is None:
            return rules
        try:
            return self.market_rules(symbol_id)
        except Exception:  # an unknown symbol: the actor asks (and is told) as usual
            return None

    def market_rules(self, symbol_id: str) -> MarketRules:
        """The market's rules for ``BTCUSDT`` (:func:`rules_of_market`), cached.

        Raises :class:`MarketsUnavailable` or :class:`UnknownSymbol`.
        """
        rules = self._rules.get(symbol_id)
        if rules is not None:
            return rules
        unified = self.unified(symbol_id)
        client = self.client()
        rules = rules_of_market(
            client.market(unified), int(client.precisionMode), self.venue.market_max_qty_path
        )
        self._rules[symbol_id] = rules  # same value from any thread: no lock needed
        return rules
