"""Tests written to kill mutants of the order facts and timers of the pure core
(``make mutate``): what a report about one of our orders (stream, reply, lookup) does to the
position it belongs to, also after that position ended, and what the timers do. Driven
through :func:`actors.transition.transition` with messages; each pins the whole result (the
state after, every journal event with its detail, every effect). The docstrings say what
each pins.
"""

from __future__ import annotations

import math
from dataclasses import replace

from actors.effects import (
    CancelOrder,
    CancelTimer,
    LookupOrder,
    PlaceOrder,
    RequestSync,
    StartTimer,
)
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    MarkPriceTick,
    OrderUpdate,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import (
    CloseReason,
    ExchangePosition,
    ExchangeStatus,
    OrderKind,
    OrderState,
    Side,
    Status,
)
from actors.orders import intended_order
from actors.state import JournalEvent, JournalKind, SymbolState, Transition
from actors.transition import Context, transition
from testkit.world import priced, signal
from tests.unit.kills import KEY, NOW, POLICY, assert_whole, ctx, protected_stepwise


def _closing() -> SymbolState:
    """The protected position asked to close: its close ``ps1c1`` sent (the stop stays)."""
    t = transition(protected_stepwise(), CloseRequest(KEY), ctx(NOW + 1))
    assert [type(e) for e in t.effects] == [PlaceOrder]
    return t.state


# -- a close's report after its position ended ------------------------------------------------


def test_a_close_reported_after_the_stop_closed_its_position_is_recorded_only() -> None:
    """The close was in flight (its placement unanswered, looked up) when the stop filled and
    closed the position ``stop_loss``; the lookup then finds the close expired (reduce-only:
    nothing left to close), or still working. The close's record says so (its state, the
    exchange's id and event time), journaled as an order fact via the lookup; the close
    reason stays ``stop_loss`` (only a position closed on the sync's word has its reason
    corrected) and nothing is sent: not even a cancel of a working close, a reduce-only
    market order that fills at once or expires and cannot open anything (unlike a stop or
    an entry); the position's timers were cancelled at its end."""
    unknown = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1c1", OrderKind.CLOSE, CallResult.UNKNOWN, "timeout"
    )
    st = transition(_closing(), unknown, ctx(NOW + 1.1)).state
    t = transition(st, TimerFired(KEY, TimerId(TimerKind.LOOKUP, "ps1c1")), ctx(NOW + 1.6))
    assert t.effects == (LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),)
    stop_filled = OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, NOW + 1.7, "x1")
    st = transition(t.state, stop_filled, ctx(NOW + 1.7)).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSED
    assert pos.close_reason is CloseReason.STOP_LOSS
    entry, stop, close = pos.orders
    assert close.state is OrderState.UNKNOWN
    for status, state in (
        (ExchangeStatus.EXPIRED, OrderState.CANCELED),
        (ExchangeStatus.NEW, OrderState.ACCEPTED),
    ):
        update = OrderUpdate(KEY, "ps1c1", status, 0.0, None, NOW + 1.75, "x2")
        found = ExchangeOutcome(
            KEY, CallOp.LOOKUP, "ps1c1", OrderKind.CLOSE, CallResult.FOUND, update=update
        )
        t = transition(st, found, ctx(NOW + 2))
        event = JournalEvent(
            1,
            JournalKind.ORDER_FACT,
            Status.CLOSED,
            Status.CLOSED,
            NOW + 2,
            {"client_id": "ps1c1", "state": state.value, "filled": 0.0, "via": "lookup"},
        )
        assert_whole(
            t,
            st,
            found,
            NOW + 2,
            orders=(
                entry,
                stop,
                replace(close, state=state, exchange_id="x2", event_time=NOW + 1.75),
            ),
            effects=(),
            events=(event,),
            label=status,
        )


def _closed_on_the_syncs_word_while_closing() -> SymbolState:
    """A closing position on record without a close reason (``close_fact`` closes such a one
    ``manual``), its close ``ps1c1`` resting; the sync sees it flat, the lookups of its stop
    and close go unanswered until ``flat_confirm_s`` passed: closed ``closed_on_exchange``,
    its close looked up again, and the next close id (one a restart may have lost)."""
    st = _closing()
    accepted = ExchangeOutcome(
        KEY,
        CallOp.PLACE,
        "ps1c1",
        OrderKind.CLOSE,
        CallResult.ACCEPTED,
        update=OrderUpdate(KEY, "ps1c1", ExchangeStatus.NEW, 0.0, None, NOW + 1.1, "x2"),
    )
    st = transition(st, accepted, ctx(NOW + 1.1)).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSING
    st = replace(st, position=replace(pos, close_reason=None))
    t = transition(st, SyncObservation(KEY, None, (), NOW + 10), ctx(NOW + 10))
    assert t.effects == (
        LookupOrder(KEY, "ps1s1", OrderKind.STOP_LOSS),
        LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),
        StartTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM), POLICY.flat_confirm_s),
    )
    t = transition(t.state, TimerFired(KEY, TimerId(TimerKind.FLAT_CONFIRM)), ctx(NOW + 12))
    assert t.effects == (
        CancelTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1s1")),
        CancelTimer(KEY, TimerId(TimerKind.RETRY, "ps1s1")),
        CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, ""),
        CancelTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1c1")),
        CancelTimer(KEY, TimerId(TimerKind.RETRY, "ps1c1")),
        CancelTimer(KEY, TimerId(TimerKind.SL_DEADLINE)),
        CancelTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM)),
        CancelTimer(KEY, TimerId(TimerKind.CLOSE_RETRY)),
        LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),
        LookupOrder(KEY, "ps1c2", OrderKind.CLOSE),
    )
    pos = t.state.position
    assert pos is not None and pos.status is Status.CLOSED
    assert pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE
    return t.state


