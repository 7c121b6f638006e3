"""The simulated exchange of the deterministic simulation: one account, one-way USD-M futures,
with its own ledger and the fault set of "Money safety at the edges".

Who calls: :class:`testkit.dst.world.Simulation` only, on its one thread; the simulated worker
pool makes the port calls (:meth:`SimExchange.call`), the simulated sync reads
:meth:`SimExchange.fetch_account`. Nothing here reads a clock of its own or a global random
source: time is the simulation's ``now`` and every fault is drawn from the ``rng`` it is given,
so a seed replays exactly.

The ledger (:attr:`SimExchange.executions`, :attr:`SimExchange.created`) is the independent
record the invariants are checked against (never the store): every order the exchange created,
every fill, and the net position per symbol. Client ids are unique among *open* orders only
(Binance): a market order sent twice with one id executes twice. ``closePosition`` stops rest
and trigger on price moves; a triggered stop closes whatever the net position is (whoever
opened it), or expires when there is none.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.messages import CallResult, OrderUpdate, Rejection
from actors.model import (
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    MarketRules,
    OrderKind,
    Side,
)
from actors.orders import parse_client_id
from actors.ports import AccountView, MarketReply, OrderReply, OrderRequest

__all__ = ["Execution", "Faults", "SimExchange", "SimOrder"]

EPS = 1e-9
RESTING = ("new", "partially_filled")


@dataclass
class Faults:
    """The exchange's fault rates (0: never). ``on`` False: a quiet exchange (the tail)."""

    on: bool = True
    timeout_after_accept: float = 0.0  # executed, reply UNKNOWN ``timeout``
    unavailable_after_place: float = 0.0  # executed, reply UNKNOWN ``unavailable`` (503)
    lost: float = 0.0  # never reached the exchange, reply UNKNOWN ``network``
    rate_limited: float = 0.0  # 429 on any call, with Retry-After
    partial: float = 0.0  # an entry fills in parts
    stop_reject_place: float = 0.0  # a stop refused at placement (-2021)
    stop_lost: float = 0.0  # a stop placement that never reaches the exchange: UNKNOWN
    stop_reject_trigger: float = 0.0  # a stop refused when it triggers
    margin: float = 0.0  # an entry refused for margin (-2019)
    order_list_lag_s: float = 0.0  # open-order queries lag placement (and cancels)
    fetch_fails: float = 0.0  # the sync's account fetch fails


@dataclass
class SimOrder:
    """One order the exchange created (history kept after it stops resting)."""

    req: OrderRequest
    placed_at: float
    status: str = "new"
    filled: float = 0.0
    avg: float | None = None
    ended_at: float | None = None
    parts: list[float] = field(default_factory=list)
    manual: bool = False
    number: int = 0


@dataclass(frozen=True)
class Execution:
    """One fill on the ledger: ``qty`` signed (+ buys), the net position after it."""

    at: float
    symbol: str
    client_id: str
    qty: float
    price: float
    net_after: float


