"""Tests written to kill the surviving mutants of the sync's part of the pure core (``make
mutate``): what a sync observation does (flat, adoption, orphans, orders of another
installation) and what a recovery resumes. Each drives :func:`actors.transition.transition`
with messages and pins the whole outcome (the state after, every journal event with its
detail, every effect). The docstrings say what each pins and why it matters.
"""

from __future__ import annotations

from dataclasses import replace

from actors.effects import CancelTimer, PlaceOrder, RequestSync
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    Message,
    OrderUpdate,
    Recover,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import (
    ExchangeStatus,
    Key,
    OrderKind,
    OrderRecord,
    OrderState,
    Status,
)
from actors.state import JournalEvent, JournalKind, Policy, SymbolState, Transition
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy()


def _step(st: SymbolState, msg: Message, now: float, policy: Policy = POLICY) -> Transition:
    return transition(st, msg, Context(now, policy, 1))


def _filled() -> SymbolState:
    """A long of 1 at 100, filled; its stop ``ps1s1`` sent, not confirmed yet."""
    st = _step(priced(KEY, at=NOW), signal(size=1.0), NOW).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 0.1)
    return _step(st, fill, NOW + 0.1).state


def _protected() -> SymbolState:
    stop = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 0.2)
    return _step(_filled(), stop, NOW + 0.2).state


def _close_refused(st: SymbolState, seq: int, now: float) -> SymbolState:
    out = ExchangeOutcome(
        KEY, CallOp.PLACE, f"ps1c{seq}", OrderKind.CLOSE, CallResult.REJECTED, "margin"
    )
    return _step(st, out, now).state


# -- recovery: what waited on a retry timer when the process died --------------------------------


def _closes_refused(times: int) -> SymbolState:
    """An operator's close of the protected position refused ``times`` times in a row (each
    retry sent by its ``close_retry`` timer); the next retry waits on that timer."""
    st = _step(_protected(), CloseRequest(KEY), NOW + 1).state
    for seq in range(1, times + 1):
        at = NOW + 2 * seq
        st = _close_refused(st, seq, at)
        if seq < times:
            st = _step(st, TimerFired(KEY, TimerId(TimerKind.CLOSE_RETRY)), at + 1).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSING and pos.close_seq == times
    return st


def test_a_close_refused_past_its_attempts_is_sent_again_after_a_restart() -> None:
    """A refused close is retried for ever (README, "Every stop-loss attempt counts"; the
    ``close_retry`` timer sends another however many were refused). Timers die with the
    process, so recovery sends the retry itself: also once ``close_max_attempts`` closes
    were refused, or the position would stay open and closing with nothing ever sent again
    (the sync adds no close past that count either). The timer of a crash of the actor
    alone is cancelled first; journaled ``close_retry`` (why ``recovery``)."""
    for times in (POLICY.close_max_attempts - 1, POLICY.close_max_attempts):
        st = _closes_refused(times)
        t = _step(st, Recover(KEY), NOW + 100)
        nxt = f"ps1c{times + 1}"
        close = OrderRecord(
            nxt, OrderKind.CLOSE, "sell", 1.0, OrderState.INTENDED, sent_at=NOW + 100, attempts=1
        )
        assert t.effects == (
            RequestSync(KEY, "recovery"),
            CancelTimer(KEY, TimerId(TimerKind.CLOSE_RETRY)),
            PlaceOrder(KEY, 1, close, reduce_only=True),
        ), times

        def ev(kind: JournalKind, **detail: object) -> JournalEvent:
            return JournalEvent(1, kind, Status.CLOSING, Status.CLOSING, NOW + 100, detail)

        assert t.commit is not None and t.commit.events == (
            ev(JournalKind.RECOVERING),
            ev(JournalKind.CLOSE_RETRY, why="recovery"),
        ), times
        before, after = st.position, t.state.position
        assert before is not None
        assert after == replace(
            before,
            orders=(*before.orders, close),
            close_seq=times + 1,
            updated_at=NOW + 100,
            version=before.version + 1,
        ), times
