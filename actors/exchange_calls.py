"""The exchange calls an actor asks for, as the worker pool sees them: their priority, the
port request they become, and the message their reply (or their absence) becomes.

Pure translation, no I/O: :class:`~actors.workers.ExchangeWorkers` calls these on any
thread. See :mod:`actors.workers` for the scheduling the priorities feed.
"""

from __future__ import annotations

from actors.effects import CancelOrder, FetchMarket, LookupOrder, PlaceOrder
from actors.messages import CallOp, CallResult, ExchangeOutcome, MarketInfo, Message, OrderUpdate
from actors.model import OrderKind
from actors.ports import MarketReply, OrderReply, OrderRequest

__all__ = [
    "ENTRY",
    "PROTECT",
    "RESOLVE_ENTRY",
    "ExchangeCall",
    "OrderCall",
    "client_id",
    "is_stop",
    "market_info",
    "op",
    "order_kind",
    "order_outcome",
    "order_request",
    "priority",
    "shutting_down",
    "superseded",
]

ExchangeCall = PlaceOrder | CancelOrder | LookupOrder | FetchMarket
OrderCall = PlaceOrder | CancelOrder | LookupOrder

#: Priorities, lowest runs first.
PROTECT = 0
RESOLVE_ENTRY = 1
ENTRY = 2


def priority(effect: ExchangeCall) -> int:
    """0 for what reduces risk, 1 for resolving an entry (or the reference price an entry
    waits for), 2 for placing an entry."""
    if isinstance(effect, FetchMarket):
        return RESOLVE_ENTRY
    if isinstance(effect, PlaceOrder):
        return ENTRY if effect.order.kind is OrderKind.ENTRY else PROTECT
    if isinstance(effect, CancelOrder):
        return PROTECT
    return RESOLVE_ENTRY if effect.kind is OrderKind.ENTRY else PROTECT


def is_stop(effect: ExchangeCall) -> bool:
    """A stop-loss placement (a newer one of the same position supersedes it in the queue)."""
    return isinstance(effect, PlaceOrder) and effect.order.kind is OrderKind.STOP_LOSS


def client_id(effect: OrderCall) -> str:
    return effect.order.client_id if isinstance(effect, PlaceOrder) else effect.client_id


def order_kind(effect: OrderCall) -> OrderKind:
    return effect.order.kind if isinstance(effect, PlaceOrder) else effect.kind


def op(effect: OrderCall) -> CallOp:
    """The call, in metrics (its value) and outcomes."""
    if isinstance(effect, PlaceOrder):
        return CallOp.PLACE
    if isinstance(effect, CancelOrder):
        return CallOp.CANCEL
    return CallOp.LOOKUP


def order_request(effect: PlaceOrder) -> OrderRequest:
    """The port request that places ``effect``'s order."""
    o = effect.order
    return OrderRequest(
        effect.key,
        o.client_id,
        o.kind,
        o.side,
        o.qty,
        o.trigger_price,
        effect.reduce_only,
        effect.close_position,
    )


def order_outcome(effect: OrderCall, reply: OrderReply) -> ExchangeOutcome:
    """Turn a port reply into the message the actor handles."""
    key, cid = effect.key, client_id(effect)
    update = None
    if reply.status is not None:
        update = OrderUpdate(
            key,
            cid,
            reply.status,
            reply.filled_qty,
            reply.avg_price,
            reply.event_time,
            reply.exchange_id,
        )
    return ExchangeOutcome(
        key,
        op(effect),
        cid,
        order_kind(effect),
        reply.result,
        reply.reason,
        update,
        reply.retry_after,
        reply.rejection,
    )


def market_info(effect: FetchMarket, reply: MarketReply) -> MarketInfo:
    return MarketInfo(
        effect.key, reply.result, reply.mark_price, reply.rules, reply.at, reply.reason
    )


def superseded(effect: PlaceOrder) -> ExchangeOutcome:
    """The answer to a stop-loss placement a newer one replaced before it was sent."""
    return order_outcome(effect, OrderReply(CallResult.REJECTED, "superseded"))


def shutting_down(effect: ExchangeCall) -> Message:
    """The answer to a call the pool will not make because it shuts down (``UNKNOWN``: the
    actor keeps the order for recovery)."""
    if isinstance(effect, FetchMarket):
        return market_info(effect, MarketReply(CallResult.UNKNOWN, reason="shutting_down"))
    return order_outcome(effect, OrderReply(CallResult.UNKNOWN, "shutting_down"))
