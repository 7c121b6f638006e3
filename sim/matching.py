"""The matching model: one-way positions, a USDT wallet, market and conditional orders.

Pure and single-threaded: no sockets, no threads, no locks. The caller (``SimExchange``)
serialises every call under its own lock and publishes the returned events. Every method
either returns the new state plus the events the change produces, or raises
``BinanceError`` and leaves the state untouched.

Rules (the subset of Binance USD-M the product relies on):

- One-way mode: one signed position per symbol, with an average entry price.
- Market orders fill at the mark price, optionally in several parts (``parts``); the first
  part fills on placement, the caller drives the rest with ``fill_next_part``.
- Margin check: initial margin of the added exposure (notional / leverage) plus the fee
  must fit in the available balance (wallet + unrealised PnL - initial margin in use),
  otherwise -2019.
- Reduce-only orders that would open, increase or flip a position: -2022. With
  ``clip_reduce_only`` (Bybit's rule; off by default) one larger than the opposite position
  is cut to it first, at placement and when a conditional order triggers.
- Client order ids: 1–36 chars of ``[.A-Z:/a-z0-9_-]`` (-1100), unique among OPEN orders
  only (-4116); a filled order's id may be sent again and fills again.
- Conditional (algo) orders STOP_MARKET / TAKE_PROFIT_MARKET trigger on the mark price: a
  SELL stop at mark <= trigger, a BUY stop at mark >= trigger, take-profits the other way;
  one already crossed at placement is rejected (-2021). A triggered order executes as a
  market order whose client order id is the clientAlgoId; ``closePosition`` closes the
  whole position whatever its size. ``trigger_veto`` (the sim's ``reject_on_trigger``
  fault) may reject a triggered order instead (ALGO_UPDATE REJECTED, position untouched).
- Quantities above MARKET_LOT_SIZE maxQty (market orders) or LOT_SIZE maxQty (conditional
  orders with a quantity): -4005; trigger prices above PRICE_FILTER maxPrice: -4007.
- History: every order state change is kept for ``HISTORY_S`` seconds, so the open orders
  can be answered as they were a moment ago (``open_orders_at``; the ``lag_open_orders``
  fault).
"""

from __future__ import annotations

import copy
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sim import errors
from sim.errors import BinanceError
from sim.symbols import SymbolSpec

EPS = 1e-12
CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
OPEN_ORDER_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
OPEN_ALGO_STATUSES = frozenset({"NEW", "TRIGGERING"})
ALGO_TYPES = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET"})
HISTORY_S = 600.0
"""How long order state changes are kept for ``open_orders_at`` (seconds)."""


def now_ms() -> int:
    """Wall-clock milliseconds, the default clock."""
    return int(time.time() * 1000)


def _sign(x: float) -> int:
    return 1 if x > EPS else (-1 if x < -EPS else 0)


def side_sign(side: str) -> int:
    """+1 for BUY, -1 for SELL; ValueError otherwise."""
    if side == "BUY":
        return 1
    if side == "SELL":
        return -1
    raise ValueError(side)


@dataclass
class Position:
    """A one-way position: signed quantity (> 0 long) and average entry price."""

    symbol: str
    qty: float = 0.0
    entry_price: float = 0.0
    realized_pnl: float = 0.0
    update_time: int = 0


@dataclass(frozen=True)
class Fill:
    """One execution of a market order."""

    qty: float
    price: float
    realized_pnl: float
    commission: float
    trade_id: int
    time: int


@dataclass
class Order:
    """A market order (placed directly or by a triggered conditional order)."""

    order_id: int
    symbol: str
    side: str
    qty: float
    client_order_id: str
    reduce_only: bool
    time: int
    update_time: int
    status: str = "NEW"
    executed_qty: float = 0.0
    cum_quote: float = 0.0
    orig_type: str = "MARKET"
    stop_price: float = 0.0
    close_position: bool = False
    pending_parts: list[float] = field(default_factory=list)

    @property
    def avg_price(self) -> float:
        """Average fill price, 0 before the first fill."""
        return self.cum_quote / self.executed_qty if self.executed_qty > EPS else 0.0

    @property
    def is_open(self) -> bool:
        """NEW or PARTIALLY_FILLED."""
        return self.status in OPEN_ORDER_STATUSES


