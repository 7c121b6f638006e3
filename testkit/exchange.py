"""An in-memory :class:`actors.ports.ExchangePort` for unit tests of actors only.

A tiny one-account, one-way futures exchange: market orders fill at the mark price, resting
``closePosition`` stop orders trigger on :meth:`InMemoryExchange.set_price`, reduce-only is
honoured, client ids are unique among *open* orders only (as on Binance). Every order request
is logged so tests can count orders sent twice, and every fill is written to ``executions``
(the exchange's own ledger: which placement of which client id filled, and the symbol's
position before and after), so invariants can be checked against the exchange, not the store.

Knobs (plain attributes, set by the test before or between steps):

* ``gate``: when set to an unset ``threading.Event``, every call blocks until it is set
  (an exchange that takes its time: the actor must not wait, S6);
* ``reject``: per order kind, reasons for the next placements to be rejected;
* ``accept_then_unknown``: the next N orders execute but the reply is UNKNOWN (timeout after
  acceptance);
* ``lose``: the next N orders never arrive; the reply is UNKNOWN;
* ``not_found_lookups``: the next N lookups answer NOT_FOUND even if the order exists;
* ``partial_parts``: market orders fill in this many parts; :meth:`finish_partials` delivers
  the rest;
* ``raise_on_call``: the next N calls raise (a port bug): the worker must map it to UNKNOWN;
* ``events_before_reply``: user-stream events reach the listener before the REST reply (S7);
* ``stream``: False silences the user stream altogether (only replies, lookups, sync);
* ``hold``: per order kind, an unset ``threading.Event``: the order executes on the exchange,
  then the reply waits until the event is set (an order "in flight", S3/S5/S6);
* ``on_place``: called with each request before it executes (tests inspect the store then);
* ``rules``: per symbol, the :class:`~actors.model.MarketRules` that ``fetch_market`` answers
  (default: none); ``market_unknown``: the next N ``fetch_market`` calls answer UNKNOWN.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.messages import CallResult, Message, OrderUpdate, Rejection
from actors.model import (
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    MarketRules,
    OrderKind,
    Side,
)
from actors.ports import AccountView, MarketReply, OrderReply, OrderRequest

__all__ = ["Execution", "FakeOrder", "InMemoryExchange"]


@dataclass(frozen=True)
class Execution:
    """One fill, in the order the exchange made them. ``placement`` tells apart two orders
    under one client id (re-used once the first is no longer open); positions are signed."""

    placement: int
    client_id: str
    kind: OrderKind
    symbol: str
    qty: float
    position_before: float
    position_after: float


@dataclass
class FakeOrder:
    req: OrderRequest
    placement: int = 0
    status: ExchangeStatus = ExchangeStatus.NEW
    filled: float = 0.0
    avg: float | None = None
    pending_parts: list[float] = field(default_factory=list)


class InMemoryExchange:
    def __init__(self, account: str = "main", prices: dict[str, float] | None = None) -> None:
        self.account = account
        self.prices: dict[str, float] = dict(prices or {"BTCUSDT": 100.0})
        self.positions: dict[str, ExchangePosition] = {}
        self.orders: dict[str, FakeOrder] = {}
        self.log: list[OrderRequest] = []
        self.executions: list[Execution] = []
        self.listener: Callable[[Message], object] | None = None
        self._lock = threading.RLock()
        self._clock: Callable[[], float] = time.time
        # knobs
        self.gate: threading.Event | None = None
        self.reject: dict[OrderKind, list[str]] = {}
        self.accept_then_unknown = 0
        self.lose = 0
        self.not_found_lookups = 0
        self.partial_parts = 1
        self.raise_on_call = 0
        self.events_before_reply = True
        self.stream = True
        self.hold: dict[OrderKind, threading.Event] = {}
        self.on_place: Callable[[OrderRequest], None] | None = None
        self.calls_waiting = 0
        self.rules: dict[str, MarketRules] = {}
        self.market_unknown = 0
        self.market_calls = 0

    def use_clock(self, now: Callable[[], float]) -> None:
        self._clock = now

    # -- port ----------------------------------------------------------------------------

    def place_order(self, req: OrderRequest) -> OrderReply:
        self._wait_gate()
        if self.on_place is not None:
            self.on_place(req)
        events: list[OrderUpdate] = []
        with self._lock:
            self.log.append(req)
            self._maybe_raise()
            reasons = self.reject.get(req.kind)
            if reasons:
                reason = reasons.pop(0)
                rejection = Rejection.WOULD_TRIGGER if reason == "would_trigger" else None
                return OrderReply(CallResult.REJECTED, reason, rejection=rejection)
            if self.lose > 0:
                self.lose -= 1
                return OrderReply(CallResult.UNKNOWN, "timeout (lost)")
            existing = self.orders.get(req.client_id)
            if existing is not None and existing.status in ("new", "partially_filled"):
                return self._reply(existing, CallResult.ACCEPTED)  # -4116: already placed
            price = self.prices[req.key.symbol]
            order = FakeOrder(req, placement=len(self.log))
            if req.kind.trigger:
                assert req.trigger_price is not None
                pos = self.positions.get(req.key.symbol)
                long_exit = req.side == "sell"
                crossed = price <= req.trigger_price if long_exit else price >= req.trigger_price
                if crossed:
                    return OrderReply(
                        CallResult.REJECTED, "would_trigger", rejection=Rejection.WOULD_TRIGGER
                    )
                del pos
                self.orders[req.client_id] = order
                events.append(self._event(order))
            else:
                if req.reduce_only and not self._reduces(req):
                    return OrderReply(CallResult.REJECTED, "reduce_only")
                self.orders[req.client_id] = order
                parts = max(1, self.partial_parts)
                first = req.qty / parts
                order.pending_parts = [req.qty / parts] * (parts - 1)
                self._fill(order, first, price, events)
            unknown = self.accept_then_unknown > 0
            if unknown:
                self.accept_then_unknown -= 1
            reply = (
                OrderReply(CallResult.UNKNOWN, "timeout after acceptance")
                if unknown
                else self._reply(order, CallResult.ACCEPTED)
            )
        held = self.hold.get(req.kind)
        if self.events_before_reply:
            self._emit(events)
        if held is not None:
            with self._lock:
                self.calls_waiting += 1
            held.wait(30)
            with self._lock:
                self.calls_waiting -= 1
        if not self.events_before_reply:
            self._emit(events)
        return reply

    def cancel_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        self._wait_gate()
        events: list[OrderUpdate] = []
        with self._lock:
            self._maybe_raise()
            o = self.orders.get(client_id)
            if o is None or o.status not in ("new", "partially_filled"):
                return OrderReply(CallResult.NOT_FOUND, "unknown order")
            o.status = ExchangeStatus.CANCELED
            events.append(self._event(o))
        self._emit(events)
        return OrderReply(CallResult.ACCEPTED, status=ExchangeStatus.CANCELED)

    def lookup_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        self._wait_gate()
        with self._lock:
            self._maybe_raise()
            if self.not_found_lookups > 0:
                self.not_found_lookups -= 1
                return OrderReply(CallResult.NOT_FOUND, "not found (injected)")
            o = self.orders.get(client_id)
            if o is None:
                return OrderReply(CallResult.NOT_FOUND, "Order does not exist.")
            return self._reply(o, CallResult.FOUND)

    def fetch_account(self, account: str) -> AccountView:
        with self._lock:
            now = self._clock()
            opens: dict[str, list[ExchangeOrder]] = {}
            for cid, o in self.orders.items():
                if o.status in ("new", "partially_filled"):
                    opens.setdefault(o.req.key.symbol, []).append(
                        ExchangeOrder(
                            cid, o.req.side, o.req.qty, o.req.kind.trigger, o.req.trigger_price
                        )
                    )
            return AccountView(
                account,
                dict(self.positions),
                {s: tuple(v) for s, v in opens.items()},
                now,
                frozenset(self.prices),
            )

    def fetch_market(self, key: Key) -> MarketReply:
        """The mark price (``prices``) and ``rules`` of the symbol (default: no rules). Not held
        by ``gate`` (which models slow *orders*)."""
        with self._lock:
            self.market_calls += 1
            if self.market_unknown > 0:
                self.market_unknown -= 1
                return MarketReply(CallResult.UNKNOWN, reason="unavailable (injected)")
            price = self.prices.get(key.symbol)
            if price is None:
                return MarketReply(CallResult.REJECTED, reason="bad_symbol")
            rules = self.rules.get(key.symbol, MarketRules())
            return MarketReply(CallResult.FOUND, price, rules, self._clock())

    # -- market ----------------------------------------------------------------------------

    def set_price(self, symbol: str, price: float) -> None:
        """Move the mark price; resting stops that it crosses execute."""
        events: list[OrderUpdate] = []
        with self._lock:
            self.prices[symbol] = price
            for o in list(self.orders.values()):
                r = o.req
                if r.key.symbol != symbol or not r.kind.trigger or o.status != "new":
                    continue
                assert r.trigger_price is not None
                hit = price <= r.trigger_price if r.side == "sell" else price >= r.trigger_price
                if hit:
                    pos = self.positions.get(symbol)
                    qty = pos.qty if pos is not None else 0.0
                    if qty <= 0:
                        o.status = ExchangeStatus.CANCELED
                        events.append(self._event(o))
                        continue
                    self._fill(o, qty, price, events)
        self._emit(events)

    def finish_partials(self) -> None:
        events: list[OrderUpdate] = []
        with self._lock:
            for o in self.orders.values():
                while o.pending_parts:
                    self._fill(o, o.pending_parts.pop(0), self.prices[o.req.key.symbol], events)
        self._emit(events)

    def open_position(self, symbol: str, side: Side, qty: float, price: float) -> None:
        """Put a position on the exchange that nobody here opened (adoption tests)."""
        with self._lock:
            self.positions[symbol] = ExchangePosition(side, qty, price)

    def count(self, client_id: str | None = None, kind: OrderKind | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.log
                if (client_id is None or r.client_id == client_id)
                and (kind is None or r.kind is kind)
            )

    def open_orders(self, symbol: str) -> list[FakeOrder]:
        with self._lock:
            return [
                o
                for o in self.orders.values()
                if o.req.key.symbol == symbol and o.status in ("new", "partially_filled")
            ]

    # -- internals ---------------------------------------------------------------------

    def _wait_gate(self) -> None:
        gate = self.gate
        if gate is not None and not gate.is_set():
            with self._lock:
                self.calls_waiting += 1
            gate.wait(30)
            with self._lock:
                self.calls_waiting -= 1

    def _maybe_raise(self) -> None:
        if self.raise_on_call > 0:
            self.raise_on_call -= 1
            raise RuntimeError("injected exchange adapter bug")

    def _reduces(self, req: OrderRequest) -> bool:
        pos = self.positions.get(req.key.symbol)
        if pos is None or pos.qty <= 0:
            return False
        return req.side == pos.side.exit_side and req.qty <= pos.qty + 1e-12

    def _fill(self, o: FakeOrder, qty: float, price: float, events: list[OrderUpdate]) -> None:
        r = o.req
        sym = r.key.symbol
        pos = self.positions.get(sym)
        signed = qty if r.side == "buy" else -qty
        cur = 0.0 if pos is None else (pos.qty if pos.side is Side.LONG else -pos.qty)
        new = cur + signed
        self.executions.append(
            Execution(
                o.placement, r.client_id, r.kind, sym, qty, cur, 0.0 if abs(new) < 1e-12 else new
            )
        )
        if abs(new) < 1e-12:
            self.positions.pop(sym, None)
        else:
            side = Side.LONG if new > 0 else Side.SHORT
            entry = price if pos is None or (cur > 0) != (new > 0) else pos.entry_price
            if pos is not None and abs(new) > abs(cur) and (cur > 0) == (new > 0):
                entry = (pos.entry_price * abs(cur) + price * qty) / abs(new)
            self.positions[sym] = ExchangePosition(side, abs(new), entry)
        total = o.filled + qty
        o.avg = price if o.avg is None else (o.avg * o.filled + price * qty) / total
        o.filled = total
        done = total >= (r.qty if not r.close_position else qty) - 1e-12 or r.close_position
        o.status = ExchangeStatus.FILLED if done else ExchangeStatus.PARTIALLY_FILLED
        events.append(self._event(o))

    def _event(self, o: FakeOrder) -> OrderUpdate:
        return OrderUpdate(
            o.req.key, o.req.client_id, o.status, o.filled, o.avg, self._clock(), o.req.client_id
        )

    def _reply(self, o: FakeOrder, result: CallResult) -> OrderReply:
        return OrderReply(
            result,
            status=o.status,
            filled_qty=o.filled,
            avg_price=o.avg,
            exchange_id=o.req.client_id,
            event_time=self._clock(),
        )

    def _emit(self, events: list[OrderUpdate]) -> None:
        listener = self.listener
        if listener is None or not self.stream:
            return
        for ev in events:
            listener(ev)
