"""The Bybit v5 REST endpoints ccxt's ``bybit`` uses for linear USDT perpetuals.

Each route takes the request's parameters (query, or the JSON body's values as strings) and
returns an ``Outcome`` whose payload is the envelope's ``result``, or raises ``BybitError``.
Routes run on the HTTP connection's thread while the gateway holds the exchange lock, and
act on the account the request's API key serves (``Context.account``).

Bybit's rules that differ from Binance's and live here, not in the engine: an
``orderLinkId`` is refused (110072) if the account ever had an order with it; a conditional
order names its ``triggerDirection`` and is refused 110092/110093 when the price is already
past its trigger; a reduce-only order (conditional or not) with no opposite position is
refused 110017 at placement, and one larger than the position is cut to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sim.bybit import errors, wire
from sim.bybit.errors import BybitError
from sim.errors import BinanceError
from sim.matching import EPS, AlgoOrder, Event, MatchingEngine, Order, now_ms
from sim.rest import Context, Outcome
from sim.wire import price_str

if TYPE_CHECKING:
    from sim.bybit.exchange import AccountBook, BybitExchange

Params = dict[str, str]
Route = Callable[[Params, Context], Outcome]

LINK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
"""Bybit's orderLinkId: up to 36 characters, letters, digits, '-' and '_'."""

CLOSED_KEEP = 500
"""``/v5/order/realtime?openOnly=1`` sees this many of the latest closed orders."""

PUBLIC = frozenset(
    {
        ("GET", "/v5/market/time"),
        ("GET", "/v5/market/instruments-info"),
        ("GET", "/v5/market/tickers"),
    }
)
"""Routes without authentication."""


def _require(p: Params, name: str) -> str:
    value = p.get(name)
    if value is None or value == "":
        raise errors.params(f"{name} is required")
    return value


def _float(p: Params, name: str) -> float | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise errors.params(f"{name} invalid") from None


def _int_param(p: Params, name: str) -> int | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.params(f"{name} invalid") from None


def _bool(p: Params, name: str) -> bool:
    return p.get(name, "").lower() == "true"


def _limit(p: Params, default: int, most: int) -> int:
    raw = p.get("limit")
    if not raw:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise errors.params("limit invalid") from None
    if not 1 <= n <= most:
        raise errors.params(f"limit must be within [1, {most}]")
    return n


def _page(rows: list[Any], p: Params, default: int, most: int) -> tuple[list[Any], str]:
    """One page of ``rows`` by ``limit`` and ``cursor`` (an offset); the next cursor or ""."""
    limit = _limit(p, default, most)
    try:
        start = int(p.get("cursor") or 0)
    except ValueError:
        raise errors.params("cursor invalid") from None
    end = start + limit
    return rows[start:end], (str(end) if end < len(rows) else "")


def _category(p: Params) -> None:
    category = p.get("category")
    if not category:
        raise errors.params("category is required")
    if category != wire.CATEGORY:
        raise errors.params(f"sim: category {category} is not served (linear only)")