def test_a_close_filled_after_a_close_on_the_syncs_word_corrects_the_reason() -> None:
    """The stream then reports the close filled: the close's record takes the fill, and the
    close reason is corrected from ``closed_on_exchange`` to ``manual`` (the position's own
    close closed it), journaled ``close_reason_corrected`` naming the close and the stream;
    nothing is sent (the stop's cancel is out already)."""
    st = _closed_on_the_syncs_word_while_closing()
    pos = st.position
    assert pos is not None
    entry, stop, close = pos.orders
    filled = OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 99.0, NOW + 11, "x2")
    t = transition(st, filled, ctx(NOW + 13))
    event = JournalEvent(
        1,
        JournalKind.CLOSE_REASON_CORRECTED,
        Status.CLOSED,
        Status.CLOSED,
        NOW + 13,
        {"client_id": "ps1c1", "was": "closed_on_exchange", "reason": "manual", "via": "stream"},
    )
    assert_whole(
        t,
        st,
        filled,
        NOW + 13,
        orders=(
            entry,
            stop,
            replace(
                close,
                state=OrderState.FILLED,
                filled_qty=1.0,
                avg_price=99.0,
                event_time=NOW + 11,
            ),
        ),
        close_reason=CloseReason.MANUAL,
        effects=(),
        events=(event,),
    )


# -- the close reason of a position closed on the sync's word ---------------------------------


def _closed_on_the_syncs_word() -> SymbolState:
    """The protected position seen flat by the sync, the lookup of its stop refused, the
    flat confirmed: closed ``closed_on_exchange``, its stop ``pending_cancel``."""
    t = transition(protected_stepwise(), SyncObservation(KEY, None, (), NOW + 10), ctx(NOW + 10))
    refused = ExchangeOutcome(
        KEY, CallOp.LOOKUP, "ps1s1", OrderKind.STOP_LOSS, CallResult.UNKNOWN, "rate_limited"
    )
    st = transition(t.state, refused, ctx(NOW + 10.2)).state
    st = transition(st, TimerFired(KEY, TimerId(TimerKind.FLAT_CONFIRM)), ctx(NOW + 12)).state
    pos = st.position
    assert pos is not None and pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE
    assert [o.state for o in pos.orders] == [OrderState.FILLED, OrderState.PENDING_CANCEL]
    return st


def _stop_report(status: ExchangeStatus, filled: float, at: float = NOW + 11) -> OrderUpdate:
    return OrderUpdate(KEY, "ps1s1", status, filled, 90.0 if filled else None, at, "x1")


def test_the_stops_report_corrects_the_reason_only_when_the_stop_closed_the_position() -> None:
    """After a close on the sync's word, a report of the stop (the stream) corrects the close
    reason to ``stop_loss`` when it shows the stop closed the position: reported filled (of
    whatever was open: a hand trade may have closed part), or filled in all of the position's
    quantity whatever the status says. A part of it only, or "filled" with nothing filled,
    does not: the stop's record takes the report (an order fact) and the reason stays
    ``closed_on_exchange``. Nothing is sent either way (the stop's cancel is out already)."""
    st = _closed_on_the_syncs_word()
    pos = st.position
    assert pos is not None
    entry, stop = pos.orders
    cases = [
        (ExchangeStatus.PARTIALLY_FILLED, 0.5, OrderState.PENDING_CANCEL, False),
        (ExchangeStatus.FILLED, 0.0, OrderState.FILLED, False),
        (ExchangeStatus.FILLED, 0.5, OrderState.FILLED, True),
        (ExchangeStatus.PARTIALLY_FILLED, 1.0, OrderState.PENDING_CANCEL, True),
    ]
    for status, filled, state, corrected in cases:
        report = _stop_report(status, filled)
        t = transition(st, report, ctx(NOW + 13))
        after = replace(
            stop,
            state=state,
            filled_qty=filled,
            avg_price=90.0 if filled else None,
            exchange_id="x1",
            event_time=NOW + 11,
        )
        detail: dict[str, object] = (
            {"client_id": "ps1s1", "was": "closed_on_exchange", "reason": "stop_loss"}
            if corrected
            else {"client_id": "ps1s1", "state": state.value, "filled": filled}
        )
        kind = JournalKind.CLOSE_REASON_CORRECTED if corrected else JournalKind.ORDER_FACT
        event = JournalEvent(
            1, kind, Status.CLOSED, Status.CLOSED, NOW + 13, {**detail, "via": "stream"}
        )
        assert_whole(
            t,
            st,
            report,
            NOW + 13,
            orders=(entry, after),
            close_reason=CloseReason.STOP_LOSS if corrected else CloseReason.CLOSED_ON_EXCHANGE,
            effects=(),
            events=(event,),
            label=(status, filled),
        )


