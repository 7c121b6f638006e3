"""The Binance USD-M REST endpoints ccxt's binanceusdm uses, on top of the matching engine.

Each route takes the merged request parameters and returns an ``Outcome`` (JSON payload
plus the engine events the user stream must carry), or raises ``BinanceError``. Routes
run on the HTTP connection's thread while the gateway holds the exchange lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim import errors, wire
from sim.errors import BinanceError
from sim.matching import Event, now_ms

if TYPE_CHECKING:
    from sim.exchange import SimExchange

Params = dict[str, str]

DEFAULT_ACCOUNT = "default"
"""The account that serves every API key no account names (and requests without a key)."""


@dataclass(frozen=True)
class RawJson:
    """A payload already serialised (large, unchanging replies such as exchangeInfo)."""

    text: str


@dataclass
class Outcome:
    """A route's result: reply payload, user-stream events, follow-up work after the reply."""

    payload: Any
    events: list[Event] = field(default_factory=list)
    order_id: int | None = None
    later: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class Context:
    """Per-request knobs: the account the request's API key acts on (and the key), and
    what faults set (partial fills, lagging open-order lists)."""

    parts: int = 1
    part_interval_s: float = 0.02
    as_of_ms: int | None = None
    account: str = DEFAULT_ACCOUNT
    api_key: str = ""


Route = Callable[[Params, Context], Outcome]


def _bool(p: Params, name: str) -> bool:
    return p.get(name, "").lower() == "true"


def _float(p: Params, name: str, *, required: bool = False) -> float | None:
    raw = p.get(name)
    if raw is None or raw == "":
        if required:
            raise errors.mandatory_missing(name)
        return None
    try:
        return float(raw)
    except ValueError:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.") from None


def _int(p: Params, name: str) -> int | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.") from None


def _require(p: Params, name: str) -> str:
    value = p.get(name)
    if value is None or value == "":
        raise errors.mandatory_missing(name)
    return value


PUBLIC = frozenset(
    {
        ("GET", "/fapi/v1/ping"),
        ("GET", "/fapi/v1/time"),
        ("GET", "/fapi/v1/exchangeInfo"),
        ("GET", "/fapi/v1/premiumIndex"),
        ("GET", "/fapi/v1/ticker/price"),
        ("GET", "/fapi/v1/ticker/24hr"),
        ("GET", "/fapi/v1/depth"),
    }
)
"""Routes that need no timestamp (the listenKey routes need only the API key)."""

NO_TIMESTAMP = PUBLIC | {
    ("POST", "/fapi/v1/listenKey"),
    ("PUT", "/fapi/v1/listenKey"),
    ("DELETE", "/fapi/v1/listenKey"),
}


