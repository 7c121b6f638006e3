"""Pure translation between ccxt's structures and the port's types (no I/O, no ccxt import).

Who calls: :class:`~infra.exchange.ccxt_adapter.CcxtExchange` (any of its threads; every
function here is pure and thread-safe) and the unit tests, which pin the translation of the
reply shapes the exchange really sends without a ccxt client or a server.

* requests: :func:`order_params` (the ccxt ``params`` of an :class:`OrderRequest`),
  :func:`quantize_qty` (a quantity onto the market's step);
* markets: :func:`rules_of_market` (a ccxt market structure -> :class:`MarketRules`);
* replies: :func:`order_reply` (a ccxt order -> :class:`OrderReply`, the exchange's raw
  fields first), :func:`mismatch` (does an order holding our client id match the request),
  :func:`positions_of` and :func:`open_orders_of` (``fetch_positions`` /
  ``fetch_open_orders`` -> the account view's parts).

Failure: the reply readers never raise for a malformed field (a missing or unreadable
number is ``None`` or 0, as each function states); :func:`order_reply` logs an unreadable
reply and keeps the call's result. :func:`order_params` raises :class:`ValueError` for a
trigger order without a price.
"""

from __future__ import annotations

import decimal
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from actors.messages import CallResult
from actors.model import (
    QTY_EPS,
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    MarketRules,
    OrderKind,
    Side,
)
from actors.ports import OrderReply, OrderRequest
from infra.exchange.venues import Venue

__all__ = [
    "DECIMAL_PLACES",
    "TICK_SIZE",
    "UNIFIED_STATUS",
    "first",
    "mismatch",
    "open_orders_of",
    "order_params",
    "order_reply",
    "positions_of",
    "positive",
    "quantize_qty",
    "rules_of_market",
    "to_float",
    "trigger_price_param",
]

log = logging.getLogger(__name__)

#: ccxt's precision modes (``ccxt.base.decimal_to_precision``), without importing ccxt.
TICK_SIZE = 4
DECIMAL_PLACES = 2
_SNAP = decimal.Decimal(repr(QTY_EPS))

#: ccxt's unified order status -> ours, used when the raw status is missing.
UNIFIED_STATUS: Mapping[str, ExchangeStatus] = {
    "open": ExchangeStatus.NEW,
    "closed": ExchangeStatus.FILLED,
    "canceled": ExchangeStatus.CANCELED,
    "expired": ExchangeStatus.EXPIRED,
    "rejected": ExchangeStatus.REJECTED,
}


def first(info: Mapping[str, Any], fields: Iterable[str]) -> Any:
    """The first of ``fields`` that ``info`` holds with a value other than None or ``""``."""
    for name in fields:
        value = info.get(name)
        if value is not None and value != "":
            return value
    return None


def to_float(value: Any) -> float | None:
    """``value`` as a float; None for None, ``""`` or anything unreadable."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def positive(value: Any) -> float | None:
    """A finite number > 0, or None (ccxt's ``None``, Binance's ``"0"`` for "no limit")."""
    number = to_float(value)
    if number is None or not math.isfinite(number) or number <= 0:
        return None
    return number


def _size(value: Any, precision_mode: int) -> float | None:
    """A ccxt ``precision`` entry as an increment (tick or step size)."""
    if precision_mode == TICK_SIZE:
        return positive(value)
    if precision_mode == DECIMAL_PLACES:
        places = to_float(value)
        return None if places is None else 10.0 ** -round(places)
    return None  # significant digits: no fixed increment


def _at(info: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in nested mappings (None when any step is missing)."""
    for name in path:
        if not isinstance(info, Mapping):
            return None
        info = info.get(name)
    return info