def test_a_stop_filled_after_its_position_closed_by_its_close_keeps_the_reason() -> None:
    """A position closed by its own close (``manual``) is not relabelled by a later report
    that its stop filled too (a race at the trigger): only a position closed on the sync's
    word has its reason corrected. The stop's record takes the fill (an order fact)."""
    accepted = ExchangeOutcome(
        KEY,
        CallOp.PLACE,
        "ps1c1",
        OrderKind.CLOSE,
        CallResult.ACCEPTED,
        update=OrderUpdate(KEY, "ps1c1", ExchangeStatus.NEW, 0.0, None, NOW + 1.1, "x2"),
    )
    st = transition(_closing(), accepted, ctx(NOW + 1.1)).state
    close_filled = OrderUpdate(KEY, "ps1c1", ExchangeStatus.FILLED, 1.0, 99.0, NOW + 1.2, "x2")
    st = transition(st, close_filled, ctx(NOW + 1.2)).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSED
    assert pos.close_reason is CloseReason.MANUAL
    entry, stop, close = pos.orders
    assert stop.state is OrderState.PENDING_CANCEL
    report = _stop_report(ExchangeStatus.FILLED, 1.0, NOW + 1.3)
    t = transition(st, report, ctx(NOW + 2))
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.CLOSED,
        Status.CLOSED,
        NOW + 2,
        {"client_id": "ps1s1", "state": "filled", "filled": 1.0, "via": "stream"},
    )
    assert_whole(
        t,
        st,
        report,
        NOW + 2,
        orders=(
            entry,
            replace(
                stop,
                state=OrderState.FILLED,
                filled_qty=1.0,
                avg_price=90.0,
                exchange_id="x1",
                event_time=NOW + 1.3,
            ),
            close,
        ),
        effects=(),
        events=(event,),
    )


# -- timers that come due when there is nothing left for them to do ----------------------------


def test_a_stop_deadline_due_where_no_stop_exists_changes_nothing() -> None:
    """A delivered timer cannot be called back: the stop-loss deadline of an earlier position
    may come due while the next one waits for its entry (no stop on record yet). Nothing
    changes and nothing is sent: the deadline is about an unprotected filled position."""
    st = transition(priced(KEY, at=NOW), signal(size=1.0), ctx(NOW)).state
    pos = st.position
    assert pos is not None and pos.status is Status.PENDING_ENTRY
    assert pos.latest(OrderKind.STOP_LOSS) is None
    t = transition(st, TimerFired(KEY, TimerId(TimerKind.SL_DEADLINE)), ctx(NOW + 10))
    assert t == Transition(st)


def test_a_close_lookup_due_after_the_close_was_confirmed_asks_nothing() -> None:
    """A close whose placement went unanswered is looked up after ``lookup_delay_s``; when
    the stream confirms it first, the lookup timer (not cancelled by the report) finds
    nothing to ask: the close rests, its fill comes by the stream. Nor does a lookup timer
    naming the position's next close id (no such order on record: the lost-close lookup
    is only for a position closed on the sync's word)."""
    unknown = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1c1", OrderKind.CLOSE, CallResult.UNKNOWN, "timeout"
    )
    t = transition(_closing(), unknown, ctx(NOW + 1.1))
    assert t.effects == (
        StartTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1c1"), POLICY.lookup_delay_s),
    )
    rests = OrderUpdate(KEY, "ps1c1", ExchangeStatus.NEW, 0.0, None, NOW + 1.15, "x2")
    st = transition(t.state, rests, ctx(NOW + 1.2)).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSING
    close = pos.order("ps1c1")
    assert close is not None and close.state is OrderState.ACCEPTED
    t = transition(st, TimerFired(KEY, TimerId(TimerKind.LOOKUP, "ps1c1")), ctx(NOW + 1.35))
    assert t == Transition(st)
    t = transition(st, TimerFired(KEY, TimerId(TimerKind.LOOKUP, "ps1c2")), ctx(NOW + 1.35))
    assert t == Transition(st)


def test_only_a_lookup_timer_asks_about_the_close_a_restart_may_have_lost() -> None:
    """After a close on the sync's word, the next close id (a close sent but lost with its
    commit) is looked up while its lookup timer comes due; a retry or cancel timer of that
    id (from before the restart) sends nothing: the position has no record of that order,
    so there is nothing to resend or cancel."""
    st = _closed_on_the_syncs_word()
    pos = st.position
    assert pos is not None and pos.close_seq == 0
    t = transition(st, TimerFired(KEY, TimerId(TimerKind.LOOKUP, "ps1c1")), ctx(NOW + 13))
    assert t == Transition(st, (LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),))
    for kind in (TimerKind.RETRY, TimerKind.CANCEL):
        t = transition(st, TimerFired(KEY, TimerId(kind, "ps1c1")), ctx(NOW + 13))
        assert t == Transition(st), kind