class SimExchange:
    """The exchange (module docstring). ``emit`` receives each user-stream event as the exchange
    sends it; the simulation decides what the stream does with it (delay, duplicate, drop)."""

    def __init__(
        self,
        account: str,
        prices: dict[str, float],
        rng: random.Random,
        now: Callable[[], float],
        emit: Callable[[OrderUpdate], None],
    ) -> None:
        self.account = account
        self.prices = dict(prices)
        self.rng = rng
        self._now = now
        self._emit = emit
        self.faults = Faults(on=False)
        self.net: dict[str, float] = {s: 0.0 for s in sorted(prices)}
        self.entry_price: dict[str, float] = {}
        self.orders: list[SimOrder] = []  # every order created, in order
        self._by_cid: dict[str, SimOrder] = {}  # the latest order of each client id
        self.open: dict[int, SimOrder] = {}  # resting orders by creation number, in order
        self.executions: list[Execution] = []
        self.created: dict[str, int] = {}  # client id -> orders created with it
        self.requests = 0
        self.placements: list[OrderRequest] = []  # every placement asked for, in order
        self._manual_seq = 0

    # -- the port (called by the simulated worker pool) ------------------------------------

    def _draw(self, p: float) -> bool:
        return self.faults.on and p > 0 and self.rng.random() < p

    def _limited(self) -> float | None:
        if self._draw(self.faults.rate_limited):
            return round(self.rng.choice((0.5, 1.0, 2.0)), 3)
        return None

    def place_order(self, req: OrderRequest) -> OrderReply:
        self.requests += 1
        self.placements.append(req)
        wait = self._limited()
        if wait is not None:
            return OrderReply(CallResult.REJECTED, "rate_limited", retry_after=wait)
        if self._draw(self.faults.lost) or (req.kind.trigger and self._draw(self.faults.stop_lost)):
            return OrderReply(CallResult.UNKNOWN, "network")
        existing = self._by_cid.get(req.client_id)
        if existing is not None and existing.status in RESTING:
            return self._reply(existing, CallResult.ACCEPTED, "duplicate")
        sym = req.key.symbol
        price = self.prices[sym]
        if req.kind is OrderKind.ENTRY and self._draw(self.faults.margin):
            return OrderReply(CallResult.REJECTED, "insufficient_funds")
        if req.kind.trigger:
            assert req.trigger_price is not None
            crossed = (
                price <= req.trigger_price if req.side == "sell" else price >= req.trigger_price
            )
            if crossed or self._draw(self.faults.stop_reject_place):
                return OrderReply(
                    CallResult.REJECTED, "would_trigger", rejection=Rejection.WOULD_TRIGGER
                )
            order = self._create(req)
            self._event(order)
        else:
            if req.reduce_only and not self._reduces(req):
                return OrderReply(CallResult.REJECTED, "reduce_only")
            order = self._create(req)
            qty = req.qty
            if req.kind is OrderKind.ENTRY and self._draw(self.faults.partial):
                n = self.rng.choice((2, 3))
                qty = req.qty / n
                order.parts = [req.qty / n] * (n - 1)
            self._fill(order, qty, price)
        if self._draw(self.faults.timeout_after_accept):
            return OrderReply(CallResult.UNKNOWN, "timeout")
        if self._draw(self.faults.unavailable_after_place):
            return OrderReply(CallResult.UNKNOWN, "unavailable")
        return self._reply(order, CallResult.ACCEPTED)

    def cancel_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        self.requests += 1
        wait = self._limited()
        if wait is not None:
            return OrderReply(CallResult.UNKNOWN, "rate_limited", retry_after=wait)
        if self._draw(self.faults.lost):
            return OrderReply(CallResult.UNKNOWN, "network")
        o = self._by_cid.get(client_id)
        if o is None or o.status not in RESTING:
            return OrderReply(CallResult.NOT_FOUND, "unknown order")
        self._end(o, "canceled")
        return self._reply(o, CallResult.ACCEPTED)

    def lookup_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        self.requests += 1
        wait = self._limited()
        if wait is not None:
            return OrderReply(CallResult.UNKNOWN, "rate_limited", retry_after=wait)
        o = self._by_cid.get(client_id)
        if o is None:
            return OrderReply(CallResult.NOT_FOUND, "Order does not exist.")
        return self._reply(o, CallResult.FOUND)

    def fetch_market(self, key: Key) -> MarketReply:
        self.requests += 1
        wait = self._limited()
        if wait is not None:
            return MarketReply(CallResult.UNKNOWN, reason="rate_limited", retry_after=wait)
        price = self.prices.get(key.symbol)
        if price is None:
            return MarketReply(CallResult.REJECTED, reason="bad_symbol")
        return MarketReply(CallResult.FOUND, price, MarketRules(), self._now())

    def fetch_account(self, account: str) -> AccountView:
        """Positions now; open orders as of ``order_list_lag_s`` ago (a lagging list).
        Raises (the sync's "no observation this round") at the ``fetch_fails`` rate."""
        if self._draw(self.faults.fetch_fails):
            raise ConnectionError("simulated: account fetch failed")
        now = self._now()
        seen_at = now - (self.faults.order_list_lag_s if self.faults.on else 0.0)
        opens: dict[str, list[ExchangeOrder]] = {}
        for o in self.orders:
            if o.placed_at > seen_at:
                continue
            if o.status not in RESTING and (o.ended_at is None or o.ended_at <= seen_at):
                continue
            r = o.req
            opens.setdefault(r.key.symbol, []).append(
                ExchangeOrder(
                    r.client_id,
                    r.side,
                    r.qty,
                    r.kind.trigger,
                    r.trigger_price,
                    r.reduce_only,
                    r.client_id,
                )
            )
        positions = {
            s: ExchangePosition(
                Side.LONG if q > 0 else Side.SHORT, abs(q), self.entry_price.get(s, 0.0)
            )
            for s, q in self.net.items()
            if abs(q) > EPS
        }
        return AccountView(
            account,
            positions,
            {s: tuple(v) for s, v in sorted(opens.items())},
            now,
            frozenset(self.prices),
        )

    # -- the market and the account's other users ----------------------------------------

    def set_price(self, symbol: str, price: float) -> None:
        """Move the mark price: resting stops it crosses trigger (and may be refused then)."""
        self.prices[symbol] = price
        for o in self.resting(symbol):
            r = o.req
            if not r.kind.trigger:
                continue
            assert r.trigger_price is not None
            hit = price <= r.trigger_price if r.side == "sell" else price >= r.trigger_price
            if not hit:
                continue
            net = self.net[symbol]
            reduces = (net > EPS and r.side == "sell") or (net < -EPS and r.side == "buy")
            if not reduces:
                self._end(o, "expired")
            elif self._draw(self.faults.stop_reject_trigger):
                self._end(o, "rejected")
            else:
                self._fill(o, abs(net), price)

    def finish_parts(self) -> bool:
        """The next part of a partly filled order fills. False when none waits."""
        for o in self.open.values():
            if o.parts:
                self._fill(o, o.parts.pop(0), self.prices[o.req.key.symbol])
                return True
        return False

    def manual_trade(self, symbol: str, flatten: bool, side: Side, qty: float) -> str:
        """Someone trades the account by hand (not one of our client ids): flatten the symbol,
        or open / add to a position. Returns the client id used."""
        self._manual_seq += 1
        cid = f"manual{self._manual_seq}"
        net = self.net[symbol]
        if flatten:
            if abs(net) <= EPS:
                return cid
            side_s, q = ("sell" if net > 0 else "buy"), abs(net)
        else:
            side_s, q = side.entry_side, qty
        req = OrderRequest(Key(self.account, symbol), cid, OrderKind.CLOSE, side_s, q)
        o = self._create(req)
        o.manual = True
        self._fill(o, q, self.prices[symbol])
        return cid

    # -- reading ------------------------------------------------------------------------

    def resting(self, symbol: str | None = None) -> list[SimOrder]:
        return [o for o in self.open.values() if symbol is None or o.req.key.symbol == symbol]

    def order(self, client_id: str) -> SimOrder | None:
        return self._by_cid.get(client_id)

    # -- internals ---------------------------------------------------------------------

    def _create(self, req: OrderRequest) -> SimOrder:
        o = SimOrder(req, self._now(), number=len(self.orders))
        self.orders.append(o)
        self.open[o.number] = o
        self._by_cid[req.client_id] = o
        self.created[req.client_id] = self.created.get(req.client_id, 0) + 1
        return o

    def _end(self, o: SimOrder, status: str) -> None:
        o.status = status
        o.ended_at = self._now()
        self.open.pop(o.number, None)
        o.parts.clear()
        self._event(o)

    def _reduces(self, req: OrderRequest) -> bool:
        net = self.net[req.key.symbol]
        if abs(net) <= EPS:
            return False
        return (net > 0 and req.side == "sell") or (net < 0 and req.side == "buy")

    def _fill(self, o: SimOrder, qty: float, price: float) -> None:
        r = o.req
        sym = r.key.symbol
        cur = self.net[sym]
        if r.reduce_only or r.close_position:
            qty = min(qty, abs(cur))
        signed = qty if r.side == "buy" else -qty
        new = cur + signed
        if abs(new) <= EPS:
            new = 0.0
            self.entry_price.pop(sym, None)
        elif abs(cur) <= EPS or (cur > 0) != (new > 0):
            self.entry_price[sym] = price
        elif abs(new) > abs(cur):
            self.entry_price[sym] = (self.entry_price[sym] * abs(cur) + price * qty) / abs(new)
        self.net[sym] = new
        total = o.filled + qty
        o.avg = price if o.avg is None or total <= EPS else (o.avg * o.filled + price * qty) / total
        o.filled = total
        self.executions.append(Execution(self._now(), sym, r.client_id, signed, price, new))
        done = r.close_position or total >= r.qty - 1e-9 or not o.parts
        if done:
            o.parts.clear()
            self._end(o, "filled")
        else:
            o.status = "partially_filled"
            self._event(o)

    def _event(self, o: SimOrder) -> None:
        if o.manual or parse_client_id(o.req.client_id) is None:
            return
        r = o.req
        self._emit(
            OrderUpdate(
                r.key,
                r.client_id,
                ExchangeStatus(o.status),
                o.filled,
                o.avg,
                self._now(),
                r.client_id,
            )
        )

    def _reply(self, o: SimOrder, result: CallResult, reason: str = "") -> OrderReply:
        return OrderReply(
            result,
            reason,
            status=ExchangeStatus(o.status),
            filled_qty=o.filled,
            avg_price=o.avg,
            exchange_id=o.req.client_id,
            event_time=self._now(),
        )
