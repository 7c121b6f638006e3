"""Differential test: the real state machine's commits, written to PostgreSQL and to the
in-memory store the unit tests use, read back the same (and as they were written)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    MarkPriceTick,
    Message,
    OpenSignal,
    OrderUpdate,
    Recover,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import ExchangePosition, Key, Side
from actors.ports import SignalSeen, StaleVersion
from actors.state import Policy, Position, Reentry, SymbolState
from actors.transition import Context, transition
from infra.store import PostgresStore
from testkit.store import InMemoryStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_examples = itertools.count()
_POLICY = Policy(reentry=Reentry.ALLOW, cooldown_s=0.0, lookup_deadline_s=1.0)
_STATUSES = ["new", "partially_filled", "filled", "canceled", "expired", "rejected", "triggered"]


def _messages(state: SymbolState, now: float) -> st.SearchStrategy[Message]:
    key = state.key
    options: list[st.SearchStrategy[Message]] = [
        st.builds(
            OpenSignal,
            key=st.just(key),
            signal_id=st.sampled_from(["s1", "s2", "s3", "s4", "s5", "s6"]),
            source=st.sampled_from(["sniper", "whale"]),
            side=st.sampled_from(list(Side)),
            size=st.just(1.0),
            stop_loss=st.just(90.0),
        ),
        st.just(CloseRequest(key)),
        st.just(Recover(key)),
        st.builds(
            MarkPriceTick,
            key=st.just(key),
            price=st.sampled_from([80.0, 100.0, 130.0]),
            event_time=st.just(now),
        ),
        st.builds(
            SyncObservation,
            key=st.just(key),
            position=st.one_of(
                st.none(),
                st.builds(
                    ExchangePosition,
                    side=st.sampled_from(list(Side)),
                    qty=st.sampled_from([0.5, 1.0]),
                    entry_price=st.just(100.0),
                ),
            ),
            open_orders=st.just(()),
            observed_at=st.just(now),
        ),
    ]
    pos: Position | None = state.position
    if pos is not None and pos.orders:
        cid = st.sampled_from([o.client_id for o in pos.orders])
        update = st.builds(
            OrderUpdate,
            key=st.just(key),
            client_id=cid,
            status=st.sampled_from(_STATUSES),
            filled_qty=st.sampled_from([0.0, 0.5, 1.0]),
            avg_price=st.sampled_from([None, 100.0]),
            event_time=st.just(now),
            exchange_id=st.sampled_from([None, "x1"]),
        )
        kinds = {o.client_id: o.kind for o in pos.orders}
        outcome = st.tuples(
            cid,
            st.sampled_from(list(CallOp)),
            st.sampled_from(list(CallResult)),
            st.one_of(st.none(), update),
            st.sampled_from(["", "would_trigger", "insufficient margin"]),
            st.sampled_from([None, 0.5]),
        ).map(
            lambda t: ExchangeOutcome(
                key,
                t[1],
                t[0],
                kinds[t[0]],
                t[2],
                t[4],
                None if t[3] is None else _for(t[3], t[0]),
                t[5],
            )
        )
        timer = st.one_of(
            cid.map(lambda c: TimerFired(key, TimerId(TimerKind.LOOKUP, f"{c}"))),
            cid.map(lambda c: TimerFired(key, TimerId(TimerKind.RETRY, f"{c}"))),
            st.just(TimerFired(key, TimerId(TimerKind.CLOSE_RETRY))),
        )
        options += [update, update, outcome, outcome, timer]
    return st.one_of(options)


def _for(update: OrderUpdate, client_id: str) -> OrderUpdate:
    return OrderUpdate(
        update.key,
        client_id,
        update.status,
        update.filled_qty,
        update.avg_price,
        update.event_time,
        update.exchange_id,
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_real_transitions_read_back_the_same_from_postgres_and_the_fake(
    store: PostgresStore, data: st.DataObject
) -> None:
    store.ping()  # the pool's first connection is made (it draws jitter from `random`) now
    n = next(_examples)
    key = Key(f"h{n}", "BTCUSDT")
    fake = InMemoryStore()
    ids = itertools.count(n * 10_000 + 1)
    state = SymbolState(key)
    now = 1_700_000_000.0
    committed: Position | None = None
    for _ in range(data.draw(st.integers(3, 40), label="steps")):
        now += data.draw(st.sampled_from([0.1, 0.5, 2.0]), label="dt")
        msg = data.draw(_messages(state, now), label="message")
        result = transition(state, msg, Context(now, _POLICY, next(ids)))
        commit = result.commit
        if commit is not None:
            outcomes: list[str] = []
            for s in (fake, store):
                try:
                    s.commit(commit)
                    outcomes.append("ok")
                except StaleVersion:
                    outcomes.append("stale")
                except SignalSeen:  # an id decided before: both refuse it whole
                    outcomes.append("seen")
            assert outcomes[0] == outcomes[1], (msg, outcomes)
            if outcomes[0] != "ok":
                continue  # as an actor would: drop the transition (it would reload)
            if commit.position is not None:
                committed = commit.position
        state = result.state
    real = store.load(key)
    assert real == fake.load(key)
    if committed is not None:
        assert committed in store.positions(key.account)
    assert store.positions(key.account) == fake.positions()
    assert store.signals(key.account) == fake.signals()
    assert [e.event for e in store.journal(key.account, key.symbol)] == fake.journal()
    assert store.open_positions(key.account) == fake.open_positions(key.account)
