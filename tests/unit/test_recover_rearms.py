"""A restart loses the actor's timers: recovery must resume whatever only a timer would have.

Found by the chaos trial (``make chaos``): a trailing stop-loss was refused (margin), its retry
waited on a timer, the process was killed, and after the restart the position sat ``active``
with its newest stop refused and nothing left to send it again. The same holds for a first
stop (``pending_sl``: then nothing protects the position at all) and for a close whose retry
was pending.
"""

from __future__ import annotations

from actors.effects import CancelTimer, Effect, PlaceOrder, StartTimer
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    MarkPriceTick,
    OrderUpdate,
    Recover,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import CloseReason, ExchangeStatus, Key, OrderKind, OrderState, Status
from actors.state import Policy, SymbolState
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")


def _ctx(now: float = 1000.0) -> Context:
    ids = iter(range(1, 100))
    return Context(now, Policy(), next(ids))


def _refused(cid: str, kind: OrderKind) -> ExchangeOutcome:
    return ExchangeOutcome(
        KEY, CallOp.PLACE, cid, kind, CallResult.REJECTED, "margin is insufficient"
    )


def _placed(effects: tuple[Effect, ...] | list[Effect]) -> list[str]:
    return [e.order.client_id for e in effects if isinstance(e, PlaceOrder)]


def _waits_on_a_timer(effects: tuple[Effect, ...] | list[Effect], name: str) -> bool:
    return any(isinstance(e, StartTimer) and str(e.name) == name for e in effects)


def _filled(ctx: Context, **kw: object) -> SymbolState:
    st = transition(priced(KEY, at=ctx.now), signal(size=1.0, **kw), ctx).state  # type: ignore[arg-type]
    return transition(
        st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0), ctx
    ).state


def test_a_refused_trailing_stop_is_sent_again_after_a_restart() -> None:
    ctx = _ctx()
    st = _filled(ctx, stop=90.0, trailing=5.0)
    st = transition(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0), ctx).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    t = transition(st, MarkPriceTick(KEY, 120.0, 3.0), ctx)
    assert _placed(t.effects) == ["ps1s2"]
    t = transition(t.state, _refused("ps1s2", OrderKind.STOP_LOSS), ctx)
    assert _waits_on_a_timer(t.effects, "retry:ps1s2")
    # the process dies here: the timer is gone; the store holds the position as it was
    restarted = transition(t.state, Recover(KEY), _ctx(1002.0))
    assert _placed(restarted.effects) == ["ps1s2"]
    pos = restarted.state.position
    assert pos is not None and pos.status is Status.ACTIVE
    assert restarted.commit is not None  # the resend is written before it is sent


def test_a_refused_first_stop_is_sent_again_after_a_restart() -> None:
    ctx = _ctx()
    st = _filled(ctx, stop=90.0)
    t = transition(st, _refused("ps1s1", OrderKind.STOP_LOSS), ctx)
    assert _waits_on_a_timer(t.effects, "retry:ps1s1")
    assert t.state.position is not None and t.state.position.status is Status.PENDING_SL
    restarted = transition(t.state, Recover(KEY), _ctx(1002.0))
    assert _placed(restarted.effects) == ["ps1s1"]
    again = restarted.state.position
    assert again is not None
    stop = again.order("ps1s1")
    assert stop is not None and stop.state is OrderState.INTENDED


def test_a_restart_after_the_stop_deadline_closes_at_market_instead() -> None:
    """The stop-loss deadline runs from the first attempt, across a restart (I5): a position
    still unprotected when the process comes back after ``sl_deadline_s`` is closed."""
    ctx = _ctx()
    st = _filled(ctx, stop=90.0)
    t = transition(st, _refused("ps1s1", OrderKind.STOP_LOSS), ctx)
    late = ctx.now + Policy().sl_deadline_s + 1.0
    restarted = transition(t.state, Recover(KEY), _ctx(late))
    assert _placed(restarted.effects) == ["ps1c1"]
    pos = restarted.state.position
    assert pos is not None and pos.status is Status.CLOSING
    assert pos.close_reason is CloseReason.EMERGENCY


def test_a_stop_refused_too_often_before_the_restart_is_not_retried_forever() -> None:
    """A refusal that already used the last attempt closed the position: recovery resumes the
    close, not the stop."""
    ctx = _ctx()
    st = _filled(ctx, stop=90.0)
    for _ in range(Policy().sl_max_attempts):
        t = transition(st, _refused("ps1s1", OrderKind.STOP_LOSS), ctx)
        st = transition(t.state, TimerFired(KEY, TimerId(TimerKind.RETRY, "ps1s1")), ctx).state
    assert st.position is not None and st.position.status is Status.CLOSING
    restarted = transition(st, Recover(KEY), _ctx(2000.0))
    assert not [cid for cid in _placed(restarted.effects) if "s" in cid.removeprefix("ps")]


def test_a_close_waiting_for_its_retry_is_resumed_after_a_restart() -> None:
    ctx = _ctx()
    st = _filled(ctx, stop=90.0)
    st = transition(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0), ctx).state
    st = transition(st, CloseRequest(KEY, CloseReason.MANUAL, "operator"), ctx).state
    t = transition(st, _refused("ps1c1", OrderKind.CLOSE), ctx)
    assert _waits_on_a_timer(t.effects, "close_retry")
    restarted = transition(t.state, Recover(KEY), _ctx(2000.0))
    assert _placed(restarted.effects) == ["ps1c2"]
    pos = restarted.state.position
    assert pos is not None and pos.status is Status.CLOSING


def test_recovery_with_nothing_waiting_sends_nothing_new() -> None:
    """A protected position resumes as it is: no second stop, no close."""
    ctx = _ctx()
    st = _filled(ctx, stop=90.0)
    st = transition(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0), ctx).state
    restarted = transition(st, Recover(KEY), _ctx(2000.0))
    assert _placed(restarted.effects) == []


def test_after_a_crash_of_the_actor_alone_the_old_retry_timer_is_cancelled() -> None:
    """The actor crashed, the process did not: the retry timer it set is still there. The
    recovery's resend cancels it, so the same stop is not sent twice."""
    ctx = _ctx()
    st = _filled(ctx, stop=90.0)
    t = transition(st, _refused("ps1s1", OrderKind.STOP_LOSS), ctx)
    restarted = transition(t.state, Recover(KEY), _ctx(2000.0))
    names = [str(e.name) for e in restarted.effects if isinstance(e, CancelTimer)]
    assert names == ["retry:ps1s1"]
    cancel_at = next(i for i, e in enumerate(restarted.effects) if isinstance(e, CancelTimer))
    place_at = next(i for i, e in enumerate(restarted.effects) if isinstance(e, PlaceOrder))
    assert cancel_at < place_at
