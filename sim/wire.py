"""Binance USD-M wire shapes: REST payloads and WebSocket events built from model objects.

Pure functions (no I/O, no state). Numbers are rendered as strings, as Binance does.
Field sets follow Binance's documentation and the samples in ccxt 4.5.90's binance.py /
pro/binance.py; see sim/README.md for the conventions of triggered conditional orders.
"""

from __future__ import annotations

from typing import Any

from sim.matching import (
    AccountEvent,
    AccountSnapshot,
    AlgoEvent,
    AlgoOrder,
    Event,
    MatchingEngine,
    Order,
    OrderEvent,
    Position,
)
from sim.symbols import SymbolSpec

Json = dict[str, Any]

ORDER_TYPES = [
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]


def fmt(x: float, decimals: int = 8) -> str:
    """``x`` with ``decimals`` decimals, as Binance prints numbers ("0.00100000")."""
    return f"{x:.{decimals}f}"


def plain(x: float) -> str:
    """``x`` without exponent or trailing zeros ("100000000", "0.001")."""
    return f"{x:.8f}".rstrip("0").rstrip(".") or "0"


def qty_str(spec: SymbolSpec, qty: float) -> str:
    """A quantity with the symbol's quantity precision."""
    return fmt(qty, spec.quantity_precision)


def price_str(spec: SymbolSpec, price: float) -> str:
    """A price with the symbol's price precision."""
    return fmt(price, spec.price_precision)


# ---------------------------------------------------------------------- exchangeInfo


def symbol_info(spec: SymbolSpec) -> Json:
    """One entry of exchangeInfo's ``symbols`` (what ccxt's load_markets parses)."""
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base,
        "quoteAsset": spec.quote,
        "marginAsset": spec.quote,
        "pricePrecision": spec.price_precision,
        "quantityPrecision": spec.quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": price_str(spec, spec.tick_size),
                "maxPrice": plain(spec.max_price) if spec.max_price > 0 else "0",
                "tickSize": price_str(spec, spec.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": qty_str(spec, spec.min_qty),
                "maxQty": plain(spec.max_qty),
                "stepSize": qty_str(spec, spec.step_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": qty_str(spec, spec.min_qty),
                "maxQty": plain(spec.market_max_qty),
                "stepSize": qty_str(spec, spec.step_size),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": f"{spec.min_notional:g}"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": ORDER_TYPES,
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSet": ["GRID", "COPY"],
    }


_BINANCE_RATE_LIMITS: list[Json] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]


def exchange_info(specs: list[SymbolSpec], now: int, rate_limits: list[Json] | None = None) -> Json:
    """GET /fapi/v1/exchangeInfo (``rate_limits``: the published limits, Binance's default)."""
    return {
        "timezone": "UTC",
        "serverTime": now,
        "futuresType": "U_MARGINED",
        "rateLimits": list(rate_limits if rate_limits is not None else _BINANCE_RATE_LIMITS),
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [symbol_info(s) for s in specs],
    }


def leverage_brackets(specs: list[SymbolSpec], leverage_of: dict[str, int]) -> list[Json]:
    """GET /fapi/v1/leverageBracket (one flat bracket list per symbol)."""
    tiers = [
        (125, 50_000, 0, 0.004, 0.0),
        (100, 250_000, 50_000, 0.005, 50.0),
        (50, 3_000_000, 250_000, 0.01, 1_300.0),
        (20, 20_000_000, 3_000_000, 0.025, 46_300.0),
        (10, 50_000_000, 20_000_000, 0.05, 546_300.0),
        (5, 100_000_000, 50_000_000, 0.1, 3_046_300.0),
    ]
    brackets = [
        {
            "bracket": i + 1,
            "initialLeverage": lev,
            "notionalCap": cap,
            "notionalFloor": floor,
            "maintMarginRatio": mmr,
            "cum": cum,
        }
        for i, (lev, cap, floor, mmr, cum) in enumerate(tiers)
    ]
    del leverage_of  # brackets do not depend on the chosen leverage
    return [{"symbol": s.symbol, "brackets": brackets} for s in specs]


# ---------------------------------------------------------------------- orders