def rules_of_market(
    market: Mapping[str, Any], precision_mode: int, market_max_qty_path: tuple[str, ...] = ()
) -> MarketRules:
    """The :class:`MarketRules` of one ccxt market structure.

    Market orders obey Binance's ``MARKET_LOT_SIZE`` filter, which ccxt exposes only as
    ``limits["market"]`` (bounds) and not at all for the step: the step, minimum and maximum
    quantity come from that filter when it states them (> 0), else from ``LOT_SIZE``
    (``precision["amount"]``, ``limits["amount"]``). ``precision["price"]`` is the tick size
    in ccxt's TICK_SIZE mode (binanceusdm's); a bound of 0 means "none" (Binance publishes
    ``maxPrice: "0"`` for some symbols). ``market_max_qty_path``: where another venue states
    its market-order maximum in the raw market (Bybit: ``lotSizeFilter.maxMktOrderQty``;
    its step and minimum are the plain ones, ``qtyStep`` and ``minOrderQty``).
    """
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    info = market.get("info") or {}
    filters: dict[str, Mapping[str, Any]] = {}
    raw_filters = info.get("filters") if isinstance(info, Mapping) else None
    for f in raw_filters if isinstance(raw_filters, list) else []:
        if isinstance(f, Mapping) and isinstance(f.get("filterType"), str):
            filters[f["filterType"]] = f
    market_lot = filters.get("MARKET_LOT_SIZE", {})
    market_limits = limits.get("market") or {}
    amount_limits = limits.get("amount") or {}
    price_limits = limits.get("price") or {}
    cost_limits = limits.get("cost") or {}
    return MarketRules(
        tick_size=_size(precision.get("price"), precision_mode),
        step_size=positive(market_lot.get("stepSize"))
        or _size(precision.get("amount"), precision_mode),
        min_qty=positive(market_limits.get("min")) or positive(amount_limits.get("min")),
        max_qty=positive(market_limits.get("max"))
        or (positive(_at(info, market_max_qty_path)) if market_max_qty_path else None)
        or positive(amount_limits.get("max")),
        min_notional=positive(cost_limits.get("min")),
        min_price=positive(price_limits.get("min")),
        max_price=positive(price_limits.get("max")),
    )


def quantize_qty(qty: float, step: float) -> decimal.Decimal:
    """``qty`` as a whole number of ``step`` s, never more than asked beyond float noise.

    A quantity within a relative :data:`~actors.model.QTY_EPS` of a whole number of steps
    is that number (``0.7 - 0.4 = 0.29999999999999993`` with step 0.1 is 0.3, not 0.2);
    anything else is truncated (0.35 is 0.3). Exact decimal arithmetic on the shortest
    representation of both floats. ``qty`` and ``step`` must be finite and > 0.
    """
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        q = decimal.Decimal(repr(qty))
        s = decimal.Decimal(repr(step))
        n = q / s
        nearest = n.to_integral_value(rounding=decimal.ROUND_HALF_EVEN)
        if nearest > 0 and abs(n - nearest) <= nearest * _SNAP:
            steps = nearest
        else:
            steps = n.to_integral_value(rounding=decimal.ROUND_FLOOR)
        return (steps * s).normalize() if steps else decimal.Decimal(0)


def trigger_price_param(venue: Venue, kind: OrderKind) -> str:
    """The venue's name of the trigger-price parameter of a ``kind`` order."""
    if kind is not OrderKind.STOP_LOSS:
        raise ValueError(f"a {kind.value} order has no trigger price")
    return venue.stop_loss_param


def order_params(venue: Venue, req: OrderRequest) -> dict[str, Any]:
    """The ccxt ``params`` for ``req`` (exchange-specific names from the venue).

    The trigger price is put in as given (the adapter replaces it with the market's
    rounding). Raises :class:`ValueError` for a trigger order without a price.
    """
    params: dict[str, Any] = {venue.client_id_param: req.client_id}
    if req.kind.trigger:
        if req.trigger_price is None:
            raise ValueError(f"{req.kind.value} order without trigger_price")
        params[trigger_price_param(venue, req.kind)] = req.trigger_price
        params.update(venue.stop_order_params)
        if req.close_position:
            params.update(venue.close_position_params)
        else:
            # A protective order never opens or increases a position.
            params[venue.reduce_only_param] = True
        return params
    params.update(venue.market_order_params)
    if req.reduce_only or req.close_position or req.kind is OrderKind.CLOSE:
        params[venue.reduce_only_param] = True
    return params


