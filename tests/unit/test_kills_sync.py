"""Tests written to kill the surviving mutants of the sync's part of the pure core (``make
mutate``): what a sync observation does (flat, adoption, orphans, orders of another
installation) and what a recovery resumes. Each drives :func:`actors.transition.transition`
with messages and pins the whole outcome (the state after, every journal event with its
detail, every effect). The docstrings say what each pins and why it matters.
"""

from __future__ import annotations

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
    OrderUpdate,
    Recover,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
)
from actors.model import (
    CloseReason,
    ExchangeOrder,
    ExchangePosition,
    ExchangeStatus,
    OrderKind,
    OrderRecord,
    OrderState,
    Side,
    Status,
)
from actors.orders import Installation
from actors.state import JournalEvent, JournalKind, SymbolState, Transition
from testkit.world import priced, signal
from tests.unit.kills import KEY, NOW, POLICY, filled_stepwise, protected_stepwise, step


def _sync(xp: ExchangePosition | None, *orders: ExchangeOrder, at: float) -> SyncObservation:
    return SyncObservation(KEY, xp, orders, at)


def _fire(kind: TimerKind) -> TimerFired:
    return TimerFired(KEY, TimerId(kind))


def _close_refused(st: SymbolState, seq: int, now: float) -> SymbolState:
    out = ExchangeOutcome(
        KEY, CallOp.PLACE, f"ps1c{seq}", OrderKind.CLOSE, CallResult.REJECTED, "margin"
    )
    return step(st, out, now).state


# -- recovery: what waited on a retry timer when the process died --------------------------------


def _closes_refused(times: int) -> SymbolState:
    """An operator's close of the protected position refused ``times`` times in a row (each
    retry sent by its ``close_retry`` timer); the next retry waits on that timer."""
    st = step(protected_stepwise(), CloseRequest(KEY), NOW + 1).state
    for seq in range(1, times + 1):
        at = NOW + 2 * seq
        st = _close_refused(st, seq, at)
        if seq < times:
            st = step(st, TimerFired(KEY, TimerId(TimerKind.CLOSE_RETRY)), at + 1).state
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
        t = step(st, Recover(KEY), NOW + 100)
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


# -- the sync sees our filled position flat ----------------------------------------------------


def _stop_refused() -> SymbolState:
    """Filled, its only stop refused (waiting on its retry timer): nothing of ours works."""
    out = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1s1", OrderKind.STOP_LOSS, CallResult.REJECTED, "margin"
    )
    return step(filled_stepwise(), out, NOW + 0.2).state


def test_a_flat_view_with_nothing_of_ours_working_closes_at_once_on_the_syncs_word() -> None:
    """No stop or close of ours may have closed it (none is working): no lookup to wait for,
    the position is closed ``closed_on_exchange`` at once, via the sync, its timers
    cancelled and the close id a restart may have lost looked up. The exchange showing no
    position, a zero quantity on our side or the opposite side is the same flat view."""
    st = _stop_refused()
    before = st.position
    assert before is not None
    for xp in (
        None,
        ExchangePosition(Side.LONG, 0.0, 100.0),
        ExchangePosition(Side.SHORT, 1.0, 100.0),
    ):
        t = step(st, _sync(xp, at=NOW + 5), NOW + 5)
        assert t.effects == (
            CancelTimer(KEY, TimerId(TimerKind.SL_DEADLINE)),
            CancelTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM)),
            CancelTimer(KEY, TimerId(TimerKind.CLOSE_RETRY)),
            LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),
        ), xp
        assert t.commit is not None and t.commit.events == (
            JournalEvent(
                1,
                JournalKind.CLOSED,
                Status.PENDING_SL,
                Status.CLOSED,
                NOW + 5,
                {"reason": "closed_on_exchange", "via": "sync"},
            ),
        ), xp
        assert t.state == replace(
            st,
            position=replace(
                before,
                status=Status.CLOSED,
                close_reason=CloseReason.CLOSED_ON_EXCHANGE,
                closed_at=NOW + 5,
                updated_at=NOW + 5,
                version=before.version + 1,
            ),
            last_closed_at=NOW + 5,
        ), xp


