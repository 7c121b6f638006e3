"""The lifecycle as tables: which status a position takes on each trigger, and which state
one of its orders takes on each event (after NautilusTrader's ``_ORDER_STATE_TABLE``).

Who calls: :mod:`actors.transition`, on the actor's thread, for every status or order-state
write (through :func:`next_status` and :func:`next_order_state`, nothing else writes them).
Pure lookups: a pair that is not in a table answers ``None``; the caller leaves the status
(or order state) as it was and records the pair (journal kind ``illegal_transition``, a
metric), it never raises.

Reading the position table: a position is created by :attr:`Trigger.SIGNAL_ACCEPTED` or
:attr:`Trigger.ADOPTED` (from ``None``). Rows that keep the status are listed too: they are
the triggers that may come in that status and change other fields only (a further entry fill
while closing, a trailing stop confirmed while active). The hidden sub-state of the old code,
"close requested before anything filled", is the explicit :attr:`Trigger.ENTRY_CANCEL_REQUESTED`
row of ``pending_entry`` / ``entry_placed`` (its field: ``Position.close_reason`` with no fill,
:attr:`actors.state.Position.cancel_requested`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from actors.model import OrderState, Status

__all__ = [
    "ORDER_TABLE",
    "POSITION_TABLE",
    "OrderEvent",
    "Trigger",
    "next_order_state",
    "next_status",
]


class Trigger(enum.StrEnum):
    """What moves a position's status (the columns of :data:`POSITION_TABLE`)."""

    SIGNAL_ACCEPTED = "signal_accepted"
    ADOPTED = "adopted"
    ENTRY_ACCEPTED = "entry_accepted"
    ENTRY_FILLED = "entry_filled"
    ENTRY_FAILED = "entry_failed"
    ENTRY_CANCEL_REQUESTED = "entry_cancel_requested"
    STOP_CONFIRMED = "stop_confirmed"
    STOP_FILLED = "stop_filled"
    CLOSE_REQUESTED = "close_requested"
    CLOSE_FILLED = "close_filled"
    CLOSED_ON_EXCHANGE = "closed_on_exchange"


_PE, _EP, _SL, _AC, _CG = (
    Status.PENDING_ENTRY,
    Status.ENTRY_PLACED,
    Status.PENDING_SL,
    Status.ACTIVE,
    Status.CLOSING,
)
_T = Trigger

#: ``(status before, trigger) -> status after``; ``None`` before: the position is new.
POSITION_TABLE: Mapping[tuple[Status | None, Trigger], Status] = {
    (None, _T.SIGNAL_ACCEPTED): _PE,
    (None, _T.ADOPTED): _SL,
    (_PE, _T.ENTRY_ACCEPTED): _EP,
    (_PE, _T.ENTRY_FILLED): _SL,
    (_EP, _T.ENTRY_FILLED): _SL,
    (_SL, _T.ENTRY_FILLED): _SL,
    (_AC, _T.ENTRY_FILLED): _AC,
    (_CG, _T.ENTRY_FILLED): _CG,
    (_PE, _T.ENTRY_FAILED): Status.FAILED,
    (_EP, _T.ENTRY_FAILED): Status.FAILED,
    (_PE, _T.ENTRY_CANCEL_REQUESTED): _PE,
    (_EP, _T.ENTRY_CANCEL_REQUESTED): _EP,
    (_SL, _T.STOP_CONFIRMED): _AC,
    (_AC, _T.STOP_CONFIRMED): _AC,
    (_CG, _T.STOP_CONFIRMED): _CG,
    (_SL, _T.STOP_FILLED): Status.CLOSED,
    (_AC, _T.STOP_FILLED): Status.CLOSED,
    (_CG, _T.STOP_FILLED): Status.CLOSED,
    (_SL, _T.CLOSE_REQUESTED): _CG,
    (_AC, _T.CLOSE_REQUESTED): _CG,
    (_CG, _T.CLOSE_FILLED): Status.CLOSED,
    (_SL, _T.CLOSED_ON_EXCHANGE): Status.CLOSED,
    (_AC, _T.CLOSED_ON_EXCHANGE): Status.CLOSED,
    (_CG, _T.CLOSED_ON_EXCHANGE): Status.CLOSED,
}


