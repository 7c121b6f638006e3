"""``CcxtExchange``: the :class:`actors.ports.ExchangePort` of one account, over ccxt (sync).

Who calls: the account's :class:`~actors.workers.ExchangeWorkers` threads (place, cancel,
lookup) and the sync thread (:meth:`CcxtExchange.fetch_account`), several at once.

Thread safety: **one ccxt client per calling thread** (``threading.local``). A ccxt sync
client is not safe to share: it holds a ``requests.Session``, mutates ``options`` and
per-request state (``last_http_response``, the limiter's timestamp) during a call. A lock
around one shared client would be safe too, but it would serialise the account's calls, so
one slow order (1-3 s on a busy exchange, S6) would hold up every lookup and stop-loss of the
other symbols - exactly what the per-account worker pool exists to avoid. What the clients
share is read-only or locked: the markets (loaded once, lazily, with retry, by one client
and handed to the others with ``set_markets_from_exchange``) and the rate limiter (one
per account, see :class:`_Throttle`), so ``enable_rate_limit`` still paces the account as
a whole.

Failure: the order methods never raise for exchange or network errors; the mapping lives
in :mod:`infra.exchange.errors` (UNKNOWN whenever the order may have reached the exchange).
Nothing here retries an order call: Binance checks client ids only among *open* orders, so
a filled market order sent again fills again. ccxt's own ``maxRetriesOnFailure`` is forced
to 0 for the same reason. :meth:`CcxtExchange.fetch_account` raises
:class:`AccountFetchError` (the sync treats it as "no observation this round").

Logs never carry credentials: the key pair stays inside the ccxt clients, exception texts
are logged through :func:`~infra.exchange.errors.describe` (URL query strings removed).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import ccxt

from actors.messages import CallResult
from actors.model import ExchangeOrder, ExchangePosition, Key, OrderKind, Side
from actors.ports import (
    AccountView,
    Clock,
    MarketReply,
    OrderReply,
    OrderRequest,
    SystemClock,
)
from infra.exchange.errors import Op, Reason, WireInfo, attach_wire, classify, describe, never_sent
from infra.exchange.venues import Venue, VenueConfig

__all__ = ["AccountFetchError", "CcxtExchange", "MarketsUnavailable", "UnknownSymbol"]

log = logging.getLogger(__name__)

_ORDER_TYPE = "market"


class MarketsUnavailable(Exception):
    """The venue's markets could not be loaded (after the configured attempts)."""


class UnknownSymbol(KeyError):
    """An exchange symbol id (or unified symbol) that the loaded markets do not have."""


class AccountFetchError(Exception):
    """``fetch_account`` failed; the message is safe to log (no query strings)."""


class _Throttle:
    """ccxt's limiter semantics (``rateLimit`` × cost between requests), shared by threads.

    Each request reserves the next free slot under the lock and sleeps outside it, so the
    account's requests are spaced as one ccxt client would space them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self, interval_s: float) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + interval_s
        if start > now:
            time.sleep(start - now)


def _retry_after(headers: Mapping[str, str] | None, name: str) -> float | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _error_code(body: object) -> str | None:
    if not isinstance(body, str) or not body.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return None if code is None else str(code)


_CLASSES: dict[str, type[Any]] = {}
_CLASSES_LOCK = threading.Lock()


def _client_class(venue: Venue) -> type[Any]:
    """The ccxt class of ``venue`` with the adapter's hooks (one class per venue)."""
    with _CLASSES_LOCK:
        cls = _CLASSES.get(venue.name)
        if cls is not None:
            return cls
        base = getattr(ccxt, venue.ccxt_class)

        class Client(base):  # type: ignore[misc,valid-type]
            """ccxt client hooks: forced error table, wire info on errors, shared limiter."""

            ps_error_table: str | None = None
            ps_throttle: _Throttle | None = None
            ps_retry_header: str = "Retry-After"
            ps_reply: tuple[int, Mapping[str, str], str] | None = None

            def get_exceptions_by_url(self, url: str | None, exact_or_broad: str) -> Any:
                table = self.ps_error_table
                if table is None:
                    return super().get_exceptions_by_url(url, exact_or_broad)
                return self.safe_dict(
                    self.safe_dict(self.exceptions, table, {}), exact_or_broad, {}
                )

            def on_rest_response(
                self,
                code: int,
                reason: str,
                url: str,
                method: str,
                response_headers: Mapping[str, str],
                response_body: str,
                request_headers: Any,
                request_body: Any,
            ) -> Any:
                self.ps_reply = (code, response_headers, response_body)
                return super().on_rest_response(
                    code,
                    reason,
                    url,
                    method,
                    response_headers,
                    response_body,
                    request_headers,
                    request_body,
                )

            def fetch(
                self, url: str, method: str = "GET", headers: Any = None, body: Any = None
            ) -> Any:
                self.ps_reply = None
                try:
                    return super().fetch(url, method, headers, body)
                except Exception as exc:
                    reply = self.ps_reply
                    if reply is None:
                        info = WireInfo(sent=not never_sent(exc))
                    else:
                        status, resp_headers, resp_body = reply
                        info = WireInfo(
                            http_status=status,
                            retry_after=_retry_after(resp_headers, self.ps_retry_header),
                            code=_error_code(resp_body),
                        )
                    attach_wire(exc, info)
                    raise

            def throttle(self, cost: Any = None) -> None:
                shared = self.ps_throttle
                if shared is None:
                    super().throttle(cost)
                    return
                shared.wait(float(self.rateLimit) * (1.0 if cost is None else float(cost)) / 1e3)

        Client.__name__ = Client.__qualname__ = f"Ps{venue.ccxt_class}"
        _CLASSES[venue.name] = Client
        return Client