def test_a_view_fetched_before_our_fill_says_nothing_about_the_position() -> None:
    """The fetch started before the entry filled (``observed_at`` up to the fill time): a
    flat view then is the exchange before our fill, not a close. Nothing happens; a view
    fetched after the fill is a flat one (its stop looked up, confirmation awaited)."""
    st = filled_stepwise()
    for at in (NOW + 0.05, NOW + 0.1):
        assert step(st, _sync(None, at=at), NOW + 0.3) == Transition(st), at
    t = step(st, _sync(None, at=NOW + 0.15), NOW + 0.3)
    assert t.effects == (
        LookupOrder(KEY, "ps1s1", OrderKind.STOP_LOSS),
        StartTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM), POLICY.flat_confirm_s),
    )
    assert (t.commit, t.state) == (None, replace(st, flat_seen_at=NOW + 0.3))


def test_a_position_seen_open_again_after_a_flat_view_only_drops_the_flat_mark() -> None:
    """Flat, then open again with its stop resting: that flat view was stale. The flat mark
    is dropped and its confirmation timer cancelled; nothing else (no write)."""
    st = step(protected_stepwise(), _sync(None, at=NOW + 1), NOW + 1).state
    assert st.flat_seen_at == NOW + 1
    rest = ExchangeOrder("ps1s1", "sell", 1.0, True, 90.0)
    t = step(st, _sync(ExchangePosition(Side.LONG, 1.0, 100.0), rest, at=NOW + 2), NOW + 2)
    assert t == Transition(
        replace(st, flat_seen_at=None),
        (CancelTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM)),),
    )


# -- orders of another installation (I7) ---------------------------------------------------------

#: This database's installation: its position ids end in 000007.
HERE = replace(POLICY, installation=Installation(7))
OURS = ExchangeOrder("ps1000007s1", "sell", 1.0, True, 90.0)  # a stop of a position gone
THEIRS = ExchangeOrder("ps2000008s1", "sell", 1.0, True, 90.0)  # installation 000008's


def test_a_sweep_cancels_our_orphans_and_leaves_another_installations_orders() -> None:
    """With an installation id, an order in our format is ours only if its position id ends
    in it: our orphan is cancelled (and remembered for the window), the other database's
    stop is not touched (cancelling it would unprotect that installation's position)."""
    st = SymbolState(KEY)
    t = step(st, _sync(None, THEIRS, OURS, at=NOW + 1), NOW + 1, HERE)
    assert t == Transition(
        replace(st, orphan_cancels=(("ps1000007s1", NOW + 1),)),
        (CancelOrder(KEY, "ps1000007s1", OrderKind.STOP_LOSS, "orphan"),),
    )


def test_a_position_with_another_installations_orders_resting_is_not_adopted() -> None:
    """A position the database does not know, with an order of another installation
    resting on the symbol, is that installation's: not adopted (nor its order touched).
    With only our own orphan resting it is ours to adopt and protect."""
    st = SymbolState(KEY)
    xp = ExchangePosition(Side.LONG, 1.0, 100.0)
    assert step(st, _sync(xp, THEIRS, at=NOW + 1), NOW + 1, HERE, 3_000_007) == Transition(st)
    t = step(st, _sync(xp, OURS, at=NOW + 1), NOW + 1, HERE, 3_000_007)
    stop = OrderRecord(
        "ps3000007s1",
        OrderKind.STOP_LOSS,
        "sell",
        1.0,
        OrderState.INTENDED,
        100.0 * (1 - POLICY.default_stop_pct),
        sent_at=NOW + 1,
        attempts=1,
    )
    assert t.effects == (
        CancelOrder(KEY, "ps1000007s1", OrderKind.STOP_LOSS, "orphan"),
        StartTimer(KEY, TimerId(TimerKind.SL_DEADLINE), POLICY.sl_deadline_s),
        PlaceOrder(KEY, 3_000_007, stop, reduce_only=False, close_position=True),
    )
    pos = t.state.position
    assert pos is not None and (pos.id, pos.status, pos.source, pos.orders) == (
        3_000_007,
        Status.PENDING_SL,
        "sync",
        (stop,),
    )


# -- the sync sees more open than the closes in flight remove --------------------------------------


