"""``SimExchange``: the local Binance USD-M exchange (REST + WebSocket + control API).

Threads: one per TCP connection (HTTP server), one writer per WebSocket connection, one
scheduler thread (remaining partial fills), and the optional random-walk thread. Every
state change goes through the matching engine under ``self.lock``; user-stream events are
queued on the sockets while the lock is held, so every client sees them in engine order.

Python methods may be called from any thread. ``stop()`` (or leaving the ``with`` block)
joins every thread and closes every socket the exchange opened.
"""

from __future__ import annotations

import json
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any

from sim import wire
from sim.errors import BinanceError
from sim.faults import Fault, FaultBoard
from sim.gateway import Gateway
from sim.httpserver import App, HttpServer
from sim.limits import BINANCE_USDM, LimitBook, RateLimit
from sim.matching import AlgoOrder, Event, MatchingEngine, now_ms
from sim.rest import DEFAULT_ACCOUNT
from sim.scheduler import Scheduler
from sim.streams import ARR_STREAMS, StreamHub, mark_streams
from sim.symbols import DEFAULT_SYMBOLS, SymbolSpec
from sim.websocket import WsConnection

BLAST_HIGH_WATER = 20_000
"""Frames a blast lets queue per connection before it waits for the reader."""

ORDER_ID_SPACING = 100_000_000
"""Order and algo ids of the n-th account start ``n`` times this far apart (unique ids)."""


@dataclass(frozen=True)
class PositionView:
    """A non-flat position as the sim sees it."""

    symbol: str
    qty: float
    entry_price: float
    mark_price: float
    unrealized_pnl: float
    realized_pnl: float


@dataclass(frozen=True)
class OpenOrderView:
    """An open order: ``kind`` "order" (market, partially filled) or "algo" (untriggered stop)."""

    kind: str
    id: int
    client_id: str
    symbol: str
    side: str
    type: str
    qty: float
    status: str
    trigger_price: float = 0.0
    close_position: bool = False


@dataclass
class OrderLogEntry:
    """One order-placing request as received (accepted or not).

    ``outcome``: "accepted", "rejected" (``code`` says why) or "not_executed" (a fault, or
    the rate limits, answered before anything happened). ``faults`` lists the fault kinds
    that fired (``rate_limit`` for a 429 of the limits).
    """

    seq: int
    time: float
    endpoint: str
    symbol: str
    side: str
    type: str
    client_id: str
    quantity: float | None
    reduce_only: bool
    close_position: bool
    trigger_price: float | None
    outcome: str = "pending"
    code: int | None = None
    order_id: int | None = None
    faults: list[str] = field(default_factory=list)
    account: str = DEFAULT_ACCOUNT
    api_key: str = ""
    #: ``time.time()`` when the engine had executed (or refused) it; None if it never ran.
    done_at: float | None = None


