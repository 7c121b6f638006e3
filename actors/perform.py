"""Effect interpretation: what a position actor does with a transition's effects.

Who calls: :class:`~actors.position_actor.PositionActor`, on its thread, after the
transition's commit is written (or held for a retry, for protective transitions). Exchange
calls go to the host's worker pool (their outcomes come back as messages, I4), timers to the
timer service, sync requests to the supervisor. Nothing here blocks; a host or timer failure
propagates (the actor treats it as a crash).
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.effects import (
    CancelOrder,
    CancelTimer,
    Effect,
    FetchMarket,
    LookupOrder,
    PlaceOrder,
    RequestSync,
    StartTimer,
)
from actors.host import ActorHost
from actors.host import actor_log as log
from actors.model import Key
from actors.ports import Metrics, Timers

__all__ = ["perform"]


def perform(
    effects: Sequence[Effect], key: Key, host: ActorHost, timers: Timers, metrics: Metrics
) -> None:
    """Carry out ``effects`` in order for the actor of ``key``."""
    for e in effects:
        if isinstance(e, PlaceOrder | CancelOrder | LookupOrder | FetchMarket):
            if isinstance(e, CancelOrder) and e.why == "orphan":
                metrics.orphan_cancelled()
                log.warning(
                    "cancelling %s: an order of ours that no open position needs",
                    e.client_id,
                    extra={"key": str(key)},
                )
            host.submit(e)
        elif isinstance(e, StartTimer):
            timers.start(e.key, e.name, e.delay)
        elif isinstance(e, CancelTimer):
            timers.cancel(e.key, e.name)
        elif isinstance(e, RequestSync):
            host.request_sync(e.key, e.reason)
