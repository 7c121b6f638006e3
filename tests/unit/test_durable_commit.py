"""A transition is saved when the durable state differs, and only then.

The property: for any sequence of messages, a message that changes a durable field of the
position (compared field by field, :func:`actors.transition.durable_change`) or of the
symbol (pause, quarantine, the remembered decisions, the close time, the bought flag)
produces a commit that carries it; one that changes none produces no position commit,
except the events the journal keeps on their own (:data:`JOURNAL_ONLY`) and signal-history
rows. The two misses the issue named (a lookup that finds no entry of a partly filled
position, a refused entry of a partly filled position) have their own tests.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    MarkPriceTick,
    Message,
    OrderUpdate,
    PauseRequest,
    Recover,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import (
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    Key,
    OrderKind,
    OrderState,
    Side,
)
from actors.state import Policy, Reentry, SymbolState
from actors.transition import Context, durable_change, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy(reentry=Reentry.ALLOW, max_notional=1_000.0)

#: Journal events written although no durable field changed: what an operator or a
#: recovery asked, a decision that changed nothing (a throttled placement waiting for its
#: retry, a close retry scheduled), a pair in no table.
JOURNAL_ONLY = frozenset(
    {
        "recovering",
        "order_throttled",
        "close_retry_scheduled",
        "close_failing",
        "close_requested",
        "close_requested_unfilled",
        "close_rejected",
        "order_unknown",
        "illegal_transition",
        "stop_rejected",
        "stop_failed",
        "order_fact",
    }
)

CIDS = ("ps1e1", "ps1s1", "ps1s2", "ps1c1", "ps1c2", "ps2e1", "ps2s1", "ps2c1")
KINDS = {"e": OrderKind.ENTRY, "s": OrderKind.STOP_LOSS, "c": OrderKind.CLOSE}


def kind_of(cid: str) -> OrderKind:
    return KINDS[cid[3]]


cids = st.sampled_from(CIDS)
qty = st.sampled_from([0.0, 0.5, 1.0])
updates = st.builds(
    lambda cid, status, q, t: OrderUpdate(
        KEY, cid, ExchangeStatus(status), q, 100.0 if q else None, t
    ),
    cids,
    st.sampled_from(["new", "partially_filled", "filled", "canceled", "expired", "rejected"]),
    qty,
    st.floats(0.0, 50.0),
)
outcomes = st.builds(
    lambda cid, op, res, retry: ExchangeOutcome(
        KEY, CallOp(op), cid, kind_of(cid), res, "x", None, retry
    ),
    cids,
    st.sampled_from(["place", "cancel", "lookup"]),
    st.sampled_from(list(CallResult)),
    st.sampled_from([None, 1.0]),
)
syncs = st.builds(
    lambda q, open_, t: SyncObservation(
        KEY,
        ExchangePosition(Side.LONG, q, 100.0) if q else None,
        tuple(ExchangeOrder(c, "sell", 1.0, kind_of(c) is OrderKind.STOP_LOSS) for c in open_),
        t,
    ),
    qty,
    st.lists(cids, max_size=2, unique=True),
    st.floats(NOW - 10, NOW + 50),
)
timers = st.builds(
    lambda name: TimerFired(KEY, name),
    st.sampled_from(
        [TimerId(k) for k in (TimerKind.CLOSE_RETRY, TimerKind.SL_DEADLINE, TimerKind.FLAT_CONFIRM)]
        + [
            TimerId(k, c)
            for k in (TimerKind.LOOKUP, TimerKind.RETRY, TimerKind.CANCEL)
            for c in CIDS
        ]
    ),
)
messages: st.SearchStrategy[Message] = st.one_of(
    updates,
    outcomes,
    syncs,
    timers,
    st.builds(lambda i: signal(signal_id=f"s{i}", size=1.0), st.integers(0, 3)),
    st.just(CloseRequest(KEY)),
    st.just(CloseRequest(KEY, by="operator")),
    st.builds(
        lambda p: MarkPriceTick(KEY, p, NOW, received_at=NOW), st.sampled_from([85.0, 100.0, 130.0])
    ),
    st.just(Recover(KEY)),
    st.builds(lambda b: PauseRequest(KEY, b), st.booleans()),
)


def symbol_durable(s: SymbolState) -> tuple[object, ...]:
    return (s.last_closed_at, s.bought, s.decided, s.paused, s.quarantined)


@settings(
    max_examples=200,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow "explain"
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.tuples(messages, st.floats(0.0, 30.0)), max_size=25))
def test_a_durable_change_is_committed_and_nothing_else_is(
    steps: list[tuple[Message, float]],
) -> None:
    state = priced(KEY, at=NOW)
    now = NOW
    next_id = 1
    for msg, dt in steps:
        now += dt
        state = replace(state, last_price_at=now)  # keep the mark fresh: signals decide
        t = transition(state, msg, Context(now, POLICY, next_id))
        before, after = state.position, t.state.position
        if after is not None and after.id == next_id:
            next_id += 1
        if durable_change(before, after):
            assert t.commit is not None and t.commit.position is not None, msg
            assert after is not None
            assert t.commit.position.version == after.version
        elif t.commit is not None and t.commit.position is not None:
            kinds = {e.kind for e in t.commit.events}
            assert kinds <= JOURNAL_ONLY, (msg, kinds)
        if symbol_durable(t.state) != symbol_durable(state):
            assert t.commit is not None, msg
        state = t.state


def _partly_filled_entry() -> SymbolState:
    st_ = transition(priced(KEY, at=NOW), signal(size=1.0), Context(NOW, POLICY, 1)).state
    upd = OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.5, 100.0, 1.0)
    return transition(st_, upd, Context(NOW, POLICY, 2)).state


def test_a_refused_entry_of_a_partly_filled_position_is_committed() -> None:
    """Was a miss: the entry's record went ``rejected`` with no journal event, so nothing
    was written and a restart found it resting."""
    st_ = _partly_filled_entry()
    p = st_.position
    assert p is not None
    entry = replace(p.orders[0], state=OrderState.UNKNOWN)
    st_ = replace(st_, position=replace(p, orders=(entry, *p.orders[1:])))
    out = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1e1", OrderKind.ENTRY, CallResult.REJECTED, "margin"
    )
    t = transition(st_, out, Context(NOW, POLICY, 2))
    assert t.commit is not None and t.commit.position is not None
    assert t.commit.position.order("ps1e1").state is OrderState.REJECTED  # type: ignore[union-attr]
    assert [e.kind for e in t.commit.events] == ["order_fact"]


def test_an_entry_the_lookup_cannot_find_on_a_partly_filled_position_is_committed() -> None:
    """Was a miss: ``not_found`` on the entry of a filled position changed its record only."""
    st_ = _partly_filled_entry()
    p = st_.position
    assert p is not None
    entry = replace(p.orders[0], state=OrderState.UNKNOWN, sent_at=NOW - 100.0)
    st_ = replace(st_, position=replace(p, orders=(entry, *p.orders[1:])))
    out = ExchangeOutcome(KEY, CallOp.LOOKUP, "ps1e1", OrderKind.ENTRY, CallResult.NOT_FOUND)
    t = transition(st_, out, Context(NOW, POLICY, 2))
    assert t.commit is not None and t.commit.position is not None
    assert t.commit.position.order("ps1e1").state is OrderState.NOT_FOUND  # type: ignore[union-attr]