def next_status(status: Status | None, trigger: Trigger) -> Status | None:
    """The status after ``trigger`` in ``status``, or ``None``: not in the table."""
    return POSITION_TABLE.get((status, trigger))


class OrderEvent(enum.StrEnum):
    """What moves one order's state (the columns of :data:`ORDER_TABLE`).

    ``REPORTED_*``: the exchange reported that status (stream, reply, lookup, sync): a
    report ``new`` with a fill is ``REPORTED_PARTIAL``. The others are our own decisions
    or the answer to one of our calls.
    """

    REPORTED_NEW = "reported_new"
    REPORTED_PARTIAL = "reported_partial"
    REPORTED_FILLED = "reported_filled"
    REPORTED_CANCELED = "reported_canceled"
    REPORTED_REJECTED = "reported_rejected"
    PLACE_UNKNOWN = "place_unknown"
    PLACE_REJECTED = "place_rejected"
    PLACE_THROTTLED = "place_throttled"
    CANCEL_REQUESTED = "cancel_requested"
    LOOKUP_NOT_FOUND = "lookup_not_found"
    RESEND = "resend"
    RECOVERED = "recovered"


_O = OrderState
_E = OrderEvent

#: ``(order state before, event) -> order state after``.
ORDER_TABLE: Mapping[tuple[OrderState, OrderEvent], OrderState] = {
    # A report says what the order is now (NOT_FOUND may be revised: a placement
    # that was in flight may still land); pending cancel stays pending while the order rests;
    # terminal stays terminal (a later report may only raise the fill).
    (_O.INTENDED, _E.REPORTED_NEW): _O.ACCEPTED,
    (_O.UNKNOWN, _E.REPORTED_NEW): _O.ACCEPTED,
    (_O.ACCEPTED, _E.REPORTED_NEW): _O.ACCEPTED,
    (_O.PARTIALLY_FILLED, _E.REPORTED_NEW): _O.ACCEPTED,
    (_O.NOT_FOUND, _E.REPORTED_NEW): _O.ACCEPTED,
    (_O.PENDING_CANCEL, _E.REPORTED_NEW): _O.PENDING_CANCEL,
    (_O.FILLED, _E.REPORTED_NEW): _O.FILLED,
    (_O.CANCELED, _E.REPORTED_NEW): _O.CANCELED,
    (_O.REJECTED, _E.REPORTED_NEW): _O.REJECTED,
    (_O.INTENDED, _E.REPORTED_PARTIAL): _O.PARTIALLY_FILLED,
    (_O.UNKNOWN, _E.REPORTED_PARTIAL): _O.PARTIALLY_FILLED,
    (_O.ACCEPTED, _E.REPORTED_PARTIAL): _O.PARTIALLY_FILLED,
    (_O.PARTIALLY_FILLED, _E.REPORTED_PARTIAL): _O.PARTIALLY_FILLED,
    (_O.NOT_FOUND, _E.REPORTED_PARTIAL): _O.PARTIALLY_FILLED,
    (_O.PENDING_CANCEL, _E.REPORTED_PARTIAL): _O.PENDING_CANCEL,
    (_O.FILLED, _E.REPORTED_PARTIAL): _O.FILLED,
    (_O.CANCELED, _E.REPORTED_PARTIAL): _O.CANCELED,
    (_O.REJECTED, _E.REPORTED_PARTIAL): _O.REJECTED,
    (_O.INTENDED, _E.REPORTED_FILLED): _O.FILLED,
    (_O.UNKNOWN, _E.REPORTED_FILLED): _O.FILLED,
    (_O.ACCEPTED, _E.REPORTED_FILLED): _O.FILLED,
    (_O.PARTIALLY_FILLED, _E.REPORTED_FILLED): _O.FILLED,
    (_O.NOT_FOUND, _E.REPORTED_FILLED): _O.FILLED,
    (_O.PENDING_CANCEL, _E.REPORTED_FILLED): _O.FILLED,
    (_O.FILLED, _E.REPORTED_FILLED): _O.FILLED,
    (_O.CANCELED, _E.REPORTED_FILLED): _O.CANCELED,
    (_O.REJECTED, _E.REPORTED_FILLED): _O.REJECTED,
    (_O.INTENDED, _E.REPORTED_CANCELED): _O.CANCELED,
    (_O.UNKNOWN, _E.REPORTED_CANCELED): _O.CANCELED,
    (_O.ACCEPTED, _E.REPORTED_CANCELED): _O.CANCELED,
    (_O.PARTIALLY_FILLED, _E.REPORTED_CANCELED): _O.CANCELED,
    (_O.NOT_FOUND, _E.REPORTED_CANCELED): _O.CANCELED,
    (_O.PENDING_CANCEL, _E.REPORTED_CANCELED): _O.CANCELED,
    (_O.FILLED, _E.REPORTED_CANCELED): _O.FILLED,
    (_O.CANCELED, _E.REPORTED_CANCELED): _O.CANCELED,
    (_O.REJECTED, _E.REPORTED_CANCELED): _O.REJECTED,
    (_O.INTENDED, _E.REPORTED_REJECTED): _O.REJECTED,
    (_O.UNKNOWN, _E.REPORTED_REJECTED): _O.REJECTED,
    (_O.ACCEPTED, _E.REPORTED_REJECTED): _O.REJECTED,
    (_O.PARTIALLY_FILLED, _E.REPORTED_REJECTED): _O.REJECTED,
    (_O.NOT_FOUND, _E.REPORTED_REJECTED): _O.REJECTED,
    (_O.PENDING_CANCEL, _E.REPORTED_REJECTED): _O.REJECTED,
    (_O.FILLED, _E.REPORTED_REJECTED): _O.FILLED,
    (_O.CANCELED, _E.REPORTED_REJECTED): _O.CANCELED,
    (_O.REJECTED, _E.REPORTED_REJECTED): _O.REJECTED,
    # Our own calls and their answers.
    (_O.INTENDED, _E.PLACE_UNKNOWN): _O.UNKNOWN,
    (_O.INTENDED, _E.PLACE_REJECTED): _O.REJECTED,
    (_O.UNKNOWN, _E.PLACE_REJECTED): _O.REJECTED,
    (_O.ACCEPTED, _E.PLACE_REJECTED): _O.REJECTED,
    (_O.PARTIALLY_FILLED, _E.PLACE_REJECTED): _O.REJECTED,
    (_O.PENDING_CANCEL, _E.PLACE_REJECTED): _O.REJECTED,
    (_O.NOT_FOUND, _E.PLACE_REJECTED): _O.REJECTED,
    (_O.INTENDED, _E.PLACE_THROTTLED): _O.INTENDED,
    (_O.UNKNOWN, _E.PLACE_THROTTLED): _O.INTENDED,
    (_O.INTENDED, _E.CANCEL_REQUESTED): _O.PENDING_CANCEL,
    (_O.UNKNOWN, _E.CANCEL_REQUESTED): _O.PENDING_CANCEL,
    (_O.ACCEPTED, _E.CANCEL_REQUESTED): _O.PENDING_CANCEL,
    (_O.PARTIALLY_FILLED, _E.CANCEL_REQUESTED): _O.PENDING_CANCEL,
    (_O.INTENDED, _E.LOOKUP_NOT_FOUND): _O.NOT_FOUND,
    (_O.UNKNOWN, _E.LOOKUP_NOT_FOUND): _O.NOT_FOUND,
    (_O.ACCEPTED, _E.LOOKUP_NOT_FOUND): _O.NOT_FOUND,
    (_O.PENDING_CANCEL, _E.LOOKUP_NOT_FOUND): _O.NOT_FOUND,
    (_O.INTENDED, _E.RESEND): _O.INTENDED,
    (_O.UNKNOWN, _E.RESEND): _O.INTENDED,
    (_O.REJECTED, _E.RESEND): _O.INTENDED,
    (_O.INTENDED, _E.RECOVERED): _O.UNKNOWN,
}


def next_order_state(state: OrderState, event: OrderEvent) -> OrderState | None:
    """The order's state after ``event`` in ``state``, or ``None``: not in the table."""
    return ORDER_TABLE.get((state, event))
