"""``BybitExchange``: the local exchange speaking Bybit's v5 wire (linear USDT perpetuals).

A ``SimExchange`` (same matching engine, accounts, faults, order log, control API, random
walk, scheduler, threads and ``stop()``) whose HTTP front is Bybit's
(:class:`sim.bybit.gateway.BybitGateway`): REST under ``/v5``, the public stream on
``/v5/public/linear`` and the private stream on ``/v5/private``, on its own port.

What it adds to the engine, per account (:class:`AccountBook`): every ``orderLinkId`` the
account ever used (Bybit refuses one used before, open or not), and what Bybit remembers of
a conditional order that the engine does not (``closeOnTrigger``, ``triggerBy``). Engine
events are rendered as Bybit's private topics (``order``, ``execution``, ``position``,
``wallet``); price moves as ``tickers.<symbol>`` deltas. Thread model and locking are the
base class's: events are queued on the sockets while ``self.lock`` is held.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sim.bybit import wire
from sim.bybit.gateway import BybitGateway
from sim.bybit.limits import BybitLimitBook
from sim.exchange import SimExchange
from sim.httpserver import App
from sim.matching import AccountEvent, AlgoEvent, Event, MatchingEngine, OrderEvent, now_ms
from sim.rest import DEFAULT_ACCOUNT
from sim.websocket import WsConnection

DEFAULT_SECRET = "sim-secret"
"""The secret a key not listed in ``secrets`` signs with."""

TAKER_FEE = 0.00055
"""Bybit's base taker fee for linear perpetuals (0.055 %)."""

PRIVATE_TOPICS = ("order", "execution", "position", "wallet")


@dataclass
class AccountBook:
    """What the Bybit front remembers of one account beyond the engine's state."""

    link_ids: set[str] = field(default_factory=set)
    close_on_trigger: set[int] = field(default_factory=set)
    trigger_by: dict[int, str] = field(default_factory=dict)


def private_stream(account: str, topic: str) -> str:
    """The hub's stream name of ``account``'s private ``topic``."""
    return f"{account}|{topic}"