def order_json(spec: SymbolSpec, order: Order, *, with_time: bool = True) -> Json:
    """An order as /fapi/v1/order returns it (newOrderRespType=RESULT, query, cancel)."""
    out: Json = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": "0",
        "avgPrice": price_str(spec, order.avg_price) if order.executed_qty else "0.00",
        "origQty": qty_str(spec, order.qty),
        "executedQty": qty_str(spec, order.executed_qty),
        "cumQty": qty_str(spec, order.executed_qty),
        "cumQuote": fmt(order.cum_quote, 5),
        "timeInForce": "GTC",
        "type": "MARKET",
        "reduceOnly": order.reduce_only,
        "closePosition": order.close_position,
        "side": order.side,
        "positionSide": "BOTH",
        "stopPrice": price_str(spec, order.stop_price) if order.stop_price else "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order.orig_type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "updateTime": order.update_time,
    }
    if with_time:
        out["time"] = order.time
    return out


def algo_json(spec: SymbolSpec, algo: AlgoOrder, *, query: bool = False) -> Json:
    """A conditional order as /fapi/v1/algoOrder returns it (POST reply, or GET with ``query``)."""
    out: Json = {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": algo.order_type,
        "symbol": algo.symbol,
        "side": algo.side,
        "positionSide": "BOTH",
        "timeInForce": "GTC",
        "quantity": qty_str(spec, algo.qty),
        "algoStatus": algo.status,
        "triggerPrice": price_str(spec, algo.trigger_price),
        "price": "0",
        "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": algo.working_type,
        "priceMatch": "NONE",
        "closePosition": algo.close_position,
        "priceProtect": algo.price_protect,
        "reduceOnly": algo.reduce_only,
        "activatePrice": "",
        "callbackRate": "",
        "createTime": algo.create_time,
        "updateTime": algo.update_time,
        "triggerTime": algo.trigger_time,
        "goodTillDate": 0,
    }
    if query:
        out["actualOrderId"] = str(algo.actual_order_id) if algo.actual_order_id else ""
        out["executedQty"] = qty_str(spec, algo.executed_qty)
        out["avgPrice"] = price_str(spec, algo.avg_price) if algo.executed_qty else "0.00"
    return out


def algo_cancel_json(algo: AlgoOrder) -> Json:
    """DELETE /fapi/v1/algoOrder reply."""
    return {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "code": "200",
        "msg": "success",
    }


# ---------------------------------------------------------------------- account


def position_v3(engine: MatchingEngine, pos: Position, now: int) -> Json:
    """One row of GET /fapi/v3/positionRisk."""
    spec = engine.specs[pos.symbol]
    mark = engine.marks[pos.symbol]
    notional = pos.qty * mark
    lev = engine.leverage_of(pos.symbol)
    im = abs(notional) / lev
    return {
        "symbol": pos.symbol,
        "positionSide": "BOTH",
        "positionAmt": qty_str(spec, pos.qty),
        "entryPrice": fmt(pos.entry_price, 8),
        "breakEvenPrice": fmt(pos.entry_price, 8),
        "markPrice": fmt(mark, 8),
        "unRealizedProfit": fmt(pos.qty * (mark - pos.entry_price), 8),
        "liquidationPrice": "0",
        "isolatedMargin": "0",
        "notional": fmt(notional, 8),
        "marginAsset": "USDT",
        "isolatedWallet": "0",
        "initialMargin": fmt(im, 8),
        "maintMargin": fmt(abs(notional) * engine.maint_margin_ratio, 8),
        "positionInitialMargin": fmt(im, 8),
        "openOrderInitialMargin": "0",
        "adl": 1,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": pos.update_time or now,
    }


def position_v2(engine: MatchingEngine, pos: Position, now: int) -> Json:
    """One row of GET /fapi/v2/positionRisk (includes leverage and margin type)."""
    spec = engine.specs[pos.symbol]
    mark = engine.marks[pos.symbol]
    return {
        "symbol": pos.symbol,
        "positionAmt": qty_str(spec, pos.qty),
        "entryPrice": fmt(pos.entry_price, 8),
        "breakEvenPrice": fmt(pos.entry_price, 8),
        "markPrice": fmt(mark, 8),
        "unRealizedProfit": fmt(pos.qty * (mark - pos.entry_price), 8),
        "liquidationPrice": "0",
        "leverage": str(engine.leverage_of(pos.symbol)),
        "maxNotionalValue": "20000000",
        "marginType": "cross",
        "isolatedMargin": "0.00000000",
        "isAutoAddMargin": "false",
        "positionSide": "BOTH",
        "notional": fmt(pos.qty * mark, 8),
        "isolatedWallet": "0",
        "updateTime": pos.update_time or 0,
    }


