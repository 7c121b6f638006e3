"""Bybit v5 stream frames: private ``order`` / ``execution`` / ``position`` / ``wallet``
messages, public ``tickers.<symbol>`` messages, and the replies to our requests.

Pure (no I/O, no state, never raises); used by :class:`infra.feeds.bybit_user.BybitUserStream`
and :class:`infra.feeds.bybit_market.BybitTickers` on their runner threads. Private rows become
the events of :mod:`infra.feeds.parsing._user`, so the Bybit stream delivers what the Binance
one does:

* an ``order`` row of category ``linear`` → :class:`OrderEvent` (client id ``orderLinkId``,
  status ``orderStatus`` normalised by :data:`ORDER_STATUS`, cumulative filled ``cumExecQty``,
  average price ``avgPrice``, exchange id ``orderId``; ``algo`` for a conditional order,
  ``stopOrderType`` set). A conditional order keeps its ``orderId`` and ``orderLinkId`` from
  placement to fill (``Untriggered`` → ``Triggered`` → ``Filled``): no linking as on Binance;
* an order the exchange made to liquidate, deleverage or close the account's position
  (``createType`` ``CreateByLiq``, ``CreateByAdl…``, ``CreateByTakeOver…``,
  ``CreateByAdminClosing`` …), an ``execution`` of such a kind
  (``AdlTrade``, ``BustTrade``, ``Delivery``, ``Settle``, ``MovePosition``) and a ``position``
  row whose ``positionStatus`` is not ``Normal`` → :class:`AccountEvent` (a sync of the
  account, as Binance's ``ACCOUNT_UPDATE`` with a reason other than ``ORDER``);
* an order row without ``orderLinkId`` (placed by hand), of another category, ordinary
  executions, positions and wallets → :class:`OtherEvent` (nothing to deliver: the ``order``
  row carries the cumulative state of every fill).

Reasons of the refusals: ``malformed_json``, ``unexpected_shape``, ``unknown_topic``,
``bad_event_time``, ``missing_symbol``, ``missing_status``, ``bad_quantity``, ``bad_price``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.model import ExchangeStatus
from infra.feeds.parsing._common import Refusal, finite_number, loads
from infra.feeds.parsing._user import AccountEvent, OrderEvent, OtherEvent, UserEvent

__all__ = [
    "MAX_NUMBER",
    "ORDER_STATUS",
    "OpReply",
    "TickerUpdate",
    "parse_bybit_private",
    "parse_bybit_ticker",
]

ORDER_STATUS: Mapping[str, ExchangeStatus] = {
    "Created": ExchangeStatus.NEW,
    "New": ExchangeStatus.NEW,
    "Untriggered": ExchangeStatus.NEW,
    "Triggered": ExchangeStatus.TRIGGERED,
    "Active": ExchangeStatus.TRIGGERED,
    "PartiallyFilled": ExchangeStatus.PARTIALLY_FILLED,
    "Filled": ExchangeStatus.FILLED,
    "Cancelled": ExchangeStatus.CANCELED,
    "PartiallyFilledCanceled": ExchangeStatus.CANCELED,
    "Deactivated": ExchangeStatus.CANCELED,
    "Rejected": ExchangeStatus.REJECTED,
}
"""Bybit's ``orderStatus`` → the state machine's status. ``Untriggered``: a conditional order
resting; ``Triggered`` / ``Active``: it triggered and rests on as an order; ``Deactivated``:
cancelled before it triggered. A status not listed is ``None`` (nothing acts on it)."""

_EXCHANGE_ORDERS = (
    "CreateByLiq",
    "CreateByAdl",
    "CreateByTakeOver",
    "CreateByAdminClosing",
    "CreateBySettle",
    "CreateByMmRateClose",
)
"""``createType`` prefixes of orders the exchange places on the account (liquidation, ADL,
takeover, admin close, settlement, MM-rate close): sync the account."""

_EXCHANGE_EXECUTIONS = frozenset({"AdlTrade", "BustTrade", "Delivery", "Settle", "MovePosition"})
"""``execType`` values that move a position without an order of ours: sync the account."""

_TOPICS = frozenset({"order", "execution", "position", "wallet"})

MAX_NUMBER = 1e15
"""No price or quantity of a USDT perpetual comes near it: a bigger one is refused."""


@dataclass(frozen=True, slots=True)
class OpReply:
    """The answer to one of our requests (``auth``, ``subscribe``, ``ping`` …).

    ``op`` is the request's op (``pong`` for the private stream's ping answer, ``""`` when the
    server could not read the request); ``message`` Bybit's ``ret_msg``, cut short."""

    op: str
    success: bool
    message: str = ""
    req_id: str | None = None


