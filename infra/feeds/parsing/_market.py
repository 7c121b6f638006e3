"""Mark-price frames: ``markPriceUpdate`` (raw, combined or ``!markPrice@arr``) into prices.

Pure (no I/O, no state, never raises); used by :class:`infra.feeds.market.MarkPriceFeed` on its
runner thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.feeds.parsing._common import Refusal, event_seconds, finite_number, loads

__all__ = ["MarkPrice", "parse_mark_prices"]


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """One mark price: exchange symbol id, price, event time in epoch seconds."""

    symbol: str
    price: float
    event_time: float


def _mark_item(item: object) -> MarkPrice | Refusal | None:
    if not isinstance(item, dict):
        return Refusal("unexpected_shape", "array item is not an object")
    if item.get("e") != "markPriceUpdate":
        return None
    sym = item.get("s")
    if not isinstance(sym, str) or not sym:
        return Refusal("missing_symbol")
    price = finite_number(item.get("p"))
    if price is None or price <= 0:
        return Refusal("bad_price", f"{sym}: {str(item.get('p'))[:40]!r}")
    t = event_seconds(item)
    if t is None:
        return Refusal("bad_event_time", sym)
    return MarkPrice(sym, price, t)


def parse_mark_prices(data: bytes | str) -> tuple[list[MarkPrice], list[Refusal]]:
    """The mark prices in one frame, and a refusal per bad item (or for the whole frame).

    Subscription replies (``{"result": null, "id": 1}``) and other event types give two empty
    lists. Reasons: ``malformed_json``, ``unexpected_shape``, ``server_error``,
    ``missing_symbol``, ``bad_price``, ``bad_event_time``.
    """
    try:
        obj = loads(data)
    except ValueError as exc:
        return [], [Refusal("malformed_json", str(exc)[:80])]
    if isinstance(obj, dict):
        if "data" in obj and "stream" in obj:
            obj = obj["data"]
        elif "result" in obj and "id" in obj:
            return [], []
        elif "error" in obj:
            return [], [Refusal("server_error", str(obj.get("error"))[:120])]
    items = obj if isinstance(obj, list) else [obj]
    prices: list[MarkPrice] = []
    bad: list[Refusal] = []
    for item in items:
        r = _mark_item(item)
        if isinstance(r, MarkPrice):
            prices.append(r)
        elif r is not None:
            bad.append(r)
    return prices, bad