# -- reports of a stop while its position is open ---------------------------------------------


def test_a_stop_filled_in_part_leaves_the_position_open_and_in_whole_closes_it() -> None:
    """A report that the stop filled part of the position records the fill only (the stop
    still rests for the rest; the sync corrects the quantity). One that it filled all of it
    closes the position ``stop_loss`` even while the report still says "partially filled":
    what is left of the stop is cancelled (it must not stay behind, I9) with the timers."""
    st = protected_stepwise()
    pos = st.position
    assert pos is not None
    entry, stop = pos.orders
    for filled in (0.4, 1.0):
        report = OrderUpdate(
            KEY, "ps1s1", ExchangeStatus.PARTIALLY_FILLED, filled, 90.0, NOW + 1, "x1"
        )
        t = transition(st, report, ctx(NOW + 1))
        after = replace(
            stop,
            state=OrderState.PARTIALLY_FILLED,
            filled_qty=filled,
            avg_price=90.0,
            exchange_id="x1",
            event_time=NOW + 1,
        )
        if filled < 1.0:
            events: tuple[JournalEvent, ...] = (
                JournalEvent(
                    1,
                    JournalKind.ORDER_FACT,
                    Status.ACTIVE,
                    Status.ACTIVE,
                    NOW + 1,
                    {
                        "client_id": "ps1s1",
                        "state": "partially_filled",
                        "filled": 0.4,
                        "via": "stream",
                    },
                ),
            )
            assert_whole(t, st, report, NOW + 1, orders=(entry, after), effects=(), events=events)
            continue
        events = (
            JournalEvent(
                1,
                JournalKind.CANCEL_REQUESTED,
                Status.CLOSED,
                Status.CLOSED,
                NOW + 1,
                {"client_id": "ps1s1", "why": ""},
            ),
            JournalEvent(
                1,
                JournalKind.CLOSED,
                Status.ACTIVE,
                Status.CLOSED,
                NOW + 1,
                {"reason": "stop_loss", "via": "stream"},
            ),
        )
        assert_whole(
            t,
            st,
            report,
            NOW + 1,
            status=Status.CLOSED,
            orders=(entry, replace(after, state=OrderState.PENDING_CANCEL)),
            close_reason=CloseReason.STOP_LOSS,
            closed_at=NOW + 1,
            effects=(
                CancelTimer(KEY, TimerId(TimerKind.LOOKUP, "ps1s1")),
                CancelTimer(KEY, TimerId(TimerKind.RETRY, "ps1s1")),
                CancelOrder(KEY, "ps1s1", OrderKind.STOP_LOSS, ""),
                CancelTimer(KEY, TimerId(TimerKind.SL_DEADLINE)),
                CancelTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM)),
                CancelTimer(KEY, TimerId(TimerKind.CLOSE_RETRY)),
            ),
            events=events,
            state_changes={"last_closed_at": NOW + 1},
        )


def _stop_missing() -> SymbolState:
    """The sync does not list the confirmed stop ``ps1s1`` (past ``stop_grace_s``): it is
    looked up (``stop_lookup_at`` set); the exchange does not know it: a new stop ``ps1s2``
    goes out, a new unprotected spell (its deadline started)."""
    open_ = ExchangePosition(Side.LONG, 1.0, 100.0)
    t = transition(protected_stepwise(), SyncObservation(KEY, open_, (), NOW + 10), ctx(NOW + 10))
    assert t.effects == (LookupOrder(KEY, "ps1s1", OrderKind.STOP_LOSS),)
    assert t.state.stop_lookup_at == NOW + 10
    gone = ExchangeOutcome(KEY, CallOp.LOOKUP, "ps1s1", OrderKind.STOP_LOSS, CallResult.NOT_FOUND)
    t = transition(t.state, gone, ctx(NOW + 10.2))
    assert [type(e) for e in t.effects] == [StartTimer, PlaceOrder]
    pos = t.state.position
    assert pos is not None and pos.sl_since == NOW + 10.2 and pos.sl_failures == 1
    assert [(o.client_id, o.state) for o in pos.orders[1:]] == [
        ("ps1s1", OrderState.NOT_FOUND),
        ("ps1s2", OrderState.INTENDED),
    ]
    return t.state