def _float_or_none(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


class SimExchange:
    """A local exchange speaking the Binance USD-M REST and WebSocket wire format.

    ``symbols`` maps Binance ids (``BTCUSDT``) to start mark prices (default: ten liquid
    perpetuals, see ``sim.symbols``). ``port=0`` picks a free port. WebSocket streams are
    served on the same port unless ``ws_port`` is given (then on both).
    ``user_events_first`` (default True): the user-stream events of an order are written
    to the sockets before its REST reply, the real-world race clients must survive.
    ``specs`` replaces the derived filters of some symbols (``SymbolSpec``: a lower
    MARKET_LOT_SIZE maxQty, ``max_price=0`` for "no price bound", ...).

    Accounts: ``accounts`` maps account names to the API keys that act on them (several keys
    per account, as Binance allows). Each account has its own positions, orders, wallet and
    user-data stream (listen key); mark prices are shared. A request is served by the
    account of its ``X-MBX-APIKEY`` header; any other key (the dummy keys of the tests, the
    demo) and a request without one are served by :data:`DEFAULT_ACCOUNT`, unless
    ``strict_keys`` (then -2015, HTTP 401). Python methods that read account state take
    ``account=`` (default: :data:`DEFAULT_ACCOUNT`); ``engine`` is the default account's.
    ``rate_limits`` (default Binance's, :data:`sim.limits.BINANCE_USDM`) are published in
    ``exchangeInfo`` and counted per request, with the usage headers on every reply;
    ``enforce_rate_limits`` answers 429 with ``Retry-After`` beyond them (``sim.limits``).
    """

    def __init__(
        self,
        symbols: dict[str, float] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int | None = None,
        wallet_usdt: float = 1_000_000.0,
        leverage: int = 20,
        *,
        taker_fee: float = 0.0004,
        user_events_first: bool = True,
        seed: int | None = None,
        specs: dict[str, SymbolSpec] | None = None,
        accounts: Mapping[str, Sequence[str]] | None = None,
        strict_keys: bool = False,
        enforce_rate_limits: bool = False,
        rate_limits: tuple[RateLimit, ...] | None = None,
    ) -> None:
        self.initial_prices = dict(symbols if symbols is not None else DEFAULT_SYMBOLS)
        self.specs = {s: SymbolSpec.for_price(s, p) for s, p in self.initial_prices.items()}
        for name, spec in (specs or {}).items():
            if name not in self.specs or spec.symbol != name:
                raise ValueError(f"spec for {name!r} does not match a symbol of this exchange")
            self.specs[name] = spec
        self.wallet_usdt = wallet_usdt
        self.default_leverage = leverage
        self.taker_fee = taker_fee
        self.user_events_first = user_events_first
        self._initial_user_events_first = user_events_first
        self.event_write_timeout_s = 1.0
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.faults = FaultBoard(seed)
        self.limits = LimitBook(
            rate_limits if rate_limits is not None else BINANCE_USDM, enforce_rate_limits
        )
        self.hub = StreamHub()
        names = [DEFAULT_ACCOUNT, *(a for a in (accounts or {}) if a != DEFAULT_ACCOUNT)]
        self.accounts: tuple[str, ...] = tuple(names)
        self.strict_keys = strict_keys
        self._key_account: dict[str, str] = {}
        for account, keys in (accounts or {}).items():
            for key in keys:
                if self._key_account.setdefault(key, account) != account:
                    raise ValueError(f"API key {key!r} given to two accounts")
        self.engines: dict[str, MatchingEngine] = {a: self._new_engine(a) for a in names}
        self.scheduler = Scheduler()
        self._order_log: list[OrderLogEntry] = []
        self._cancel_log: list[OrderLogEntry] = []
        self._user_events: deque[dict[str, Any]] = deque(maxlen=20_000)
        self._listen_keys: dict[str, str] = {}  # listen key -> account
        self._stopping = threading.Event()
        self._blast_stop = threading.Event()
        self._walk_thread: threading.Thread | None = None
        self._walk_stop = threading.Event()
        self._started = False
        self._stopped = False
        gateway = self.make_app()
        self._http = HttpServer(gateway, host, port, name="sim-exchange")
        self._ws_http = (
            HttpServer(gateway, host, ws_port, name="sim-exchange-ws")
            if ws_port is not None
            else None
        )
        self.host = host

    def make_app(self) -> App:
        """The HTTP front this exchange serves (called once, by the constructor): Binance's
        wire here; a subclass serving another venue's wire returns its own."""
        return Gateway(self)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SimExchange:
        """Start serving (returns self). Ports are bound already in the constructor."""
        if not self._started:
            self._started = True
            self.scheduler.start()
            self._http.start()
            if self._ws_http is not None:
                self._ws_http.start()
        return self

    def stop(self) -> None:
        """Stop the random walk, the scheduler and the servers; join every thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self.stop_random_walk()
        self.scheduler.stop()
        self._http.stop()
        if self._ws_http is not None:
            self._ws_http.stop()

    def __enter__(self) -> SimExchange:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The REST (and default WebSocket) port."""
        return self._http.port

    @property
    def base_url(self) -> str:
        """``http://host:port``: REST root (``/fapi/v1/...``) and control API (``/_sim/...``)."""
        return f"http://{self.host}:{self._http.port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port``: append ``/ws/<stream>`` or ``/stream?streams=...``."""
        port = self._ws_http.port if self._ws_http is not None else self._http.port
        return f"ws://{self.host}:{port}"

    @property
    def engine(self) -> MatchingEngine:
        """The default account's matching engine (the only one unless ``accounts`` is given)."""
        return self.engines[DEFAULT_ACCOUNT]

    def engine_of(self, account: str) -> MatchingEngine:
        """The matching engine of ``account`` (KeyError for an unknown account)."""
        try:
            return self.engines[account]
        except KeyError:
            raise KeyError(f"no account {account!r} on this exchange") from None

    def account_of_key(self, api_key: str | None) -> str | None:
        """The account an API key acts on: the one ``accounts`` names it for, else the default
        account, or ``None`` when ``strict_keys`` refuses the key."""
        account = self._key_account.get(api_key or "")
        if account is not None:
            return account
        return None if self.strict_keys else DEFAULT_ACCOUNT

    @property
    def stopping(self) -> threading.Event:
        """Set once ``stop()`` began (waits in handlers use it to end early)."""
        return self._stopping

    # ------------------------------------------------------------------ prices

    def mark_price(self, symbol: str) -> float:
        """Current mark price of ``symbol``."""
        with self.lock:
            return self.engine.mark(symbol)

    def mark_prices(self) -> dict[str, float]:
        """All current mark prices."""
        with self.lock:
            return dict(self.engine.marks)

    def set_price(self, symbol: str, price: float) -> None:
        """Move ``symbol``'s mark price, push it to subscribers, execute crossed stops."""
        self.set_prices({symbol: price})

    def set_prices(self, prices: dict[str, float]) -> None:
        """Move several mark prices at once (one ``!markPrice@arr`` frame)."""
        with self.lock:
            rounded = {}
            for symbol, price in prices.items():
                spec = self.engine.spec(symbol)
                rounded[symbol] = spec.round_price(price) or spec.tick_size
            fired: list[tuple[str, list[Event]]] = []
            for account, engine in self.engines.items():
                events: list[Event] = []
                for symbol, price in rounded.items():
                    events.extend(engine.set_mark(symbol, price))
                fired.append((account, events))
            self._publish_marks(list(prices))
            for account, events in fired:
                self.enqueue_user_events(events, account)

    def move_prices(self, step_pct: float = 0.001, symbols: list[str] | None = None) -> None:
        """One random-walk step (log-normal, sd ``step_pct``) of every (or the given) symbol."""
        with self.lock:
            names = symbols if symbols is not None else list(self.engine.marks)
            moved = {
                s: self.engine.marks[s] * math.exp(self.rng.gauss(0.0, step_pct)) for s in names
            }
        self.set_prices(moved)

    def start_random_walk(self, interval_s: float = 0.2, step_pct: float = 0.001) -> None:
        """Move every price each ``interval_s`` on a background thread (restart if running)."""
        self.stop_random_walk()
        self._walk_stop = threading.Event()
        stop = self._walk_stop

        def run() -> None:
            while not stop.wait(interval_s):
                self.move_prices(step_pct)

        self._walk_thread = threading.Thread(target=run, name="sim-random-walk", daemon=True)
        self._walk_thread.start()

    def stop_random_walk(self) -> None:
        """Stop the random-walk thread (no-op if not running)."""
        self._walk_stop.set()
        if self._walk_thread is not None:
            self._walk_thread.join(5.0)
            self._walk_thread = None

    @property
    def random_walk_running(self) -> bool:
        """True while the random-walk thread runs."""
        return self._walk_thread is not None and self._walk_thread.is_alive()

    def blast_mark_prices(
        self,
        n_frames: int,
        symbols: list[str] | None = None,
        rate_per_s: float | None = None,
        *,
        step_pct: float = 0.0005,
        drift_pct: float = 0.0,
        flush_timeout_s: float = 60.0,
    ) -> dict[str, float]:
        """Push ``n_frames`` mark-price updates, cycling over ``symbols``, as fast as possible
        (or paced at ``rate_per_s``), to every mark-price subscriber (per-symbol, combined
        and ``!markPrice@arr`` as one-element arrays). Stops crossed by a move execute.

        Each frame moves its symbol by ``drift_pct`` (a trend: with ``step_pct=0`` every
        frame is a new high for ``drift_pct > 0``) plus a normal step of sd ``step_pct``.
        The pacer sleeps between frames (it never spins). :meth:`stop_blast` ends a blast
        early.

        A reader more than ``BLAST_HIGH_WATER`` frames behind slows the blast down (it is
        not dropped). Returns when every frame was written to the sockets (or
        ``flush_timeout_s``):
        ``{"frames", "deliveries", "seconds", "rate"}`` (``frames``: those sent).
        """
        names = symbols if symbols is not None else list(self.initial_prices)
        if not names:
            raise ValueError("no symbols to blast")
        for s in names:
            self.engine.spec(s)
        lows = {s: mark_streams(s) for s in names}
        funding = self.funding_time()
        deliveries = 0
        touched: dict[WsConnection, int] = {}
        t0 = time.perf_counter()
        gauss = self.rng.gauss
        self._blast_stop.clear()
        sent_frames = 0
        for i in range(n_frames):
            if self._stopping.is_set() or self._blast_stop.is_set():
                break
            sent_frames += 1
            if rate_per_s:
                due = t0 + i / rate_per_s
                delay = due - time.perf_counter()
                if delay > 0:
                    self._stopping.wait(delay)
            sym = names[i % len(names)]
            with self.lock:
                move = drift_pct + (gauss(0.0, step_pct) if step_pct else 0.0)
                price = self.engine.specs[sym].round_price(self.engine.marks[sym] * (1.0 + move))
                fired = [
                    (account, engine.set_mark(sym, price) if price > 0 else [])
                    for account, engine in self.engines.items()
                ]
                sent = self.blast_frame(sym, lows[sym], funding)
                for account, events in fired:
                    if events:
                        self.enqueue_user_events(events, account)
            deliveries += len(sent)
            for conn, seq in sent:
                touched[conn] = seq
            if i % 1024 == 1023:
                self._backpressure(touched, flush_timeout_s)
        for conn, seq in touched.items():
            conn.wait_written(seq, flush_timeout_s)
        seconds = time.perf_counter() - t0
        return {
            "frames": float(sent_frames),
            "deliveries": float(deliveries),
            "seconds": seconds,
            "rate": sent_frames / seconds if seconds > 0 else float("inf"),
        }

    def blast_frame(
        self, symbol: str, streams: tuple[str, str], funding: int
    ) -> list[tuple[WsConnection, int]]:
        """Queue one blast frame of ``symbol``'s current mark on its ``streams`` and the
        ``!markPrice@arr`` ones (lock held); a front with another wire overrides it."""
        data = wire.mark_price_json(symbol, self.engine.marks[symbol], now_ms(), funding)
        sent = []
        for stream in streams:
            sent.extend(self.hub.publish(stream, data))
        for stream in ARR_STREAMS:
            sent.extend(self.hub.publish(stream, "[" + data + "]"))
        return sent

    def stop_blast(self) -> None:
        """End a running :meth:`blast_mark_prices` after its current frame (any thread)."""
        self._blast_stop.set()

    @staticmethod
    def _backpressure(touched: dict[WsConnection, int], timeout: float) -> None:
        """Wait for readers with over BLAST_HIGH_WATER queued frames (rather than drop them)."""
        for conn, seq in touched.items():
            if conn.pending() > BLAST_HIGH_WATER:
                conn.wait_written(seq - BLAST_HIGH_WATER // 2, timeout)

    def funding_time(self) -> int:
        """Next 8-hourly funding time (epoch ms), as markPriceUpdate's ``T``."""
        eight_h = 8 * 3600 * 1000
        return (now_ms() // eight_h + 1) * eight_h

    def _publish_marks(self, symbols: list[str]) -> None:
        """Queue markPriceUpdate frames for ``symbols`` (caller holds the lock)."""
        now = now_ms()
        funding = self.funding_time()
        arr = any(self.hub.has(s) for s in ARR_STREAMS)
        items: list[str] = []
        for sym in symbols:
            streams = mark_streams(sym)
            if not (arr or self.hub.has(streams[0]) or self.hub.has(streams[1])):
                continue
            data = wire.mark_price_json(sym, self.engine.marks[sym], now, funding)
            for stream in streams:
                self.hub.publish(stream, data)
            items.append(data)
        if arr and items:
            payload = "[" + ",".join(items) + "]"
            for stream in ARR_STREAMS:
                self.hub.publish(stream, payload)

    # ------------------------------------------------------------------ user stream

    def new_listen_key(self, account: str = DEFAULT_ACCOUNT) -> str:
        """The account's active listenKey (created on first call, like POST
        /fapi/v1/listenKey: one per account, whichever of its API keys asks)."""
        self.engine_of(account)
        with self.lock:
            for key, owner in self._listen_keys.items():
                if owner == account:
                    return key
            key = secrets.token_urlsafe(48)[:64]
            self._listen_keys[key] = account
            return key

    def listen_keys(self, account: str | None = None) -> list[str]:
        """Active listenKeys (of ``account``, or of every account): one per account."""
        with self.lock:
            return [k for k, a in self._listen_keys.items() if account is None or a == account]

    def is_listen_key(self, key: str) -> bool:
        """True for an active listenKey."""
        return key in self._listen_keys

    def delete_listen_key(self, key: str) -> bool:
        """Invalidate ``key`` and drop its stream connections; False if unknown."""
        with self.lock:
            if key not in self._listen_keys:
                return False
            del self._listen_keys[key]
        for conn in self.hub.connections(lambda s: s == key):
            conn.abort()
        return True

    def enqueue_user_events(
        self, events: list[Event], account: str = DEFAULT_ACCOUNT
    ) -> list[tuple[WsConnection, int]]:
        """Render ``events`` of ``account`` and queue them on that account's user-data streams
        (caller holds the lock).

        Applies the ``ws_reorder`` / ``ws_duplicate`` faults. Returns (connection, seq) pairs
        to wait on. Events of the default account are also kept in ``user_events()``.
        """
        if not events:
            return []
        engine = self.engine_of(account)
        payloads = [wire.user_event(engine, ev) for ev in events]
        if account == DEFAULT_ACCOUNT:
            self._user_events.extend(payloads)
        keys = [k for k, a in self._listen_keys.items() if a == account and self.hub.has(k)]
        if not keys:
            return []
        texts = [json.dumps(p, separators=(",", ":")) for p in payloads]
        if len(texts) > 1 and self.faults.take_stream("ws_reorder") is not None:
            texts.reverse()
        out: list[tuple[WsConnection, int]] = []
        for text in texts:
            copies = 2 if self.faults.take_stream("ws_duplicate") is not None else 1
            for _ in range(copies):
                for key in keys:
                    out.extend(self.hub.publish(key, text))
        return out

    def wait_written(self, sent: list[tuple[WsConnection, int]]) -> None:
        """Block until the queued frames reached the sockets (at most ``event_write_timeout_s``)."""
        last: dict[WsConnection, int] = {}
        for conn, seq in sent:
            last[conn] = max(seq, last.get(conn, 0))
        for conn, seq in last.items():
            conn.wait_written(seq, self.event_write_timeout_s)

    def user_events(self) -> list[dict[str, Any]]:
        """Every user-stream payload produced (last 20,000), whether or not anyone listened."""
        with self.lock:
            return list(self._user_events)

    def fill_next_part_later(
        self, order_id: int, interval_s: float, account: str = DEFAULT_ACCOUNT
    ) -> None:
        """Schedule the next part of a partially filled order (partial_fill fault)."""

        def run() -> None:
            with self.lock:
                engine = self.engine_of(account)
                events = engine.fill_next_part(order_id)
                self.enqueue_user_events(events, account)
                more = engine.has_pending_parts(order_id)
            if more:
                self.scheduler.call_later(interval_s, run)

        self.scheduler.call_later(interval_s, run)

    def wait_for_user_streams(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Block until ``n`` user-data connections are subscribed."""
        return self.hub.wait_for(
            lambda: sum(self.hub.subscribers(k) for k in list(self._listen_keys)) >= n, timeout
        )

    def wait_for_subscribers(self, stream: str, n: int = 1, timeout: float = 5.0) -> bool:
        """Block until ``n`` connections listen to ``stream`` (e.g. ``btcusdt@markPrice``)."""
        return self.hub.wait_for(lambda: self.hub.subscribers(stream) >= n, timeout)

    def drop_streams(self, kind: str = "all") -> int:
        """Drop WebSocket connections without a close frame: "all", "market" or "user".

        Returns how many were dropped. Clients see a network failure and must reconnect.
        """
        if kind not in ("all", "market", "user"):
            raise ValueError(f"kind must be all, market or user, got {kind!r}")

        def wanted(stream: str) -> bool:
            is_user = stream in self._listen_keys
            return kind == "all" or (kind == "user") == is_user

        conns = self.hub.connections(wanted)
        if kind == "all":
            conns = list(
                {
                    *conns,
                    *self._http.websockets,
                    *(self._ws_http.websockets if self._ws_http else []),
                }
            )
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
    ) -> OrderLogEntry:
        """Record an order-placing request (``cancel``: a cancel, in :meth:`cancel_log`),
        called by the REST layer on receipt, with the account and API key it came with."""
        if endpoint == "algoOrder":
            cid = p.get("clientAlgoId")
        else:
            cid = p.get("origClientOrderId") if cancel else p.get("newClientOrderId")
        log = self._cancel_log if cancel else self._order_log
        with self.lock:
            entry = OrderLogEntry(
                seq=len(log) + 1,
                time=time.time(),
                endpoint=endpoint,
                symbol=p.get("symbol", ""),
                side=p.get("side", ""),
                type=p.get("type", ""),
                client_id=cid or "",
                quantity=_float_or_none(p.get("quantity")),
                reduce_only=p.get("reduceOnly", "").lower() == "true",
                close_position=p.get("closePosition", "").lower() == "true",
                trigger_price=_float_or_none(p.get("triggerPrice") or p.get("stopPrice")),
                account=account,
                api_key=api_key,
            )
            log.append(entry)
            return entry

    def order_log(self, account: str | None = None) -> list[OrderLogEntry]:
        """Every order-placing request received since start/reset (of ``account``, or of
        every account), oldest first (copies)."""
        with self.lock:
            return [
                OrderLogEntry(**asdict(e))
                for e in self._order_log
                if account is None or e.account == account
            ]

    def cancel_log(self, account: str | None = None) -> list[OrderLogEntry]:
        """Every cancel request (``DELETE /fapi/v1/order`` and ``/algoOrder``) received since
        start/reset, like :meth:`order_log` (``endpoint`` "order" or "algoOrder")."""
        with self.lock:
            return [
                OrderLogEntry(**asdict(e))
                for e in self._cancel_log
                if account is None or e.account == account
            ]

    def orders_sent(self, client_id: str) -> int:
        """How many order requests carried ``client_id`` (to count orders sent twice)."""
        with self.lock:
            return sum(1 for e in self._order_log if e.client_id == client_id)

    # ------------------------------------------------------------------ account views

    def positions(self, account: str = DEFAULT_ACCOUNT) -> dict[str, PositionView]:
        """Non-flat positions of ``account`` by symbol."""
        with self.lock:
            engine = self.engine_of(account)
            out = {}
            for pos in engine.positions():
                mark = engine.marks[pos.symbol]
                out[pos.symbol] = PositionView(
                    symbol=pos.symbol,
                    qty=pos.qty,
                    entry_price=pos.entry_price,
                    mark_price=mark,
                    unrealized_pnl=pos.qty * (mark - pos.entry_price),
                    realized_pnl=pos.realized_pnl,
                )
            return out

    def open_orders(self, account: str = DEFAULT_ACCOUNT) -> list[OpenOrderView]:
        """Open orders of ``account``: partially filled market orders and untriggered
        conditional orders."""
        with self.lock:
            engine = self.engine_of(account)
            out = [
                OpenOrderView(
                    "order",
                    o.order_id,
                    o.client_order_id,
                    o.symbol,
                    o.side,
                    "MARKET",
                    o.qty,
                    o.status,
                )
                for o in engine.open_orders()
            ]
            out.extend(
                OpenOrderView(
                    "algo",
                    a.algo_id,
                    a.client_algo_id,
                    a.symbol,
                    a.side,
                    a.order_type,
                    a.qty,
                    a.status,
                    a.trigger_price,
                    a.close_position,
                )
                for a in engine.open_algo_orders()
            )
            return out

    def stops_view(self, symbols: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per symbol with a position or an open conditional order: ``mark``, signed ``qty``
        and ``stops``, the open conditional orders as ``[client_id, side, type, trigger]``.

        One consistent snapshot (under the lock), compact enough to poll often.
        """
        with self.lock:
            eng = self.engine
            wanted = set(symbols) if symbols is not None else None
            out: dict[str, dict[str, Any]] = {}
            for pos in eng.positions():
                if wanted is None or pos.symbol in wanted:
                    out[pos.symbol] = {"mark": eng.marks[pos.symbol], "qty": pos.qty, "stops": []}
            for a in eng.open_algo_orders():
                if wanted is not None and a.symbol not in wanted:
                    continue
                row = out.setdefault(
                    a.symbol, {"mark": eng.marks[a.symbol], "qty": 0.0, "stops": []}
                )
                row["stops"].append([a.client_algo_id, a.side, a.order_type, a.trigger_price])
            return out

    def seed(self, orders: list[dict[str, Any]], stops: list[dict[str, Any]]) -> dict[str, Any]:
        """Build a starting state straight in the engine: market orders (filled at the mark),
        then conditional orders; no REST, no rate limits, no faults, no order log entry.

        ``orders``: ``{"symbol", "side": "BUY"|"SELL", "qty", "client_id", "reduce_only"}``;
        ``stops``: ``{"symbol", "side", "client_id", "trigger", "type": "STOP_MARKET",
        "close_position": true, "qty"}``. Their user-stream events go out as usual. Returns
        ``{"orders", "stops", "errors"}`` (what was applied; a refused one is listed with its
        Binance error, the rest goes on).
        """
        done_orders = done_stops = 0
        problems: list[str] = []
        with self.lock:
            events: list[Event] = []
            for o in orders:
                try:
                    _, evs = self.engine.place_market(
                        str(o["symbol"]),
                        str(o["side"]).upper(),
                        float(o["qty"]),
                        client_order_id=o.get("client_id"),
                        reduce_only=bool(o.get("reduce_only", False)),
                    )
                except BinanceError as exc:
                    problems.append(f"order {o.get('client_id')}: {exc}")
                    continue
                events.extend(evs)
                done_orders += 1
            for st in stops:
                close_position = bool(st.get("close_position", True))
                try:
                    _, evs = self.engine.place_algo(
                        str(st["symbol"]),
                        str(st["side"]).upper(),
                        str(st.get("type", "STOP_MARKET")),
                        float(st["trigger"]),
                        qty=None if close_position else float(st["qty"]),
                        close_position=close_position,
                        client_algo_id=st.get("client_id"),
                        working_type="MARK_PRICE",
                    )
                except BinanceError as exc:
                    problems.append(f"stop {st.get('client_id')}: {exc}")
                    continue
                events.extend(evs)
                done_stops += 1
            self.enqueue_user_events(events)
        return {"orders": done_orders, "stops": done_stops, "errors": problems}

    def cancel_stops(self, symbols: list[str]) -> int:
        """Cancel every open conditional order of ``symbols`` as if from the exchange's web
        page (``ALGO_UPDATE`` CANCELED on the user stream; nothing is counted against the
        rate limits). Returns how many were cancelled."""
        n = 0
        wanted = set(symbols)
        with self.lock:
            events: list[Event] = []
            for a in self.engine.open_algo_orders():
                if a.symbol in wanted:
                    _, evs = self.engine.cancel_algo(a.algo_id)
                    events.extend(evs)
                    n += 1
            self.enqueue_user_events(events)
        return n

    def wallet_balance(self, account: str = DEFAULT_ACCOUNT) -> float:
        """USDT wallet balance of ``account`` (realised PnL and fees included)."""
        with self.lock:
            return self.engine_of(account).wallet

    # ------------------------------------------------------------------ faults

    def add_fault(self, kind: str, **options: Any) -> int:
        """Arm a fault (see ``sim.faults.KINDS``); returns its id. ``count`` defaults to 1."""
        return self.faults.add(Fault(kind=kind, **options))

    def clear_faults(self, kind: str | None = None) -> int:
        """Disarm all faults (or those of ``kind``); returns how many."""
        return self.faults.clear(kind)

    def list_faults(self) -> list[Fault]:
        """Armed faults."""
        return self.faults.list()

    # ------------------------------------------------------------------ reset

    def reset(self) -> None:
        """Back to the start state: prices, wallet, no positions/orders/log/faults, rate-limit
        counters at zero (whether they are enforced stays as set).

        Stream connections and listenKeys survive; pending partial fills are dropped.
        """
        self.stop_random_walk()
        self.scheduler.clear()
        self.faults.clear()
        self.limits.reset()
        with self.lock:
            self.engines = {a: self._new_engine(a) for a in self.accounts}
            self._order_log.clear()
            self._cancel_log.clear()
            self._user_events.clear()
            self.user_events_first = self._initial_user_events_first

    def _new_engine(self, account: str) -> MatchingEngine:
        engine = MatchingEngine(
            self.specs,
            dict(self.initial_prices),
            wallet=self.wallet_usdt,
            leverage=self.default_leverage,
            taker_fee=self.taker_fee,
            trigger_veto=self._trigger_veto,
        )
        engine.offset_ids(self.accounts.index(account) * ORDER_ID_SPACING)
        return engine

    def _trigger_veto(self, algo: AlgoOrder) -> str | None:
        """The ``reject_on_trigger`` fault: the reason to reject ``algo`` now, or None."""
        fault = self.faults.take_stream("reject_on_trigger", algo.symbol)
        if fault is None:
            return None
        return fault.msg or "Order rejected at trigger (sim fault reject_on_trigger)."