class BybitRest:
    """Route table of the Bybit front. Methods are called with ``ex.lock`` held."""

    def __init__(self, ex: BybitExchange) -> None:
        self.ex = ex
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/v5/market/time"): self.market_time,
            ("GET", "/v5/market/instruments-info"): self.instruments_info,
            ("GET", "/v5/market/tickers"): self.tickers,
            ("POST", "/v5/order/create"): self.create_order,
            ("POST", "/v5/order/cancel"): self.cancel_order,
            ("POST", "/v5/order/cancel-all"): self.cancel_all,
            ("GET", "/v5/order/realtime"): self.realtime,
            ("GET", "/v5/order/history"): self.history,
            ("GET", "/v5/execution/list"): self.executions,
            ("GET", "/v5/position/list"): self.position_list,
            ("POST", "/v5/position/set-leverage"): self.set_leverage,
            ("GET", "/v5/account/wallet-balance"): self.wallet_balance,
            ("GET", "/v5/account/info"): self.account_info,
            ("GET", "/v5/user/query-api"): self.query_api,
        }

    # ------------------------------------------------------------------ helpers

    def _engine(self, c: Context) -> MatchingEngine:
        return self.ex.engine_of(c.account)

    def _book(self, c: Context) -> AccountBook:
        return self.ex.book_of(c.account)

    def _symbol(self, eng: MatchingEngine, symbol: str) -> str:
        if symbol not in eng.specs:
            raise errors.bad_symbol()
        return symbol

    def render_algo(
        self, eng: MatchingEngine, book: AccountBook, algo: AlgoOrder
    ) -> dict[str, Any]:
        """A conditional order on the wire, with what the account's book remembers of it."""
        return wire.conditional_order(
            eng.specs[algo.symbol],
            algo,
            eng.taker_fee,
            close_on_trigger=algo.algo_id in book.close_on_trigger,
            trigger_by=book.trigger_by.get(algo.algo_id, "LastPrice"),
        )

    def _all_orders(
        self, eng: MatchingEngine, book: AccountBook, symbol: str | None
    ) -> list[dict[str, Any]]:
        """Every order of the account (market and conditional), newest first."""
        return self._render(eng, book, eng.orders(symbol), eng.algo_orders(symbol))

    def _render(
        self,
        eng: MatchingEngine,
        book: AccountBook,
        orders: list[Order],
        algos: list[AlgoOrder],
    ) -> list[dict[str, Any]]:
        """Market orders (not those a trigger made: they are shown as their conditional
        order) and conditional orders on the wire, newest first."""
        rows: list[tuple[int, int, dict[str, Any]]] = [
            (o.time, o.order_id, wire.market_order(eng.specs[o.symbol], o, eng.taker_fee))
            for o in orders
            if o.orig_type == "MARKET"
        ]
        rows.extend((a.create_time, a.algo_id, self.render_algo(eng, book, a)) for a in algos)
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        return [r[2] for r in rows]

    def _by_id(
        self, eng: MatchingEngine, book: AccountBook, p: Params, symbol: str | None
    ) -> list[dict[str, Any]] | None:
        """The order ``orderId`` (else ``orderLinkId``) names, as a list of at most one (of
        ``symbol`` when given); None when the request names no order. A direct lookup, not
        a scan: lookups by id are the adapter's hot path."""
        named, found = self._named(eng, p)
        if not named:
            return None
        if found is None or (symbol is not None and found.symbol != symbol):
            return []
        if isinstance(found, AlgoOrder):
            return self._render(eng, book, [], [found])
        return self._render(eng, book, [found], [])

    @staticmethod
    def _get(
        eng: MatchingEngine,
        *,
        algo_id: int | None = None,
        order_id: int | None = None,
        algo_link: str | None = None,
        order_link: str | None = None,
    ) -> AlgoOrder | Order | None:
        try:
            if algo_id is not None or algo_link is not None:
                return eng.get_algo(algo_id, algo_link)
            return eng.get_order(order_id, order_link)
        except BinanceError:
            return None

    def _open_orders_at(
        self, eng: MatchingEngine, book: AccountBook, as_of_ms: int, symbol: str | None
    ) -> list[dict[str, Any]]:
        """The open orders as they were at ``as_of_ms`` (the ``lag_open_orders`` fault)."""
        return self._render(
            eng,
            book,
            eng.open_orders_at(as_of_ms, symbol),
            eng.open_algo_orders_at(as_of_ms, symbol),
        )

    @staticmethod
    def _filter(rows: list[dict[str, Any]], p: Params) -> list[dict[str, Any]]:
        """orderId > orderLinkId, then orderFilter (Order / StopOrder)."""
        if p.get("orderId"):
            rows = [r for r in rows if r["orderId"] == p["orderId"]]
        elif p.get("orderLinkId"):
            rows = [r for r in rows if r["orderLinkId"] == p["orderLinkId"]]
        kind = p.get("orderFilter")
        if kind == "StopOrder":
            rows = [r for r in rows if r["stopOrderType"]]
        elif kind == "Order":
            rows = [r for r in rows if not r["stopOrderType"]]
        elif kind:
            raise errors.params(f"orderFilter {kind} invalid")
        return rows

    @staticmethod
    def _scope(p: Params, eng: MatchingEngine) -> str | None:
        """The symbol of a linear list request (None: every symbol of ``settleCoin``)."""
        symbol = p.get("symbol") or None
        if symbol is not None:
            if symbol not in eng.specs:
                raise errors.bad_symbol()
            return symbol
        if not (p.get("settleCoin") or p.get("baseCoin")):
            raise errors.params("symbol, baseCoin or settleCoin is required for linear")
        return None

    # ------------------------------------------------------------------ market data

    def market_time(self, p: Params, c: Context) -> Outcome:
        """GET /v5/market/time."""
        now = now_ms()
        return Outcome({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})

    def instruments_info(self, p: Params, c: Context) -> Outcome:
        """GET /v5/market/instruments-info (``status=PreLaunch``: none)."""
        _category(p)
        eng = self._engine(c)
        specs = list(eng.specs.values())
        if p.get("symbol"):
            specs = [s for s in specs if s.symbol == p["symbol"]]
        status = p.get("status")
        if status and status != "Trading":
            specs = []
        rows, cursor = _page([wire.instrument(s) for s in specs], p, 500, 1000)
        return Outcome({"category": wire.CATEGORY, "list": rows, "nextPageCursor": cursor})

    def tickers(self, p: Params, c: Context) -> Outcome:
        """GET /v5/market/tickers (mark, last and index price: the sim's one price)."""
        _category(p)
        eng = self._engine(c)
        symbols = [self._symbol(eng, p["symbol"])] if p.get("symbol") else list(eng.specs)
        funding = self.ex.funding_time()
        rows = [wire.ticker(eng.specs[s], eng.marks[s], funding) for s in symbols]
        return Outcome({"category": wire.CATEGORY, "list": rows})

    # ------------------------------------------------------------------ orders

    def create_order(self, p: Params, c: Context) -> Outcome:
        """POST /v5/order/create: Market orders, plain or conditional (``triggerPrice``)."""
        _category(p)
        eng = self._engine(c)
        book = self._book(c)
        symbol = self._symbol(eng, _require(p, "symbol"))
        spec = eng.specs[symbol]
        side_text = _require(p, "side")
        if side_text not in ("Buy", "Sell"):
            raise errors.params("side invalid")
        side = side_text.upper()
        otype = _require(p, "orderType")
        if otype != "Market":
            raise errors.params(f"sim: orderType {otype} is not served (Market only)")
        if p.get("positionIdx") not in (None, "", "0"):
            raise errors.params("position idx not match position mode")
        for attached in ("takeProfit", "stopLoss"):
            if p.get(attached):
                raise errors.params(f"sim: attached {attached} is not served")
        qty = _float(p, "qty")
        if qty is None:
            raise errors.params("qty is required")
        link = p.get("orderLinkId") or None
        if link is not None:
            if not LINK_ID_RE.match(link):
                raise errors.params("orderLinkId invalid")
            if link in book.link_ids:
                raise errors.error(errors.DUPLICATE_LINK_ID)
        reduce_only = _bool(p, "reduceOnly")
        close_on_trigger = _bool(p, "closeOnTrigger")
        trigger = _float(p, "triggerPrice")
        try:
            if trigger is None:
                if qty <= 0:
                    qty = self._close_qty(eng, symbol, side, reduce_only, close_on_trigger)
                order, events = eng.place_market(
                    symbol,
                    side,
                    qty,
                    client_order_id=link,
                    reduce_only=reduce_only,
                    parts=c.parts,
                )
                book.link_ids.add(order.client_order_id)
                later: list[Callable[[], None]] = []
                if order.is_open and order.pending_parts:
                    oid = order.order_id
                    later.append(
                        lambda: self.ex.fill_next_part_later(oid, c.part_interval_s, c.account)
                    )
                result = {
                    "orderId": wire.order_id(order.order_id),
                    "orderLinkId": order.client_order_id,
                }
                return Outcome(result, events, order.order_id, later)
            algo, events = self._place_conditional(
                eng, p, symbol, side, qty, trigger, link, reduce_only, close_on_trigger
            )
        except BinanceError as exc:
            raise errors.from_engine(exc) from None
        book.link_ids.add(algo.client_algo_id)
        if close_on_trigger:
            book.close_on_trigger.add(algo.algo_id)
        book.trigger_by[algo.algo_id] = p.get("triggerBy") or "LastPrice"
        del spec
        result = {"orderId": wire.order_id(algo.algo_id), "orderLinkId": algo.client_algo_id}
        return Outcome(result, events, algo.algo_id)

    @staticmethod
    def _close_qty(
        eng: MatchingEngine, symbol: str, side: str, reduce_only: bool, close_on_trigger: bool
    ) -> float:
        """``qty "0"`` of a market order: with reduceOnly and closeOnTrigger, the opposite
        position up to the market order maximum (Bybit's "close the whole position");
        otherwise refused, as Bybit words it."""
        if not (reduce_only and close_on_trigger):
            raise errors.params("The number of contracts exceeds minimum limit allowed")
        held = eng.position(symbol).qty
        if not ((held < -EPS and side == "BUY") or (held > EPS and side == "SELL")):
            raise errors.error(errors.REDUCE_ONLY)
        return min(abs(held), eng.specs[symbol].market_max_qty)

    def _place_conditional(
        self,
        eng: MatchingEngine,
        p: Params,
        symbol: str,
        side: str,
        qty: float,
        trigger: float,
        link: str | None,
        reduce_only: bool,
        close_on_trigger: bool,
    ) -> tuple[AlgoOrder, list[Event]]:
        spec = eng.specs[symbol]
        raw_dir = p.get("triggerDirection")
        if raw_dir not in ("1", "2"):
            raise errors.params("TriggerDirection invalid")
        direction = int(raw_dir)
        trigger_by = p.get("triggerBy") or "LastPrice"
        if trigger_by not in ("LastPrice", "MarkPrice", "IndexPrice"):
            raise errors.params("triggerBy invalid")
        if trigger <= 0 or not spec.is_tick_multiple(trigger):
            raise errors.params("triggerPrice invalid")
        if spec.max_price > 0 and trigger > spec.max_price:
            raise errors.params(f"triggerPrice must be at most {spec.max_price:g}")
        mark = eng.marks[symbol]
        rising = direction == 1
        if (rising and trigger <= mark) or (not rising and trigger >= mark):
            raise errors.would_trigger(rising, price_str(spec, trigger), price_str(spec, mark))
        held = eng.position(symbol).qty
        opposite = (held < -EPS and side == "BUY") or (held > EPS and side == "SELL")
        if reduce_only and not opposite:
            raise errors.error(errors.REDUCE_ONLY)
        close_position = qty <= 0
        if close_position and not (reduce_only and close_on_trigger):
            raise errors.params("qty invalid")
        return eng.place_algo(
            symbol,
            side,
            wire.algo_type(side, direction),
            trigger,
            qty=None if close_position else qty,
            close_position=close_position,
            reduce_only=reduce_only,
            client_algo_id=link,
            working_type="MARK_PRICE" if trigger_by == "MarkPrice" else "CONTRACT_PRICE",
        )

    def _named(self, eng: MatchingEngine, p: Params) -> tuple[bool, AlgoOrder | Order | None]:
        """Whether the request names an order (``orderId``, else ``orderLinkId``), and the
        conditional or plain order it names (None: none such)."""
        if p.get("orderId"):
            n = wire.parse_order_id(p["orderId"])
            if n is None:
                return True, None
            return True, self._get(eng, algo_id=n) or self._get(eng, order_id=n)
        if p.get("orderLinkId"):
            link = p["orderLinkId"]
            return True, self._get(eng, algo_link=link) or self._get(eng, order_link=link)
        return False, None

    def _find(self, eng: MatchingEngine, p: Params, symbol: str) -> AlgoOrder | Order | None:
        """The order ``orderId`` or ``orderLinkId`` names, if it is of ``symbol`` (a market
        order a trigger made is reached through its conditional order only)."""
        named, found = self._named(eng, p)
        if not named:
            raise errors.params("orderId or orderLinkId is required")
        if found is None or found.symbol != symbol:
            return None
        if isinstance(found, Order) and found.orig_type != "MARKET":
            return None
        return found

    def cancel_order(self, p: Params, c: Context) -> Outcome:
        """POST /v5/order/cancel by orderId or orderLinkId (110001 unless it is open)."""
        _category(p)
        eng = self._engine(c)
        symbol = self._symbol(eng, _require(p, "symbol"))
        found = self._find(eng, p, symbol)
        try:
            if isinstance(found, AlgoOrder) and found.status == "NEW":
                algo, events = eng.cancel_algo(found.algo_id)
                result = {
                    "orderId": wire.order_id(algo.algo_id),
                    "orderLinkId": algo.client_algo_id,
                }
                return Outcome(result, events, algo.algo_id)
            if isinstance(found, Order) and found.is_open:
                order, events = eng.cancel_order(symbol, found.order_id)
                result = {
                    "orderId": wire.order_id(order.order_id),
                    "orderLinkId": order.client_order_id,
                }
                return Outcome(result, events, order.order_id)
        except BinanceError as exc:
            raise errors.from_engine(exc) from None
        raise errors.error(errors.ORDER_NOT_FOUND)

    def cancel_all(self, p: Params, c: Context) -> Outcome:
        """POST /v5/order/cancel-all: open orders of ``symbol`` (or every symbol of
        ``settleCoin``), of one ``orderFilter`` kind if given."""
        _category(p)
        eng = self._engine(c)
        symbol = self._scope(p, eng)
        kind = p.get("orderFilter")
        events: list[Event] = []
        done: list[dict[str, str]] = []
        if kind in (None, "", "StopOrder"):
            for a in eng.open_algo_orders(symbol):
                if a.status == "NEW":
                    algo, evs = eng.cancel_algo(a.algo_id)
                    events.extend(evs)
                    done.append(
                        {"orderId": wire.order_id(algo.algo_id), "orderLinkId": algo.client_algo_id}
                    )
        if kind in (None, "", "Order"):
            for o in eng.open_orders(symbol):
                order, evs = eng.cancel_order(o.symbol, o.order_id)
                events.extend(evs)
                done.append(
                    {"orderId": wire.order_id(order.order_id), "orderLinkId": order.client_order_id}
                )
        return Outcome({"list": done, "success": "1"}, events)

    def realtime(self, p: Params, c: Context) -> Outcome:
        """GET /v5/order/realtime: open orders (``openOnly=0``), or the latest 500 closed ones
        (``openOnly=1``); by orderId > orderLinkId > symbol / settleCoin; ``orderFilter``."""
        _category(p)
        eng = self._engine(c)
        book = self._book(c)
        if not (p.get("orderId") or p.get("orderLinkId")):
            symbol = self._scope(p, eng)
        else:
            symbol = p.get("symbol") or None
            if symbol is not None:
                self._symbol(eng, symbol)
        open_only = p.get("openOnly") or "0"
        if open_only not in ("0", "1", "2"):
            raise errors.params("openOnly invalid")
        if open_only == "0":
            named = self._by_id(eng, book, p, symbol)
            if c.as_of_ms is not None:
                rows = self._open_orders_at(eng, book, c.as_of_ms, symbol)
            elif named is not None:
                rows = [r for r in named if r["orderStatus"] in wire.OPEN_STATUSES]
            else:
                rows = self._render(
                    eng, book, eng.open_orders(symbol), eng.open_algo_orders(symbol)
                )
        else:
            closed = [
                r
                for r in self._all_orders(eng, book, None)
                if r["orderStatus"] not in wire.OPEN_STATUSES
            ][:CLOSED_KEEP]
            rows = [r for r in closed if symbol is None or r["symbol"] == symbol]
        rows, cursor = _page(self._filter(rows, p), p, 20, 50)
        return Outcome({"category": wire.CATEGORY, "list": rows, "nextPageCursor": cursor})

    def history(self, p: Params, c: Context) -> Outcome:
        """GET /v5/order/history: every order of the account, newest first; filters
        orderId > orderLinkId, symbol, orderFilter, orderStatus, startTime/endTime."""
        _category(p)
        eng = self._engine(c)
        symbol = p.get("symbol") or None
        if symbol is not None:
            self._symbol(eng, symbol)
        book = self._book(c)
        named = self._by_id(eng, book, p, symbol)
        rows = self._filter(named if named is not None else self._all_orders(eng, book, symbol), p)
        status = p.get("orderStatus")
        if status:
            rows = [r for r in rows if r["orderStatus"] == status]
        start = _int_param(p, "startTime")
        end = _int_param(p, "endTime")
        if start is not None:
            rows = [r for r in rows if int(r["createdTime"]) >= start]
        if end is not None:
            rows = [r for r in rows if int(r["createdTime"]) <= end]
        rows, cursor = _page(rows, p, 20, 50)
        return Outcome({"category": wire.CATEGORY, "list": rows, "nextPageCursor": cursor})

    def executions(self, p: Params, c: Context) -> Outcome:
        """GET /v5/execution/list: the account's fills, newest first."""
        _category(p)
        eng = self._engine(c)
        book = self._book(c)
        symbol = p.get("symbol") or None
        rows = []
        for seq, (sym, oid, fill) in enumerate(eng.fills):
            if symbol is not None and sym != symbol:
                continue
            order = eng.get_order(oid)
            if order.orig_type == "MARKET":
                shown = wire.market_order(eng.specs[sym], order, eng.taker_fee)
            else:
                algo = eng.get_algo(None, order.client_order_id)
                shown = self.render_algo(eng, book, algo)
            rows.append(
                wire.execution(eng.specs[sym], shown, fill, eng.marks[sym], eng.taker_fee, seq + 1)
            )
        rows.reverse()
        rows = self._filter(rows, {k: v for k, v in p.items() if k in ("orderId", "orderLinkId")})
        rows, cursor = _page(rows, p, 50, 100)
        return Outcome({"category": wire.CATEGORY, "list": rows, "nextPageCursor": cursor})

    # ------------------------------------------------------------------ account

    def position_list(self, p: Params, c: Context) -> Outcome:
        """GET /v5/position/list: with ``symbol`` its row even when flat; with ``settleCoin``
        the non-flat ones."""
        _category(p)
        eng = self._engine(c)
        symbol = self._scope(p, eng)
        now = now_ms()
        if symbol is not None:
            rows = [wire.position(eng, symbol, now)]
        else:
            rows = [wire.position(eng, pos.symbol, now) for pos in eng.positions()]
        rows, cursor = _page(rows, p, 20, 200)
        return Outcome({"category": wire.CATEGORY, "list": rows, "nextPageCursor": cursor})

    def set_leverage(self, p: Params, c: Context) -> Outcome:
        """POST /v5/position/set-leverage (buy and sell leverage equal: one-way mode)."""
        _category(p)
        eng = self._engine(c)
        symbol = self._symbol(eng, _require(p, "symbol"))
        buy, sell = _require(p, "buyLeverage"), _require(p, "sellLeverage")
        if buy != sell:
            raise errors.params("buy leverage must equal sell leverage in one-way mode")
        try:
            lev = round(float(buy))
        except ValueError:
            raise errors.params("buyLeverage invalid") from None
        if lev == eng.leverage_of(symbol):
            raise BybitError(110043, "Set leverage not modified")
        try:
            eng.set_leverage(symbol, lev)
        except BinanceError:
            raise errors.params("leverage invalid") from None
        return Outcome({})

    def wallet_balance(self, p: Params, c: Context) -> Outcome:
        """GET /v5/account/wallet-balance?accountType=UNIFIED."""
        account_type = _require(p, "accountType")
        if account_type != "UNIFIED":
            raise errors.params("accountType only support UNIFIED")
        return Outcome({"list": [wire.wallet(self._engine(c))]})

    def account_info(self, p: Params, c: Context) -> Outcome:
        """GET /v5/account/info: a unified trading account (UTA 2.0)."""
        return Outcome(
            {
                "unifiedMarginStatus": 6,
                "marginMode": "REGULAR_MARGIN",
                "isMasterTrader": False,
                "spotHedgingStatus": "OFF",
                "updatedTime": "1697078946000",
                "dcpStatus": "OFF",
                "timeWindow": 10,
                "smpGroup": 0,
            }
        )

    def query_api(self, p: Params, c: Context) -> Outcome:
        """GET /v5/user/query-api: the key's own record (trade permissions, unified)."""
        return Outcome(
            {
                "id": "1",
                "note": "sim",
                "apiKey": c.api_key,
                "readOnly": 0,
                "secret": "",
                "permissions": {"ContractTrade": ["Order", "Position"], "Wallet": []},
                "ips": ["*"],
                "type": 1,
                "deadlineDay": 90,
                "unified": 0,
                "uta": 1,
                "userID": 1,
                "inviterID": 0,
                "vipLevel": "No VIP",
                "mktMakerLevel": "0",
                "affiliateID": 0,
                "isMaster": True,
            }
        )