def _closing_with_a_close_part_filled() -> SymbolState:
    """A long of 2 asked, 1 filled and protected; closed by an operator (the entry's rest
    cancelled, close ``ps1c1`` of 1 sent), and that close filled 0.25 so far."""
    st = step(priced(KEY, at=NOW), signal(size=2.0), NOW).state
    part = OrderUpdate(KEY, "ps1e1", ExchangeStatus.PARTIALLY_FILLED, 1.0, 100.0, NOW + 0.1)
    st = step(st, part, NOW + 0.1).state
    stop = OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, NOW + 0.2)
    st = step(st, stop, NOW + 0.2).state
    st = step(st, CloseRequest(KEY), NOW + 1).state
    some = OrderUpdate(KEY, "ps1c1", ExchangeStatus.PARTIALLY_FILLED, 0.25, 99.0, NOW + 2)
    st = step(st, some, NOW + 2).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSING and pos.updated_at == NOW + 2
    return st


def test_the_sync_closes_what_it_sees_open_beyond_the_working_closes_rest() -> None:
    """0.75 of the close is still to fill; the exchange shows 1.25 open (the entry filled
    0.5 further, unheard of): the quantity becomes what closed plus what is open (1.5), and
    a close of the 0.5 the working close does not remove is sent. The part of a close that
    filled already is not counted as still to remove. A view fetched no later than the last
    write (``updated_at``) may predate what it wrote: nothing."""
    st = _closing_with_a_close_part_filled()
    before = st.position
    assert before is not None
    xp = ExchangePosition(Side.LONG, 1.25, 100.0)
    assert step(st, _sync(xp, at=NOW + 2), NOW + 3) == Transition(st)
    t = step(st, _sync(xp, at=NOW + 2.5), NOW + 3)
    added = OrderRecord(
        "ps1c2", OrderKind.CLOSE, "sell", 0.5, OrderState.INTENDED, sent_at=NOW + 3, attempts=1
    )
    assert t.effects == (PlaceOrder(KEY, 1, added, reduce_only=True),)

    def ev(kind: JournalKind, **detail: object) -> JournalEvent:
        return JournalEvent(1, kind, Status.CLOSING, Status.CLOSING, NOW + 3, detail)

    assert t.commit is not None and t.commit.events == (
        ev(JournalKind.QTY_FROM_SYNC, qty=1.25),
        ev(JournalKind.CLOSE_ADDED, qty=0.5, via="sync"),
    )
    assert t.state == replace(
        st,
        position=replace(
            before,
            qty=1.5,
            close_seq=2,
            orders=(*before.orders, added),
            updated_at=NOW + 3,
            version=before.version + 1,
        ),
    )


def test_the_sync_adds_no_close_once_close_max_attempts_closes_went_out() -> None:
    """The closes the sync adds are bounded: with ``close_max_attempts`` closes sent (the
    last one working), a view showing more open adds none (a list that keeps showing more
    cannot multiply closes); one fewer, and it adds one."""
    times = POLICY.close_max_attempts - 1
    for sent, adds in ((times, True), (times + 1, False)):
        st = _closes_refused(sent - 1)
        st = step(st, _fire(TimerKind.CLOSE_RETRY), NOW + 50).state
        pos = st.position
        assert pos is not None and pos.close_seq == sent
        xp = ExchangePosition(Side.LONG, 1.5, 100.0)
        t = step(st, _sync(xp, at=NOW + 60), NOW + 60)
        if adds:
            assert t.commit is not None and [e.kind for e in t.commit.events] == [
                JournalKind.QTY_FROM_SYNC,
                JournalKind.CLOSE_ADDED,
            ]
            assert [type(e) for e in t.effects] == [PlaceOrder]
        else:
            assert t == Transition(st)


# -- an entry's rest that filled after its position ended -----------------------------------------


def _late_entry_fill() -> SymbolState:
    """An entry cancelled on a close request before anything filled (the position failed);
    then its placement's reply says it filled 1 (at ``NOW + 3``): the rest is open on the
    exchange, unaccounted for, and the sync was asked."""
    st = step(priced(KEY, at=NOW), signal(size=1.0), NOW).state
    st = step(st, CloseRequest(KEY), NOW + 1).state
    cancelled = ExchangeOutcome(KEY, CallOp.CANCEL, "ps1e1", OrderKind.ENTRY, CallResult.ACCEPTED)
    st = step(st, cancelled, NOW + 2).state
    filled = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, NOW + 1)
    out = ExchangeOutcome(
        KEY, CallOp.PLACE, "ps1e1", OrderKind.ENTRY, CallResult.ACCEPTED, update=filled
    )
    t = step(st, out, NOW + 3)
    assert t.effects == (RequestSync(KEY, "late entry fill"),)
    pos = t.state.position
    assert pos is not None and pos.status is Status.FAILED and pos.updated_at == NOW + 3
    return t.state


