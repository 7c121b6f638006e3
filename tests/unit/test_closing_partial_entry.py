"""Closing while the entry is still filling: nothing of the entry may stay open on the exchange.

Found by the race trial (``bench.race``): a take-profit closed a partly filled entry, the rest
of the entry filled afterwards, the close covered the first part only and the stop was canceled
with the close, so the rest stayed open without a stop until the sync adopted it.
"""

from __future__ import annotations

from actors.effects import CancelOrder, LookupOrder, PlaceOrder
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    OrderUpdate,
    SyncObservation,
)
from actors.model import CloseReason, ExchangePosition, ExchangeStatus, Key, OrderKind, Side, Status
from actors.state import Policy, SymbolState
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")


def _ctx() -> Context:
    ids = iter(range(1, 100))
    return Context(1000.0, Policy(), next(ids))


def _partly_filled_and_protected(ctx: Context) -> SymbolState:
    st = transition(priced(KEY, at=ctx.now), signal(size=1.0), ctx).state
    part = OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.4, 60_000.0, 1.0)
    st = transition(st, part, ctx).state
    st = transition(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0), ctx).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    assert st.position.qty == 0.4
    return st


def test_closing_cancels_the_rest_of_a_partly_filled_entry() -> None:
    ctx = _ctx()
    st = _partly_filled_and_protected(ctx)
    t = transition(st, CloseRequest(KEY, CloseReason.MANUAL, "operator"), ctx)
    cancels = [e for e in t.effects if isinstance(e, CancelOrder)]
    assert [(c.client_id, c.kind) for c in cancels] == [("ps1e1", OrderKind.ENTRY)]
    closes = [e for e in t.effects if isinstance(e, PlaceOrder)]
    assert len(closes) == 1 and closes[0].reduce_only and closes[0].order.qty == 0.4


def test_a_fill_while_closing_is_closed_too_and_the_stop_stays_until_all_is_closed() -> None:
    ctx = _ctx()
    st = _partly_filled_and_protected(ctx)
    st = transition(st, CloseRequest(KEY, CloseReason.MANUAL, "operator"), ctx).state
    # the entry fills further before its cancel lands
    t = transition(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 60_000.0, 3.0), ctx)
    extra = [e for e in t.effects if isinstance(e, PlaceOrder)]
    assert len(extra) == 1
    assert extra[0].reduce_only and extra[0].order.kind is OrderKind.CLOSE
    assert abs(extra[0].order.qty - 0.6) < 1e-9
    assert t.commit is not None  # the added close is written before it is sent
    st = t.state
    # the first close fills: still closing, the stop is not canceled yet
    t = transition(st, OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 0.4, 60_100.0, 4.0), ctx)
    assert t.state.position is not None and t.state.position.status is Status.CLOSING
    assert not [e for e in t.effects if isinstance(e, CancelOrder)]
    # the second close fills: closed, the stop goes
    t = transition(
        t.state, OrderUpdate(KEY, "ps1c2", ExchangeStatus.FILLED, 0.6, 60_100.0, 5.0), ctx
    )
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSED
    assert [e.client_id for e in t.effects if isinstance(e, CancelOrder)] == ["ps1s1"]


def _at(now: float, base: Context) -> Context:
    return Context(now, base.policy, base.next_id)


def _closing_one(ctx: Context) -> SymbolState:
    st = transition(priced(KEY, at=ctx.now), signal(size=1.0), ctx).state
    st = transition(
        st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 60_000.0, 1.0), ctx
    ).state
    st = transition(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0), ctx).state
    st = transition(st, CloseRequest(KEY, CloseReason.MANUAL, "operator"), ctx).state
    assert st.position is not None and st.position.status is Status.CLOSING
    return st


def test_a_sync_during_a_close_filling_in_parts_does_not_end_it_early() -> None:
    """The close fills in parts; a sync between parts shows the smaller position. Taking that
    as the position's size made the next part look like the whole close: the position was
    closed (and its stop canceled) while the exchange still held the rest."""
    ctx = _ctx()
    st = _closing_one(ctx)
    st = transition(
        st, OrderUpdate(KEY, "ps1c1", ExchangeStatus.PARTIALLY_FILLED, 0.3, 60_000.0, 3.0), ctx
    ).state
    obs = SyncObservation(KEY, ExchangePosition(Side.LONG, 0.7, 60_000.0), (), 2000.0)
    t = transition(st, obs, _at(2000.5, ctx))
    assert t.state.position is not None and t.state.position.qty == 1.0
    assert not [e for e in t.effects if isinstance(e, PlaceOrder)]
    part2 = OrderUpdate(KEY, "ps1c1", ExchangeStatus.PARTIALLY_FILLED, 0.7, 60_000.0, 4.0)
    t = transition(t.state, part2, _at(2001.0, ctx))
    assert t.state.position is not None and t.state.position.status is Status.CLOSING
    last = OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 60_000.0, 5.0)
    t = transition(t.state, last, _at(2002.0, ctx))
    assert t.state.position is not None and t.state.position.status is Status.CLOSED


def test_a_sync_showing_more_than_the_closes_remove_closes_the_excess() -> None:
    ctx = _ctx()
    st = _partly_filled_and_protected(ctx)
    st = transition(st, CloseRequest(KEY, CloseReason.MANUAL, "operator"), ctx).state
    # the entry filled to 1.0 on the exchange, unheard of; the close of 0.4 has not run yet
    obs = SyncObservation(KEY, ExchangePosition(Side.LONG, 1.0, 60_000.0), (), 2000.0)
    t = transition(st, obs, _at(2000.5, ctx))
    extra = [e for e in t.effects if isinstance(e, PlaceOrder)]
    assert len(extra) == 1 and extra[0].reduce_only
    assert abs(extra[0].order.qty - 0.6) < 1e-9
    assert t.state.position is not None and abs(t.state.position.qty - 1.0) < 1e-9
    # an observation older than what the actor knows since changes nothing
    older = SyncObservation(KEY, ExchangePosition(Side.LONG, 1.6, 60_000.0), (), 2000.2)
    again = transition(t.state, older, _at(2001.0, ctx))
    assert not [e for e in again.effects if isinstance(e, PlaceOrder)]


def test_a_sync_showing_more_fills_fetches_the_entry_so_its_record_is_not_lost() -> None:
    """A dropped user stream lost the entry's later fill events: the sync corrects the
    position's quantity, and the entry's own record is fetched, so the database knows every
    fill the exchange made (found by the race trial as a lost update)."""
    ctx = _ctx()
    st = _partly_filled_and_protected(ctx)
    obs = SyncObservation(KEY, ExchangePosition(Side.LONG, 0.7, 60_000.0), (), 2000.0)
    t = transition(st, obs, _at(2000.5, ctx))
    assert t.state.position is not None and t.state.position.qty == 0.7
    lookups = [e for e in t.effects if isinstance(e, LookupOrder) and e.client_id == "ps1e1"]
    assert [(e.client_id, e.kind) for e in lookups] == [("ps1e1", OrderKind.ENTRY)]
    found = ExchangeOutcome(
        KEY,
        CallOp.LOOKUP,
        "ps1e1",
        OrderKind.ENTRY,
        CallResult.FOUND,
        "",
        OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.7, 60_000.0, 6.0),
    )
    t = transition(t.state, found, _at(2001.0, ctx))
    pos = t.state.position
    assert pos is not None
    entry = pos.order("ps1e1")
    assert entry is not None and entry.filled_qty == 0.7
    assert t.commit is not None
