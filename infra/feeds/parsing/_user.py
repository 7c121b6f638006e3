"""User-data-stream frames: order, algo and account updates, listen-key expiry, into events.

Pure (no I/O, no state, never raises); used by :class:`infra.feeds.user_stream.UserDataStream`
on its runner thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.model import ExchangeStatus
from infra.feeds.parsing._common import Refusal, event_seconds, finite_number, loads

__all__ = [
    "AccountEvent",
    "ListenKeyExpired",
    "OrderEvent",
    "OtherEvent",
    "UserEvent",
    "parse_user_event",
]


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order report: ``ORDER_TRADE_UPDATE`` (``algo=False``) or ``ALGO_UPDATE``.

    ``status`` is normalised (``expired_in_match`` is reported as ``expired``; an algo order
    ``finished`` without an executed quantity as ``expired``; ``None``: a status we do not
    know, which no order of ours acts on); ``filled_qty`` is cumulative;
    ``avg_price`` is ``None`` while nothing filled. For an algo order ``order_id`` is the
    algo id and ``actual_order_id`` the id of the market order it became once triggered.
    """

    symbol: str
    client_id: str
    status: ExchangeStatus | None
    filled_qty: float
    avg_price: float | None
    event_time: float
    order_id: str | None
    algo: bool = False
    actual_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """``ACCOUNT_UPDATE``: its reason (``a.m``) and the symbols whose position changed."""

    reason: str
    symbols: tuple[str, ...]
    event_time: float


@dataclass(frozen=True, slots=True)
class ListenKeyExpired:
    """``listenKeyExpired``: the stream ends; connect again with a new key."""

    event_time: float


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event type the supervisor does not use (``MARGIN_CALL``, ``TRADE_LITE`` …)."""

    event: str


UserEvent = OrderEvent | AccountEvent | ListenKeyExpired | OtherEvent


def _id(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


_ORDER_FIELDS = {"ORDER_TRADE_UPDATE": ("c", "z", "i"), "ALGO_UPDATE": ("caid", "aq", "aid")}
"""The field names of an order report, by event: client id, filled quantity, exchange id."""


def _order_update(ev: Mapping[str, Any], t: float, kind: str) -> OrderEvent | Refusal:
    """An order report of either kind (:data:`_ORDER_FIELDS`), checked alike. An algo update
    reads a null or empty quantity or price as 0, reports ``finished`` without an executed
    quantity as ``expired`` and carries the id of the order it became (``ai``); an order
    update reports ``expired_in_match`` as ``expired``."""
    algo = kind == "ALGO_UPDATE"
    cid_key, filled_key, id_key = _ORDER_FIELDS[kind]
    o = ev.get("o")
    if not isinstance(o, dict):
        return Refusal("unexpected_shape", f"{kind} without o")
    sym, cid, status = o.get("s"), o.get(cid_key), o.get("X")
    if not isinstance(sym, str) or not sym:
        return Refusal("missing_symbol")
    if not isinstance(cid, str) or not cid:
        return Refusal("missing_client_id", sym)
    if not isinstance(status, str) or not status:
        return Refusal("missing_status", sym)
    raw_filled, raw_avg = o.get(filled_key, "0"), o.get("ap", "0")
    if algo:
        raw_filled, raw_avg = raw_filled or "0", raw_avg or "0"
    filled = finite_number(raw_filled)
    if filled is None or filled < 0:
        return Refusal("bad_quantity", sym)
    avg = finite_number(raw_avg)
    if avg is None or avg < 0:
        return Refusal("bad_price", sym)
    st = status.lower()
    if algo:
        if st == "finished" and filled <= 0:
            st = "expired"  # triggered, but its market order executed nothing
    elif st == "expired_in_match":
        st = "expired"
    actual = _id(o.get("ai")) if algo else None
    status_ = ExchangeStatus.parse(st)
    return OrderEvent(sym, cid, status_, filled, avg or None, t, _id(o.get(id_key)), algo, actual)


def _account_update(ev: Mapping[str, Any], t: float) -> AccountEvent | Refusal:
    a = ev.get("a")
    if not isinstance(a, dict):
        return Refusal("unexpected_shape", "ACCOUNT_UPDATE without a")
    reason = a.get("m")
    rows = a.get("P") or []
    if not isinstance(rows, list):
        return Refusal("unexpected_shape", "ACCOUNT_UPDATE P is not a list")
    symbols = tuple(
        r["s"] for r in rows if isinstance(r, dict) and isinstance(r.get("s"), str) and r["s"]
    )
    return AccountEvent(reason if isinstance(reason, str) else "", symbols, t)


def parse_user_event(data: bytes | str) -> UserEvent | Refusal:
    """One user-data-stream frame (raw or in a combined-stream envelope).

    Reasons: ``malformed_json``, ``unexpected_shape``, ``bad_event_time``, ``missing_symbol``,
    ``missing_client_id``, ``missing_status``, ``bad_quantity``, ``bad_price``.
    """
    try:
        ev = loads(data)
    except ValueError as exc:
        return Refusal("malformed_json", str(exc)[:80])
    if isinstance(ev, dict) and "data" in ev and "stream" in ev:
        ev = ev["data"]
    if not isinstance(ev, dict):
        return Refusal("unexpected_shape", "not an object")
    kind = ev.get("e")
    if not isinstance(kind, str):
        if "result" in ev and "id" in ev:
            return OtherEvent("subscription_reply")
        return Refusal("unexpected_shape", "no event type")
    t = event_seconds(ev)
    if t is None:
        return Refusal("bad_event_time", kind[:40])
    if kind in _ORDER_FIELDS:
        return _order_update(ev, t, kind)
    if kind == "ACCOUNT_UPDATE":
        return _account_update(ev, t)
    if kind == "listenKeyExpired":
        return ListenKeyExpired(t)
    return OtherEvent(kind[:40])
