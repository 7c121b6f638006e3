"""Every row of the position-status table, driven by the messages that fire it.

Parametrised over :data:`actors.lifecycle.POSITION_TABLE`: a row without a scenario here
fails (``KeyError``), so a new row comes with its test. Each scenario builds the status
before from messages, sends the message of the trigger, and checks the status after and the
journal of the commit that recorded it. A pair in no table is recorded, not raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from actors.lifecycle import POSITION_TABLE, Trigger
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    Message,
    OrderUpdate,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import ExchangePosition, ExchangeStatus, Key, OrderKind, OrderState, Side, Status
from actors.state import Policy, Reentry, SymbolState, Transition
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy(reentry=Reentry.ALLOW, max_notional=1_000.0)


def step(st: SymbolState, msg: Message, now: float = NOW) -> Transition:
    return transition(st, msg, Context(now, POLICY, 1))


def run(st: SymbolState, *msgs: Message) -> SymbolState:
    for m in msgs:
        st = step(st, m).state
    return st


def fill(cid: str, status: str, qty: float, at: float = 1.0) -> OrderUpdate:
    return OrderUpdate(KEY, cid, ExchangeStatus(status), qty, 100.0 if qty else None, at)


def pending_entry() -> SymbolState:
    return step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0)).state


def entry_placed() -> SymbolState:
    return run(pending_entry(), fill("ps1e1", "new", 0.0))


def pending_sl(qty: float = 1.0) -> SymbolState:
    status = "filled" if qty >= 1.0 else "partially_filled"
    return run(pending_entry(), fill("ps1e1", status, qty))


def active(qty: float = 1.0) -> SymbolState:
    return run(pending_sl(qty), fill("ps1s1", "new", 0.0, 2.0))


def closing(qty: float = 1.0) -> SymbolState:
    return run(active(qty), CloseRequest(KEY))


def flat_then_confirm(st: SymbolState) -> tuple[SymbolState, list[Message]]:
    later = NOW + 1.0
    return run(st, SyncObservation(KEY, None, (), later)), [
        TimerFired(KEY, TimerId(TimerKind.FLAT_CONFIRM))
    ]


Scenario = Callable[[], tuple[SymbolState, list[Message]]]


def _adopt() -> tuple[SymbolState, list[Message]]:
    xp = ExchangePosition(Side.LONG, 1.0, 100.0)
    return SymbolState(KEY), [SyncObservation(KEY, xp, (), NOW)]


def _stop_replaced_while_active() -> tuple[SymbolState, list[Message]]:
    # The resting stop vanished: a new one goes out; its confirmation keeps the position active.
    st = run(active(), fill("ps1s1", "canceled", 0.0, 3.0))
    return st, [fill("ps1s2", "new", 0.0, 4.0)]


def _rejected_entry() -> tuple[SymbolState, list[Message]]:
    out = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1e1", OrderKind.ENTRY, CallResult.REJECTED, "margin"
    )
    return pending_entry(), [out]


SCENARIOS: dict[tuple[Status | None, Trigger], Scenario] = {
    (None, Trigger.SIGNAL_ACCEPTED): lambda: (priced(KEY, at=NOW), [signal(size=1.0)]),
    (None, Trigger.ADOPTED): _adopt,
    (Status.PENDING_ENTRY, Trigger.ENTRY_ACCEPTED): lambda: (
        pending_entry(),
        [fill("ps1e1", "new", 0.0)],
    ),
    (Status.PENDING_ENTRY, Trigger.ENTRY_FILLED): lambda: (
        pending_entry(),
        [fill("ps1e1", "filled", 1.0)],
    ),
    (Status.ENTRY_PLACED, Trigger.ENTRY_FILLED): lambda: (
        entry_placed(),
        [fill("ps1e1", "filled", 1.0)],
    ),
    (Status.PENDING_SL, Trigger.ENTRY_FILLED): lambda: (
        pending_sl(0.5),
        [fill("ps1e1", "filled", 1.0, 2.0)],
    ),
    (Status.ACTIVE, Trigger.ENTRY_FILLED): lambda: (
        active(0.5),
        [fill("ps1e1", "filled", 1.0, 3.0)],
    ),
    (Status.CLOSING, Trigger.ENTRY_FILLED): lambda: (
        closing(0.5),
        [fill("ps1e1", "filled", 1.0, 3.0)],
    ),
    (Status.PENDING_ENTRY, Trigger.ENTRY_FAILED): _rejected_entry,
    (Status.ENTRY_PLACED, Trigger.ENTRY_FAILED): lambda: (
        entry_placed(),
        [fill("ps1e1", "canceled", 0.0, 2.0)],
    ),
    (Status.PENDING_ENTRY, Trigger.ENTRY_CANCEL_REQUESTED): lambda: (
        pending_entry(),
        [CloseRequest(KEY)],
    ),
    (Status.ENTRY_PLACED, Trigger.ENTRY_CANCEL_REQUESTED): lambda: (
        entry_placed(),
        [CloseRequest(KEY)],
    ),
    (Status.PENDING_SL, Trigger.STOP_CONFIRMED): lambda: (
        pending_sl(),
        [fill("ps1s1", "new", 0.0, 2.0)],
    ),
    (Status.ACTIVE, Trigger.STOP_CONFIRMED): _stop_replaced_while_active,
    (Status.CLOSING, Trigger.STOP_CONFIRMED): lambda: (
        run(pending_sl(), CloseRequest(KEY)),
        [fill("ps1s1", "new", 0.0, 2.0)],
    ),
    (Status.PENDING_SL, Trigger.STOP_FILLED): lambda: (
        pending_sl(),
        [fill("ps1s1", "filled", 1.0, 2.0)],
    ),
    (Status.ACTIVE, Trigger.STOP_FILLED): lambda: (active(), [fill("ps1s1", "filled", 1.0, 3.0)]),
    (Status.CLOSING, Trigger.STOP_FILLED): lambda: (
        closing(),
        [fill("ps1s1", "filled", 1.0, 3.0)],
    ),
    (Status.PENDING_SL, Trigger.CLOSE_REQUESTED): lambda: (pending_sl(), [CloseRequest(KEY)]),
    (Status.ACTIVE, Trigger.CLOSE_REQUESTED): lambda: (active(), [CloseRequest(KEY)]),
    (Status.CLOSING, Trigger.CLOSE_FILLED): lambda: (
        closing(),
        [fill("ps1c1", "filled", 1.0, 3.0)],
    ),
    (Status.PENDING_SL, Trigger.CLOSED_ON_EXCHANGE): lambda: flat_then_confirm(pending_sl()),
    (Status.ACTIVE, Trigger.CLOSED_ON_EXCHANGE): lambda: flat_then_confirm(active()),
    (Status.CLOSING, Trigger.CLOSED_ON_EXCHANGE): lambda: flat_then_confirm(closing()),
}


def expected(before: Status | None, trigger: Trigger) -> Status | None:
    """The lifecycle stated apart from the table: what each trigger makes of a position."""
    if trigger in (Trigger.STOP_FILLED, Trigger.CLOSE_FILLED, Trigger.CLOSED_ON_EXCHANGE):
        return Status.CLOSED
    waiting = (Status.PENDING_ENTRY, Status.ENTRY_PLACED)
    return {
        Trigger.SIGNAL_ACCEPTED: Status.PENDING_ENTRY,
        Trigger.ADOPTED: Status.PENDING_SL,
        Trigger.ENTRY_ACCEPTED: Status.ENTRY_PLACED,
        Trigger.ENTRY_FAILED: Status.FAILED,
        Trigger.CLOSE_REQUESTED: Status.CLOSING,
        Trigger.ENTRY_CANCEL_REQUESTED: before,
        Trigger.ENTRY_FILLED: Status.PENDING_SL if before in waiting else before,
        Trigger.STOP_CONFIRMED: Status.ACTIVE if before is Status.PENDING_SL else before,
    }[trigger]


@pytest.mark.parametrize(
    ("before", "trigger"), list(POSITION_TABLE), ids=[f"{b}-{t}" for b, t in POSITION_TABLE]
)
def test_each_row_of_the_position_table(before: Status | None, trigger: Trigger) -> None:
    st, msgs = SCENARIOS[(before, trigger)]()
    pos = st.position
    assert (pos.status if pos is not None else None) == before
    *setup, last = msgs
    st = run(st, *setup)
    t = step(st, last, NOW + 2.0)
    assert t.state.position is not None
    assert t.state.position.status is expected(before, trigger) is POSITION_TABLE[(before, trigger)]
    assert t.commit is not None  # every row is a durable change
    kinds = [e.kind for e in t.commit.events]
    assert "illegal_transition" not in kinds
    statuses = [e.status_after for e in t.commit.events]
    assert POSITION_TABLE[(before, trigger)] in statuses


def test_the_scenarios_are_the_table() -> None:
    assert set(SCENARIOS) == set(POSITION_TABLE)


def test_a_pair_in_no_table_is_recorded_and_changes_nothing() -> None:
    """A stop that fills while the position still waits for its entry (a state no message
    sequence builds): ``(pending_entry, stop_filled)`` is in no row. Recorded, not raised."""
    st = pending_entry()
    pos = st.position
    assert pos is not None
    stop = replace(pos.orders[0], client_id="ps1s1", kind=OrderKind.STOP_LOSS)
    st = replace(st, position=replace(pos, orders=(*pos.orders, stop)))
    t = step(st, fill("ps1s1", "filled", 1.0, 2.0))
    assert t.state.position is not None
    assert t.state.position.status is Status.PENDING_ENTRY
    assert t.commit is not None
    illegal = [e for e in t.commit.events if e.kind == "illegal_transition"]
    assert [(e.detail["state"], e.detail["trigger"]) for e in illegal] == [
        ("pending_entry", "stop_filled")
    ]
    assert t.state.position.order("ps1s1") is not None
    assert t.state.position.order("ps1s1").state is OrderState.FILLED  # type: ignore[union-attr]


def test_a_pair_in_no_table_is_counted_and_logged_by_the_shell(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The shell observes the recorded pair: ps_protection_failures{kind=
    "illegal_transition"} and a line at ERROR."""
    from actors.observe import observe_commit
    from actors.ports import NullMetrics

    class Failures(NullMetrics):
        def __init__(self) -> None:
            self.kinds: list[str] = []

        def protection_failure(self, kind: str) -> None:
            self.kinds.append(kind)

    st = pending_entry()
    pos = st.position
    assert pos is not None
    stop = replace(pos.orders[0], client_id="ps1s1", kind=OrderKind.STOP_LOSS)
    st = replace(st, position=replace(pos, orders=(*pos.orders, stop)))
    t = step(st, fill("ps1s1", "filled", 1.0, 2.0))
    assert t.commit is not None
    metrics = Failures()
    with caplog.at_level("ERROR"):
        observe_commit(t.commit, KEY, metrics)
    assert metrics.kinds == ["illegal_transition"]
    assert any("illegal_transition" in r.getMessage() for r in caplog.records)
