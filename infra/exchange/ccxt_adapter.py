"""``CcxtExchange``: the :class:`actors.ports.ExchangePort` of one account, over ccxt (sync).

Who calls: the account's :class:`~actors.workers.ExchangeWorkers` threads (place, cancel,
lookup, market) and the sync thread (:meth:`CcxtExchange.fetch_account`), several at once;
the user stream's threads use :attr:`CcxtExchange.listen_keys`.

The jobs behind it, one module each: :mod:`infra.exchange.pool` (one ccxt client per calling
thread, the markets they share, see there for thread safety), :mod:`infra.exchange.client`
(the ccxt class with the limiter and wire-info hooks), :mod:`infra.exchange.order_rules` (a
request onto the market's rules), :mod:`infra.exchange.translate` (pure translation of ccxt
replies), :mod:`infra.exchange.order_queries` (an order by client id, the open orders, as
the venue answers them), :mod:`infra.exchange.errors` (ccxt exception -> port outcome) and
:mod:`infra.exchange.listen_keys`. This module holds the port methods only; it is close to
500 lines because each of the five keeps its full contract (outcomes, logging) here, with a
placement's two follow-ups (the duplicate check, the status lookup of a Bybit order).

Failure: the order methods never raise for exchange or network errors; the mapping lives
in :mod:`infra.exchange.errors` (UNKNOWN whenever the order may have reached the exchange).
Whether a request left is recorded, not guessed: the client subclass sets ``ps_sent`` when a
call enters ccxt's ``fetch``; an exception raised before that (building or validating the
request) is a local failure, REJECTED for a place and never looked up or re-sent blindly.

Market rules: every order's quantity and price go through the market's own filters before
anything is sent (:meth:`CcxtExchange.place_order`); the rules come from the markets, loaded
once, and are cached per symbol (:meth:`~infra.exchange.pool.ClientPool.market_rules`).
Nothing here retries an order call: Binance checks client ids only among *open* orders, so
a filled market order sent again fills again (Bybit refuses an ``orderLinkId`` the account
ever used, 110072, but the adapter relies on that only to look the holder up). ccxt's own
``maxRetriesOnFailure`` is forced to 0 for the same reason.

Per venue, everything comes from the :class:`~infra.exchange.venues.Venue`: the lookup by
client id is its ``lookup_calls`` in turn (Binance: ``fetch_order``; Bybit: open orders,
the latest closed ones, the order history), open-order lists are read page by page when it
pages them, the mark price comes from its ``mark_price_call``, and a market order whose
placement reply states no status (Bybit's) is looked up once after it was accepted.

:meth:`CcxtExchange.fetch_account` raises :class:`AccountFetchError` (the sync treats it
as "no observation this round").

Logs never carry credentials: the key pair stays inside the ccxt clients, exception texts
are logged through :func:`~infra.exchange.errors.describe` (URL query strings removed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from actors.messages import CallResult
from actors.model import ExchangeStatus, Key, MarketRules, OrderKind
from actors.ports import (
    AccountView,
    Clock,
    MarketReply,
    OrderReply,
    OrderRequest,
    SystemClock,
)
from actors.state import parse_client_id
from infra.exchange.client import arm
from infra.exchange.errors import Op, Reason, classify, describe, local_reason
from infra.exchange.limits import AccountLimiter, Priority
from infra.exchange.listen_keys import ListenKeys
from infra.exchange.order_queries import find_order, open_orders, open_positions
from infra.exchange.order_rules import Refusal, request_on_rules
from infra.exchange.pool import ClientPool, MarketsUnavailable, UnknownSymbol
from infra.exchange.translate import (
    mismatch,
    open_orders_of,
    order_reply,
    positions_of,
    positive,
)
from infra.exchange.venues import Credentials, VenueConfig

__all__ = ["AccountFetchError", "CcxtExchange"]

log = logging.getLogger(__name__)

_ORDER_TYPE = "market"


class AccountFetchError(Exception):
    """``fetch_account`` failed; the message is safe to log (no query strings)."""


class CcxtExchange:
    """One account's exchange through ccxt. Implements :class:`actors.ports.ExchangePort`.

    ``account``: the account name (credentials' environment names derive from it, see
    :class:`~infra.exchange.venues.VenueConfig`). ``clock``: the time stamped on
    observations (``observed_at``: when :meth:`fetch_account` *started*) and on replies that
    carry no exchange time; use the supervisor's clock. ``environ``: where credentials are
    read (default ``os.environ``).

    Blocking; called on the account's worker threads and the sync thread, several at once
    (one ccxt client per thread; see :mod:`infra.exchange.pool`). Call :meth:`close` at
    shutdown.
    """

    def __init__(
        self,
        account: str,
        venue_config: VenueConfig | None = None,
        *,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.account = account
        self.config = venue_config or VenueConfig()
        self.venue = self.config.resolve_venue()
        self._credentials = self.config.credentials(account, environ)
        if self.config.base_url is not None:
            self.venue.api_urls(self.config.base_url)  # validate early
        self._clock = clock or SystemClock()
        #: The per-thread ccxt clients, the markets they share and the account's limiter.
        self.pool = ClientPool(account, self.venue, self.config, self._credentials)
        #: The account's request limiter (None with ``enable_rate_limit=False``).
        self.limiter: AccountLimiter | None = self.pool.limiter
        #: The account's user-stream listen key, on the same clients and limiter
        #: (``listen_keys.applicable`` False on a venue without one: Bybit).
        self.listen_keys = ListenKeys(self.pool)

    @property
    def credentials(self) -> Credentials:
        """The account's key pair (its repr hides the secret): what a private stream that
        signs its own login (Bybit's ``auth``) needs, with :attr:`venue`."""
        return self._credentials

    def __repr__(self) -> str:
        return (
            f"CcxtExchange({self.account!r}, venue={self.venue.name!r},"
            f" base_url={self.config.base_url!r})"
        )

    # -- markets and symbols ------------------------------------------------------------

    def load_markets(self) -> None:
        """Load the venue's markets once (see :meth:`ClientPool.load_markets`); raises
        :class:`~infra.exchange.pool.MarketsUnavailable`."""
        self.pool.load_markets()

    def close(self) -> None:
        """Close every client's HTTP session (pooled connections) and refuse the requests
        waiting for the limiter. Safe to call twice."""
        self.pool.close()

    @property
    def symbols(self) -> frozenset[str]:
        """Exchange symbol ids of the venue's markets (loads markets if needed)."""
        return self.pool.symbols

    def cached_market_rules(self, symbol_id: str) -> MarketRules | None:
        """The market's rules for ``symbol_id`` when the markets are loaded already, else
        None; never does I/O (any thread, e.g. a feed's). The same rules
        :meth:`fetch_market` gives (:meth:`ClientPool.market_rules`)."""
        return self.pool.cached_market_rules(symbol_id)

    def fence_with(self, seconds_left: Callable[[], float | None]) -> None:
        """Send a place or cancel only while ``seconds_left()`` (the account's lease validity
        left, ``None``: not held) is positive, asked after the request's timestamp is taken
        (I7; :meth:`ClientPool.fence_with`). Such a call is then ``lease_lapsed``: a place
        REJECTED, a cancel UNKNOWN, nothing sent. Called once at start."""
        self.pool.fence_with(seconds_left)

    # -- the port -----------------------------------------------------------------------

    def place_order(self, req: OrderRequest) -> OrderReply:
        """Send one order with its deterministic client id; never re-sent here.

        Market entry and close (reduce-only) go to the plain order endpoint; stop-loss and
        take-profit (``closePosition`` when ``req.close_position``) to the conditional one.

        Before anything is sent the request goes through the market's rules
        (:mod:`infra.exchange.order_rules`): the quantity onto the market-order step
        (:func:`quantize_qty`, then ccxt's ``amount_to_precision``) and within min/max
        quantity, the trigger price
        onto the tick (``price_to_precision``) and within min/max price. A request they
        refuse is REJECTED ``invalid:amount`` / ``invalid:price`` without being sent; an
        exception raised before the request left (ccxt's local checks, ``decimal`` errors,
        ``TypeError`` ...) is REJECTED ``local:<Class>``. Exchange outcomes:
        :mod:`infra.exchange.errors`.

        A duplicate client id (Binance -4116: an open order holds it; Bybit 110072: an order
        the account ever had, open or closed, holds it) is looked up and accepted as ours
        (ACCEPTED ``duplicate``, with the holder's real status: ``canceled`` for a cancelled
        stop, ``filled`` ...) only when its symbol, side and (for stops) order type are the
        request's; another order is REJECTED
        ``duplicate_id_mismatch`` (logged as an error); when the lookup cannot tell, the
        outcome is UNKNOWN ``duplicate_unverified`` (the actor looks it up again).
        """
        try:
            client = self.pool.client()
            symbol = self.pool.unified(req.key.symbol)
            rules = self.pool.market_rules(req.key.symbol)
        except MarketsUnavailable as exc:
            log.warning("%s place %s: %s", req.key, req.client_id, exc)
            return OrderReply(
                CallResult.REJECTED,
                str(Reason.MARKETS_UNAVAILABLE),
                retry_after=self.config.retry_after_s,
            )
        except UnknownSymbol:
            return OrderReply(CallResult.REJECTED, str(Reason.BAD_SYMBOL))
        except Exception as exc:  # reading the market's rules: nothing was sent
            log.error("%s place %s: no market rules (%s)", req.key, req.client_id, describe(exc))
            return OrderReply(CallResult.REJECTED, local_reason(exc))
        if req.kind is OrderKind.ENTRY:
            arm(client, Priority.ENTRY, self.config.entry_max_wait_s, fenced=True)
        else:
            arm(client, Priority.PROTECT, self.config.timeout_s, fenced=True)
        try:
            amount, params = request_on_rules(self.venue, client, symbol, req, rules)
            order = client.create_order(symbol, _ORDER_TYPE, req.side, amount, None, params)
        except Refusal as refusal:
            log.warning(
                "%s place %s %s refused before sending: %s (%s)",
                req.key,
                req.kind.value,
                req.client_id,
                refusal.reason,
                refusal.detail,
            )
            return OrderReply(CallResult.REJECTED, str(refusal.reason))
        except Exception as exc:
            sent = bool(client.ps_sent)
            reply = classify(Op.PLACE, exc, self.venue, self.config.retry_after_s, left=sent)
            if reply.result is CallResult.ACCEPTED and reply.reason == Reason.DUPLICATE:
                return self._duplicate(client, symbol, req)
            if not sent:
                level = logging.ERROR
            elif reply.result is CallResult.UNKNOWN:
                level = logging.WARNING
            else:
                level = logging.INFO
            log.log(
                level,
                "%s place %s %s: %s %s (%s)",
                req.key,
                req.kind.value,
                req.client_id,
                reply.result.value,
                reply.reason,
                describe(exc),
            )
            return reply
        accepted = self._reply(CallResult.ACCEPTED, order)
        if accepted.status is None and self.venue.lookup_after_place and not req.kind.trigger:
            return self._confirm(client, symbol, req, accepted)
        return accepted

    def _confirm(
        self, client: Any, symbol: str, req: OrderRequest, accepted: OrderReply
    ) -> OrderReply:
        """A market order the exchange accepted with a reply that states no status (Bybit:
        only its ids): looked up once (an entry at ``RESOLVE`` priority, a close at
        ``PROTECT``) so the reply carries its status and fill. The acceptance stands whatever
        the lookup says; a lookup that finds nothing or fails leaves it as it was (status
        unknown: the stream or a later lookup tells)."""
        if req.kind is OrderKind.ENTRY:
            arm(client, Priority.RESOLVE, self.config.resolve_max_wait_s)
        else:
            arm(client, Priority.PROTECT, self.config.timeout_s)
        found, _ = self._by_client_id(
            Op.LOOKUP, client, symbol, req.key, req.client_id, req.kind.trigger
        )
        if found.result is not CallResult.FOUND:
            log.info(
                "%s place %s: accepted; its status not read yet (%s %s)",
                req.key,
                req.client_id,
                found.result.value,
                found.reason,
            )
            return accepted
        return replace(
            found,
            result=CallResult.ACCEPTED,
            exchange_id=found.exchange_id or accepted.exchange_id,
        )

    def _duplicate(self, client: Any, symbol: str, req: OrderRequest) -> OrderReply:
        """A duplicate refusal for ``req``: is the order holding its client id ours? (see
        place_order)"""
        found, order = self._by_client_id(
            Op.LOOKUP, client, symbol, req.key, req.client_id, req.kind.trigger
        )
        if found.result is not CallResult.FOUND or order is None:
            log.warning(
                "%s place %s: client id in use on the exchange, but the lookup says %s (%s)",
                req.key,
                req.client_id,
                found.result.value,
                found.reason,
            )
            return OrderReply(
                CallResult.UNKNOWN,
                str(Reason.DUPLICATE_UNVERIFIED),
                retry_after=found.retry_after,
            )
        problems = mismatch(self.venue, symbol, req, order)
        if problems:
            log.error(
                "%s place %s %s %s: client id already used by another order (%s); refused",
                req.key,
                req.kind.value,
                req.side,
                req.client_id,
                problems,
            )
            return OrderReply(CallResult.REJECTED, str(Reason.DUPLICATE_ID_MISMATCH))
        log.info("%s place %s: already on the exchange (duplicate id)", req.key, req.client_id)
        return replace(found, result=CallResult.ACCEPTED, reason=str(Reason.DUPLICATE))

    def lookup_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        """Ask for the order by client id: FOUND (with status), NOT_FOUND or UNKNOWN.

        One NOT_FOUND right after placement is not proof (a busy exchange answers "not
        found" for a moment); the state machine decides how long to keep asking. A lookup
        that failed before its request left is UNKNOWN ``local:<Class>``.
        """
        parsed = parse_client_id(client_id)
        entry = parsed is not None and parsed[1] is OrderKind.ENTRY
        if entry:
            budget = (Priority.RESOLVE, self.config.resolve_max_wait_s)
        else:
            budget = (Priority.PROTECT, self.config.timeout_s)
        return self._order_call(Op.LOOKUP, key, client_id, trigger, budget)

    def cancel_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        """Cancel by client id: ACCEPTED (status ``canceled``), NOT_FOUND or UNKNOWN.

        A 429 is UNKNOWN with the exchange's ``Retry-After``; a cancel that failed before
        its request left is UNKNOWN ``local:<Class>``.
        """
        budget = (Priority.PROTECT, self.config.timeout_s)
        return self._order_call(Op.CANCEL, key, client_id, trigger, budget)

    def _order_call(
        self,
        op: Op,
        key: Key,
        client_id: str,
        trigger: bool,
        budget: tuple[Priority, float],
    ) -> OrderReply:
        """A lookup or cancel by client id on this thread's client, with the limiter's
        priority and wait bound ``budget``; a symbol that cannot be resolved is UNKNOWN."""
        try:
            client = self.pool.client()
            symbol = self.pool.unified(key.symbol)
        except MarketsUnavailable:
            return OrderReply(CallResult.UNKNOWN, str(Reason.MARKETS_UNAVAILABLE))
        except UnknownSymbol:
            return OrderReply(CallResult.UNKNOWN, str(Reason.BAD_SYMBOL))
        arm(client, *budget, fenced=op is Op.CANCEL)
        reply, _ = self._by_client_id(op, client, symbol, key, client_id, trigger)
        return reply

    def _by_client_id(
        self, op: Op, client: Any, symbol: str, key: Key, client_id: str, trigger: bool
    ) -> tuple[OrderReply, Mapping[str, Any] | None]:
        """The order ``client_id`` names: looked up (``Op.LOOKUP``, :meth:`_find`) or
        cancelled (``Op.CANCEL``, one ``cancel_order``, the venue's cancel flag when
        ``trigger``): the port's reply and the ccxt order (None when the call failed or found
        nothing). A found order is FOUND, a cancelled one ACCEPTED with status ``canceled``
        when the reply states none; failures go through
        :func:`~infra.exchange.errors.classify`."""
        params: dict[str, Any] = {self.venue.client_id_param: client_id}
        if op is Op.LOOKUP:
            return self._find(client, symbol, key, client_id, trigger)
        if trigger:
            params.update(self.venue.cancel_trigger_flag)
        client.ps_sent = False
        try:
            order = client.cancel_order(None, symbol, params)
        except Exception as exc:
            return self._failed(op, client, exc, key, client_id), None
        reply = self._reply(CallResult.ACCEPTED, order)
        if reply.status is None:
            reply = replace(reply, status=ExchangeStatus.CANCELED)
        return reply, order

    def _find(
        self, client: Any, symbol: str, key: Key, client_id: str, trigger: bool
    ) -> tuple[OrderReply, Mapping[str, Any] | None]:
        """Look ``client_id`` up (:func:`~infra.exchange.order_queries.find_order`, the
        venue's lookup calls in turn): FOUND with the order, NOT_FOUND when no call finds
        it, the classified failure of a call that fails (a later call could not prove the
        order absent)."""
        try:
            order = find_order(self.venue, client, symbol, client_id, trigger)
        except Exception as exc:
            return self._failed(Op.LOOKUP, client, exc, key, client_id), None
        if order is None:
            return OrderReply(CallResult.NOT_FOUND, str(Reason.NOT_FOUND)), None
        return self._reply(CallResult.FOUND, order), order

    def _failed(self, op: Op, client: Any, exc: Exception, key: Key, client_id: str) -> OrderReply:
        """The classified reply of a lookup or cancel that raised (logged when UNKNOWN)."""
        sent = bool(client.ps_sent)
        reply = classify(op, exc, self.venue, self.config.retry_after_s, left=sent)
        if reply.result is CallResult.UNKNOWN:
            log.log(
                logging.WARNING if sent else logging.ERROR,
                "%s %s %s: %s (%s)",
                key,
                op.value,
                client_id,
                reply.reason,
                describe(exc),
            )
        return reply

    def fetch_account(self, account: str) -> AccountView:
        """Positions (one-way) and open orders (plain and conditional) by exchange symbol id.

        ``observed_at`` is the clock's time when the fetch *started*. Raises
        :class:`AccountFetchError` on any failure (nothing partial is returned).
        """
        if account != self.account:
            raise ValueError(f"this adapter serves account {self.account!r}, not {account!r}")
        started = self._clock.now()
        try:
            client = self.pool.client()
            arm(client, Priority.READ, self.config.timeout_s)
            raw_positions = open_positions(self.venue, client)
            plain = open_orders(self.venue, client, self.venue.plain_orders_filter)
            conditional = open_orders(self.venue, client, self.venue.trigger_flag)
        except Exception as exc:
            raise AccountFetchError(f"account {account}: {describe(exc)}") from None
        to_id = self.pool.to_id
        return AccountView(
            account,
            positions_of(raw_positions, to_id),
            open_orders_of(plain, conditional, to_id),
            started,
            self.pool.symbols,
        )

    def fetch_market(self, key: Key) -> MarketReply:
        """The symbol's mark price (one request) and market rules (cached, see market_rules).

        ``at`` is this adapter's clock when the request was about to be sent: the price is at
        least that fresh. Never raises: FOUND with ``mark_price`` and ``rules``; REJECTED
        ``bad_symbol`` for a symbol the venue does not trade; otherwise UNKNOWN with the
        reason of :func:`~infra.exchange.errors.classify` (``rate_limited`` with the
        exchange's ``retry_after``, ``markets_unavailable``, ``local:<Class>`` ...) or
        ``bad_mark_price`` for a reply without a positive finite mark price.
        """
        at = self._clock.now()
        try:
            client = self.pool.client()
            symbol = self.pool.unified(key.symbol)
            rules = self.pool.market_rules(key.symbol)
        except MarketsUnavailable as exc:
            log.warning("%s market: %s", key, exc)
            return MarketReply(
                CallResult.UNKNOWN,
                at=at,
                reason=str(Reason.MARKETS_UNAVAILABLE),
                retry_after=self.config.retry_after_s,
            )
        except UnknownSymbol:
            return MarketReply(CallResult.REJECTED, at=at, reason=str(Reason.BAD_SYMBOL))
        except Exception as exc:  # reading the market's rules: nothing was sent
            log.error("%s market: no market rules (%s)", key, describe(exc))
            return MarketReply(CallResult.UNKNOWN, at=at, reason=local_reason(exc))
        arm(client, Priority.RESOLVE, self.config.resolve_max_wait_s)
        at = self._clock.now()
        try:
            ticker = getattr(client, self.venue.mark_price_call)(symbol)
        except Exception as exc:
            sent = bool(client.ps_sent)
            reply = classify(Op.MARKET, exc, self.venue, self.config.retry_after_s, left=sent)
            log.log(
                logging.WARNING if sent else logging.ERROR,
                "%s market: %s %s (%s)",
                key,
                reply.result.value,
                reply.reason,
                describe(exc),
            )
            return MarketReply(
                reply.result, at=at, reason=reply.reason, retry_after=reply.retry_after
            )
        price = positive(ticker.get("markPrice")) if isinstance(ticker, Mapping) else None
        if price is None:
            log.warning("%s market: reply without a usable mark price: %.200r", key, ticker)
            return MarketReply(CallResult.UNKNOWN, at=at, reason=str(Reason.BAD_MARK_PRICE))
        return MarketReply(CallResult.FOUND, mark_price=price, rules=rules, at=at)

    def _reply(self, result: CallResult, order: Mapping[str, Any]) -> OrderReply:
        """An :class:`OrderReply` from a ccxt order structure (see
        :func:`~infra.exchange.translate.order_reply`), stamped by this adapter's clock when
        the reply carries no exchange time."""
        return order_reply(self.venue, result, order, self._clock.now)