def test_a_late_entry_fill_is_settled_by_a_flat_view_fetched_after_it_was_learnt() -> None:
    """The sync, fetched after we learnt of the late fill, shows nothing open: that rest is
    gone (closed by hand); the position records the whole fill (``qty_from_sync``, why
    ``late entry fill gone``), so the entry no longer holds new entries back. A view
    fetched no later than the write that recorded the fill may predate the fill: it proves
    nothing, and nothing changes."""
    st = _late_entry_fill()
    before = st.position
    assert before is not None
    assert step(st, _sync(None, at=NOW + 3), NOW + 4) == Transition(st)
    t = step(st, _sync(None, at=NOW + 3.5), NOW + 4)
    assert t.effects == ()
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.QTY_FROM_SYNC,
            Status.FAILED,
            Status.FAILED,
            NOW + 4,
            {"qty": 1.0, "why": "late entry fill gone"},
        ),
    )
    assert t.state == replace(
        st,
        position=replace(before, qty=1.0, updated_at=NOW + 4, version=before.version + 1),
        bought=True,
    )


# -- the sync before the entry's fill is known ----------------------------------------------------


def test_a_view_with_no_quantity_on_our_side_is_no_fill_of_our_entry() -> None:
    """Our entry is working; the exchange shows our side with quantity 0 (nothing open):
    no fill is taken from it, and nothing changes."""
    st = step(priced(KEY, at=NOW), signal(size=1.0), NOW).state
    xp = ExchangePosition(Side.LONG, 0.0, 100.0)
    assert step(st, _sync(xp, at=NOW + 1), NOW + 1) == Transition(st)


# -- closed on the sync's word while a close of ours was working ---------------------------------


def test_a_close_still_working_when_the_syncs_word_closes_the_position_is_looked_up() -> None:
    """A position closing with the reason ``closed_on_exchange`` (the reason a
    :class:`CloseRequest` may carry), its close ``ps1c1`` not answered yet; the exchange
    flat, and nothing heard within ``flat_confirm_s``: closed ``closed_on_exchange``. Its
    working close is still looked up, as is the next close id (one a restart may have lost),
    so that a fill of either corrects the close reason; the stop is cancelled, the close's
    own timers and the position's are cancelled."""
    st = step(
        protected_stepwise(), CloseRequest(KEY, CloseReason.CLOSED_ON_EXCHANGE), NOW + 1
    ).state
    flat = step(st, _sync(None, at=NOW + 2), NOW + 2)
    assert flat.effects == (
        LookupOrder(KEY, "ps1s1", OrderKind.STOP_LOSS),
        LookupOrder(KEY, "ps1c1", OrderKind.CLOSE),
        StartTimer(KEY, TimerId(TimerKind.FLAT_CONFIRM), POLICY.flat_confirm_s),
    )
    t = step(flat.state, _fire(TimerKind.FLAT_CONFIRM), NOW + 4)
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
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.CANCEL_REQUESTED,
            Status.CLOSED,
            Status.CLOSED,
            NOW + 4,
            {"client_id": "ps1s1", "why": ""},
        ),
        JournalEvent(
            1,
            JournalKind.CLOSED,
            Status.CLOSING,
            Status.CLOSED,
            NOW + 4,
            {"reason": "closed_on_exchange", "via": "sync"},
        ),
    )
    pos = t.state.position
    assert pos is not None and pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE
    assert [(o.client_id, o.state) for o in pos.orders] == [
        ("ps1e1", OrderState.FILLED),
        ("ps1s1", OrderState.PENDING_CANCEL),
        ("ps1c1", OrderState.INTENDED),
    ]


# -- orphans: resting orders of ours that no open position needs -----------------------------------


def _closed_by_its_stop_with_a_close_on_record() -> SymbolState:
    """Closing on an operator's request, its close ``ps1c1`` accepted; then the stop filled
    first: closed ``stop_loss``, the close still ``accepted`` on record."""
    st = step(protected_stepwise(), CloseRequest(KEY), NOW + 1).state
    accepted = ExchangeOutcome(KEY, CallOp.PLACE, "ps1c1", OrderKind.CLOSE, CallResult.ACCEPTED)
    st = step(st, accepted, NOW + 1.5).state
    hit = OrderUpdate(KEY, "ps1s1", ExchangeStatus.FILLED, 1.0, 90.0, NOW + 2)
    st = step(st, hit, NOW + 2).state
    pos = st.position
    assert pos is not None and pos.status is Status.CLOSED
    assert pos.order("ps1c1") is not None and pos.order("ps1c1").state is OrderState.ACCEPTED  # type: ignore[union-attr]
    return st