@dataclass(frozen=True, slots=True)
class TickerUpdate:
    """One ``tickers.<symbol>`` message: a ``snapshot`` or a ``delta``; ``mark`` is ``None``
    when the message does not carry ``markPrice`` (a delta: unchanged)."""

    symbol: str
    snapshot: bool
    mark: float | None
    event_time: float


def _ms(value: object) -> float | None:
    """Epoch milliseconds (a positive integer, or its decimal string) in seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit() and len(value) <= 16:
        value = int(value)
    if isinstance(value, int) and 0 < value < 10**16:
        return value / 1000.0
    return None


def _op_reply(obj: Mapping[str, Any]) -> OpReply | None:
    """The reply in ``obj``, or ``None`` when it is a data message."""
    if "topic" in obj:
        return None
    op = obj.get("op")
    if "success" not in obj and op != "pong":
        return None
    req_id = obj.get("req_id")
    msg = obj.get("ret_msg")
    return OpReply(
        op if isinstance(op, str) else "",
        op == "pong" or obj.get("success") is True,
        msg[:120] if isinstance(msg, str) else "",
        str(req_id)[:64]
        if isinstance(req_id, str | int) and not isinstance(req_id, bool)
        else None,
    )


def _number(raw: object, *, empty_is_zero: bool = True) -> float | None:
    """A non-negative finite number; ``""`` (Bybit's "no value") is 0."""
    if raw == "" and empty_is_zero:
        return 0.0
    x = finite_number(raw)
    return x if x is not None and 0 <= x < MAX_NUMBER else None


def _order(row: Mapping[str, Any], t: float | None) -> UserEvent | Refusal:
    sym = row.get("symbol")
    if not isinstance(sym, str) or not sym:
        return Refusal("missing_symbol")
    category = row.get("category", "linear")
    if category != "linear":
        return OtherEvent(f"order:{str(category)[:16]}")
    create = row.get("createType")
    if isinstance(create, str) and create.startswith(_EXCHANGE_ORDERS):
        return AccountEvent(create[:40], (sym,), t or 0.0)
    cid = row.get("orderLinkId")
    if not isinstance(cid, str) or not cid:
        return OtherEvent("order_without_link_id")
    status = row.get("orderStatus")
    if not isinstance(status, str) or not status:
        return Refusal("missing_status", sym)
    row_t = _ms(row.get("updatedTime")) or t
    if row_t is None:
        return Refusal("bad_event_time", sym)
    filled = _number(row.get("cumExecQty", "0"))
    if filled is None:
        return Refusal("bad_quantity", f"{sym}: {str(row.get('cumExecQty'))[:40]!r}")
    avg = _number(row.get("avgPrice", ""))
    if avg is None:
        return Refusal("bad_price", f"{sym}: {str(row.get('avgPrice'))[:40]!r}")
    stop_type = row.get("stopOrderType")
    algo = isinstance(stop_type, str) and stop_type not in ("", "UNKNOWN")
    order_id = row.get("orderId")
    return OrderEvent(
        sym,
        cid,
        ORDER_STATUS.get(status),
        filled,
        avg or None,
        row_t,
        order_id if isinstance(order_id, str) and order_id else None,
        algo,
    )


def _execution(row: Mapping[str, Any], t: float | None) -> UserEvent | Refusal:
    sym = row.get("symbol")
    if not isinstance(sym, str) or not sym:
        return Refusal("missing_symbol")
    kind = row.get("execType")
    if isinstance(kind, str) and kind in _EXCHANGE_EXECUTIONS:
        return AccountEvent(kind, (sym,), _ms(row.get("execTime")) or t or 0.0)
    return OtherEvent("execution")


def _position(row: Mapping[str, Any], t: float | None) -> UserEvent | Refusal:
    sym = row.get("symbol")
    if not isinstance(sym, str) or not sym:
        return Refusal("missing_symbol")
    status = row.get("positionStatus", "Normal")
    if isinstance(status, str) and status not in ("Normal", ""):
        return AccountEvent(
            f"position {status[:24]}", (sym,), _ms(row.get("updatedTime")) or t or 0.0
        )
    return OtherEvent("position")


_ROWS = {"order": _order, "execution": _execution, "position": _position}


def parse_bybit_private(data: bytes | str) -> tuple[list[UserEvent | OpReply], list[Refusal]]:
    """The events of one private-stream frame (one per row) and a refusal per bad row (or
    for the whole frame). A reply to a request is one :class:`OpReply`."""
    try:
        obj = loads(data)
    except ValueError as exc:
        return [], [Refusal("malformed_json", str(exc)[:80])]
    if not isinstance(obj, dict):
        return [], [Refusal("unexpected_shape", "not an object")]
    reply = _op_reply(obj)
    if reply is not None:
        return [reply], []
    topic = obj.get("topic")
    if not isinstance(topic, str):
        return [], [Refusal("unexpected_shape", "no topic")]
    if topic not in _TOPICS:
        return [], [Refusal("unknown_topic", repr(topic[:40]))]
    rows = obj.get("data")
    if not isinstance(rows, list):
        return [], [Refusal("unexpected_shape", f"{topic} data is not a list")]
    t = _ms(obj.get("creationTime"))
    parse = _ROWS.get(topic)
    if parse is None:
        return [OtherEvent(topic)], []
    events: list[UserEvent | OpReply] = []
    bad: list[Refusal] = []
    for row in rows:
        r = parse(row, t) if isinstance(row, dict) else Refusal("unexpected_shape", "row")
        if isinstance(r, Refusal):
            bad.append(r)
        else:
            events.append(r)
    return events, bad


def parse_bybit_ticker(data: bytes | str) -> TickerUpdate | OpReply | Refusal:
    """One public-stream frame: a ``tickers.<symbol>`` message or a reply.

    ``markPrice`` absent or ``""`` gives ``mark=None``; present, it must be a finite number
    > 0 and under :data:`MAX_NUMBER` (``bad_price``). ``ts`` is the event time
    (``bad_event_time``)."""
    try:
        obj = loads(data)
    except ValueError as exc:
        return Refusal("malformed_json", str(exc)[:80])
    if not isinstance(obj, dict):
        return Refusal("unexpected_shape", "not an object")
    reply = _op_reply(obj)
    if reply is not None:
        return reply
    topic = obj.get("topic")
    if not isinstance(topic, str):
        return Refusal("unexpected_shape", "no topic")
    if not topic.startswith("tickers."):
        return Refusal("unknown_topic", repr(topic[:40]))
    kind = obj.get("type")
    if kind not in ("snapshot", "delta"):
        return Refusal("unexpected_shape", f"type {str(kind)[:16]!r}")
    row = obj.get("data")
    if not isinstance(row, dict):
        return Refusal("unexpected_shape", "data is not an object")
    sym = topic[len("tickers.") :]
    if not sym or row.get("symbol", sym) != sym:
        return Refusal("missing_symbol", repr(topic[:40]))
    t = _ms(obj.get("ts"))
    if t is None:
        return Refusal("bad_event_time", sym)
    raw = row.get("markPrice")
    mark: float | None = None
    if raw is not None and raw != "":
        mark = finite_number(raw)
        if mark is None or not 0 < mark < MAX_NUMBER:
            return Refusal("bad_price", f"{sym}: {str(raw)[:40]!r}")
    return TickerUpdate(sym, kind == "snapshot", mark, t)