class RestApi:
    """Route table of the exchange. Methods are called with ``ex.lock`` held."""

    def __init__(self, ex: SimExchange) -> None:
        self.ex = ex
        self._exchange_info: str | None = None
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/fapi/v1/ping"): lambda p, c: Outcome({}),
            ("GET", "/fapi/v1/time"): lambda p, c: Outcome({"serverTime": now_ms()}),
            ("GET", "/fapi/v1/exchangeInfo"): self.exchange_info,
            ("GET", "/fapi/v1/premiumIndex"): self.premium_index,
            ("GET", "/fapi/v1/ticker/price"): self.ticker_price,
            ("GET", "/fapi/v1/ticker/24hr"): self.ticker_24hr,
            ("GET", "/fapi/v1/depth"): self.depth,
            ("GET", "/fapi/v1/userTrades"): self.user_trades,
            ("GET", "/fapi/v1/allOrders"): self.all_orders,
            ("GET", "/fapi/v1/symbolConfig"): self.symbol_config,
            ("GET", "/fapi/v1/commissionRate"): self.commission_rate,
            ("POST", "/fapi/v1/marginType"): self.margin_type,
            ("POST", "/fapi/v1/positionSide/dual"): self.position_mode,
            ("POST", "/fapi/v1/order"): self.create_order,
            ("GET", "/fapi/v1/order"): self.get_order,
            ("DELETE", "/fapi/v1/order"): self.cancel_order,
            ("GET", "/fapi/v1/openOrders"): self.open_orders,
            ("DELETE", "/fapi/v1/allOpenOrders"): self.cancel_all,
            ("POST", "/fapi/v1/algoOrder"): self.create_algo,
            ("GET", "/fapi/v1/algoOrder"): self.get_algo,
            ("DELETE", "/fapi/v1/algoOrder"): self.cancel_algo,
            ("GET", "/fapi/v1/openAlgoOrders"): self.open_algo_orders,
            ("DELETE", "/fapi/v1/algoOpenOrders"): self.cancel_all_algo,
            ("GET", "/fapi/v1/leverageBracket"): self.leverage_bracket,
            ("POST", "/fapi/v1/leverage"): self.set_leverage,
            ("GET", "/fapi/v1/positionSide/dual"): lambda p, c: Outcome(
                {"dualSidePosition": False}
            ),
            ("GET", "/fapi/v1/multiAssetsMargin"): lambda p, c: Outcome(
                {"multiAssetsMargin": False}
            ),
            ("GET", "/fapi/v2/positionRisk"): self.position_risk_v2,
            ("GET", "/fapi/v3/positionRisk"): self.position_risk_v3,
            ("GET", "/fapi/v2/account"): lambda p, c: Outcome(
                wire.account_json(self.ex.engine_of(c.account), now_ms(), v2=True)
            ),
            ("GET", "/fapi/v3/account"): lambda p, c: Outcome(
                wire.account_json(self.ex.engine_of(c.account), now_ms())
            ),
            ("GET", "/fapi/v2/balance"): lambda p, c: Outcome(
                wire.balance_json(self.ex.engine_of(c.account), now_ms())
            ),
            ("GET", "/fapi/v3/balance"): lambda p, c: Outcome(
                wire.balance_json(self.ex.engine_of(c.account), now_ms())
            ),
            ("POST", "/fapi/v1/listenKey"): lambda p, c: Outcome(
                {"listenKey": self.ex.new_listen_key(c.account)}
            ),
            ("PUT", "/fapi/v1/listenKey"): self.keepalive_listen_key,
            ("DELETE", "/fapi/v1/listenKey"): self.delete_listen_key,
        }

    # ------------------------------------------------------------------ market data

    def exchange_info(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/exchangeInfo (serialised once: the symbols never change)."""
        if self._exchange_info is None:
            info = wire.exchange_info(
                list(self.ex.engine_of(c.account).specs.values()),
                0,
                [lim.to_json() for lim in self.ex.limits.limits],
            )
            self._exchange_info = json.dumps(info, separators=(",", ":"))
        text = self._exchange_info.replace('"serverTime":0,', f'"serverTime":{now_ms()},', 1)
        return Outcome(RawJson(text))

    def premium_index(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/premiumIndex (mark prices)."""
        eng = self.ex.engine_of(c.account)
        now = now_ms()
        symbols = [p["symbol"]] if p.get("symbol") else list(eng.marks)
        rows = []
        for s in symbols:
            mark = eng.mark(s)
            rows.append(
                {
                    "symbol": s,
                    "markPrice": wire.fmt(mark),
                    "indexPrice": wire.fmt(mark),
                    "estimatedSettlePrice": wire.fmt(mark),
                    "lastFundingRate": "0.00010000",
                    "interestRate": "0.00010000",
                    "nextFundingTime": self.ex.funding_time(),
                    "time": now,
                }
            )
        return Outcome(rows[0] if p.get("symbol") else rows)

    def ticker_price(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/ticker/price (the mark doubles as last price)."""
        eng = self.ex.engine_of(c.account)
        now = now_ms()
        symbols = [p["symbol"]] if p.get("symbol") else list(eng.marks)
        rows = [{"symbol": s, "price": wire.fmt(eng.mark(s)), "time": now} for s in symbols]
        return Outcome(rows[0] if p.get("symbol") else rows)

    def ticker_24hr(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/ticker/24hr: the mark as last price, no volume."""
        eng = self.ex.engine_of(c.account)
        now = now_ms()
        symbols = [p["symbol"]] if p.get("symbol") else list(eng.marks)
        rows = []
        for s in symbols:
            mark = eng.mark(s)
            opened = self.ex.initial_prices[s]
            rows.append(
                {
                    "symbol": s,
                    "priceChange": wire.fmt(mark - opened),
                    "priceChangePercent": wire.fmt((mark / opened - 1) * 100, 3),
                    "weightedAvgPrice": wire.fmt(mark),
                    "lastPrice": wire.fmt(mark),
                    "lastQty": "0",
                    "openPrice": wire.fmt(opened),
                    "highPrice": wire.fmt(max(mark, opened)),
                    "lowPrice": wire.fmt(min(mark, opened)),
                    "volume": "0",
                    "quoteVolume": "0",
                    "openTime": now - 86_400_000,
                    "closeTime": now,
                    "firstId": 0,
                    "lastId": 0,
                    "count": 0,
                }
            )
        return Outcome(rows[0] if p.get("symbol") else rows)

    def depth(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/depth: a synthetic book, one tick either side of the mark and deeper."""
        symbol = _require(p, "symbol")
        spec = self.ex.engine_of(c.account).spec(symbol)
        mark = self.ex.engine_of(c.account).mark(symbol)
        levels = min(_int(p, "limit") or 10, 100)
        qty = wire.qty_str(spec, max(spec.step_size, spec.round_qty(1000.0 / mark)))
        bids = [[wire.price_str(spec, mark - (i + 1) * spec.tick_size), qty] for i in range(levels)]
        asks = [[wire.price_str(spec, mark + (i + 1) * spec.tick_size), qty] for i in range(levels)]
        now = now_ms()
        return Outcome({"lastUpdateId": now, "E": now, "T": now, "bids": bids, "asks": asks})

    # ------------------------------------------------------------------ orders

    def user_trades(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/userTrades: the fills of ``symbol``."""
        symbol = _require(p, "symbol")
        eng = self.ex.engine_of(c.account)
        spec = eng.spec(symbol)
        rows = []
        for sym, order_id, fill in eng.fills:
            if sym != symbol:
                continue
            order = eng.get_order(order_id)
            rows.append(
                {
                    "buyer": order.side == "BUY",
                    "commission": wire.fmt(fill.commission),
                    "commissionAsset": "USDT",
                    "id": fill.trade_id,
                    "maker": False,
                    "orderId": order_id,
                    "price": wire.price_str(spec, fill.price),
                    "qty": wire.qty_str(spec, fill.qty),
                    "quoteQty": wire.fmt(fill.qty * fill.price),
                    "realizedPnl": wire.fmt(fill.realized_pnl),
                    "side": order.side,
                    "positionSide": "BOTH",
                    "symbol": symbol,
                    "time": fill.time,
                }
            )
        return Outcome(rows[-(_int(p, "limit") or 500) :])

    def all_orders(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/allOrders: every market order of ``symbol``, oldest first."""
        symbol = _require(p, "symbol")
        eng = self.ex.engine_of(c.account)
        spec = eng.spec(symbol)
        rows = [wire.order_json(spec, o) for o in eng.orders(symbol)]
        return Outcome(rows[-(_int(p, "limit") or 500) :])

    def create_order(self, p: Params, c: Context) -> Outcome:
        """POST /fapi/v1/order: MARKET only (conditional types: -4120, others: -1116)."""
        symbol = _require(p, "symbol")
        side = _require(p, "side")
        otype = _require(p, "type")
        if otype in (
            "STOP_MARKET",
            "TAKE_PROFIT_MARKET",
            "STOP",
            "TAKE_PROFIT",
            "TRAILING_STOP_MARKET",
        ):
            raise errors.use_algo_endpoint()
        if otype != "MARKET":
            raise BinanceError(-1116, "Invalid orderType.")
        qty = _float(p, "quantity", required=True)
        assert qty is not None
        order, events = self.ex.engine_of(c.account).place_market(
            symbol,
            side,
            qty,
            client_order_id=p.get("newClientOrderId"),
            reduce_only=_bool(p, "reduceOnly"),
            parts=c.parts,
        )
        spec = self.ex.engine_of(c.account).specs[symbol]
        later: list[Callable[[], None]] = []
        if order.is_open and order.pending_parts:
            later.append(
                lambda: self.ex.fill_next_part_later(order.order_id, c.part_interval_s, c.account)
            )
        if p.get("newOrderRespType", "ACK") == "RESULT":
            payload = wire.order_json(spec, order, with_time=False)
        else:
            payload = wire.order_json(spec, order, with_time=False)
            payload.update(
                {
                    "status": "NEW",
                    "executedQty": "0",
                    "cumQty": "0",
                    "cumQuote": "0",
                    "avgPrice": "0.00",
                }
            )
        return Outcome(payload, events, order.order_id, later)

    def get_order(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/order by orderId or origClientOrderId (-2013 if unknown)."""
        symbol = _require(p, "symbol")
        spec = self.ex.engine_of(c.account).spec(symbol)
        oid = _int(p, "orderId")
        cid = p.get("origClientOrderId")
        if oid is None and not cid:
            raise BinanceError(-1102, "Either orderId or origClientOrderId must be sent.")
        order = self.ex.engine_of(c.account).get_order(oid, cid or None)
        if order.symbol != symbol:
            raise errors.order_not_found()
        return Outcome(wire.order_json(spec, order))

    def cancel_order(self, p: Params, c: Context) -> Outcome:
        """DELETE /fapi/v1/order (-2011 unless open)."""
        symbol = _require(p, "symbol")
        spec = self.ex.engine_of(c.account).spec(symbol)
        oid = _int(p, "orderId")
        cid = p.get("origClientOrderId")
        if oid is None and not cid:
            raise BinanceError(-1102, "Either orderId or origClientOrderId must be sent.")
        order, events = self.ex.engine_of(c.account).cancel_order(symbol, oid, cid or None)
        return Outcome(wire.order_json(spec, order, with_time=False), events)

    def open_orders(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/openOrders (all symbols without ``symbol``)."""
        symbol = p.get("symbol") or None
        if symbol:
            self.ex.engine_of(c.account).spec(symbol)
        eng = self.ex.engine_of(c.account)
        orders = (
            eng.open_orders(symbol)
            if c.as_of_ms is None
            else eng.open_orders_at(c.as_of_ms, symbol)
        )
        return Outcome([wire.order_json(eng.specs[o.symbol], o) for o in orders])

    def cancel_all(self, p: Params, c: Context) -> Outcome:
        """DELETE /fapi/v1/allOpenOrders."""
        symbol = _require(p, "symbol")
        events: list[Event] = []
        for order in self.ex.engine_of(c.account).open_orders(symbol):
            events.extend(self.ex.engine_of(c.account).cancel_order(symbol, order.order_id)[1])
        return Outcome(
            {"code": 200, "msg": "The operation of cancel all open order is done."}, events
        )

    # ------------------------------------------------------------------ algo orders

    def create_algo(self, p: Params, c: Context) -> Outcome:
        """POST /fapi/v1/algoOrder: algoType=CONDITIONAL, STOP_MARKET / TAKE_PROFIT_MARKET."""
        symbol = _require(p, "symbol")
        side = _require(p, "side")
        if _require(p, "algoType") != "CONDITIONAL":
            raise BinanceError(-1116, "Invalid algoType.")
        otype = _require(p, "type")
        if otype not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise BinanceError(-1116, "Invalid orderType.")
        trigger = _float(p, "triggerPrice", required=True)
        assert trigger is not None
        close_position = _bool(p, "closePosition")
        qty = _float(p, "quantity")
        if close_position:  # Binance refuses both with closePosition=true
            for name in ("quantity", "reduceOnly"):
                if name in p:
                    raise BinanceError(-1106, f"Parameter '{name}' sent when not required.")
        spec = self.ex.engine_of(c.account).spec(symbol)
        if not spec.is_tick_multiple(trigger):
            raise errors.bad_precision()
        algo, events = self.ex.engine_of(c.account).place_algo(
            symbol,
            side,
            otype,
            trigger,
            qty=qty,
            close_position=close_position,
            reduce_only=_bool(p, "reduceOnly"),
            client_algo_id=p.get("clientAlgoId"),
            working_type=p.get("workingType", "CONTRACT_PRICE"),
            price_protect=_bool(p, "priceProtect"),
        )
        return Outcome(wire.algo_json(spec, algo), events, algo.algo_id)

    def get_algo(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/algoOrder by algoId or clientAlgoId (-2013 if unknown)."""
        aid = _int(p, "algoId")
        cid = p.get("clientAlgoId")
        if aid is None and not cid:
            raise BinanceError(-1102, "Either algoId or clientAlgoId must be sent.")
        algo = self.ex.engine_of(c.account).get_algo(aid, cid or None)
        symbol = p.get("symbol")
        if symbol and algo.symbol != symbol:
            raise errors.order_not_found()
        spec = self.ex.engine_of(c.account).specs[algo.symbol]
        return Outcome(wire.algo_json(spec, algo, query=True))

    def cancel_algo(self, p: Params, c: Context) -> Outcome:
        """DELETE /fapi/v1/algoOrder by algoId or clientAlgoId (-2011 unless untriggered, or
        when ``symbol`` is given and the order is of another symbol: Binance cancels only an
        order of the symbol named)."""
        aid = _int(p, "algoId")
        cid = p.get("clientAlgoId")
        if aid is None and not cid:
            raise BinanceError(-1102, "Either algoId or clientAlgoId must be sent.")
        algo, events = self.ex.engine_of(c.account).cancel_algo(
            aid, cid or None, symbol=p.get("symbol") or None
        )
        return Outcome(wire.algo_cancel_json(algo), events)

    def open_algo_orders(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/openAlgoOrders (all symbols without ``symbol``)."""
        symbol = p.get("symbol") or None
        if symbol:
            self.ex.engine_of(c.account).spec(symbol)
        eng = self.ex.engine_of(c.account)
        algos = (
            eng.open_algo_orders(symbol)
            if c.as_of_ms is None
            else eng.open_algo_orders_at(c.as_of_ms, symbol)
        )
        return Outcome([wire.algo_json(eng.specs[a.symbol], a) for a in algos])

    def cancel_all_algo(self, p: Params, c: Context) -> Outcome:
        """DELETE /fapi/v1/algoOpenOrders."""
        symbol = _require(p, "symbol")
        events: list[Event] = []
        for algo in self.ex.engine_of(c.account).open_algo_orders(symbol):
            events.extend(self.ex.engine_of(c.account).cancel_algo(algo.algo_id)[1])
        return Outcome(
            {"code": 200, "msg": "The operation of cancel all open order is done."}, events
        )

    # ------------------------------------------------------------------ account

    def leverage_bracket(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/leverageBracket."""
        eng = self.ex.engine_of(c.account)
        specs = [eng.spec(p["symbol"])] if p.get("symbol") else list(eng.specs.values())
        rows = wire.leverage_brackets(specs, eng.leverage)
        return Outcome(rows[0] if p.get("symbol") else rows)

    def set_leverage(self, p: Params, c: Context) -> Outcome:
        """POST /fapi/v1/leverage."""
        symbol = _require(p, "symbol")
        lev = _int(p, "leverage")
        if lev is None:
            raise errors.mandatory_missing("leverage")
        self.ex.engine_of(c.account).set_leverage(symbol, lev)
        return Outcome({"leverage": lev, "maxNotionalValue": "20000000", "symbol": symbol})

    def symbol_config(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/symbolConfig (leverage and margin type)."""
        eng = self.ex.engine_of(c.account)
        symbols = [p["symbol"]] if p.get("symbol") else list(eng.specs)
        return Outcome(
            [
                {
                    "symbol": s,
                    "marginType": "CROSSED",
                    "isAutoAddMargin": "false",
                    "leverage": eng.leverage_of(s),
                    "maxNotionalValue": "20000000",
                }
                for s in symbols
                if eng.spec(s)
            ]
        )

    def commission_rate(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v1/commissionRate."""
        symbol = _require(p, "symbol")
        self.ex.engine_of(c.account).spec(symbol)
        fee = wire.fmt(self.ex.engine_of(c.account).taker_fee, 6)
        return Outcome({"symbol": symbol, "makerCommissionRate": fee, "takerCommissionRate": fee})

    def margin_type(self, p: Params, c: Context) -> Outcome:
        """POST /fapi/v1/marginType: the sim is cross-margin only (-4046 for CROSSED)."""
        self.ex.engine_of(c.account).spec(_require(p, "symbol"))
        if _require(p, "marginType") == "CROSSED":
            raise BinanceError(-4046, "No need to change margin type.")
        raise BinanceError(-1116, "Invalid marginType: the sim simulates cross margin only.")

    def position_mode(self, p: Params, c: Context) -> Outcome:
        """POST /fapi/v1/positionSide/dual: one-way mode only (-4059 for false)."""
        if _require(p, "dualSidePosition").lower() == "false":
            raise BinanceError(-4059, "No need to change position side.")
        raise BinanceError(-1116, "Invalid dualSidePosition: the sim simulates one-way mode only.")

    def position_risk_v2(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v2/positionRisk: every symbol (flat ones with zeros)."""
        eng = self.ex.engine_of(c.account)
        now = now_ms()
        symbols = [p["symbol"]] if p.get("symbol") else list(eng.specs)
        return Outcome([wire.position_v2(eng, eng.position(s), now) for s in symbols])

    def position_risk_v3(self, p: Params, c: Context) -> Outcome:
        """GET /fapi/v3/positionRisk: symbols with a position only."""
        eng = self.ex.engine_of(c.account)
        now = now_ms()
        symbol = p.get("symbol") or None
        if symbol:
            eng.spec(symbol)
        rows = [
            wire.position_v3(eng, pos, now)
            for pos in eng.positions()
            if symbol is None or pos.symbol == symbol
        ]
        return Outcome(rows)

    def keepalive_listen_key(self, p: Params, c: Context) -> Outcome:
        """PUT /fapi/v1/listenKey: extends the account's key (-1125 if none is active)."""
        mine = self.ex.listen_keys(c.account)
        key = p.get("listenKey") or next(iter(mine), "")
        if key not in mine:
            raise errors.listen_key_missing()
        return Outcome({"listenKey": key})

    def delete_listen_key(self, p: Params, c: Context) -> Outcome:
        """DELETE /fapi/v1/listenKey: closes the account's user stream."""
        mine = self.ex.listen_keys(c.account)
        key = p.get("listenKey")
        for k in mine if not key else [key] if key in mine else []:
            self.ex.delete_listen_key(k)
        return Outcome({})
