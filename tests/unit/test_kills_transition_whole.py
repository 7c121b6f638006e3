"""More tests written to kill mutants of the pure core (``make mutate``), after the
simulation's slice (``tests/dst/test_mutation_slice.py``) had pinned what its seeds reach:
the branches the seeds do not reach, each pinned whole (the state after, every journal event
with its detail, every effect). Driven through :func:`actors.transition.transition` with
messages, but :func:`actors.transition.difference_event`, whose branches no handler reaches
today, which is called directly. The docstrings say what each pins.
"""

from __future__ import annotations

from dataclasses import replace

from actors.model import Key, OrderKind, OrderState, Side, Status
from actors.orders import intended_order
from actors.state import JournalEvent, JournalKind, Position
from actors.transition import difference_event

KEY = Key("main", "BTCUSDT")
NOW = 1000.0


def _position() -> Position:
    entry = intended_order(1, OrderKind.ENTRY, 1, "buy", 1.0, NOW)
    stop = intended_order(1, OrderKind.STOP_LOSS, 1, "sell", 1.0, NOW)
    return Position(
        id=1,
        key=KEY,
        side=Side.LONG,
        status=Status.PENDING_SL,
        source="sniper",
        requested_qty=1.0,
        stop_price=90.0,
        created_at=NOW,
        updated_at=NOW,
        signal_id="s1",
        orders=(entry, stop),
    )


def test_the_difference_of_two_orders_changed_names_the_last_and_lists_both() -> None:
    before = _position()
    entry, stop = before.orders
    after = replace(
        before,
        status=Status.ACTIVE,
        orders=(
            replace(entry, state=OrderState.FILLED, filled_qty=1.0),
            replace(stop, state=OrderState.ACCEPTED),
        ),
    )
    assert difference_event(before, after, NOW + 1) == JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.PENDING_SL,
        Status.ACTIVE,
        NOW + 1,
        {"client_id": "ps1s1", "state": "accepted", "filled": 0.0, "orders": ["ps1e1", "ps1s1"]},
    )
    one = replace(after, orders=(entry, replace(stop, state=OrderState.ACCEPTED)))
    assert difference_event(before, one, NOW + 1).detail == {
        "client_id": "ps1s1",
        "state": "accepted",
        "filled": 0.0,
    }


def test_the_difference_of_fields_names_the_durable_fields_that_changed() -> None:
    """Not the version, the write time or the trailing high-water mark (not compared)."""
    before = _position()
    after = replace(
        before, sl_failures=2, stop_seq=1, version=7, updated_at=NOW + 5, best_price=101.0
    )
    assert difference_event(before, after, NOW + 2) == JournalEvent(
        1,
        JournalKind.POSITION_CHANGED,
        Status.PENDING_SL,
        Status.PENDING_SL,
        NOW + 2,
        {"fields": ["stop_seq", "sl_failures"]},
    )


def test_the_difference_from_nothing_is_the_whole_new_position() -> None:
    after = replace(_position(), orders=())
    event = difference_event(None, after, NOW)
    assert event == JournalEvent(
        1,
        JournalKind.POSITION_CHANGED,
        None,
        Status.PENDING_SL,
        NOW,
        {"fields": list(Position.__dataclass_fields__)},
    )
    with_orders = _position()
    assert difference_event(None, with_orders, NOW) == JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        None,
        Status.PENDING_SL,
        NOW,
        {"client_id": "ps1s1", "state": "intended", "filled": 0.0, "orders": ["ps1e1", "ps1s1"]},
    )
