"""A stale "not found" for a stop, and a stop re-sent for ever while an older one rests (found
by the simulation, seed 188 of ``python -m testkit.dst``).

A lookup asked while the stop's placement was in doubt answered "not found" after the stop
was re-placed and confirmed: the actor placed another stop beside it. The older, confirmed
stop made the position ``covered()``, so the newer stop's failed placements spent no attempt
and it was re-sent for ever (13 placements in 6 s). Driven by messages through
:func:`actors.transition.transition`.
"""

from __future__ import annotations

from actors.effects import CancelOrder, LookupOrder, PlaceOrder
from actors.messages import (
    CallOp,
    CallResult,
    ExchangeOutcome,
    MarkPriceTick,
    OrderUpdate,
    SyncObservation,
)
from actors.model import (
    ExchangePosition,
    ExchangeStatus,
    Key,
    OrderKind,
    OrderState,
    Side,
    Status,
)
from actors.state import Policy, SymbolState
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")
POLICY = Policy()


def _ctx(now: float) -> Context:
    return Context(now, POLICY, 1)


def _outcome(op: CallOp, cid: str, result: CallResult) -> ExchangeOutcome:
    return ExchangeOutcome(KEY, op, cid, OrderKind.STOP_LOSS, result)


def _filled(trailing: float | None = None) -> SymbolState:
    sig = signal(size=1.0, trailing=trailing)
    st = transition(priced(KEY, at=1000.0), sig, _ctx(1000.0)).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1000.1)
    return transition(st, fill, _ctx(1000.1)).state


def _stop(st: SymbolState, cid: str) -> OrderState:
    assert st.position is not None
    order = st.position.order(cid)
    assert order is not None
    return order.state


def test_a_not_found_asked_before_the_stop_was_confirmed_places_no_other_stop() -> None:
    st = _filled()
    # the stop's placement times out: looked up; meanwhile the stop lands and is confirmed
    st = transition(st, _outcome(CallOp.PLACE, "ps1s1", CallResult.UNKNOWN), _ctx(1000.2)).state
    landed = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 1000.4)
    st = transition(st, landed, _ctx(1000.4)).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    # the lookup asked before it landed answers now
    stale = _outcome(CallOp.LOOKUP, "ps1s1", CallResult.NOT_FOUND)
    t = transition(st, stale, _ctx(1000.5))
    assert not [e for e in t.effects if isinstance(e, PlaceOrder)]
    assert _stop(t.state, "ps1s1") is OrderState.ACCEPTED
    assert t.state.position is not None and t.state.position.stop_seq == 1


def test_a_not_found_for_the_sync_lookup_of_a_confirmed_stop_still_protects_again() -> None:
    st = _filled()
    confirmed = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 1000.2)
    st = transition(st, confirmed, _ctx(1000.2)).state
    # the open-order list misses the stop after the grace period: looked up by id
    obs = SyncObservation(KEY, ExchangePosition(Side.LONG, 1.0, 100.0), (), 1010.0)
    t = transition(st, obs, _ctx(1010.0))
    assert [e.client_id for e in t.effects if isinstance(e, LookupOrder)] == ["ps1s1"]
    gone = _outcome(CallOp.LOOKUP, "ps1s1", CallResult.NOT_FOUND)
    t = transition(t.state, gone, _ctx(1010.2))
    placed = [e.order.client_id for e in t.effects if isinstance(e, PlaceOrder)]
    assert placed == ["ps1s2"]


def test_a_stop_is_not_re_sent_for_ever_while_an_older_confirmed_stop_rests() -> None:
    st = _filled(trailing=5.0)
    confirmed = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 1000.2)
    st = transition(st, confirmed, _ctx(1000.2)).state
    # the price rises: the trailing stop moves (ps1s2) while ps1s1 rests
    t = transition(st, MarkPriceTick(KEY, 110.0, 1001.0, received_at=1001.0), _ctx(1001.0))
    assert [e.order.client_id for e in t.effects if isinstance(e, PlaceOrder)] == ["ps1s2"]
    st = t.state
    now = 1001.0
    placements = 1
    cancels: list[str] = []
    # its placements never arrive: each lookup says "not found", each one re-sends it
    for _ in range(20):
        now += 0.3
        st = transition(st, _outcome(CallOp.PLACE, "ps1s2", CallResult.UNKNOWN), _ctx(now)).state
        now += 0.3
        t = transition(st, _outcome(CallOp.LOOKUP, "ps1s2", CallResult.NOT_FOUND), _ctx(now))
        st = t.state
        placements += len([e for e in t.effects if isinstance(e, PlaceOrder)])
        cancels += [e.client_id for e in t.effects if isinstance(e, CancelOrder)]
        if _stop(st, "ps1s2") is OrderState.PENDING_CANCEL:
            break
    assert placements <= POLICY.sl_max_attempts
    assert cancels == ["ps1s2"]  # given up (in case one landed after all)
    # the older stop still protects the position
    assert _stop(st, "ps1s1") is OrderState.ACCEPTED
    assert st.position is not None and st.position.status is Status.ACTIVE