def _asset(acc: AccountSnapshot, now: int) -> Json:
    return {
        "asset": "USDT",
        "walletBalance": fmt(acc.wallet),
        "unrealizedProfit": fmt(acc.unrealized),
        "marginBalance": fmt(acc.margin_balance),
        "maintMargin": fmt(acc.maint_margin),
        "initialMargin": fmt(acc.initial_margin),
        "positionInitialMargin": fmt(acc.initial_margin),
        "openOrderInitialMargin": "0.00000000",
        "crossWalletBalance": fmt(acc.wallet),
        "crossUnPnl": fmt(acc.unrealized),
        "availableBalance": fmt(acc.available),
        "maxWithdrawAmount": fmt(min(acc.available, acc.wallet)),
        "marginAvailable": True,
        "updateTime": now,
    }


def account_json(engine: MatchingEngine, now: int, *, v2: bool = False) -> Json:
    """GET /fapi/v3/account (or v2, which also lists flat positions)."""
    acc = engine.account()
    positions: list[Json] = []
    rows = engine.positions()
    for pos in rows:
        spec = engine.specs[pos.symbol]
        mark = engine.marks[pos.symbol]
        notional = pos.qty * mark
        im = abs(notional) / engine.leverage_of(pos.symbol)
        positions.append(
            {
                "symbol": pos.symbol,
                "positionSide": "BOTH",
                "positionAmt": qty_str(spec, pos.qty),
                "unrealizedProfit": fmt(pos.qty * (mark - pos.entry_price)),
                "isolatedMargin": "0",
                "notional": fmt(notional),
                "isolatedWallet": "0",
                "initialMargin": fmt(im),
                "maintMargin": fmt(abs(notional) * engine.maint_margin_ratio),
                "updateTime": pos.update_time,
            }
        )
        if v2:
            positions[-1].update(
                {
                    "entryPrice": fmt(pos.entry_price),
                    "leverage": str(engine.leverage_of(pos.symbol)),
                    "isolated": False,
                    "positionInitialMargin": fmt(im),
                    "openOrderInitialMargin": "0",
                    "maxNotional": "20000000",
                }
            )
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
        "totalInitialMargin": fmt(acc.initial_margin),
        "totalMaintMargin": fmt(acc.maint_margin),
        "totalWalletBalance": fmt(acc.wallet),
        "totalUnrealizedProfit": fmt(acc.unrealized),
        "totalMarginBalance": fmt(acc.margin_balance),
        "totalPositionInitialMargin": fmt(acc.initial_margin),
        "totalOpenOrderInitialMargin": "0.00000000",
        "totalCrossWalletBalance": fmt(acc.wallet),
        "totalCrossUnPnl": fmt(acc.unrealized),
        "availableBalance": fmt(acc.available),
        "maxWithdrawAmount": fmt(min(acc.available, acc.wallet)),
        "assets": [_asset(acc, now)],
        "positions": positions,
    }


def balance_json(engine: MatchingEngine, now: int) -> list[Json]:
    """GET /fapi/v2/balance (and v3)."""
    acc = engine.account()
    return [
        {
            "accountAlias": "SgsR",
            "asset": "USDT",
            "balance": fmt(acc.wallet),
            "crossWalletBalance": fmt(acc.wallet),
            "crossUnPnl": fmt(acc.unrealized),
            "availableBalance": fmt(acc.available),
            "maxWithdrawAmount": fmt(min(acc.available, acc.wallet)),
            "marginAvailable": True,
            "updateTime": now,
        }
    ]


# ---------------------------------------------------------------------- streams


def mark_price_event(symbol: str, price: float, now: int, funding_time: int) -> Json:
    """``markPriceUpdate`` as pushed on ``<symbol>@markPrice`` (numbers as strings).

    ``p`` mark price, ``i`` index price, ``P`` estimated settle price, ``r`` funding rate,
    ``T`` next funding time.
    """
    p = fmt(price)
    return {
        "e": "markPriceUpdate",
        "E": now,
        "s": symbol,
        "p": p,
        "i": p,
        "P": p,
        "r": "0.00010000",
        "T": funding_time,
    }


def mark_price_json(symbol: str, price: float, now: int, funding_time: int) -> str:
    """``mark_price_event`` already serialised (hot path of the mark-price blast)."""
    p = f"{price:.8f}"
    return (
        f'{{"e":"markPriceUpdate","E":{now},"s":"{symbol}","p":"{p}","i":"{p}",'
        f'"P":"{p}","r":"0.00010000","T":{funding_time}}}'
    )