def test_the_new_stops_confirmation_ends_the_spell_and_the_stop_lookup() -> None:
    """The new stop confirmed: the unprotected spell ends (failures and start cleared, its
    deadline cancelled), journaled ``stop_confirmed``; the lookup asked before it says
    nothing about it, so the next sync may look the stop up again (``stop_lookup_at``
    cleared). The old stop, unknown to the exchange, needs no cancel."""
    st = _stop_missing()
    pos = st.position
    assert pos is not None
    entry, old, new = pos.orders
    rests = OrderUpdate(KEY, "ps1s2", ExchangeStatus.NEW, 0.0, None, NOW + 10.3, "x3")
    t = transition(st, rests, ctx(NOW + 10.4))
    event = JournalEvent(
        1, JournalKind.STOP_CONFIRMED, Status.ACTIVE, Status.ACTIVE, NOW + 10.4, {"via": "stream"}
    )
    assert_whole(
        t,
        st,
        rests,
        NOW + 10.4,
        orders=(
            entry,
            old,
            replace(new, state=OrderState.ACCEPTED, exchange_id="x3", event_time=NOW + 10.3),
        ),
        sl_failures=0,
        sl_since=None,
        effects=(CancelTimer(KEY, TimerId(TimerKind.SL_DEADLINE)),),
        events=(event,),
        state_changes={"stop_lookup_at": None},
    )


def test_the_old_stop_reported_resting_after_all_is_recorded_only() -> None:
    """The old stop reported resting after all (the exchange's answer lagged): its record
    says so (an order fact), but it is not the position's stop: the new one is not
    cancelled, the spell and its deadline go on until the new one is confirmed (which then
    cancels the old one as replaced)."""
    st = _stop_missing()
    pos = st.position
    assert pos is not None
    entry, old, new = pos.orders
    rests = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 10.3, "x1")
    t = transition(st, rests, ctx(NOW + 10.4))
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.ACTIVE,
        Status.ACTIVE,
        NOW + 10.4,
        {"client_id": "ps1s1", "state": "accepted", "filled": 0.0, "via": "stream"},
    )
    assert_whole(
        t,
        st,
        rests,
        NOW + 10.4,
        orders=(
            entry,
            replace(old, state=OrderState.ACCEPTED, exchange_id="x1", event_time=NOW + 10.3),
            new,
        ),
        effects=(),
        events=(event,),
    )


# -- an entry's reports after its position ended ----------------------------------------------


def test_a_late_entry_fill_asks_the_sync_once_and_its_cancel_is_recorded_only() -> None:
    """The entry filled half, the stop closed that half (the entry's rest is cancelled at
    the end); the entry then fills on to 0.8 before the cancel lands: that 0.3 is open on
    the exchange, so it is journaled ``late_entry_fill`` and the sync is asked to adopt it.
    The cancel's confirmation with the same fill is an order fact only: no second alarm, no
    second sync for a fill already told."""
    st = transition(priced(KEY, at=NOW), signal(size=1.0), ctx(NOW)).state
    for msg, at in (
        (OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.5, 100.0, NOW, "x0"), 0.1),
        (OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 0.2, "x1"), 0.2),
        (OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 0.5, 90.0, NOW + 1, "x1"), 1.0),
    ):
        st = transition(st, msg, ctx(NOW + at)).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSED and pos.qty == 0.5
    entry, stop = pos.orders
    assert entry.state is OrderState.PENDING_CANCEL and entry.filled_qty == 0.5

    more = OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.8, 100.0, NOW + 1.05)
    t = transition(st, more, ctx(NOW + 1.1))
    entry = replace(entry, filled_qty=0.8, event_time=NOW + 1.05)
    event = JournalEvent(
        1,
        JournalKind.LATE_ENTRY_FILL,
        Status.CLOSED,
        Status.CLOSED,
        NOW + 1.1,
        {"client_id": "ps1e1", "filled": 0.8, "qty": 0.5, "via": "stream"},
    )
    assert_whole(
        t,
        st,
        more,
        NOW + 1.1,
        orders=(entry, stop),
        effects=(RequestSync(KEY, "late entry fill"),),
        events=(event,),
    )

    st, pos = t.state, t.state.position
    assert pos is not None
    canceled = OrderUpdate(KEY, "ps1e1", ExchangeStatus.CANCELED, 0.8, 100.0, NOW + 1.15)
    t = transition(st, canceled, ctx(NOW + 1.2))
    entry = replace(entry, state=OrderState.CANCELED, event_time=NOW + 1.15)
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.CLOSED,
        Status.CLOSED,
        NOW + 1.2,
        {"client_id": "ps1e1", "state": "canceled", "filled": 0.8, "via": "stream"},
    )
    assert_whole(t, st, canceled, NOW + 1.2, orders=(entry, stop), effects=(), events=(event,))


# -- how a report is read ---------------------------------------------------------------------


def _pending_entry() -> SymbolState:
    st = transition(priced(KEY, at=NOW), signal(size=1.0), ctx(NOW)).state
    pos = st.position
    assert pos is not None and pos.status is Status.PENDING_ENTRY
    return st