def sign(secret: str, payload: str) -> str:
    """Bybit's HMAC-SHA256 signature (hex) of ``payload``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class BybitExchange(SimExchange):
    """A local Bybit v5 exchange (linear USDT perpetuals): REST + public and private streams.

    Arguments as :class:`sim.SimExchange`, plus ``secrets`` (API key → secret; a key not
    listed signs with :data:`DEFAULT_SECRET`) and ``check_signatures`` (False: any
    signature passes; timestamps are still checked). ``rate_limits`` maps
    ``(method, path)`` to requests per second per account (default
    :data:`sim.bybit.limits.BYBIT_V5`). ``base_url`` serves REST (``/v5/...``) and the
    control API; ``ws_url`` the streams (``/v5/public/linear``, ``/v5/private``).
    """

    def __init__(
        self,
        symbols: dict[str, float] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        wallet_usdt: float = 1_000_000.0,
        leverage: int = 20,
        *,
        taker_fee: float = TAKER_FEE,
        user_events_first: bool = True,
        seed: int | None = None,
        specs: dict[str, Any] | None = None,
        accounts: Mapping[str, Sequence[str]] | None = None,
        secrets: Mapping[str, str] | None = None,
        strict_keys: bool = False,
        check_signatures: bool = True,
        enforce_rate_limits: bool = False,
        rate_limits: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.secrets = dict(secrets or {})
        self.check_signatures = check_signatures
        self.books: dict[str, AccountBook] = {}
        self.bybit_events: deque[dict[str, Any]] = deque(maxlen=20_000)
        self._seq = itertools.count(1)
        super().__init__(
            symbols,
            host,
            port,
            None,
            wallet_usdt,
            leverage,
            taker_fee=taker_fee,
            user_events_first=user_events_first,
            seed=seed,
            specs=specs,
            accounts=accounts,
            strict_keys=strict_keys,
            enforce_rate_limits=enforce_rate_limits,
        )
        self.bybit_limits = BybitLimitBook(rate_limits, enforce_rate_limits)
        self.limits = self.bybit_limits
        self._bybit_setup()

    def __enter__(self) -> BybitExchange:
        self.start()
        return self

    def make_app(self) -> App:
        """Bybit's front (REST, streams, and the control API under ``/_sim``)."""
        self.gateway = BybitGateway(self)
        return self.gateway

    def _bybit_setup(self) -> None:
        self.books = {a: AccountBook() for a in self.accounts}
        for engine in self.engines.values():
            engine.clip_reduce_only = True

    def reset(self) -> None:
        """As :meth:`SimExchange.reset`, and every account's orderLinkIds are forgotten."""
        super().reset()
        with self.lock:
            self._bybit_setup()
            self.bybit_events.clear()

    def book_of(self, account: str) -> AccountBook:
        """The Bybit book of ``account`` (KeyError for an unknown account)."""
        self.engine_of(account)
        return self.books[account]

    def secret_of(self, api_key: str) -> str:
        """The secret ``api_key`` signs with."""
        return self.secrets.get(api_key, DEFAULT_SECRET)

    def signature_ok(self, api_key: str, payload: str, signature: str) -> bool:
        """Does ``signature`` sign ``payload`` with ``api_key``'s secret?"""
        if not self.check_signatures:
            return True
        return hmac.compare_digest(sign(self.secret_of(api_key), payload), signature.lower())

    # ------------------------------------------------------------------ prices

    def set_prices(self, prices: dict[str, float]) -> None:
        """Move mark prices (stops crossed execute) and push ``tickers.<symbol>`` deltas."""
        with self.lock:
            super().set_prices(prices)
            self.publish_tickers(list(prices))

    def publish_tickers(self, symbols: list[str]) -> None:
        """Queue a ``tickers.<symbol>`` delta per symbol with subscribers (lock held)."""
        now = now_ms()
        for sym in symbols:
            topic = f"tickers.{sym}"
            if not self.hub.has(topic):
                continue
            msg = {
                "topic": topic,
                "type": "delta",
                "data": wire.ticker_delta(self.engine.specs[sym], self.engine.marks[sym]),
                "cs": next(self._seq),
                "ts": now,
            }
            self.hub.publish(topic, json.dumps(msg, separators=(",", ":")))

    def blast_frame(
        self, symbol: str, streams: tuple[str, str], funding: int
    ) -> list[tuple[WsConnection, int]]:
        """One ``tickers.<symbol>`` delta of a mark-price blast (lock held)."""
        del streams, funding  # Binance's stream names and funding time: not on this wire
        topic = f"tickers.{symbol}"
        if not self.hub.has(topic):
            return []
        spec = self.engine.specs[symbol]
        mark = self.engine.marks[symbol]
        data = json.dumps(wire.ticker_delta(spec, mark), separators=(",", ":"))
        text = (
            f'{{"topic":"{topic}","type":"delta","data":{data},'
            f'"cs":{next(self._seq)},"ts":{now_ms()}}}'
        )
        return self.hub.publish(topic, text)

    def ticker_snapshot(self, symbol: str) -> str:
        """The ``tickers.<symbol>`` snapshot a new subscriber gets first."""
        with self.lock:
            spec = self.engine.specs[symbol]
            msg = {
                "topic": f"tickers.{symbol}",
                "type": "snapshot",
                "data": wire.ticker(spec, self.engine.marks[symbol], self.funding_time()),
                "cs": next(self._seq),
                "ts": now_ms(),
            }
        return json.dumps(msg, separators=(",", ":"))

    # ------------------------------------------------------------------ private stream

    def render_events(self, events: list[Event], account: str) -> list[tuple[str, dict[str, Any]]]:
        """Bybit's private messages for engine ``events`` of ``account``: (topic, message).

        A fill: ``execution`` then ``order``; a position change: ``position`` then
        ``wallet``; a conditional order: ``order`` when placed (Untriggered), cancelled
        (Deactivated), triggered (Triggered) and rejected (Rejected), then its fills as
        above. A market order's NEW (before its first fill) is not sent, as on Bybit.
        """
        engine = self.engine_of(account)
        book = self.book_of(account)
        now = now_ms()
        out: list[tuple[str, dict[str, Any]]] = []

        def message(topic: str, rows: list[dict[str, Any]]) -> None:
            out.append(
                (
                    topic,
                    {"id": str(uuid.uuid4()), "topic": topic, "creationTime": now, "data": rows},
                )
            )

        for ev in events:
            if isinstance(ev, OrderEvent):
                if ev.exec_type == "NEW":
                    continue
                shown = self._shown_order(engine, book, ev)
                if ev.fill is not None:
                    spec = engine.specs[ev.order.symbol]
                    row = wire.execution(
                        spec,
                        shown,
                        ev.fill,
                        engine.marks[ev.order.symbol],
                        engine.taker_fee,
                        next(self._seq),
                    )
                    message("execution", [row])
                message("order", [{**shown, "category": wire.CATEGORY}])
            elif isinstance(ev, AlgoEvent):
                if ev.algo.status in ("TRIGGERING", "FINISHED"):
                    continue
                row = wire.conditional_order(
                    engine.specs[ev.algo.symbol],
                    ev.algo,
                    engine.taker_fee,
                    close_on_trigger=ev.algo.algo_id in book.close_on_trigger,
                    trigger_by=book.trigger_by.get(ev.algo.algo_id, "LastPrice"),
                )
                message("order", [{**row, "category": wire.CATEGORY}])
            elif isinstance(ev, AccountEvent):
                rows = [wire.position(engine, p.symbol, now, next(self._seq)) for p in ev.positions]
                message("position", rows)
                message("wallet", [wire.wallet(engine)])
        return out

    @staticmethod
    def _shown_order(engine: MatchingEngine, book: AccountBook, ev: OrderEvent) -> dict[str, Any]:
        order = ev.order
        spec = engine.specs[order.symbol]
        if order.orig_type == "MARKET":
            return wire.market_order(spec, order, engine.taker_fee)
        algo = engine.get_algo(None, order.client_order_id)
        return wire.conditional_order(
            spec,
            algo,
            engine.taker_fee,
            close_on_trigger=algo.algo_id in book.close_on_trigger,
            trigger_by=book.trigger_by.get(algo.algo_id, "LastPrice"),
            placed=order,
        )

    def enqueue_user_events(
        self, events: list[Event], account: str = DEFAULT_ACCOUNT
    ) -> list[tuple[WsConnection, int]]:
        """Render ``events`` as Bybit private messages and queue them on ``account``'s
        private streams (caller holds the lock); ``ws_reorder`` / ``ws_duplicate`` apply as
        on Binance's user stream. Messages of the default account are kept
        (:meth:`user_events`)."""
        if not events:
            return []
        rendered = self.render_events(events, account)
        if account == DEFAULT_ACCOUNT:
            self.bybit_events.extend(m for _, m in rendered)
        live = [(t, m) for t, m in rendered if self.hub.has(private_stream(account, t))]
        if not live:
            return []
        texts = [(t, json.dumps(m, separators=(",", ":"))) for t, m in live]
        if len(texts) > 1 and self.faults.take_stream("ws_reorder") is not None:
            texts.reverse()
        out: list[tuple[WsConnection, int]] = []
        for topic, text in texts:
            copies = 2 if self.faults.take_stream("ws_duplicate") is not None else 1
            for _ in range(copies):
                out.extend(self.hub.publish(private_stream(account, topic), text))
        return out

    def user_events(self) -> list[dict[str, Any]]:
        """Every private message of the default account (last 20,000), listened to or not."""
        with self.lock:
            return list(self.bybit_events)

    def wait_for_user_streams(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Block until ``n`` private connections are subscribed to the ``order`` topic."""
        streams = [private_stream(a, "order") for a in self.accounts]
        return self.hub.wait_for(
            lambda: sum(self.hub.subscribers(s) for s in streams) >= n, timeout
        )

    def drop_streams(self, kind: str = "all") -> int:
        """Drop WebSocket connections without a close frame: "all", "market" (public) or
        "user" (private). Returns how many were dropped."""
        if kind not in ("all", "market", "user"):
            raise ValueError(f"kind must be all, market or user, got {kind!r}")
        tag = {"market": "public", "user": "private"}.get(kind)
        conns = [c for c in self.gateway.connections() if tag is None or tag in c.tags]
        for conn in conns:
            conn.abort()
        return len(conns)

    # ------------------------------------------------------------------ order log

    def log_order_request(
        self,
        endpoint: str,
        p: dict[str, str],
        account: str = DEFAULT_ACCOUNT,
        api_key: str = "",
        cancel: bool = False,
    ) -> Any:
        """Record a ``/v5/order/create`` (or, with ``cancel``, ``/v5/order/cancel``) request
        in the order (cancel) log, in the log's Binance-like terms: ``type`` MARKET,
        STOP_MARKET or TAKE_PROFIT_MARKET, ``client_id`` the orderLinkId, ``close_position``
        a conditional with qty 0 and closeOnTrigger."""
        side = p.get("side", "").upper()
        trigger = p.get("triggerPrice")
        otype = "MARKET"
        if trigger and p.get("triggerDirection") in ("1", "2"):
            otype = wire.algo_type(side, int(p["triggerDirection"]))
        qty = p.get("qty")
        close = bool(trigger) and qty in ("0", "0.0") and p.get("closeOnTrigger") == "true"
        mapped = {
            "symbol": p.get("symbol", ""),
            "side": side,
            "type": otype if not cancel else "",
            "newClientOrderId": p.get("orderLinkId", ""),
            "origClientOrderId": p.get("orderLinkId", ""),
            "quantity": qty or "",
            "reduceOnly": p.get("reduceOnly", ""),
            "closePosition": "true" if close else "",
            "triggerPrice": trigger or "",
        }
        return super().log_order_request(endpoint, mapped, account, api_key, cancel)