def order_trade_update(spec: SymbolSpec, ev: OrderEvent) -> Json:
    """ORDER_TRADE_UPDATE for an order event.

    For an order created by a triggered conditional order ``c`` is the clientAlgoId, ``ot``
    the conditional type (STOP_MARKET / TAKE_PROFIT_MARKET) and ``sp`` its trigger price.
    """
    o = ev.order
    fill = ev.fill
    body: Json = {
        "s": o.symbol,
        "c": o.client_order_id,
        "S": o.side,
        "o": "MARKET",
        "f": "GTC",
        "q": qty_str(spec, o.qty),
        "p": "0",
        "ap": price_str(spec, o.avg_price) if o.executed_qty else "0",
        "sp": price_str(spec, o.stop_price) if o.stop_price else "0",
        "x": ev.exec_type,
        "X": o.status,
        "i": o.order_id,
        "l": qty_str(spec, fill.qty) if fill else "0",
        "z": qty_str(spec, o.executed_qty),
        "L": price_str(spec, fill.price) if fill else "0",
        "T": ev.time,
        "t": fill.trade_id if fill else 0,
        "b": "0",
        "a": "0",
        "m": False,
        "R": o.reduce_only,
        "wt": "CONTRACT_PRICE",
        "ot": o.orig_type,
        "ps": "BOTH",
        "cp": o.close_position,
        "rp": fmt(fill.realized_pnl) if fill else "0",
        "pP": False,
        "si": 0,
        "ss": 0,
        "V": "EXPIRE_MAKER",
        "pm": "NONE",
        "gtd": 0,
    }
    if fill is not None and fill.commission > 0:
        body["N"] = "USDT"
        body["n"] = fmt(fill.commission)
    return {"e": "ORDER_TRADE_UPDATE", "E": ev.time, "T": ev.time, "o": body}


def account_update(engine: MatchingEngine, ev: AccountEvent) -> Json:
    """ACCOUNT_UPDATE after a fill: the USDT balance and the changed positions."""
    rows = []
    for pos in ev.positions:
        spec = engine.specs[pos.symbol]
        rows.append(
            {
                "s": pos.symbol,
                "pa": qty_str(spec, pos.qty),
                "ep": fmt(pos.entry_price),
                "bep": fmt(pos.entry_price),
                "cr": fmt(pos.realized_pnl),
                "up": fmt(pos.qty * (engine.marks[pos.symbol] - pos.entry_price)),
                "mt": "cross",
                "iw": "0",
                "ps": "BOTH",
            }
        )
    return {
        "e": "ACCOUNT_UPDATE",
        "E": ev.time,
        "T": ev.time,
        "a": {
            "m": ev.reason,
            "B": [{"a": "USDT", "wb": fmt(ev.wallet), "cw": fmt(ev.wallet), "bc": "0"}],
            "P": rows,
        },
    }


def algo_update(spec: SymbolSpec, ev: AlgoEvent) -> Json:
    """ALGO_UPDATE of a conditional order: NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED.

    ``ai`` is the id of the market order it became (also that order's ``i``), ``aq``/``ap``
    its executed quantity and average price once FINISHED; ``rm`` the reject reason.
    """
    a = ev.algo
    body: Json = {
        "caid": a.client_algo_id,
        "aid": a.algo_id,
        "at": "CONDITIONAL",
        "o": a.order_type,
        "s": a.symbol,
        "S": a.side,
        "ps": "BOTH",
        "f": "GTC",
        "q": qty_str(spec, a.qty),
        "X": a.status,
        "ai": str(a.actual_order_id) if a.actual_order_id else "",
        "ap": price_str(spec, a.avg_price) if a.executed_qty else "0",
        "aq": qty_str(spec, a.executed_qty) if a.executed_qty else "0",
        "act": "MARKET" if a.actual_order_id else "0",
        "tp": price_str(spec, a.trigger_price),
        "p": "0",
        "V": "EXPIRE_MAKER",
        "wt": a.working_type,
        "pm": "NONE",
        "cp": a.close_position,
        "pP": a.price_protect,
        "R": a.reduce_only,
        "tt": a.trigger_time,
        "gtd": 0,
    }
    if a.reject_reason:
        body["rm"] = a.reject_reason
    return {"e": "ALGO_UPDATE", "T": ev.time, "E": ev.time, "o": body}


def user_event(engine: MatchingEngine, ev: Event) -> Json:
    """The user-data-stream payload of a model event."""
    if isinstance(ev, OrderEvent):
        return order_trade_update(engine.specs[ev.order.symbol], ev)
    if isinstance(ev, AlgoEvent):
        return algo_update(engine.specs[ev.algo.symbol], ev)
    return account_update(engine, ev)
