"""Bybit v5 (linear USDT perpetual) wire shapes built from the matching engine's objects.

Pure functions (no I/O, no state). Numbers are strings, as Bybit sends them; field sets
follow Bybit's v5 documentation and the samples in ccxt 4.5.90's ``bybit.py`` /
``pro/bybit.py``.

How the engine's two kinds of order appear on Bybit's wire: a market order is one order; a
conditional order (the engine's ``AlgoOrder``) is one order too, with ``triggerPrice``,
``triggerDirection`` and ``stopOrderType: "Stop"``, whose ``orderId`` stays the same when it
triggers (``Untriggered`` → ``Triggered`` → ``Filled``; cancelled: ``Deactivated``). The
market order the engine creates when it triggers is shown as that conditional order.
Order ids are UUID-shaped strings (:func:`order_id`) that encode the engine's integer id.
"""

from __future__ import annotations

from typing import Any

from sim.matching import AlgoOrder, Fill, MatchingEngine, Order
from sim.symbols import SymbolSpec
from sim.wire import fmt, plain, price_str, qty_str

Json = dict[str, Any]

CATEGORY = "linear"

_ALGO_STATUS = {
    "NEW": "Untriggered",
    "TRIGGERING": "Triggered",
    "TRIGGERED": "Triggered",
    "FINISHED": "Filled",
    "CANCELED": "Deactivated",
    "REJECTED": "Rejected",
}
_ORDER_STATUS = {
    "NEW": "New",
    "PARTIALLY_FILLED": "PartiallyFilled",
    "FILLED": "Filled",
    "CANCELED": "Cancelled",
    "EXPIRED": "Cancelled",
    "REJECTED": "Rejected",
}
OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered", "Triggered"})
"""Order statuses ``/v5/order/realtime`` lists by default (``openOnly=0``)."""


def order_id(n: int) -> str:
    """The engine's integer id as a UUID-shaped Bybit order id."""
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_order_id(text: str) -> int | None:
    """The engine id of a Bybit order id made by :func:`order_id` (None if it is not one)."""
    raw = text.replace("-", "")
    if len(raw) != 32:
        return None
    try:
        return int(raw, 16)
    except ValueError:
        return None


def side(binance_side: str) -> str:
    """ "BUY" → "Buy", "SELL" → "Sell"."""
    return "Buy" if binance_side == "BUY" else "Sell"


def trigger_direction(algo: AlgoOrder) -> int:
    """1 (triggers when the price rises to it) or 2 (falls to it)."""
    rising = (algo.order_type == "STOP_MARKET") == (algo.side == "BUY")
    return 1 if rising else 2


def algo_type(binance_side: str, direction: int) -> str:
    """The engine's conditional type for a Bybit ``side`` and ``triggerDirection``."""
    rising = direction == 1
    return "STOP_MARKET" if rising == (binance_side == "BUY") else "TAKE_PROFIT_MARKET"


# ---------------------------------------------------------------------- market data


