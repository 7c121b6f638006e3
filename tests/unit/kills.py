"""Shared builders for the ``tests/unit/test_kills_*`` modules (the tests written to kill the
surviving mutants of the pure core, ``make mutate``), so that each of them does not copy them.

What it offers: the symbol (:data:`KEY`), the clock's start (:data:`NOW`) and the default
:data:`POLICY`; :func:`ctx` and :func:`step` (one call of :func:`actors.transition.transition`);
the messages the exchange sends (:func:`update`, a report on one of our orders; :func:`reply`,
the worker pool's answer to a call); the states the tests start from (:func:`opened`, a
pending entry; :func:`protected`, an active position with its stop confirmed; the same
reached one report at a time, :func:`filled_stepwise` and :func:`protected_stepwise`); and
:func:`assert_whole`, which asserts a transition's whole result when it writes the position.

:func:`assert_whole` removes only the boilerplate of a written position (its version bump,
its write time, the commit on top of the version read); each call site still names every
field the position changes, every effect and every journal event it expects, and the result
is compared whole (``==`` on the :class:`actors.state.Transition`), so nothing it asserts is
weaker than the spelled-out comparison it replaces.

Not a test module (no ``test_`` prefix): pytest collects nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from actors.effects import Effect
from actors.messages import (
    CallOp,
    CallResult,
    ExchangeOutcome,
    Message,
    OrderUpdate,
)
from actors.model import ExchangeStatus, Key, OrderKind, Status
from actors.state import (
    Commit,
    ControlOutcome,
    JournalEvent,
    Policy,
    Position,
    SignalRecord,
    SymbolState,
    Transition,
)
from actors.transition import Context, transition
from testkit.world import priced, signal

__all__ = [
    "KEY",
    "NOW",
    "POLICY",
    "assert_whole",
    "ctx",
    "filled_stepwise",
    "opened",
    "protected",
    "protected_stepwise",
    "reply",
    "step",
    "update",
]

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy()


def ctx(now: float, policy: Policy = POLICY, next_id: int = 1) -> Context:
    """The context of one transition at ``now`` (the default policy, position ids from 1)."""
    return Context(now, policy, next_id)


def step(
    st: SymbolState, msg: Message, now: float = NOW, policy: Policy = POLICY, next_id: int = 1
) -> Transition:
    """One transition of ``st`` on ``msg`` at ``now``."""
    return transition(st, msg, ctx(now, policy, next_id))


def update(cid: str, status: str, filled: float = 0.0, avg: float | None = None) -> OrderUpdate:
    """An exchange report for one of our orders (status as the adapter normalises it), at
    :data:`NOW`, with the client id as its exchange id."""
    return OrderUpdate(KEY, cid, ExchangeStatus(status), filled, avg, NOW, cid)


def reply(
    cid: str,
    op: CallOp,
    kind: OrderKind,
    result: CallResult,
    reason: str = "",
    retry_after: float | None = None,
) -> ExchangeOutcome:
    """What the worker pool sends back for a call on ``cid``."""
    return ExchangeOutcome(KEY, op, cid, kind, result, reason, None, retry_after, None)


def opened() -> SymbolState:
    """A pending entry of 1.0 at mark 100, stop 90 (position id 1, entry ``ps1e1``)."""
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, signal_id="s1")).state
    assert st.position is not None and st.position.status is Status.PENDING_ENTRY
    return st


def protected() -> SymbolState:
    """The entry filled at 100 and its stop ``ps1s1`` confirmed: an active position."""
    st = step(opened(), update("ps1e1", "filled", 1.0, 100.0)).state
    st = step(st, update("ps1s1", "new")).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    return st


def filled_stepwise() -> SymbolState:
    """A long of 1 at 100 (the signal at :data:`NOW`), its entry ``ps1e1`` filled at
    ``NOW + 0.1`` (a report without an exchange id): its stop ``ps1s1`` sent, not confirmed
    yet."""
    st = step(priced(KEY, at=NOW), signal(size=1.0)).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 0.1)
    return step(st, fill, NOW + 0.1).state


def protected_stepwise() -> SymbolState:
    """:func:`filled_stepwise`, its stop ``ps1s1`` confirmed resting at ``NOW + 0.2``:
    active."""
    stop = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 0.2)
    st = step(filled_stepwise(), stop, NOW + 0.2).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    return st


def assert_whole(
    t: Transition,
    before: SymbolState,
    msg: Message,
    now: float,
    *,
    effects: tuple[Effect, ...],
    events: tuple[JournalEvent, ...],
    signal: SignalRecord | None = None,
    state_changes: Mapping[str, Any] | None = None,
    control: ControlOutcome | None = None,
    label: object = None,
    **position_changes: Any,
) -> Position:
    """Assert that ``t``, the transition of ``before`` on ``msg`` at ``now``, is exactly: the
    position of ``before`` written with ``position_changes`` (its version one up, written at
    ``now``), nothing else of the state changed but ``state_changes``, ``effects`` in this
    order, and one commit of that position on top of the version read, caused by ``msg``,
    with ``events`` (and the ``signal`` record, if any) and nothing else, and the operator's
    answer ``control``, if any. ``label`` is the
    assertion's message (which case of a loop failed). Returns the position written."""
    pos = before.position
    assert pos is not None
    written = replace(pos, **position_changes, version=pos.version + 1, updated_at=now)
    commit = Commit(KEY, msg, written, pos.version, events, signal)
    after = replace(before, position=written, **(state_changes or {}))
    expected = Transition(after, effects, commit, signal, control=control)
    if label is None:
        assert t == expected
    else:
        assert t == expected, label
    return written