def _first(info: Mapping[str, Any], fields: Iterable[str]) -> Any:
    for name in fields:
        value = info.get(name)
        if value is not None and value != "":
            return value
    return None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_UNIFIED_STATUS = {
    "open": "new",
    "closed": "filled",
    "canceled": "canceled",
    "expired": "expired",
    "rejected": "rejected",
}


class CcxtExchange:
    """One account's exchange through ccxt. Implements :class:`actors.ports.ExchangePort`.

    ``account``: the account name (credentials' environment names derive from it, see
    :class:`~infra.exchange.venues.VenueConfig`). ``clock``: the time stamped on
    observations (``observed_at``: when :meth:`fetch_account` *started*) and on replies that
    carry no exchange time; use the supervisor's clock. ``environ``: where credentials are
    read (default ``os.environ``).

    Blocking; called on the account's worker threads and the sync thread, several at once
    (one ccxt client per thread; see the module docstring). Call :meth:`close` at shutdown.
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
        self._cls = _client_class(self.venue)
        self._throttle = _Throttle()
        self._local = threading.local()
        self._lock = threading.Lock()  # the client registry
        self._markets_lock = threading.Lock()
        self._source: Any = None  # the client that loaded the markets (never used after)
        self._clients: dict[int, tuple[threading.Thread, Any]] = {}
        self._to_unified: dict[str, str] = {}
        self._to_id: dict[str, str] = {}

    def __repr__(self) -> str:
        return (
            f"CcxtExchange({self.account!r}, venue={self.venue.name!r},"
            f" base_url={self.config.base_url!r})"
        )

    # -- clients and markets ------------------------------------------------------------

    def _new_client(self) -> Any:
        cfg = self.config
        options: dict[str, Any] = copy.deepcopy(dict(self.venue.options))
        options.update(copy.deepcopy(dict(cfg.extra_options)))
        # Never let ccxt re-send a request on its own (an order could be placed twice).
        options["maxRetriesOnFailure"] = 0
        options["maxRetriesOnFailureDelay"] = 0
        if cfg.recv_window_ms is not None:
            options["recvWindow"] = cfg.recv_window_ms
        client = self._cls(
            {
                "apiKey": self._credentials.api_key,
                "secret": self._credentials.secret,
                "enableRateLimit": cfg.enable_rate_limit,
                "timeout": max(1, round(cfg.timeout_s * 1000)),
                "options": options,
            }
        )
        if cfg.rate_limit_ms is not None:
            client.rateLimit = cfg.rate_limit_ms
        if cfg.base_url is not None:
            client.urls["api"] = self.venue.api_urls(cfg.base_url)
        client.ps_error_table = self.venue.error_table
        client.ps_throttle = self._throttle
        client.ps_retry_header = self.venue.retry_after_header
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

    def _client(self) -> Any:
        """This thread's ccxt client (created on first use, with the shared markets)."""
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
        """Close every client's HTTP session (pooled connections). Safe to call twice."""
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

    # -- symbols ------------------------------------------------------------------------

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

    # -- the port -----------------------------------------------------------------------

    def order_params(self, req: OrderRequest) -> dict[str, Any]:
        """The ccxt ``params`` for ``req`` (exchange-specific names from the venue)."""
        v = self.venue
        params: dict[str, Any] = {v.client_id_param: req.client_id}
        if req.kind.trigger:
            if req.trigger_price is None:
                raise ValueError(f"{req.kind.value} order without trigger_price")
            price_param = (
                v.stop_loss_param if req.kind is OrderKind.STOP_LOSS else v.take_profit_param
            )
            params[price_param] = req.trigger_price
            params.update(v.stop_order_params)
            if req.close_position:
                params[v.close_position_param] = True
            else:
                # A protective order never opens or increases a position.
                params[v.reduce_only_param] = True
            return params
        params.update(v.market_order_params)
        if req.reduce_only or req.close_position or req.kind is OrderKind.CLOSE:
            params[v.reduce_only_param] = True
        return params

    def place_order(self, req: OrderRequest) -> OrderReply:
        """Send one order with its deterministic client id; never re-sent here.

        Market entry and close (reduce-only) go to the plain order endpoint; stop-loss and
        take-profit (``closePosition`` when ``req.close_position``) to the conditional one.
        Outcome mapping: :mod:`infra.exchange.errors`. A duplicate client id means the order
        is already there: the reply is ACCEPTED, with the status a lookup shows.
        """
        try:
            client = self._client()
            symbol = self.unified(req.key.symbol)
        except MarketsUnavailable as exc:
            log.warning("%s place %s: %s", req.key, req.client_id, exc)
            return OrderReply(
                CallResult.REJECTED,
                str(Reason.MARKETS_UNAVAILABLE),
                retry_after=self.config.retry_after_s,
            )
        except UnknownSymbol:
            return OrderReply(CallResult.REJECTED, str(Reason.BAD_SYMBOL))
        try:
            params = self.order_params(req)
        except ValueError as exc:
            log.warning("%s place %s refused locally: %s", req.key, req.client_id, exc)
            return OrderReply(CallResult.REJECTED, str(Reason.INVALID))
        try:
            order = client.create_order(symbol, _ORDER_TYPE, req.side, req.qty, None, params)
        except Exception as exc:
            reply = classify(Op.PLACE, exc, self.venue, self.config.retry_after_s)
            if reply.result is CallResult.ACCEPTED and reply.reason == Reason.DUPLICATE:
                log.info(
                    "%s place %s: already on the exchange (duplicate id)", req.key, req.client_id
                )
                found = self.lookup_order(req.key, req.client_id, req.kind.trigger)
                if found.result is CallResult.FOUND:
                    return replace(found, result=CallResult.ACCEPTED, reason=str(Reason.DUPLICATE))
                return reply
            level = logging.WARNING if reply.result is CallResult.UNKNOWN else logging.INFO
            log.log(
                level,
                "%s place %s %s: %s (%s)",
                req.key,
                req.kind.value,
                req.client_id,
                reply.result.value,
                describe(exc),
            )
            return reply
        return self._reply(CallResult.ACCEPTED, order)

    def lookup_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        """Ask for the order by client id: FOUND (with status), NOT_FOUND or UNKNOWN.

        One NOT_FOUND right after placement is not proof (a busy exchange answers "not
        found" for a moment); the state machine decides how long to keep asking.
        """
        try:
            client = self._client()
            symbol = self.unified(key.symbol)
        except MarketsUnavailable:
            return OrderReply(CallResult.UNKNOWN, str(Reason.MARKETS_UNAVAILABLE))
        except UnknownSymbol:
            return OrderReply(CallResult.UNKNOWN, str(Reason.BAD_SYMBOL))
        params: dict[str, Any] = {self.venue.client_id_param: client_id}
        if trigger:
            params.update(self.venue.trigger_flag)
        try:
            order = client.fetch_order(None, symbol, params)
        except Exception as exc:
            reply = classify(Op.LOOKUP, exc, self.venue, self.config.retry_after_s)
            if reply.result is CallResult.UNKNOWN:
                log.warning("%s lookup %s: %s (%s)", key, client_id, reply.reason, describe(exc))
            return reply
        return self._reply(CallResult.FOUND, order)

    def cancel_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        """Cancel by client id: ACCEPTED (status ``canceled``), NOT_FOUND or UNKNOWN."""
        try:
            client = self._client()
            symbol = self.unified(key.symbol)
        except MarketsUnavailable:
            return OrderReply(CallResult.UNKNOWN, str(Reason.MARKETS_UNAVAILABLE))
        except UnknownSymbol:
            return OrderReply(CallResult.UNKNOWN, str(Reason.BAD_SYMBOL))
        params: dict[str, Any] = {self.venue.client_id_param: client_id}
        if trigger:
            params.update(self.venue.trigger_flag)
        try:
            order = client.cancel_order(None, symbol, params)
        except Exception as exc:
            reply = classify(Op.CANCEL, exc, self.venue, self.config.retry_after_s)
            if reply.result is CallResult.UNKNOWN:
                log.warning("%s cancel %s: %s (%s)", key, client_id, reply.reason, describe(exc))
            return reply
        reply = self._reply(CallResult.ACCEPTED, order)
        if reply.status is None:
            reply = replace(reply, status="canceled")
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
            client = self._client()
            raw_positions = client.fetch_positions()
            plain = client.fetch_open_orders()
            conditional = client.fetch_open_orders(None, None, None, dict(self.venue.trigger_flag))
        except Exception as exc:
            raise AccountFetchError(f"account {account}: {describe(exc)}") from None
        positions: dict[str, ExchangePosition] = {}
        for p in raw_positions:
            sid = self._to_id.get(p.get("symbol") or "")
            contracts = _float(p.get("contracts")) or 0.0
            size = contracts * (_float(p.get("contractSize")) or 1.0)
            if sid is None or size <= 0:
                continue
            side = Side.SHORT if p.get("side") == "short" else Side.LONG
            positions[sid] = ExchangePosition(side, size, _float(p.get("entryPrice")) or 0.0)
        orders: dict[str, list[ExchangeOrder]] = {}
        for o, is_trigger in [(o, False) for o in plain] + [(o, True) for o in conditional]:
            sid = self._to_id.get(o.get("symbol") or "")
            if sid is None:
                continue
            info = o.get("info") or {}
            orders.setdefault(sid, []).append(
                ExchangeOrder(
                    client_id=str(o.get("clientOrderId") or ""),
                    side=str(o.get("side") or "").lower(),
                    qty=_float(o.get("amount")) or 0.0,
                    trigger=is_trigger,
                    trigger_price=_float(o.get("triggerPrice")),
                    reduce_only=bool(o.get("reduceOnly"))
                    or str(info.get("closePosition")).lower() == "true",
                    exchange_id=None if o.get("id") is None else str(o.get("id")),
                )
            )
        return AccountView(
            account,
            positions,
            {s: tuple(v) for s, v in orders.items()},
            started,
            frozenset(self._to_unified),
        )

    def fetch_market(self, key: Key) -> MarketReply:
        """The symbol's mark price and market rules (not implemented yet: UNKNOWN)."""
        return MarketReply(CallResult.UNKNOWN, reason="not_implemented")

    # -- replies ------------------------------------------------------------------------

    def _reply(self, result: CallResult, order: Mapping[str, Any]) -> OrderReply:
        """An :class:`OrderReply` from a ccxt order structure (raw fields first)."""
        v = self.venue
        try:
            info = order.get("info") or {}
            raw_status = _first(info, v.status_fields)
            status = v.normalize_status(None if raw_status is None else str(raw_status))
            if status is None:
                if raw_status is not None:
                    log.warning("unknown %s order status %r", v.name, raw_status)
                status = _UNIFIED_STATUS.get(str(order.get("status")))
            filled = _float(_first(info, v.filled_fields))
            if filled is None:
                filled = _float(order.get("filled")) or 0.0
            avg = _float(_first(info, v.avg_price_fields))
            if avg is None or avg <= 0:
                avg = _float(order.get("average"))
            avg = avg if avg is not None and avg > 0 else None
            oid = _first(info, v.id_fields)
            if oid is None:
                oid = order.get("id")
            ms = _float(_first(info, v.time_fields))
            event_time = ms / 1000.0 if ms else self._clock.now()
            return OrderReply(
                result,
                status=status,
                filled_qty=filled,
                avg_price=avg,
                exchange_id=None if oid is None else str(oid),
                event_time=event_time,
            )
        except Exception:  # the call succeeded; a malformed reply must not turn it into UNKNOWN
            log.exception("could not read a %s order reply", v.name)
            return OrderReply(result)