def test_a_sweep_cancels_orphans_on_record_through_their_record_and_others_once() -> None:
    """A resting order of ours the ended position no longer needs: one on record is
    cancelled through its record (``pending_cancel``, journaled ``cancel_requested`` why
    ``orphan``), one of a position this actor never knew directly, at most once per window;
    other software's orders are never touched. Every order of the list is looked at: one
    skipped (on record and pending cancel, or cancelled within the window) does not end
    the sweep."""
    st = _closed_by_its_stop_with_a_close_on_record()
    before = st.position
    assert before is not None
    close = ExchangeOrder("ps1c1", "sell", 1.0, False)
    first = ExchangeOrder("ps9s1", "sell", 1.0, True, 90.0)
    theirs = ExchangeOrder("web_1", "sell", 1.0, True, 90.0)
    t = step(st, _sync(None, close, first, theirs, at=NOW + 3), NOW + 3)
    assert t.effects == (
        CancelOrder(KEY, "ps1c1", OrderKind.CLOSE, "orphan"),
        CancelOrder(KEY, "ps9s1", OrderKind.STOP_LOSS, "orphan"),
    )
    assert t.commit is not None and t.commit.events == (
        JournalEvent(
            1,
            JournalKind.CANCEL_REQUESTED,
            Status.CLOSED,
            Status.CLOSED,
            NOW + 3,
            {"client_id": "ps1c1", "why": "orphan"},
        ),
    )
    pending = replace(before.orders[2], state=OrderState.PENDING_CANCEL)
    assert before.orders[2].client_id == "ps1c1"
    assert t.state == replace(
        st,
        position=replace(
            before,
            orders=(*before.orders[:2], pending),
            updated_at=NOW + 3,
            version=before.version + 1,
        ),
        orphan_cancels=(("ps9s1", NOW + 3),),
    )
    later = ExchangeOrder("ps9s2", "sell", 1.0, True, 90.0)
    again = step(t.state, _sync(None, close, first, later, at=NOW + 4), NOW + 4)
    assert again == Transition(
        replace(t.state, orphan_cancels=(("ps9s1", NOW + 3), ("ps9s2", NOW + 4))),
        (CancelOrder(KEY, "ps9s2", OrderKind.STOP_LOSS, "orphan"),),
    )


# -- the stop of a held position and the open-order list ------------------------------------------


def test_a_held_position_with_no_stop_on_record_is_left_to_recovery_by_the_sync() -> None:
    """A filled position with no stop on record (as a recovery may load one; the recovery
    places its stop): a sync that shows it open with its quantity changes nothing and looks
    nothing up."""
    st = protected_stepwise()
    pos = st.position
    assert pos is not None
    bare = replace(st, position=replace(pos, orders=pos.orders[:1]))
    xp = ExchangePosition(Side.LONG, 1.0, 100.0)
    assert step(bare, _sync(xp, at=NOW + 10), NOW + 10) == Transition(bare)


def test_a_stop_missing_from_the_list_is_looked_up_once_its_grace_from_its_send_passed() -> None:
    """The grace is counted from the stop's send time, whatever the clock reads (here one
    that started at 0, the stop sent at 0): missing from the list at ``stop_grace_s`` it is
    not looked up yet, half a second later it is."""
    st = step(priced(KEY, at=0.0), signal(size=1.0), 0.0).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 0.0), 0.0).state
    st = step(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 0.0), 0.0).state
    pos = st.position
    assert pos is not None and pos.status is Status.ACTIVE
    xp = ExchangePosition(Side.LONG, 1.0, 100.0)
    grace = POLICY.stop_grace_s
    assert step(st, _sync(xp, at=grace), grace) == Transition(st)
    t = step(st, _sync(xp, at=grace + 0.5), grace + 0.5)
    assert t == Transition(
        replace(st, stop_lookup_at=grace + 0.5),
        (LookupOrder(KEY, "ps1s1", OrderKind.STOP_LOSS),),
    )