def instrument(spec: SymbolSpec) -> Json:
    """One row of ``/v5/market/instruments-info?category=linear``."""
    return {
        "symbol": spec.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": spec.base,
        "quoteCoin": spec.quote,
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(spec.price_precision),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {
            "minPrice": price_str(spec, spec.tick_size),
            "maxPrice": plain(spec.max_price) if spec.max_price > 0 else "0",
            "tickSize": price_str(spec, spec.tick_size),
        },
        "lotSizeFilter": {
            "maxOrderQty": plain(spec.max_qty),
            "maxMktOrderQty": plain(spec.market_max_qty),
            "minOrderQty": qty_str(spec, spec.min_qty),
            "qtyStep": qty_str(spec, spec.step_size),
            "postOnlyMaxOrderQty": plain(spec.max_qty),
            "minNotionalValue": f"{spec.min_notional:g}",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": spec.quote,
        "copyTrading": "both",
        "upperFundingRate": "0.00375",
        "lowerFundingRate": "-0.00375",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
    }


def ticker(spec: SymbolSpec, mark: float, funding_time: int) -> Json:
    """A linear ticker (``/v5/market/tickers`` row, and the ``tickers.<symbol>`` snapshot).

    The sim has one price per symbol: last, mark, index and the book's best prices follow it.
    """
    p = price_str(spec, mark)
    return {
        "symbol": spec.symbol,
        "lastPrice": p,
        "indexPrice": p,
        "markPrice": p,
        "prevPrice24h": p,
        "price24hPcnt": "0",
        "highPrice24h": p,
        "lowPrice24h": p,
        "prevPrice1h": p,
        "openInterest": "0",
        "openInterestValue": "0",
        "turnover24h": "0",
        "volume24h": "0",
        "fundingRate": "0.0001",
        "nextFundingTime": str(funding_time),
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "ask1Size": "1",
        "bid1Price": price_str(spec, mark - spec.tick_size),
        "ask1Price": price_str(spec, mark + spec.tick_size),
        "bid1Size": "1",
        "basis": "",
    }


def ticker_delta(spec: SymbolSpec, mark: float) -> Json:
    """What a price move changes in a ``tickers.<symbol>`` delta (Bybit sends changed fields)."""
    p = price_str(spec, mark)
    return {
        "symbol": spec.symbol,
        "lastPrice": p,
        "markPrice": p,
        "indexPrice": p,
        "bid1Price": price_str(spec, mark - spec.tick_size),
        "ask1Price": price_str(spec, mark + spec.tick_size),
    }


# ---------------------------------------------------------------------- orders


def _base_order(spec: SymbolSpec, symbol: str, binance_side: str) -> Json:
    return {
        "orderId": "",
        "orderLinkId": "",
        "blockTradeId": "",
        "symbol": symbol,
        "price": "0",
        "qty": qty_str(spec, 0.0),
        "side": side(binance_side),
        "isLeverage": "",
        "positionIdx": 0,
        "orderStatus": "",
        "cancelType": "UNKNOWN",
        "rejectReason": "EC_NoError",
        "avgPrice": "",
        "leavesQty": qty_str(spec, 0.0),
        "leavesValue": "0",
        "cumExecQty": qty_str(spec, 0.0),
        "cumExecValue": "0",
        "cumExecFee": "0",
        "timeInForce": "IOC",
        "orderType": "Market",
        "stopOrderType": "",
        "orderIv": "",
        "marketUnit": "",
        "triggerPrice": "",
        "takeProfit": "",
        "stopLoss": "",
        "tpslMode": "",
        "ocoTriggerBy": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": 0,
        "triggerBy": "",
        "lastPriceOnCreated": "",
        "reduceOnly": False,
        "closeOnTrigger": False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "createdTime": "0",
        "updatedTime": "0",
    }


def _fill_fields(
    out: Json,
    spec: SymbolSpec,
    qty: float,
    executed: float,
    value: float,
    fee_rate: float,
    open_: bool,
) -> None:
    out["cumExecQty"] = qty_str(spec, executed)
    out["cumExecValue"] = fmt(value, 8).rstrip("0").rstrip(".") or "0"
    out["cumExecFee"] = fmt(value * fee_rate, 8).rstrip("0").rstrip(".") or "0"
    out["avgPrice"] = price_str(spec, value / executed) if executed > 0 else ""
    leaves = max(0.0, qty - executed) if open_ else 0.0
    out["leavesQty"] = qty_str(spec, leaves)


def market_order(spec: SymbolSpec, order: Order, fee_rate: float) -> Json:
    """A market order (not one made by a trigger) as ``/v5/order/realtime`` shows it."""
    out = _base_order(spec, order.symbol, order.side)
    status = _ORDER_STATUS.get(order.status, order.status)
    if status == "Cancelled" and order.executed_qty > 0:
        status = "PartiallyFilledCanceled"
    out.update(
        {
            "orderId": order_id(order.order_id),
            "orderLinkId": order.client_order_id,
            "qty": qty_str(spec, order.qty),
            "orderStatus": status,
            "reduceOnly": order.reduce_only,
            "createdTime": str(order.time),
            "updatedTime": str(order.update_time),
        }
    )
    if status in ("Cancelled", "PartiallyFilledCanceled"):
        out["cancelType"] = "CancelByUser" if order.status == "CANCELED" else "CancelByReduceOnly"
    _fill_fields(out, spec, order.qty, order.executed_qty, order.cum_quote, fee_rate, order.is_open)
    return out


def conditional_order(
    spec: SymbolSpec,
    algo: AlgoOrder,
    fee_rate: float,
    *,
    close_on_trigger: bool = False,
    trigger_by: str = "LastPrice",
    placed: Order | None = None,
) -> Json:
    """A conditional order; ``placed`` is the market order its trigger made (for its fills
    while it executes, when the engine's ``algo`` is not finished yet)."""
    out = _base_order(spec, algo.symbol, algo.side)
    status = _ALGO_STATUS.get(algo.status, algo.status)
    qty = algo.qty
    executed, value = algo.executed_qty, algo.avg_price * algo.executed_qty
    if placed is not None:
        qty = placed.qty
        executed, value = placed.executed_qty, placed.cum_quote
        status = _ORDER_STATUS.get(placed.status, placed.status)
        if status == "New":
            status = "Triggered"
    out.update(
        {
            "orderId": order_id(algo.algo_id),
            "orderLinkId": algo.client_algo_id,
            "qty": qty_str(spec, qty),
            "orderStatus": status,
            "stopOrderType": "Stop",
            "triggerPrice": price_str(spec, algo.trigger_price),
            "triggerDirection": trigger_direction(algo),
            "triggerBy": trigger_by,
            "reduceOnly": algo.reduce_only,
            "closeOnTrigger": close_on_trigger or algo.close_position,
            "createdTime": str(algo.create_time),
            "updatedTime": str(algo.update_time),
        }
    )
    if status == "Deactivated":
        out["cancelType"] = "CancelByUser"
    if status == "Rejected":
        out["rejectReason"] = "EC_PositionStatus" if algo.reject_reason else "EC_Others"
    open_ = status in OPEN_STATUSES
    _fill_fields(out, spec, qty, executed, value, fee_rate, open_)
    return out


def execution(
    spec: SymbolSpec,
    order_json: Json,
    fill: Fill,
    mark: float,
    fee_rate: float,
    seq: int,
) -> Json:
    """One ``execution`` row (private stream topic and ``/v5/execution/list``)."""
    value = fill.qty * fill.price
    return {
        "category": CATEGORY,
        "symbol": order_json["symbol"],
        "execFee": fmt(fill.commission, 8),
        "execId": order_id(fill.trade_id),
        "execPrice": price_str(spec, fill.price),
        "execQty": qty_str(spec, fill.qty),
        "execType": "Trade",
        "execValue": fmt(value, 8),
        "isMaker": False,
        "feeRate": f"{fee_rate:g}",
        "tradeIv": "",
        "markIv": "",
        "blockTradeId": "",
        "markPrice": price_str(spec, mark),
        "indexPrice": "",
        "underlyingPrice": "",
        "leavesQty": order_json["leavesQty"],
        "orderId": order_json["orderId"],
        "orderLinkId": order_json["orderLinkId"],
        "orderPrice": order_json["price"],
        "orderQty": order_json["qty"],
        "orderType": "Market",
        "stopOrderType": order_json["stopOrderType"] or "UNKNOWN",
        "side": order_json["side"],
        "execTime": str(fill.time),
        "isLeverage": "0",
        "closedSize": qty_str(spec, fill.qty) if fill.realized_pnl else qty_str(spec, 0.0),
        "execPnl": fmt(fill.realized_pnl, 8),
        "seq": seq,
    }


# ---------------------------------------------------------------------- account


def position(engine: MatchingEngine, symbol: str, now: int, seq: int = 0) -> Json:
    """One row of ``/v5/position/list`` (also the ``position`` topic's row)."""
    spec = engine.specs[symbol]
    pos = engine.position(symbol)
    mark = engine.marks[symbol]
    size = abs(pos.qty)
    lev = engine.leverage_of(symbol)
    value = size * pos.entry_price
    side_text = "Buy" if pos.qty > 0 else "Sell" if pos.qty < 0 else ""
    return {
        "positionIdx": 0,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": symbol,
        "side": side_text,
        "size": qty_str(spec, size),
        "avgPrice": fmt(pos.entry_price, 8) if size else "0",
        "positionValue": fmt(value, 8) if size else "0",
        "tradeMode": 0,
        "autoAddMargin": 0,
        "positionStatus": "Normal",
        "leverage": str(lev),
        "markPrice": price_str(spec, mark),
        "liqPrice": "",
        "bustPrice": "",
        "positionIM": fmt(size * mark / lev, 8),
        "positionMM": fmt(size * mark * engine.maint_margin_ratio, 8),
        "positionBalance": fmt(size * mark / lev, 8),
        "takeProfit": "0",
        "stopLoss": "0",
        "trailingStop": "0",
        "sessionAvgPrice": "",
        "delta": "",
        "gamma": "",
        "vega": "",
        "theta": "",
        "unrealisedPnl": fmt(pos.qty * (mark - pos.entry_price), 8) if size else "0",
        "curRealisedPnl": fmt(pos.realized_pnl, 8),
        "cumRealisedPnl": fmt(pos.realized_pnl, 8),
        "adlRankIndicator": 2 if size else 0,
        "createdTime": str(pos.update_time or now),
        "updatedTime": str(pos.update_time or now),
        "seq": seq,
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
        "tpslMode": "Full",
        "category": CATEGORY,
    }


def wallet(engine: MatchingEngine) -> Json:
    """The ``UNIFIED`` account of ``/v5/account/wallet-balance`` (USDT only)."""
    acc = engine.account()
    realised = sum(p.realized_pnl for p in engine.positions())
    coin = {
        "coin": "USDT",
        "equity": fmt(acc.margin_balance),
        "usdValue": fmt(acc.margin_balance),
        "walletBalance": fmt(acc.wallet),
        "locked": "0",
        "spotHedgingQty": "0",
        "borrowAmount": "0",
        "accruedInterest": "0",
        "totalOrderIM": "0",
        "totalPositionIM": fmt(acc.initial_margin),
        "totalPositionMM": fmt(acc.maint_margin),
        "unrealisedPnl": fmt(acc.unrealized),
        "cumRealisedPnl": fmt(realised),
        "bonus": "0",
        "marginCollateral": True,
        "collateralSwitch": True,
        "availableToWithdraw": "",
    }
    return {
        "accountType": "UNIFIED",
        "accountIMRate": fmt(
            acc.initial_margin / acc.margin_balance if acc.margin_balance else 0, 4
        ),
        "accountMMRate": fmt(acc.maint_margin / acc.margin_balance if acc.margin_balance else 0, 4),
        "accountLTV": "0",
        "totalEquity": fmt(acc.margin_balance),
        "totalWalletBalance": fmt(acc.wallet),
        "totalMarginBalance": fmt(acc.margin_balance),
        "totalAvailableBalance": fmt(acc.available),
        "totalPerpUPL": fmt(acc.unrealized),
        "totalInitialMargin": fmt(acc.initial_margin),
        "totalMaintenanceMargin": fmt(acc.maint_margin),
        "coin": [coin],
    }