def test_a_report_new_with_a_fill_is_a_partial_fill() -> None:
    """An order reported ``new`` but with a fill has filled in part: the entry is recorded
    ``partially_filled`` and the filled half is protected at once (a stop for 0.5, its
    deadline started), journaled ``entry_fill`` then ``stop_intent``."""
    st = _pending_entry()
    pos = st.position
    assert pos is not None
    (entry,) = pos.orders
    report = OrderUpdate(KEY, "ps1e1", ExchangeStatus.NEW, 0.5, 100.0, NOW + 0.1, "x0")
    t = transition(st, report, ctx(NOW + 0.2))
    stop = intended_order(1, OrderKind.STOP_LOSS, 1, "sell", 0.5, NOW + 0.2, 90.0)
    events = (
        JournalEvent(
            1,
            JournalKind.ENTRY_FILL,
            Status.PENDING_ENTRY,
            Status.PENDING_SL,
            NOW + 0.2,
            {"qty": 0.5, "price": 100.0, "via": "stream"},
        ),
        JournalEvent(
            1,
            JournalKind.STOP_INTENT,
            Status.PENDING_SL,
            Status.PENDING_SL,
            NOW + 0.2,
            {"client_id": "ps1s1", "why": "first fill"},
        ),
    )
    assert_whole(
        t,
        st,
        report,
        NOW + 0.2,
        status=Status.PENDING_SL,
        qty=0.5,
        entry_price=100.0,
        filled_at=NOW + 0.2,
        orders=(
            replace(
                entry,
                state=OrderState.PARTIALLY_FILLED,
                filled_qty=0.5,
                avg_price=100.0,
                exchange_id="x0",
                event_time=NOW + 0.1,
            ),
            stop,
        ),
        stop_seq=1,
        sl_failures=1,
        sl_since=NOW + 0.2,
        effects=(
            StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), POLICY.sl_deadline_s),
            PlaceOrder(KEY, 1, stop, close_position=True),
        ),
        events=events,
        state_changes={"bought": True},
    )


def test_a_fill_that_is_not_finite_counts_as_none() -> None:
    """A report whose filled quantity is not finite (a parse gone wrong) fills nothing: the
    entry is only known to rest (``entry_placed``); no quantity of infinity is protected."""
    st = _pending_entry()
    pos = st.position
    assert pos is not None
    (entry,) = pos.orders
    report = OrderUpdate(KEY, "ps1e1", ExchangeStatus.NEW, math.inf, 100.0, NOW + 0.1, "x0")
    t = transition(st, report, ctx(NOW + 0.2))
    event = JournalEvent(
        1,
        JournalKind.ENTRY_ACCEPTED,
        Status.PENDING_ENTRY,
        Status.ENTRY_PLACED,
        NOW + 0.2,
        {"via": "stream"},
    )
    assert_whole(
        t,
        st,
        report,
        NOW + 0.2,
        status=Status.ENTRY_PLACED,
        orders=(
            replace(
                entry,
                state=OrderState.ACCEPTED,
                avg_price=100.0,
                exchange_id="x0",
                event_time=NOW + 0.1,
            ),
        ),
        effects=(),
        events=(event,),
    )


def test_the_final_report_of_an_order_brings_its_average_price() -> None:
    """The entry filled half at 100.0; the report of its cancel (the rest expired), with the
    same fill, gives the exchange's final average price, 100.02: the entry's record takes
    it (an order fact), although no more filled."""
    st = _pending_entry()
    half = OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 0.5, 100.0, NOW + 0.1, "x0")
    st = transition(st, half, ctx(NOW + 0.1)).state
    pos = st.position
    assert pos is not None and pos.status is Status.PENDING_SL
    entry, stop = pos.orders
    report = OrderUpdate(KEY, "ps1e1", ExchangeStatus.CANCELED, 0.5, 100.02, NOW + 0.3, "x0")
    t = transition(st, report, ctx(NOW + 0.3))
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.PENDING_SL,
        Status.PENDING_SL,
        NOW + 0.3,
        {"client_id": "ps1e1", "state": "canceled", "filled": 0.5, "via": "stream"},
    )
    assert_whole(
        t,
        st,
        report,
        NOW + 0.3,
        orders=(
            replace(entry, state=OrderState.CANCELED, avg_price=100.02, event_time=NOW + 0.3),
            stop,
        ),
        effects=(),
        events=(event,),
    )