def order_reply(
    venue: Venue, result: CallResult, order: Mapping[str, Any], now: Callable[[], float]
) -> OrderReply:
    """An :class:`OrderReply` with ``result`` from a ccxt order structure.

    The exchange's raw fields (``order["info"]``, names from the venue) come first, ccxt's
    unified fields fill what they lack; ``now()`` stamps a reply without an exchange time.
    A malformed reply is logged and gives ``OrderReply(result)``: the call succeeded, an
    unreadable reply must not turn it into UNKNOWN.
    """
    try:
        info = order.get("info") or {}
        raw_status = first(info, venue.status_fields)
        status = venue.normalize_status(None if raw_status is None else str(raw_status))
        if status is None:
            if raw_status is not None:
                log.warning("unknown %s order status %r", venue.name, raw_status)
            status = UNIFIED_STATUS.get(str(order.get("status")))
        filled = to_float(first(info, venue.filled_fields))
        if filled is None:
            filled = to_float(order.get("filled")) or 0.0
        avg = to_float(first(info, venue.avg_price_fields))
        if avg is None or avg <= 0:
            avg = to_float(order.get("average"))
        avg = avg if avg is not None and avg > 0 else None
        oid = first(info, venue.id_fields)
        if oid is None:
            oid = order.get("id")
        ms = to_float(first(info, venue.time_fields))
        event_time = ms / 1000.0 if ms else now()
        return OrderReply(
            result,
            status=status,
            filled_qty=filled,
            avg_price=avg,
            exchange_id=None if oid is None else str(oid),
            event_time=event_time,
        )
    except Exception:
        log.exception("could not read a %s order reply", venue.name)
        return OrderReply(result)


def mismatch(venue: Venue, symbol: str, req: OrderRequest, order: Mapping[str, Any]) -> str:
    """What differs between ``req`` (on unified ``symbol``) and the ccxt ``order`` holding its
    client id: symbol, side and, for a stop, the order type ('' when nothing differs)."""
    info = order.get("info") or {}
    problems: list[str] = []
    if order.get("symbol") != symbol:
        problems.append(f"symbol {order.get('symbol')!r}")
    side = str(order.get("side") or first(info, ("side",)) or "").lower()
    if side != req.side.lower():
        problems.append(f"side {side!r}")
    if req.kind.trigger:
        expected = venue.stop_loss_type
        found_type = str(first(info, venue.order_type_fields) or "").upper()
        if found_type != expected:
            problems.append(f"type {found_type!r}, not {expected!r}")
    return ", ".join(problems)


def positions_of(
    raw: Iterable[Mapping[str, Any]], to_id: Mapping[str, str]
) -> dict[str, ExchangePosition]:
    """Open positions by exchange symbol id from ccxt's ``fetch_positions`` (one-way mode).

    Size is ``contracts x contractSize``; positions of 0, and of symbols ``to_id`` (unified
    -> id) does not know, are left out.
    """
    positions: dict[str, ExchangePosition] = {}
    for p in raw:
        sid = to_id.get(p.get("symbol") or "")
        contracts = to_float(p.get("contracts")) or 0.0
        size = contracts * (to_float(p.get("contractSize")) or 1.0)
        if sid is None or size <= 0:
            continue
        side = Side.SHORT if p.get("side") == "short" else Side.LONG
        positions[sid] = ExchangePosition(side, size, to_float(p.get("entryPrice")) or 0.0)
    return positions


def open_orders_of(
    plain: Iterable[Mapping[str, Any]],
    conditional: Iterable[Mapping[str, Any]],
    to_id: Mapping[str, str],
) -> dict[str, tuple[ExchangeOrder, ...]]:
    """Open orders by exchange symbol id from ccxt's ``fetch_open_orders`` of the plain and
    the conditional (trigger) endpoint, in that order; unknown symbols are left out.

    A ``closePosition`` stop counts as reduce-only.
    """
    orders: dict[str, list[ExchangeOrder]] = {}
    for o, is_trigger in [(o, False) for o in plain] + [(o, True) for o in conditional]:
        sid = to_id.get(o.get("symbol") or "")
        if sid is None:
            continue
        info = o.get("info") or {}
        orders.setdefault(sid, []).append(
            ExchangeOrder(
                client_id=str(o.get("clientOrderId") or ""),
                side=str(o.get("side") or "").lower(),
                qty=to_float(o.get("amount")) or 0.0,
                trigger=is_trigger,
                trigger_price=to_float(o.get("triggerPrice")),
                reduce_only=bool(o.get("reduceOnly"))
                or str(info.get("closePosition")).lower() == "true",
                exchange_id=None if o.get("id") is None else str(o.get("id")),
            )
        )
    return {s: tuple(v) for s, v in orders.items()}
