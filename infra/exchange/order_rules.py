"""An order request onto the market's rules, before anything is sent.

Who calls: :meth:`~infra.exchange.ccxt_adapter.CcxtExchange.place_order`, on the calling
worker thread, with that thread's ccxt client (whose ``amount_to_precision`` and
``price_to_precision`` do the market's rounding; no request leaves from here).

Failure: a request the rules refuse raises :class:`Refusal` (``invalid:amount`` /
``invalid:price``): the adapter answers REJECTED without sending. Any other exception (ccxt's
``decimal`` errors for an absurd price on a market without a price bound) propagates: a local
failure, never an unknown outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ccxt

from actors.model import QTY_EPS, MarketRules
from actors.ports import OrderRequest
from infra.exchange.errors import Reason
from infra.exchange.translate import order_params, quantize_qty, trigger_price_param
from infra.exchange.venues import Venue

__all__ = ["Refusal", "amount_on_rules", "price_on_rules", "request_on_rules"]


class Refusal(Exception):
    """A request the market's rules refuse; raised before anything is sent."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _rounded(
    to_precision: Callable[[str, float], object],
    symbol: str,
    value: float,
    reason: Reason,
    what: str,
) -> tuple[str, float]:
    """``value`` through ccxt's ``amount_to_precision`` / ``price_to_precision`` (text and
    number); a result of zero (ccxt raises ``InvalidOrder`` for it) is a :class:`Refusal`."""
    try:
        text = str(to_precision(symbol, value))
    except ccxt.InvalidOrder:  # rounded to zero
        raise Refusal(reason, f"{what} rounds to zero on this market") from None
    number = float(text)
    if not number > 0:
        raise Refusal(reason, f"{what} rounds to {text}")
    return text, number


def amount_on_rules(client: Any, symbol: str, qty: float, rules: MarketRules) -> float:
    """``qty`` on the market's step, checked against its bounds (raises :class:`Refusal`).

    :func:`~infra.exchange.translate.quantize_qty` on the market-order step, then ccxt's
    ``amount_to_precision`` (which truncates); the result is never more than asked (beyond
    float noise).
    """
    if not math.isfinite(qty) or qty <= 0:
        raise Refusal(Reason.INVALID_AMOUNT, f"quantity {qty!r} is not a positive number")
    if rules.max_qty is not None and qty > rules.max_qty * (1.0 + QTY_EPS):
        raise Refusal(Reason.INVALID_AMOUNT, f"quantity {qty!r} above max {rules.max_qty}")
    snapped = quantize_qty(qty, rules.step_size) if rules.step_size else None
    if snapped is not None and snapped <= 0:
        raise Refusal(
            Reason.INVALID_AMOUNT, f"quantity {qty!r} is below one step {rules.step_size}"
        )
    text, amount = _rounded(
        client.amount_to_precision,
        symbol,
        qty if snapped is None else float(snapped),
        Reason.INVALID_AMOUNT,
        f"quantity {qty!r}",
    )
    if rules.min_qty is not None and amount < rules.min_qty * (1.0 - QTY_EPS):
        raise Refusal(Reason.INVALID_AMOUNT, f"quantity {qty!r} ({text}) below min {rules.min_qty}")
    if rules.max_qty is not None and amount > rules.max_qty * (1.0 + QTY_EPS):
        raise Refusal(Reason.INVALID_AMOUNT, f"quantity {qty!r} ({text}) above max {rules.max_qty}")
    return amount


def price_on_rules(client: Any, symbol: str, price: float | None, rules: MarketRules) -> str:
    """``price`` on the market's tick (ccxt's ``price_to_precision``), within its bounds.

    Raises :class:`Refusal`; a price the bounds cannot judge (no ``max_price`` stated) may
    still make ccxt raise (``decimal`` errors for absurd values): a local failure.
    """
    if price is None or not math.isfinite(price) or price <= 0:
        raise Refusal(Reason.INVALID_PRICE, f"price {price!r} is not a positive number")
    if rules.max_price is not None and price > rules.max_price:
        raise Refusal(Reason.INVALID_PRICE, f"price {price!r} above max {rules.max_price}")
    text, rounded = _rounded(
        client.price_to_precision, symbol, price, Reason.INVALID_PRICE, f"price {price!r}"
    )
    if rules.min_price is not None and rounded < rules.min_price:
        raise Refusal(Reason.INVALID_PRICE, f"price {price!r} ({text}) below min")
    if rules.max_price is not None and rounded > rules.max_price:
        raise Refusal(Reason.INVALID_PRICE, f"price {price!r} ({text}) above max")
    return text


def request_on_rules(
    venue: Venue, client: Any, symbol: str, req: OrderRequest, rules: MarketRules
) -> tuple[float | None, dict[str, Any]]:
    """The amount and params ccxt gets for ``req``, on the market's rules.

    A ``closePosition`` stop sends the venue's ``close_position_amount`` (none on Binance, 0
    on Bybit: the exchange closes whatever is open), so its ``qty`` is not checked. Raises
    :class:`Refusal`.
    """
    try:
        params = order_params(venue, req)
    except ValueError as exc:
        raise Refusal(Reason.INVALID_PRICE, str(exc)) from None
    if req.kind.trigger:
        params[trigger_price_param(venue, req.kind)] = price_on_rules(
            client, symbol, req.trigger_price, rules
        )
        if req.close_position:
            return venue.close_position_amount, params
    return amount_on_rules(client, symbol, req.qty, rules), params
