"""The bounded per-account worker pool that runs exchange calls for the actors (I4, S6).

An actor never waits on the exchange: it hands an effect to :meth:`ExchangeWorkers.submit`
and returns to its mailbox. A worker thread makes the blocking call and the outcome comes back
to the actor as an :class:`~actors.messages.ExchangeOutcome` through ``deliver`` (the router,
so that an outcome reaches a restarted actor too).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from actors.effects import CancelOrder, LookupOrder, PlaceOrder
from actors.messages import CallResult, ExchangeOutcome, Message, OrderUpdate
from actors.model import Key
from actors.ports import ExchangePort, Metrics, NullMetrics, OrderReply, OrderRequest

__all__ = ["ExchangeWorkers", "outcome_from_reply"]

log = logging.getLogger(__name__)


def outcome_from_reply(
    op: str,
    key: Key,
    client_id: str,
    kind_effect: PlaceOrder | CancelOrder | LookupOrder,
    reply: OrderReply,
) -> ExchangeOutcome:
    """Turn a port reply into the message the actor handles."""
    kind = kind_effect.order.kind if isinstance(kind_effect, PlaceOrder) else kind_effect.kind
    update = None
    if reply.status is not None:
        update = OrderUpdate(
            key,
            client_id,
            reply.status,
            reply.filled_qty,
            reply.avg_price,
            reply.event_time,
            reply.exchange_id,
        )
    return ExchangeOutcome(
        key, op, client_id, kind, reply.result, reply.reason, update, reply.retry_after
    )


class ExchangeWorkers:
    """Runs one account's exchange calls on at most ``max_workers`` threads.

    ``submit`` is called on actor threads and returns at once. ``deliver`` is called on a
    worker thread. An exception from the port (it should map errors itself) becomes an
    ``UNKNOWN`` outcome: the order may have reached the exchange, so the actor looks it up.
    After :meth:`shutdown` nothing new is accepted: a submitted call is answered ``UNKNOWN``
    with reason ``shutting_down`` so the actor keeps the order for recovery.
    """

    def __init__(
        self,
        account: str,
        exchange: ExchangePort,
        deliver: Callable[[Message], object],
        max_workers: int = 4,
        metrics: Metrics | None = None,
    ) -> None:
        self.account = account
        self._exchange = exchange
        self._deliver = deliver
        self._metrics = metrics or NullMetrics()
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=f"xchg-{account}")
        self._lock = threading.Lock()
        self._closed = False
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(self, effect: PlaceOrder | CancelOrder | LookupOrder) -> None:
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._in_flight += 1
        if closed:
            cid = effect.order.client_id if isinstance(effect, PlaceOrder) else effect.client_id
            op = _op(effect)
            reply = OrderReply(CallResult.UNKNOWN, "shutting_down")
            self._deliver(outcome_from_reply(op, effect.key, cid, effect, reply))
            return
        self._pool.submit(self._run, effect)

    def _run(self, effect: PlaceOrder | CancelOrder | LookupOrder) -> None:
        op = _op(effect)
        t0 = time.perf_counter()
        try:
            if isinstance(effect, PlaceOrder):
                o = effect.order
                cid = o.client_id
                req = OrderRequest(
                    effect.key,
                    cid,
                    o.kind,
                    o.side,
                    o.qty,
                    o.trigger_price,
                    effect.reduce_only,
                    effect.close_position,
                )
                reply = self._exchange.place_order(req)
            elif isinstance(effect, CancelOrder):
                cid = effect.client_id
                reply = self._exchange.cancel_order(effect.key, cid, effect.kind.trigger)
            else:
                cid = effect.client_id
                reply = self._exchange.lookup_order(effect.key, cid, effect.kind.trigger)
        except Exception as exc:  # the port should not raise; never lose the outcome
            log.exception("exchange %s for %s raised", op, effect.key)
            cid = effect.order.client_id if isinstance(effect, PlaceOrder) else effect.client_id
            reply = OrderReply(CallResult.UNKNOWN, f"error:{type(exc).__name__}")
        kind = effect.order.kind if isinstance(effect, PlaceOrder) else effect.kind
        self._metrics.order(kind.value, op, reply.result.value)
        self._metrics.exchange_call(op, time.perf_counter() - t0)
        try:
            self._deliver(outcome_from_reply(op, effect.key, cid, effect, reply))
        except Exception:
            log.exception("could not deliver %s outcome for %s", op, effect.key)
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for in-flight calls to finish. True if none is left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Refuse new calls, let in-flight ones finish (bounded), stop the threads."""
        with self._lock:
            self._closed = True
        finished = self.drain(timeout)
        self._pool.shutdown(wait=finished, cancel_futures=True)
        return finished


def _op(effect: PlaceOrder | CancelOrder | LookupOrder) -> str:
    if isinstance(effect, PlaceOrder):
        return "place"
    if isinstance(effect, CancelOrder):
        return "cancel"
    return "lookup"