@dataclass
class AlgoOrder:
    """A conditional order held by the algo service until its trigger is crossed."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    order_type: str
    trigger_price: float
    qty: float
    close_position: bool
    reduce_only: bool
    working_type: str
    price_protect: bool
    create_time: int
    update_time: int
    status: str = "NEW"
    trigger_time: int = 0
    actual_order_id: int | None = None
    executed_qty: float = 0.0
    avg_price: float = 0.0
    reject_reason: str = ""

    @property
    def is_open(self) -> bool:
        """NEW or TRIGGERING."""
        return self.status in OPEN_ALGO_STATUSES

    def crossed(self, mark: float) -> bool:
        """True when ``mark`` is at or beyond the trigger in the triggering direction."""
        stop = self.order_type == "STOP_MARKET"
        sell = self.side == "SELL"
        if stop == sell:  # SELL stop or BUY take-profit: triggers on the way down
            return mark <= self.trigger_price
        return mark >= self.trigger_price


@dataclass(frozen=True)
class OrderEvent:
    """An order changed (wire: ORDER_TRADE_UPDATE). ``order`` is a snapshot."""

    order: Order
    exec_type: str
    fill: Fill | None
    time: int


@dataclass(frozen=True)
class AccountEvent:
    """Balance and position after a fill (wire: ACCOUNT_UPDATE). Snapshots."""

    reason: str
    wallet: float
    positions: tuple[Position, ...]
    time: int


@dataclass(frozen=True)
class AlgoEvent:
    """A conditional order changed status (wire: ALGO_UPDATE). ``algo`` is a snapshot."""

    algo: AlgoOrder
    time: int


Event = OrderEvent | AccountEvent | AlgoEvent

_HistoryKey = tuple[str, int]  # ("order" | "algo", id)


@dataclass(frozen=True)
class AccountSnapshot:
    """Totals of the USDT wallet (what /fapi/v3/account reports)."""

    wallet: float
    unrealized: float
    initial_margin: float
    maint_margin: float

    @property
    def margin_balance(self) -> float:
        """Wallet plus unrealised PnL."""
        return self.wallet + self.unrealized

    @property
    def available(self) -> float:
        """What new positions may use as initial margin."""
        return max(0.0, self.margin_balance - self.initial_margin)


class MatchingEngine:
    """State of one simulated account on one exchange. Not thread-safe: callers serialise.

    ``specs`` and ``marks`` share keys (Binance symbol ids). ``clock`` returns epoch ms.
    """

    def __init__(
        self,
        specs: dict[str, SymbolSpec],
        marks: dict[str, float],
        *,
        wallet: float = 1_000_000.0,
        leverage: int = 20,
        taker_fee: float = 0.0004,
        maint_margin_ratio: float = 0.004,
        clock: Callable[[], int] = now_ms,
        trigger_veto: Callable[[AlgoOrder], str | None] | None = None,
    ) -> None:
        missing = set(specs) ^ set(marks)
        if missing:
            raise ValueError(f"specs and marks differ on {sorted(missing)}")
        self.specs = dict(specs)
        self.marks = dict(marks)
        self.wallet = float(wallet)
        self.default_leverage = int(leverage)
        self.leverage: dict[str, int] = {}
        self.taker_fee = float(taker_fee)
        self.maint_margin_ratio = float(maint_margin_ratio)
        self.clock = clock
        self._positions: dict[str, Position] = {}
        self._orders: dict[int, Order] = {}
        self._orders_by_client: dict[str, list[int]] = {}
        self._algos: dict[int, AlgoOrder] = {}
        self._algos_by_client: dict[str, list[int]] = {}
        self._open_algos_by_symbol: dict[str, dict[int, AlgoOrder]] = {}
        self._next_order_id = 8_000_000_001
        self._next_algo_id = 1_000_000_001
        self._next_trade_id = 500_000_001
        self.fills: list[tuple[str, int, Fill]] = []
        #: Called when a conditional order's trigger is crossed; a reason rejects it.
        self.trigger_veto = trigger_veto
        #: Bybit's rule for reduce-only orders larger than the position: the quantity is cut
        #: to the position ("fixed") instead of the order being refused (Binance: False).
        self.clip_reduce_only = False
        # (time ms, key, snapshot before the change or None if it did not exist yet)
        self._history: deque[tuple[int, _HistoryKey, Order | AlgoOrder | None]] = deque()
        self._last: dict[_HistoryKey, Order | AlgoOrder] = {}

    # ----------------------------------------------------------------- queries

    def spec(self, symbol: str) -> SymbolSpec:
        """The symbol's filters; -1121 for an unknown symbol."""
        try:
            return self.specs[symbol]
        except KeyError:
            raise errors.bad_symbol() from None

    def mark(self, symbol: str) -> float:
        """Current mark price; -1121 for an unknown symbol."""
        self.spec(symbol)
        return self.marks[symbol]

    def leverage_of(self, symbol: str) -> int:
        """Leverage used for ``symbol``'s margin."""
        return self.leverage.get(symbol, self.default_leverage)

    def position(self, symbol: str) -> Position:
        """The position of ``symbol`` (a flat one if none). Live object: do not mutate."""
        self.spec(symbol)
        pos = self._positions.get(symbol)
        return pos if pos is not None else Position(symbol)

    def positions(self) -> list[Position]:
        """Non-flat positions, as snapshots."""
        return [copy.copy(p) for p in self._positions.values() if abs(p.qty) > EPS]

    def offset_ids(self, offset: int) -> None:
        """Start order and algo ids ``offset`` higher (another account of the same exchange:
        ids stay unique across accounts). Call before the first order."""
        self._next_order_id += offset
        self._next_algo_id += offset

    def unrealized(self, symbol: str) -> float:
        """Unrealised PnL of ``symbol`` at the current mark."""
        pos = self._positions.get(symbol)
        if pos is None or abs(pos.qty) <= EPS:
            return 0.0
        return pos.qty * (self.marks[symbol] - pos.entry_price)

    def account(self) -> AccountSnapshot:
        """Wallet totals at current marks."""
        upnl = 0.0
        im = 0.0
        mm = 0.0
        for sym, pos in self._positions.items():
            if abs(pos.qty) <= EPS:
                continue
            mark = self.marks[sym]
            upnl += pos.qty * (mark - pos.entry_price)
            notional = abs(pos.qty) * mark
            im += notional / self.leverage_of(sym)
            mm += notional * self.maint_margin_ratio
        return AccountSnapshot(self.wallet, upnl, im, mm)

    def get_order(self, order_id: int | None = None, client_order_id: str | None = None) -> Order:
        """Snapshot of an order by id, or the latest with that client id; -2013 if none."""
        order = self._find_order(order_id, client_order_id)
        if order is None:
            raise errors.order_not_found()
        return copy.copy(order)

    def orders(self, symbol: str | None) -> list[Order]:
        """Snapshots of every order of ``symbol`` (None: of every symbol), oldest first."""
        return [copy.copy(o) for o in self._orders.values() if symbol is None or o.symbol == symbol]

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Snapshots of open (partially filled) orders, optionally of one symbol."""
        return [
            copy.copy(o)
            for o in self._orders.values()
            if o.is_open and (symbol is None or o.symbol == symbol)
        ]

    def get_algo(self, algo_id: int | None = None, client_algo_id: str | None = None) -> AlgoOrder:
        """Snapshot of a conditional order by id or latest client id; -2013 if none."""
        algo = self._find_algo(algo_id, client_algo_id)
        if algo is None:
            raise errors.order_not_found()
        return copy.copy(algo)

    def algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]:
        """Snapshots of every conditional order, whatever its status, oldest first."""
        return [copy.copy(a) for a in self._algos.values() if symbol is None or a.symbol == symbol]

    def open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]:
        """Snapshots of untriggered conditional orders, optionally of one symbol."""
        out: list[AlgoOrder] = []
        for sym, algos in self._open_algos_by_symbol.items():
            if symbol is None or sym == symbol:
                out.extend(copy.copy(a) for a in algos.values())
        out.sort(key=lambda a: a.algo_id)
        return out

    def open_orders_at(self, as_of_ms: int, symbol: str | None = None) -> list[Order]:
        """Open market orders as they were at ``as_of_ms`` (snapshots; see ``HISTORY_S``)."""
        past = self._state_at(as_of_ms)
        out = [
            copy.copy(o)
            for o in self._orders.values()
            if ("order", o.order_id) not in past and o.is_open
        ]
        out.extend(
            copy.copy(o)
            for (kind, _), o in past.items()
            if kind == "order" and isinstance(o, Order) and o.is_open
        )
        out = [o for o in out if symbol is None or o.symbol == symbol]
        out.sort(key=lambda o: o.order_id)
        return out

    def open_algo_orders_at(self, as_of_ms: int, symbol: str | None = None) -> list[AlgoOrder]:
        """Untriggered conditional orders as they were at ``as_of_ms`` (snapshots)."""
        past = self._state_at(as_of_ms)
        out = [a for a in self.open_algo_orders(symbol) if ("algo", a.algo_id) not in past]
        out.extend(
            copy.copy(a)
            for (kind, _), a in past.items()
            if kind == "algo"
            and isinstance(a, AlgoOrder)
            and a.is_open
            and (symbol is None or a.symbol == symbol)
        )
        out.sort(key=lambda a: a.algo_id)
        return out

    def _state_at(self, as_of_ms: int) -> dict[_HistoryKey, Order | AlgoOrder | None]:
        """The orders changed after ``as_of_ms``, each as it was then (None: not yet there)."""
        past: dict[_HistoryKey, Order | AlgoOrder | None] = {}
        for t, key, before in reversed(self._history):
            if t <= as_of_ms:
                break
            past[key] = before  # an earlier change overwrites: its "before" is older
        return past

    def _record(self, events: list[Event]) -> list[Event]:
        """Keep the order state changes of ``events`` (for ``open_orders_at``); returns them."""
        if not events:
            return events
        for ev in events:
            if isinstance(ev, OrderEvent):
                key: _HistoryKey = ("order", ev.order.order_id)
                after: Order | AlgoOrder = ev.order
            elif isinstance(ev, AlgoEvent):
                key = ("algo", ev.algo.algo_id)
                after = ev.algo
            else:
                continue
            self._history.append((ev.time, key, self._last.get(key)))
            self._last[key] = after
        if self._history:
            horizon = self.clock() - int(HISTORY_S * 1000)
            while self._history and self._history[0][0] < horizon:
                self._history.popleft()
        return events

    # ----------------------------------------------------------------- leverage

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """Set ``symbol``'s leverage (1–125); -4028 style error otherwise."""
        self.spec(symbol)
        if not 1 <= leverage <= 125:
            raise BinanceError(-4028, "Leverage is not valid")
        self.leverage[symbol] = leverage

    # ----------------------------------------------------------------- marks

    def set_mark(self, symbol: str, price: float) -> list[Event]:
        """Move ``symbol``'s mark to ``price`` and execute the conditional orders it crosses.

        Returns the events of every triggered order (in trigger order).
        """
        if not price > 0:
            raise ValueError(f"mark price must be > 0, got {price}")
        self.spec(symbol)
        self.marks[symbol] = price
        algos = self._open_algos_by_symbol.get(symbol)
        if not algos:
            return []
        events: list[Event] = []
        for algo in sorted(algos.values(), key=lambda a: a.algo_id):
            if algo.status == "NEW" and algo.crossed(price):
                events.extend(self._trigger(algo))
        return self._record(events)

    # ----------------------------------------------------------------- market orders

    def place_market(
        self,
        symbol: str,
        side: str,
        qty: float,
        *,
        client_order_id: str | None = None,
        reduce_only: bool = False,
        parts: int = 1,
    ) -> tuple[Order, list[Event]]:
        """Place a market order and fill its first part at the mark price.

        ``parts`` > 1 splits the quantity; the remaining parts stay pending (order
        PARTIALLY_FILLED) until ``fill_next_part``. Raises BinanceError (-1100, -1102,
        -1111, -1121, -2019, -2022, -4116, -4164) without changing anything.
        """
        spec = self.spec(symbol)
        if side not in ("BUY", "SELL"):
            raise errors.bad_param("Invalid side.")
        cid = self._check_client_id(client_order_id, self._orders_by_client, self._orders)
        qty = self._check_qty(spec, qty)
        if qty > spec.market_max_qty + EPS:
            raise errors.qty_above_max(spec.market_max_qty)
        mark = self.marks[symbol]
        if not reduce_only and qty * mark < spec.min_notional - EPS:
            raise errors.min_notional(spec.min_notional)
        qty = self._clip_reduce_only(symbol, side, qty, reduce_only)
        self._check_reduce_only(symbol, side, qty, reduce_only)
        self._check_margin(symbol, side, qty, mark)
        now = self.clock()
        order = Order(
            order_id=self._new_order_id(),
            symbol=symbol,
            side=side,
            qty=qty,
            client_order_id=cid,
            reduce_only=reduce_only,
            time=now,
            update_time=now,
        )
        order.pending_parts = _split(spec, qty, max(1, int(parts)))
        self._orders[order.order_id] = order
        self._orders_by_client.setdefault(cid, []).append(order.order_id)
        events: list[Event] = [OrderEvent(copy.copy(order), "NEW", None, now)]
        events.extend(self._fill_part(order))
        return copy.copy(order), self._record(events)

    def fill_next_part(self, order_id: int) -> list[Event]:
        """Fill the next pending part of a partially filled order at the current mark.

        A reduce-only remainder that would now open or flip the position expires instead.
        Returns [] if the order is no longer open (filled or canceled meanwhile).
        """
        order = self._orders.get(order_id)
        if order is None or not order.is_open or not order.pending_parts:
            return []
        if order.reduce_only:
            try:
                self._check_reduce_only(order.symbol, order.side, order.pending_parts[0], True)
            except BinanceError:
                return self._record(self._finish(order, "EXPIRED"))
        return self._record(self._fill_part(order))

    def has_pending_parts(self, order_id: int) -> bool:
        """True while an open order still has parts to fill."""
        order = self._orders.get(order_id)
        return order is not None and order.is_open and bool(order.pending_parts)

    def cancel_order(
        self, symbol: str, order_id: int | None = None, client_order_id: str | None = None
    ) -> tuple[Order, list[Event]]:
        """Cancel an open order; -2011 if it is unknown, of another symbol, or not open."""
        self.spec(symbol)
        order = self._find_order(order_id, client_order_id)
        if order is None or order.symbol != symbol or not order.is_open:
            raise errors.unknown_order()
        events = self._record(self._finish(order, "CANCELED"))
        return copy.copy(order), events

    # ----------------------------------------------------------------- algo orders

    def place_algo(
        self,
        symbol: str,
        side: str,
        order_type: str,
        trigger_price: float,
        *,
        qty: float | None = None,
        close_position: bool = False,
        reduce_only: bool = False,
        client_algo_id: str | None = None,
        working_type: str = "CONTRACT_PRICE",
        price_protect: bool = False,
    ) -> tuple[AlgoOrder, list[Event]]:
        """Accept a STOP_MARKET / TAKE_PROFIT_MARKET conditional order.

        Needs ``qty`` or ``close_position``. No margin check until it triggers (as Binance).
        Raises BinanceError: -1100/-4116 client id, -1102 missing field, -2021 trigger
        already crossed, -1111 precision, -1121 symbol.
        """
        spec = self.spec(symbol)
        if side not in ("BUY", "SELL"):
            raise errors.bad_param("Invalid side.")
        if order_type not in ALGO_TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        if not trigger_price or trigger_price <= 0:
            raise errors.mandatory_missing("triggerPrice")
        if spec.max_price > 0 and trigger_price > spec.max_price:
            raise errors.stop_price_above_max(spec.max_price)
        cid = self._check_client_id(client_algo_id, self._algos_by_client, self._algos)
        if close_position:
            amount = 0.0
        else:
            if qty is None:
                raise errors.mandatory_missing("quantity")
            amount = self._check_qty(spec, qty)
            if amount > spec.max_qty + EPS:
                raise errors.qty_above_max(spec.max_qty)
        now = self.clock()
        algo = AlgoOrder(
            algo_id=self._new_algo_id(),
            client_algo_id=cid,
            symbol=symbol,
            side=side,
            order_type=order_type,
            trigger_price=trigger_price,
            qty=amount,
            close_position=close_position,
            reduce_only=reduce_only or close_position,
            working_type=working_type,
            price_protect=price_protect,
            create_time=now,
            update_time=now,
        )
        if algo.crossed(self.marks[symbol]):
            raise errors.would_trigger()
        self._algos[algo.algo_id] = algo
        self._algos_by_client.setdefault(cid, []).append(algo.algo_id)
        self._open_algos_by_symbol.setdefault(symbol, {})[algo.algo_id] = algo
        return copy.copy(algo), self._record([AlgoEvent(copy.copy(algo), now)])

    def cancel_algo(
        self,
        algo_id: int | None = None,
        client_algo_id: str | None = None,
        symbol: str | None = None,
    ) -> tuple[AlgoOrder, list[Event]]:
        """Cancel an untriggered conditional order; -2011 if unknown, not open, or of another
        symbol than ``symbol`` (when given)."""
        if symbol is not None:
            self.spec(symbol)
        algo = self._find_algo(algo_id, client_algo_id)
        if algo is None or algo.status != "NEW" or (symbol is not None and algo.symbol != symbol):
            raise errors.unknown_order()
        now = self.clock()
        algo.status = "CANCELED"
        algo.update_time = now
        self._close_algo(algo)
        return copy.copy(algo), self._record([AlgoEvent(copy.copy(algo), now)])

    # ----------------------------------------------------------------- internals

    def _new_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id

    def _new_algo_id(self) -> int:
        self._next_algo_id += 1
        return self._next_algo_id

    def _find_order(self, order_id: int | None, client_order_id: str | None) -> Order | None:
        if order_id is not None:
            order = self._orders.get(order_id)
            if order is not None and (
                client_order_id is None or order.client_order_id == client_order_id
            ):
                return order
            return None
        if client_order_id is not None:
            ids = self._orders_by_client.get(client_order_id)
            if ids:
                return self._orders[ids[-1]]
        return None

    def _find_algo(self, algo_id: int | None, client_algo_id: str | None) -> AlgoOrder | None:
        if algo_id is not None:
            algo = self._algos.get(algo_id)
            if algo is not None and (
                client_algo_id is None or algo.client_algo_id == client_algo_id
            ):
                return algo
            return None
        if client_algo_id is not None:
            ids = self._algos_by_client.get(client_algo_id)
            if ids:
                return self._algos[ids[-1]]
        return None

    def _check_client_id(
        self,
        cid: str | None,
        index: dict[str, list[int]],
        table: dict[int, Order] | dict[int, AlgoOrder],
    ) -> str:
        if cid is None or cid == "":
            return "sim" + secrets.token_hex(10)
        if not CLIENT_ID_RE.match(cid):
            raise errors.illegal_chars("newClientOrderId")
        for oid in index.get(cid, ()):
            if table[oid].is_open:
                raise errors.duplicate_client_id()
        return cid

    @staticmethod
    def _check_qty(spec: SymbolSpec, qty: float) -> float:
        if qty is None or not qty > 0:
            raise errors.mandatory_missing("quantity")
        if not spec.is_step_multiple(qty):
            raise errors.bad_precision()
        return spec.round_qty(qty)

    def _check_reduce_only(self, symbol: str, side: str, qty: float, reduce_only: bool) -> None:
        if not reduce_only:
            return
        pos = self._positions.get(symbol)
        held = pos.qty if pos is not None else 0.0
        s = side_sign(side)
        if _sign(held) != -s or qty > abs(held) + EPS:
            raise errors.reduce_only_rejected()

    def _clip_reduce_only(self, symbol: str, side: str, qty: float, reduce_only: bool) -> float:
        """``qty`` cut to the opposite position when ``clip_reduce_only`` (else unchanged)."""
        if not (reduce_only and self.clip_reduce_only):
            return qty
        pos = self._positions.get(symbol)
        held = pos.qty if pos is not None else 0.0
        if _sign(held) == -side_sign(side) and qty > abs(held):
            return abs(held)
        return qty

    def _check_margin(self, symbol: str, side: str, qty: float, price: float) -> None:
        pos = self._positions.get(symbol)
        held = pos.qty if pos is not None else 0.0
        after = held + side_sign(side) * qty
        if _sign(after) == _sign(held) or _sign(held) == 0:
            added = max(0.0, abs(after) - abs(held))
        else:
            added = abs(after)  # flipped: the new side is all new exposure
        if added <= EPS:
            return
        required = added * price / self.leverage_of(symbol) + qty * price * self.taker_fee
        if required > self.account().available + EPS:
            raise errors.insufficient_margin()

    def _fill_part(self, order: Order) -> list[Event]:
        part = order.pending_parts.pop(0)
        spec = self.specs[order.symbol]
        price = self.marks[order.symbol]
        now = self.clock()
        realized = self._apply_to_position(order.symbol, side_sign(order.side), part, price, now)
        commission = part * price * self.taker_fee
        self.wallet += realized - commission
        self._next_trade_id += 1
        fill = Fill(part, price, realized, commission, self._next_trade_id, now)
        self.fills.append((order.symbol, order.order_id, fill))
        order.executed_qty = spec.round_qty(order.executed_qty + part)
        order.cum_quote += part * price
        order.update_time = now
        order.status = "PARTIALLY_FILLED" if order.pending_parts else "FILLED"
        pos = self._positions[order.symbol]
        return [
            OrderEvent(copy.copy(order), "TRADE", fill, now),
            AccountEvent("ORDER", self.wallet, (copy.copy(pos),), now),
        ]

    def _apply_to_position(self, symbol: str, s: int, qty: float, price: float, now: int) -> float:
        spec = self.specs[symbol]
        pos = self._positions.setdefault(symbol, Position(symbol))
        realized = 0.0
        held = pos.qty
        if _sign(held) in (0, s):
            new = held + s * qty
            pos.entry_price = (abs(held) * pos.entry_price + qty * price) / abs(new)
            pos.qty = spec.round_qty(new)
        else:
            closing = min(qty, abs(held))
            realized = closing * (price - pos.entry_price) * _sign(held)
            remaining = spec.round_qty(qty - closing)
            pos.qty = spec.round_qty(held + s * closing)
            if abs(pos.qty) <= EPS:
                pos.qty = 0.0
                pos.entry_price = 0.0
            if remaining > EPS:
                pos.qty = s * remaining
                pos.entry_price = price
        pos.realized_pnl += realized
        pos.update_time = now
        return realized

    def _finish(self, order: Order, status: str) -> list[Event]:
        now = self.clock()
        order.status = status
        order.pending_parts = []
        order.update_time = now
        return [OrderEvent(copy.copy(order), status, None, now)]

    def _close_algo(self, algo: AlgoOrder) -> None:
        algos = self._open_algos_by_symbol.get(algo.symbol)
        if algos is not None:
            algos.pop(algo.algo_id, None)
            if not algos:
                del self._open_algos_by_symbol[algo.symbol]

    def _trigger(self, algo: AlgoOrder) -> list[Event]:
        now = self.clock()
        algo.status = "TRIGGERING"
        algo.trigger_time = now
        algo.update_time = now
        events: list[Event] = [AlgoEvent(copy.copy(algo), now)]
        self._close_algo(algo)
        try:
            veto = self.trigger_veto(copy.copy(algo)) if self.trigger_veto is not None else None
            if veto is not None:
                raise BinanceError(-2021, veto)
            qty = algo.qty
            if algo.close_position:
                held = self.position(algo.symbol).qty
                if _sign(held) != -side_sign(algo.side):
                    raise errors.reduce_only_rejected()
                qty = abs(held)
            qty = self._clip_reduce_only(algo.symbol, algo.side, qty, algo.reduce_only)
            self._check_reduce_only(algo.symbol, algo.side, qty, algo.reduce_only)
            self._check_margin(algo.symbol, algo.side, qty, self.marks[algo.symbol])
        except BinanceError as exc:
            algo.status = "REJECTED"
            algo.reject_reason = exc.msg
            algo.update_time = self.clock()
            events.append(AlgoEvent(copy.copy(algo), algo.update_time))
            return events
        order = Order(
            order_id=self._new_order_id(),
            symbol=algo.symbol,
            side=algo.side,
            qty=qty,
            client_order_id=algo.client_algo_id,
            reduce_only=algo.reduce_only,
            time=now,
            update_time=now,
            orig_type=algo.order_type,
            stop_price=algo.trigger_price,
            close_position=algo.close_position,
            pending_parts=[qty],
        )
        self._orders[order.order_id] = order
        self._orders_by_client.setdefault(order.client_order_id, []).append(order.order_id)
        algo.status = "TRIGGERED"
        algo.actual_order_id = order.order_id
        events.append(AlgoEvent(copy.copy(algo), now))
        events.append(OrderEvent(copy.copy(order), "NEW", None, now))
        events.extend(self._fill_part(order))
        algo.status = "FINISHED"
        algo.executed_qty = order.executed_qty
        algo.avg_price = order.avg_price
        algo.update_time = self.clock()
        events.append(AlgoEvent(copy.copy(algo), algo.update_time))
        return events


def _split(spec: SymbolSpec, qty: float, parts: int) -> list[float]:
    """``qty`` in ``parts`` step-aligned pieces (fewer if qty has fewer steps)."""
    steps = round(qty / spec.step_size)
    parts = max(1, min(parts, steps))
    base, extra = divmod(steps, parts)
    out = []
    for i in range(parts):
        n = base + (1 if i < extra else 0)
        out.append(spec.round_qty(n * spec.step_size))
    return out