def test_an_entry_that_lands_after_its_position_failed_is_cancelled() -> None:
    """The entry's placement went unanswered and the exchange did not know it until
    ``lookup_deadline_s`` passed: the position failed ``entry_not_found``. The placement
    then lands after all (the stream reports it resting): its record says so, and it is
    cancelled at once (``not needed``): an entry of an ended position must not rest to
    fill later into a position nobody protects (I9)."""
    st = _pending_entry()
    unknown = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1e1", OrderKind.ENTRY, CallResult.UNKNOWN, "timeout"
    )
    st = transition(st, unknown, ctx(NOW + 0.1)).state
    gone = ExchangeOutcome(KEY, CallOp.LOOKUP, "ps1e1", OrderKind.ENTRY, CallResult.NOT_FOUND)
    st = transition(st, gone, ctx(NOW + POLICY.lookup_deadline_s + 1)).state
    pos = st.position
    assert pos is not None and pos.status is Status.FAILED
    (entry,) = pos.orders
    assert entry.state is OrderState.NOT_FOUND
    rests = OrderUpdate(KEY, "ps1e1", ExchangeStatus.NEW, 0.0, None, NOW + 11.5, "x0")
    t = transition(st, rests, ctx(NOW + 12))
    events = (
        JournalEvent(
            1,
            JournalKind.ORDER_FACT,
            Status.FAILED,
            Status.FAILED,
            NOW + 12,
            {"client_id": "ps1e1", "state": "accepted", "filled": 0.0, "via": "stream"},
        ),
        JournalEvent(
            1,
            JournalKind.CANCEL_REQUESTED,
            Status.FAILED,
            Status.FAILED,
            NOW + 12,
            {"client_id": "ps1e1", "why": "not needed"},
        ),
    )
    assert_whole(
        t,
        st,
        rests,
        NOW + 12,
        orders=(
            replace(
                entry, state=OrderState.PENDING_CANCEL, exchange_id="x0", event_time=NOW + 11.5
            ),
        ),
        effects=(CancelOrder(KEY, "ps1e1", OrderKind.ENTRY, "not needed"),),
        events=events,
    )


# -- a stop refused on the stream before its placement's answer -------------------------------


def _first_stop_sent() -> SymbolState:
    """The entry filled: the first stop ``ps1s1`` sent (``intended``), its deadline running."""
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 0.1, "x0")
    st = transition(_pending_entry(), fill, ctx(NOW + 0.1)).state
    pos = st.position
    assert pos is not None and pos.status is Status.PENDING_SL
    assert pos.orders[1].state is OrderState.INTENDED
    return st


def test_a_stop_refused_on_the_stream_before_its_answer_is_retried() -> None:
    """The exchange's stream says the new stop was refused before the placement's answer
    comes (Bybit answers a placement "accepted for processing" and may refuse the order
    after). It is retried as a refused placement is: journaled ``stop_rejected``, sent
    again after ``sl_retry_delay_s`` (one more attempt of the spell); the placement's
    answer that comes meanwhile, whatever it says, changes nothing (the order is settled
    refused). Before, nothing was retried: the position stayed unprotected until the
    deadline and was then closed at market."""
    st = _first_stop_sent()
    pos = st.position
    assert pos is not None
    entry, stop = pos.orders
    refused = OrderUpdate(KEY, "ps1s1", ExchangeStatus.REJECTED, 0.0, None, NOW + 0.15, "x1")
    t = transition(st, refused, ctx(NOW + 0.2))
    rejected = replace(stop, state=OrderState.REJECTED, exchange_id="x1", event_time=NOW + 0.15)
    event = JournalEvent(
        1,
        JournalKind.STOP_REJECTED,
        Status.PENDING_SL,
        Status.PENDING_SL,
        NOW + 0.2,
        {"why": "reported rejected", "failures": 1, "via": "stream"},
    )
    retry = TimerId(TimerKind.RETRY, "ps1s1")
    assert_whole(
        t,
        st,
        refused,
        NOW + 0.2,
        orders=(entry, rejected),
        effects=(StartTimer(KEY, retry, POLICY.sl_retry_delay_s),),
        events=(event,),
    )

    # The same when the placement's answer was lost (a timeout: ``unknown``, looked up).
    timeout = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1s1", OrderKind.STOP_LOSS, CallResult.UNKNOWN, "timeout"
    )
    lost = transition(st, timeout, ctx(NOW + 0.12)).state
    unknown = lost.position
    assert unknown is not None and unknown.orders[1].state is OrderState.UNKNOWN
    t2 = transition(lost, refused, ctx(NOW + 0.2))
    assert_whole(
        t2,
        lost,
        refused,
        NOW + 0.2,
        orders=(entry, replace(rejected, sent_at=unknown.orders[1].sent_at)),
        effects=(StartTimer(KEY, retry, POLICY.sl_retry_delay_s),),
        events=(event,),
    )

    st = t.state
    for result in (CallResult.ACCEPTED, CallResult.REJECTED):
        answer = ExchangeOutcome(KEY, CallOp.PLACE, "ps1s1", OrderKind.STOP_LOSS, result, "x")
        assert transition(st, answer, ctx(NOW + 0.25)) == Transition(st), result

    pos = st.position
    assert pos is not None
    t = transition(st, TimerFired(KEY, retry), ctx(NOW + 0.4))
    again = replace(rejected, state=OrderState.INTENDED, attempts=2, sent_at=NOW + 0.4)
    event = JournalEvent(
        1,
        JournalKind.ORDER_RESENT,
        Status.PENDING_SL,
        Status.PENDING_SL,
        NOW + 0.4,
        {"client_id": "ps1s1", "attempt": 2},
    )
    assert_whole(
        t,
        st,
        TimerFired(KEY, retry),
        NOW + 0.4,
        orders=(entry, again),
        sl_failures=2,
        effects=(PlaceOrder(KEY, 1, again, close_position=True),),
        events=(event,),
    )


def test_a_trailing_stop_refused_on_the_stream_is_retried_later() -> None:
    """The same for a trailing move's new stop while the older confirmed stop rests: no
    spell is spent (the position stays ``active``, no deadline), and the retry waits
    longer, ``sl_retry_delay_s`` doubled per attempt, as for a refused placement."""
    sig = signal(size=1.0, stop=90.0, trailing=5.0)
    st = transition(priced(KEY, at=NOW), sig, ctx(NOW)).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 0.1, "x0")
    st = transition(st, fill, ctx(NOW + 0.1)).state
    rests = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 0.2, "x1")
    st = transition(st, rests, ctx(NOW + 0.2)).state
    t = transition(st, MarkPriceTick(KEY, 98.0, NOW + 1, received_at=NOW + 1), ctx(NOW + 1))
    st = t.state
    pos = st.position
    assert pos is not None and pos.status is Status.ACTIVE and pos.sl_since is None
    entry, old, new = pos.orders
    assert (old.state, new.client_id, new.state) == (
        OrderState.ACCEPTED,
        "ps1s2",
        OrderState.INTENDED,
    )
    refused = OrderUpdate(KEY, "ps1s2", ExchangeStatus.REJECTED, 0.0, None, NOW + 1.05, "x2")
    t = transition(st, refused, ctx(NOW + 1.1))
    event = JournalEvent(
        1,
        JournalKind.STOP_REJECTED,
        Status.ACTIVE,
        Status.ACTIVE,
        NOW + 1.1,
        {"why": "reported rejected", "failures": 0, "via": "stream"},
    )
    retry = TimerId(TimerKind.RETRY, "ps1s2")
    assert_whole(
        t,
        st,
        refused,
        NOW + 1.1,
        orders=(
            entry,
            old,
            replace(new, state=OrderState.REJECTED, exchange_id="x2", event_time=NOW + 1.05),
        ),
        effects=(StartTimer(KEY, retry, 2 * POLICY.sl_retry_delay_s),),
        events=(event,),
    )


def test_a_trailing_stop_refused_again_and_again_waits_at_most_64_delays() -> None:
    """Each time the trailing move's stop is refused on the stream it is sent again after
    ``sl_retry_delay_s`` doubled per attempt made, the doubling capped at 2^6 (here with
    10 attempts allowed while the older stop covers); no unprotected spell starts."""
    policy = replace(POLICY, sl_max_attempts=10)

    def ctx(now: float) -> Context:
        return Context(now, policy, 1)

    sig = signal(size=1.0, stop=90.0, trailing=5.0)
    st = transition(priced(KEY, at=NOW), sig, ctx(NOW)).state
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 0.1, "x0")
    st = transition(st, fill, ctx(NOW + 0.1)).state
    rests = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 0.2, "x1")
    st = transition(st, rests, ctx(NOW + 0.2)).state
    st = transition(st, MarkPriceTick(KEY, 98.0, NOW + 1, received_at=NOW + 1), ctx(NOW + 1)).state
    retry = TimerId(TimerKind.RETRY, "ps1s2")
    delays = []
    now = NOW + 1
    for _ in range(8):
        now += 1
        refused = OrderUpdate(KEY, "ps1s2", ExchangeStatus.REJECTED, 0.0, None, now, "x2")
        t = transition(st, refused, ctx(now))
        assert len(t.effects) == 1 and isinstance(t.effects[0], StartTimer), t.effects
        assert t.effects[0].name == retry
        delays.append(t.effects[0].delay)
        t = transition(t.state, TimerFired(KEY, retry), ctx(now + 0.5))
        assert [type(e) for e in t.effects] == [PlaceOrder]
        st = t.state
    assert delays == [0.2 * 2.0**n for n in (1, 2, 3, 4, 5, 6, 6, 6)]
    pos = st.position
    assert pos is not None and pos.status is Status.ACTIVE and pos.sl_since is None


def test_a_new_stop_filled_in_part_before_its_answer_is_recorded_only() -> None:
    """The first stop reported filled in part before its placement's answer (it rested and
    triggered at once): the fill is recorded, nothing is retried or sent (the stop works)."""
    st = _first_stop_sent()
    pos = st.position
    assert pos is not None
    entry, stop = pos.orders
    part = OrderUpdate(KEY, "ps1s1", ExchangeStatus.PARTIALLY_FILLED, 0.4, 90.0, NOW + 0.15, "x1")
    t = transition(st, part, ctx(NOW + 0.2))
    after = replace(
        stop,
        state=OrderState.PARTIALLY_FILLED,
        filled_qty=0.4,
        avg_price=90.0,
        exchange_id="x1",
        event_time=NOW + 0.15,
    )
    event = JournalEvent(
        1,
        JournalKind.ORDER_FACT,
        Status.PENDING_SL,
        Status.PENDING_SL,
        NOW + 0.2,
        {"client_id": "ps1s1", "state": "partially_filled", "filled": 0.4, "via": "stream"},
    )
    assert_whole(t, st, part, NOW + 0.2, orders=(entry, after), effects=(), events=(event,))
