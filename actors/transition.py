"""The position state machine as a pure function: ``(state, message, ctx) -> Transition``.

No I/O, no clock, no randomness: ``ctx`` brings the time, the policy and a position id the
shell allocated beforehand (``ctx.next_id``). The actor shell writes ``Transition.commit``
and then performs ``Transition.effects``; that split is what lets tests drive every interleaving.

Rules that remove the field reports' races:

* one non-terminal position per symbol (I1): a signal while one is open is a duplicate;
* the entry is an *intent* (``pending_entry``) with a deterministic client id before any order
  leaves (I2, S6); an order of unknown outcome is looked up by that id, never re-sent blindly;
* fills are applied from whatever reports them first: the stream, the REST reply, a lookup or
  the sync (S3, S7); cumulative quantities make duplicates and reordering harmless;
* the first fill places a ``closePosition`` stop-loss; bounded retries, then an emergency close
  (I5, S8); ticks keep a local stop guard until the stop is confirmed.

Reading order: the tables are :mod:`actors.lifecycle` (``(status, trigger) -> status``
and ``(order state, event) -> order state``; every status and order-state write goes
through them, a pair in no table is journaled ``illegal_transition``); here come the
dispatch, the handlers (each message into triggers and effects), the builder that applies
them (:class:`_Step`: a commit when the durable state differs, field by field), then the
pure helpers.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from actors.effects import (
    CancelOrder,
    CancelTimer,
    Effect,
    FetchMarket,
    LookupOrder,
    PlaceOrder,
    RequestSync,
    StartTimer,
)
from actors.lifecycle import OrderEvent, Trigger, next_order_state, next_status
from actors.messages import (
    CallOp,
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    MarketInfo,
    MarkPriceTick,
    Message,
    OpenSignal,
    OrderUpdate,
    PauseRequest,
    Recover,
    Rejection,
    SyncObservation,
    TimerFired,
    TimerId,
    TimerKind,
    UnquarantineRequest,
)
from actors.model import (
    CloseReason,
    ExchangePosition,
    ExchangeStatus,
    MarketRules,
    OrderKind,
    OrderRecord,
    OrderState,
    Side,
    Status,
    qty_done,
)
from actors.orders import client_order_id, intended_order, parse_client_id
from actors.signal_age import age_refusal
from actors.state import (
    Commit,
    ControlChange,
    ControlOutcome,
    JournalEvent,
    JournalKind,
    Policy,
    Position,
    Reentry,
    SignalOutcome,
    SignalRecord,
    SymbolState,
    Transition,
    printable,
)

__all__ = [
    "Context",
    "check_entry",
    "difference_event",
    "durable_change",
    "leftovers",
    "on_step",
    "tick_band",
    "to_tick",
    "transition",
    "validate_signal",
]

#: The position's own timers (the per-order ones carry the order's client id).
_SL_DEADLINE = TimerId(TimerKind.SL_DEADLINE)
_FLAT_CONFIRM = TimerId(TimerKind.FLAT_CONFIRM)
_CLOSE_RETRY = TimerId(TimerKind.CLOSE_RETRY)
#: A failed mark-price request is not repeated within this many seconds.
_MARKET_RETRY_S = 0.5
#: An orphan cancelled without a record is not cancelled again within this many seconds.
_ORPHAN_WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class Context:
    """What a transition may know besides state and message.

    ``next_id``: a fresh position id the shell took from the store's id blocks before the
    call, used if this message creates a position (an accepted signal, an adoption); the
    shell sees it used when the resulting position carries it. ``None``: none could be had
    (the store is down): a signal that would be accepted is refused ``store_unavailable``,
    an adoption waits for the next sync.

    ``give_up``: set by the shell when it offers a deferred signal for the last time (it
    waited ``policy.mark_wait_s``): the signal is refused with what it still waits for.
    """

    now: float
    policy: Policy
    next_id: int | None = None
    give_up: bool = False


def transition(state: SymbolState, msg: Message, ctx: Context) -> Transition:
    """Apply one message. Never raises for bad input: it refuses or ignores with a reason.

    Each handler turns its message into triggers of the tables of :mod:`actors.lifecycle`
    (and effects); a message type with no handler is a defect of the caller (TypeError)."""
    if type(msg) is MarkPriceTick:  # the hot path first
        return _on_tick(state, msg, ctx)
    handler = _HANDLERS.get(type(msg))  # the table after the handlers
    if handler is None:
        raise TypeError(f"not a position message: {type(msg).__name__}")
    return handler(state, msg, ctx)


# --- handlers: each message becomes triggers of the tables (and effects) --------------


def _on_signal(state: SymbolState, sig: OpenSignal, ctx: Context) -> Transition:
    now = ctx.now
    policy = ctx.policy
    prior = state.decision(sig.signal_id) if isinstance(sig.signal_id, str) else None
    if prior is not None:
        # Decided before (I11): the answer is that decision, whatever the signal's age.
        return Transition(state, signal=replace(prior, replay=True))
    st = state
    open_pos = st.open_position

    def refuse(outcome: SignalOutcome, reason: str) -> Transition:
        rec = SignalRecord.refused(
            sig, reason, now, outcome, open_pos.id if open_pos is not None else None
        )
        # The signal history holds the refusal; the journal holds changes only.
        commit = Commit(st.key, sig, None, 0, (), rec)
        after = st if rec.retry else _remember(st, rec, policy)
        return Transition(after, commit=commit, signal=rec)

    invalid = validate_signal(sig, None, policy)
    if invalid is not None:
        return refuse(SignalOutcome.REJECTED, invalid)
    too_old = age_refusal(sig, now, policy.max_signal_age_s)
    if too_old is not None:
        return refuse(SignalOutcome.REJECTED, too_old)
    if st.quarantined:
        return refuse(SignalOutcome.REJECTED, "quarantined")
    if st.paused:
        return refuse(SignalOutcome.REJECTED, "paused")
    if open_pos is not None:
        return refuse(SignalOutcome.DUPLICATE, "position_open")
    if policy.reentry is Reentry.NEVER and st.bought:
        return refuse(SignalOutcome.REJECTED, "never_again")
    if (
        policy.reentry is Reentry.COOLDOWN
        and st.last_closed_at is not None
        and now < st.last_closed_at + policy.cooldown_s
    ):
        return refuse(SignalOutcome.COOLDOWN, "cooldown")
    if leftovers(st):
        if ctx.give_up:
            return refuse(SignalOutcome.REJECTED, "previous_orders_pending")
        return Transition(st, deferred=True)
    if not _mark_fresh(st, ctx):
        if ctx.give_up:
            return refuse(SignalOutcome.REJECTED, "no_mark_price")
        failed = st.market_failed_at
        if st.market_requested or (failed is not None and now - failed < _MARKET_RETRY_S):
            return Transition(st, deferred=True)
        st = replace(st, market_requested=True)
        return Transition(st, (FetchMarket(st.key),), deferred=True)
    price, rules = st.last_price, st.market
    assert price is not None and rules is not None
    bad = check_entry(sig, price, rules, policy)
    if bad is not None:
        return refuse(SignalOutcome.REJECTED, bad)

    pid = ctx.next_id
    if pid is None:
        return refuse(SignalOutcome.REJECTED, "store_unavailable")
    entry = intended_order(pid, OrderKind.ENTRY, 1, sig.side.entry_side, sig.size, now)
    tp = sig.take_profit
    pos = Position(
        id=pid,
        key=st.key,
        side=sig.side,
        status=_created(Trigger.SIGNAL_ACCEPTED),
        source=sig.source,
        signal_id=sig.signal_id,
        requested_qty=sig.size,
        stop_price=to_tick(sig.stop_loss, rules.tick_size),
        take_profit=None if tp is None else to_tick(tp, rules.tick_size),
        trailing_distance=sig.trailing_distance,
        created_at=now,
        updated_at=now,
        orders=(entry,),
        version=1,
    )
    rec = SignalRecord(st.key, sig.signal_id, sig.source, SignalOutcome.ACCEPTED, "", now, pid)
    event = JournalEvent(pid, JournalKind.ENTRY_INTENT, None, Status.PENDING_ENTRY, now, {})
    commit = Commit(st.key, sig, pos, 0, (event,), rec)
    effect = PlaceOrder(st.key, pid, entry)
    st = _remember(replace(st, position=pos), rec, policy)
    return Transition(st, (effect,), commit, rec)


# --- operators' requests ------------------------------------------------------------------


def _operator_detail(req: CloseRequest | PauseRequest | UnquarantineRequest) -> dict[str, object]:
    """Who asked and why, for the journal: only for a request that names who asked."""
    if not req.by:
        return {}
    detail: dict[str, object] = {"by": printable(req.by), "note": req.note[:200]}
    if req.request_id:
        detail["request_id"] = printable(req.request_id)
    return detail


def _on_close_request(state: SymbolState, req: CloseRequest, ctx: Context) -> Transition:
    """Close the open position at market. With nothing to close (no open position, or one
    closing already) nothing changes; an operator's request is journaled all the same."""
    pos = state.open_position

    def answer(outcome: str, pid: int | None) -> ControlOutcome | None:
        # Answered (and logged) for a request that names who asked: an operator's.
        if not req.by:
            return None
        return ControlOutcome(state.key, req.request_id, "close", outcome, True, pid)

    if pos is None or pos.status is Status.CLOSING:
        outcome = "no_position" if pos is None else "already_closing"
        pid = pos.id if pos is not None else None
        if not req.by:
            return Transition(state)
        status = pos.status if pos is not None else None
        detail = {**_operator_detail(req), "result": outcome}
        event = JournalEvent(pid, JournalKind.CLOSE_REQUESTED, status, status, ctx.now, detail)
        commit = Commit(state.key, req, None, 0, (event,))
        return Transition(state, commit=commit, control=answer(outcome, pid))
    t = _Step(state, req, ctx).close_request(req).done()
    outcome = "closing" if pos.qty > 0 else "entry_cancel_requested"
    return replace(t, control=answer(outcome, pos.id))


def _on_control(
    state: SymbolState, msg: PauseRequest | UnquarantineRequest, ctx: Context
) -> Transition:
    """Pause or resume entries, or lift the quarantine: the flag in the state and, in the
    same commit as the journal event, in the store (so a restart keeps it)."""
    if isinstance(msg, PauseRequest):
        command = "pause" if msg.paused else "resume"
        changed = state.paused != msg.paused
        kind = JournalKind.PAUSED if msg.paused else JournalKind.RESUMED
        outcome = kind if changed else ("already_paused" if msg.paused else "not_paused")
        after = replace(state, paused=msg.paused)
        # Written when it changes: an unchanged pause keeps its time and note.
        control = ControlChange("paused", msg.paused, msg.note[:200]) if changed else None
    else:
        command = "unquarantine"
        changed = state.quarantined
        kind = JournalKind.UNQUARANTINED
        outcome = kind if changed else "not_quarantined"
        after = replace(state, quarantined=False)
        control = ControlChange("quarantined", False, msg.note[:200])
    detail = {**_operator_detail(msg), "changed": changed}
    event = JournalEvent(None, kind, None, None, ctx.now, detail)
    commit = Commit(state.key, msg, None, 0, (event,), control=control)
    return Transition(
        after, commit=commit, control=ControlOutcome(state.key, msg.request_id, command, outcome)
    )


def _on_market(state: SymbolState, info: MarketInfo, ctx: Context) -> Transition:
    """A :class:`FetchMarket` came back: the mark price (if newer than ours) and the rules."""
    st = replace(state, market_requested=False, market_failed_at=None)
    if info.result is not CallResult.FOUND:
        return Transition(replace(st, market_failed_at=ctx.now))  # asked again after a pause
    price = info.mark_price
    fresher = st.last_price_at is None or info.at >= st.last_price_at
    if price is not None and _finite_positive(price) and fresher:
        st = replace(st, last_price=price, last_price_at=info.at)
    return Transition(replace(st, market=info.rules or MarketRules()))


# --- ticks (hot path: no allocation unless something is decided) --------------------------


def _on_tick(state: SymbolState, tick: MarkPriceTick, ctx: Context) -> Transition:
    pos = state.position
    st = replace(state, last_price=tick.price, last_price_at=tick.received_at or ctx.now)
    if pos is None or pos.qty <= 0 or pos.status not in (Status.PENDING_SL, Status.ACTIVE):
        return Transition(st)
    if state.flat_seen_at is not None:
        return Transition(st)  # the exchange shows it flat: its orders are being looked up
    long = pos.side is Side.LONG
    worst = tick.lowest if long else tick.highest
    best = tick.highest if long else tick.lowest
    crossed_stop = worst <= pos.stop_price if long else worst >= pos.stop_price
    if crossed_stop and not pos.stop_confirmed:
        # Local stop guard (I5): the exchange stop is not known to rest yet.
        return _Step(st, tick, ctx).start_close(CloseReason.STOP_LOSS, "local_stop_guard").done()
    if pos.take_profit is not None:
        hit = best >= pos.take_profit if long else best <= pos.take_profit
        if hit:
            return _Step(st, tick, ctx).start_close(CloseReason.TAKE_PROFIT, "take_profit").done()
    if pos.trailing_distance is not None:
        prev = pos.best_price
        improved = prev is None or (best > prev if long else best < prev)
        # The stop follows the best mark since the fill: also one seen while the stop was
        # not confirmed yet (pending_sl, when nothing moves), on the first tick once it is.
        top = best if improved or prev is None else prev
        new_stop = top - pos.trailing_distance if long else top + pos.trailing_distance
        step = _trailing_step(pos, ctx.policy)
        moves = new_stop > pos.stop_price + step if long else new_stop < pos.stop_price - step
        if moves and pos.status is Status.ACTIVE:
            return _Step(st, tick, ctx).move_stop(new_stop, top).done()
        if improved:
            # Remember the extreme in memory only: nothing durable changed.
            return Transition(replace(st, position=replace(pos, best_price=best)))
    return Transition(st)


# --- everything else: a small mutable builder around immutable values --------------------


#: The order-table event of each exchange status (an algo order triggered rests on as
#: its market order; one finished has filled; expired is cancelled).
_EXCHANGE_STATUS = {
    ExchangeStatus.NEW: OrderEvent.REPORTED_NEW,
    ExchangeStatus.TRIGGERED: OrderEvent.REPORTED_NEW,
    ExchangeStatus.PARTIALLY_FILLED: OrderEvent.REPORTED_PARTIAL,
    ExchangeStatus.FILLED: OrderEvent.REPORTED_FILLED,
    ExchangeStatus.FINISHED: OrderEvent.REPORTED_FILLED,
    ExchangeStatus.CANCELED: OrderEvent.REPORTED_CANCELED,
    ExchangeStatus.EXPIRED: OrderEvent.REPORTED_CANCELED,
    ExchangeStatus.REJECTED: OrderEvent.REPORTED_REJECTED,
}


class _Step:
    """Accumulates one transition. Used only inside :func:`transition` (single thread)."""

    def __init__(self, state: SymbolState, msg: Message, ctx: Context) -> None:
        self.state = state
        self.msg = msg
        self.ctx = ctx
        self.now = ctx.now
        self.before = state.position
        self.pos: Position | None = state.position
        self.effects: list[Effect] = []
        self.events: list[JournalEvent] = []

    # -- result

    def done(self) -> Transition:
        pos = self.pos
        st = self.state
        if pos is not self.before and pos is not None:
            if pos.status.terminal and (self.before is None or not self.before.status.terminal):
                if pos.status is Status.CLOSED:
                    st = replace(st, last_closed_at=self.now)
            if pos.qty > 0:
                st = replace(st, bought=True)
            st = replace(st, position=pos)
        before = self.before
        if pos is not None and not self.events and durable_change(before, pos):
            # The durable state changed with no event said: the event is the difference.
            self.events.append(difference_event(before, pos, self.now))
        if not self.events:
            # Nothing durable happened (in-memory only changes, or nothing at all).
            return Transition(st, tuple(self.effects))
        assert pos is not None
        new = before is None or before.id != pos.id
        expected = 0 if new else pos.version
        written = replace(pos, version=expected + 1, updated_at=self.now)
        st = replace(st, position=written)
        commit = Commit(st.key, self.msg, written, expected, tuple(self.events))
        return Transition(st, tuple(self.effects), commit)

    def event(self, kind: JournalKind, before: Status | None, **detail: object) -> None:
        pid = self.pos.id if self.pos is not None else None
        after = self.pos.status if self.pos is not None else None
        self.events.append(JournalEvent(pid, kind, before, after, self.now, detail))

    def set_pos(self, pos: Position, kind: JournalKind, **detail: object) -> None:
        before = self.pos.status if self.pos is not None and self.pos.id == pos.id else None
        self.pos = pos
        self.event(kind, before, **detail)

    def illegal(self, before: str, trigger: str, **detail: object) -> None:
        """A pair that is in no table: recorded (journal and, through the shell, a metric),
        the state left as it was; never raised."""
        self.event(
            JournalKind.ILLEGAL_TRANSITION,
            self.pos.status if self.pos else None,
            state=before,
            trigger=trigger,
            **detail,
        )

    def moved(self, pos: Position, trigger: Trigger) -> Position | None:
        """``pos`` with the status the position table gives for ``trigger``, or ``None``
        (the pair is not in the table: recorded, nothing changes). The one status write."""
        after = next_status(pos.status, trigger)
        if after is None:
            self.illegal(pos.status.value, trigger.value)
            return None
        return pos if after is pos.status else replace(pos, status=after)

    def order_to(
        self, order: OrderRecord, event: OrderEvent, **changes: object
    ) -> OrderRecord | None:
        """Record ``order`` in the state the order table gives for ``event`` (with
        ``changes`` to its other fields), or return ``None`` when the pair is not in the
        table (recorded, the order left as it was). The one order-state write."""
        after = next_order_state(order.state, event)
        if after is None:
            self.illegal(order.state.value, event.value, client_id=order.client_id)
            return None
        new = replace(order, state=after, **changes)  # type: ignore[arg-type]
        self.put_order(new)
        return new

    def put_order(self, order: OrderRecord) -> None:
        assert self.pos is not None
        orders = tuple(order if o.client_id == order.client_id else o for o in self.pos.orders)
        if self.pos.order(order.client_id) is None:
            orders = (*orders, order)
        self.pos = replace(self.pos, orders=orders)

    # -- opening, protecting, closing

    def covered(self, *, placing: bool = False) -> bool:
        """Does a confirmed stop of the position rest on the exchange besides the newest one
        (a trailing move on its way)? Then the position is not unprotected: a move neither
        starts nor spends an unprotected spell (I5). ``placing``: asked before the new stop
        is recorded, so any confirmed stop counts."""
        pos = self.pos
        assert pos is not None
        latest = None if placing else pos.latest(OrderKind.STOP_LOSS)
        return any(
            o.kind is OrderKind.STOP_LOSS
            and o.state is OrderState.ACCEPTED
            and (latest is None or o.client_id != latest.client_id)
            for o in pos.orders
        )

    def stop_budget_left(self) -> bool:
        """May one more stop-loss attempt go out in this unprotected spell (I5)? If not, the
        position is closed at market instead (the emergency close) and False is returned.
        A trailing move while an older confirmed stop rests spends nothing."""
        pos = self.pos
        assert pos is not None
        if self.covered():
            return True
        policy = self.ctx.policy
        why = None
        if pos.sl_failures >= policy.sl_max_attempts:
            why = f"{pos.sl_failures} attempts"
        elif pos.sl_since is not None and self.now - pos.sl_since >= policy.sl_deadline_s:
            why = f"not confirmed within {policy.sl_deadline_s:g}s"
        if why is None:
            return True
        self.event(JournalKind.STOP_FAILED, pos.status, why=why, failures=pos.sl_failures)
        self.start_close(CloseReason.EMERGENCY, f"stop-loss not placed: {why}")
        return False

    def begin_spell(self) -> Position:
        """Begin an unprotected spell now: its deadline (``sl_deadline``) runs, its budget
        of attempts starts afresh (I5). Every stop attempt that nothing covers is made in
        one: the first stop, a stop re-placed, a resend once no older stop covers, and the
        moment the older stop of a trailing move goes (:meth:`cover_lost`)."""
        pos = self.pos
        assert pos is not None
        pos = replace(pos, sl_since=self.now, sl_failures=0)
        self.pos = pos
        self.effects.append(StartTimer(pos.key, _SL_DEADLINE, self.ctx.policy.sl_deadline_s))
        return pos

    def place_stop(self, why: str) -> None:
        """Record and send a new stop-loss order for the current position (closePosition).

        Counts as one attempt of the current unprotected spell; the first attempt of a spell
        starts its deadline (``sl_deadline`` timer). A trailing move while a confirmed stop
        rests is no such attempt (:meth:`covered`)."""
        pos = self.pos
        assert pos is not None
        spent = 0 if self.covered(placing=True) else 1
        if spent and pos.sl_since is None:
            pos = self.begin_spell()
        elif spent and not self.stop_budget_left():
            return
        seq = pos.stop_seq + 1
        stop = intended_order(
            pos.id, OrderKind.STOP_LOSS, seq, pos.side.exit_side, pos.qty, self.now, pos.stop_price
        )
        self.pos = replace(pos, stop_seq=seq, sl_failures=pos.sl_failures + spent)
        self.put_order(stop)
        self.effects.append(PlaceOrder(pos.key, pos.id, stop, close_position=True))
        self.event(JournalKind.STOP_INTENT, pos.status, client_id=stop.client_id, why=why)

    def start_close(self, reason: CloseReason, why: str, **extra: object) -> _Step:
        """Close the open position at market with a reduce-only order (stops stay until
        filled). ``extra``: more detail for the journal event (who asked, and why)."""
        pos = self.pos
        if pos is None or pos.status.terminal or pos.status is Status.CLOSING:
            return self
        before = pos.status
        if pos.qty <= 0:
            # Nothing filled yet: there is nothing to close. Cancel the entry if we can.
            waiting = self.moved(pos, Trigger.ENTRY_CANCEL_REQUESTED)
            if waiting is None:
                return self
            entry = pos.latest(OrderKind.ENTRY)
            if entry is not None and not entry.state.done:
                self.effects.append(CancelOrder(pos.key, entry.client_id, OrderKind.ENTRY))
            self.pos = replace(waiting, close_reason=reason)
            self.event(
                JournalKind.CLOSE_REQUESTED_UNFILLED, before, reason=reason.value, why=why, **extra
            )
            return self
        closing = self.moved(pos, Trigger.CLOSE_REQUESTED)
        if closing is None:
            return self
        self.pos = replace(closing, close_reason=reason)
        self.event(JournalKind.CLOSING, before, reason=reason.value, why=why, **extra)
        entry = pos.latest(OrderKind.ENTRY)
        if entry is not None and not entry.state.done:
            # A partly filled entry may fill further: stop it, or the close leaves the rest open.
            self.effects.append(CancelOrder(pos.key, entry.client_id, OrderKind.ENTRY))
        self.send_close()
        return self

    def send_close(self, qty: float | None = None) -> None:
        """A reduce-only market close of ``qty`` (default: the whole position). Reduce-only
        makes an oversized close safe: the exchange caps it at what is open."""
        pos = self.pos
        assert pos is not None
        seq = pos.close_seq + 1
        order = intended_order(
            pos.id,
            OrderKind.CLOSE,
            seq,
            pos.side.exit_side,
            pos.qty if qty is None else qty,
            self.now,
        )
        self.pos = replace(pos, close_seq=seq)
        self.put_order(order)
        self.effects.append(PlaceOrder(pos.key, pos.id, order, reduce_only=True))

    def move_stop(self, new_stop: float, best: float) -> _Step:
        pos = self.pos
        assert pos is not None
        self.pos = replace(pos, stop_price=new_stop, best_price=best)
        self.place_stop(f"trailing to {new_stop:.8g}")
        return self

    def finish(
        self, trigger: Trigger, fields: dict[str, object] | None = None, **detail: object
    ) -> None:
        """Enter the terminal state the table gives for ``trigger`` (with ``fields`` set);
        cancel what may still rest on the exchange (recorded ``pending_cancel`` until the
        exchange confirms, I9): its stops and its entry, whose rest could fill after the
        position ended (a second position once the next entry goes out); and our timers."""
        pos = self.pos
        assert pos is not None
        before = pos.status
        ended = self.moved(pos, trigger)
        if ended is None:
            return
        status = ended.status
        changes: dict[str, object] = dict(fields or {})
        if status is Status.CLOSED:
            changes["closed_at"] = self.now
        self.pos = replace(ended, **changes)  # type: ignore[arg-type]
        for o in pos.orders:
            if not o.state.done:
                self.effects.append(CancelTimer(pos.key, TimerId(TimerKind.LOOKUP, o.client_id)))
                self.effects.append(CancelTimer(pos.key, TimerId(TimerKind.RETRY, o.client_id)))
            if (o.kind.trigger or o.kind is OrderKind.ENTRY) and not o.state.done:
                self.cancel(o)
        for timer in (_SL_DEADLINE, _FLAT_CONFIRM, _CLOSE_RETRY):
            self.effects.append(CancelTimer(pos.key, timer))
        self.state = replace(self.state, flat_seen_at=None, stop_lookup_at=None)
        self.event(JournalKind(status.value), before, **detail)

    def cancel(self, order: OrderRecord, why: str = "") -> None:
        """Ask the exchange to cancel ``order``; it stays ``pending_cancel`` until confirmed."""
        pos = self.pos
        assert pos is not None
        if order.state is not OrderState.PENDING_CANCEL:
            if self.order_to(order, OrderEvent.CANCEL_REQUESTED) is None:
                return
            self.event(JournalKind.CANCEL_REQUESTED, pos.status, client_id=order.client_id, why=why)
        self.effects.append(CancelOrder(pos.key, order.client_id, order.kind, why))

    def wanted(self, client_id: str) -> bool:
        """Is ``client_id`` an order the open position still needs (not to be cancelled)?

        Its entry and closes until done; its newest stop-loss, and the confirmed one that
        protects it while a newer one (a trailing move) is not confirmed yet; nothing of a
        terminal one. A stop is replaced only once its successor rests (``stop_fact``)."""
        pos = self.pos
        if pos is None or pos.status.terminal:
            return False
        order = pos.order(client_id)
        if order is None or order.state.done or order.state is OrderState.PENDING_CANCEL:
            return False
        if order.kind.trigger:
            same = [o for o in pos.orders if o.kind is order.kind]
            later = same[same.index(order) + 1 :]
            if any(o.state is OrderState.ACCEPTED for o in later):
                return False  # a newer one rests: this one goes
            return not later or order.state is OrderState.ACCEPTED
        return True

    def fail_entry(self, reason: str) -> None:
        pos = self.pos
        assert pos is not None
        self.finish(Trigger.ENTRY_FAILED, {"fail_reason": reason}, reason=reason)

    # -- order facts from any source

    def apply_order_fact(self, update: OrderUpdate, source: str) -> None:
        """Apply a status/fill report for one of our orders, from the stream or a reply."""
        pos = self.pos
        if pos is None:
            return
        order = pos.order(update.client_id)
        if order is None:
            return
        event = _EXCHANGE_STATUS.get(update.status)
        if event is None:
            return
        filled = max(order.filled_qty, update.filled_qty if math.isfinite(update.filled_qty) else 0)
        good_avg = update.avg_price is not None and _finite_positive(update.avg_price)
        avg = update.avg_price if good_avg and update.filled_qty >= order.filled_qty else None
        if _settled(order) and filled <= order.filled_qty:
            return  # terminal already: a duplicate or an older report (the table keeps it)
        if event is OrderEvent.REPORTED_NEW and filled > 0:
            event = OrderEvent.REPORTED_PARTIAL
        new_state = next_order_state(order.state, event)
        if new_state is None:
            self.illegal(order.state.value, event.value, client_id=order.client_id)
            return
        # Still resting after we asked to cancel: it stays pending (the table); a lookup
        # that finds it resting means our cancel missed it (it landed later): cancel again.
        recancel = (
            order.state is OrderState.PENDING_CANCEL
            and new_state is OrderState.PENDING_CANCEL
            and source == "lookup"
        )
        order = replace(
            order,
            state=new_state,
            filled_qty=filled,
            avg_price=avg if avg is not None else order.avg_price,
            exchange_id=update.exchange_id or order.exchange_id,
            event_time=(
                max(order.event_time, update.event_time)
                if math.isfinite(update.event_time)
                else order.event_time
            ),
        )
        previous = pos.order(order.client_id)
        self.put_order(order)
        events = len(self.events)
        kind = order.kind
        if kind is OrderKind.ENTRY:
            self.entry_fact(order, previous, source)
        elif kind is OrderKind.STOP_LOSS:
            self.stop_fact(order, previous, source)
        elif kind is OrderKind.CLOSE:
            self.close_fact(order, source)
        if (
            len(self.events) == events
            and previous is not None
            and (
                previous.state is not order.state
                or previous.filled_qty != order.filled_qty
                or previous.exchange_id != order.exchange_id
            )
        ):
            # What the exchange reported changed the order's record only (a fill of a
            # quantity the position knew already, a close filling in parts): durable too.
            now = self.pos
            self.event(
                JournalKind.ORDER_FACT,
                now.status if now is not None else None,
                client_id=order.client_id,
                state=order.state.value,
                filled=order.filled_qty,
                via=source,
            )
        current = self.pos.order(order.client_id) if self.pos is not None else None
        ended = self.pos is not None and self.pos.status.terminal
        if current is not None and (current.kind.trigger or (ended and kind is OrderKind.ENTRY)):
            # (An entry of an ended position: its rest must not fill on, I9.)
            if recancel and current.state is OrderState.PENDING_CANCEL:
                self.cancel(current, "still resting")
            elif current.state in (
                OrderState.ACCEPTED,
                OrderState.PARTIALLY_FILLED,
            ) and not self.wanted(current.client_id):
                # Rests, but nothing needs it (its position closed, a newer stop replaced
                # it): it must not stay behind to close a later position (I9).
                self.cancel(current, "not needed")

    def entry_fact(self, order: OrderRecord, previous: OrderRecord | None, source: str) -> None:
        pos = self.pos
        assert pos is not None
        if pos.status.terminal:
            grew = previous is None or order.filled_qty > previous.filled_qty
            if grew and _unaccounted(pos, order):
                # The entry filled on after its position ended (a close sized before the
                # last part, a stop, a flat sync): that rest is open on the exchange. Only
                # the sync knows the account's net position (a hand trade may have closed
                # some), so it is asked now and adopts and protects what is open; until a
                # sync has seen it (adopted or gone), no new entry goes out (leftovers).
                self.event(
                    JournalKind.LATE_ENTRY_FILL,
                    pos.status,
                    client_id=order.client_id,
                    filled=order.filled_qty,
                    qty=pos.qty,
                    via=source,
                )
                self.effects.append(RequestSync(pos.key, "late entry fill"))
            return
        if order.filled_qty > pos.qty:
            first = pos.qty <= 0
            added = order.filled_qty - pos.qty
            pos = replace(
                pos,
                qty=order.filled_qty,
                entry_price=order.avg_price or pos.entry_price,
                filled_at=pos.filled_at if pos.filled_at is not None else self.now,
            )
            filled = self.moved(pos, Trigger.ENTRY_FILLED)
            if filled is None:
                return
            pos = filled
            self.set_pos(
                pos, JournalKind.ENTRY_FILL, qty=pos.qty, price=pos.entry_price, via=source
            )
            if self.state.flat_seen_at is not None:
                # The sync saw the position flat, but the entry filled on since (a hand trade
                # flattened the first part): that view no longer holds, the next sync decides.
                self.state = replace(self.state, flat_seen_at=None)
                self.effects.append(CancelTimer(pos.key, _FLAT_CONFIRM))
            if pos.status is Status.CLOSING and not first:
                # Filled further while closing: the close in flight covers the old quantity
                # only, so close what was added too (else it stays open, and unprotected once
                # the close completes and the stop is canceled).
                self.send_close(added)
                self.event(JournalKind.CLOSE_ADDED, pos.status, qty=added)
                return
            if first:
                if pos.close_reason is not None:
                    # A close was asked before anything filled: protect, then close.
                    self.place_stop("first fill")
                    self.start_close(pos.close_reason, "close requested before fill")
                else:
                    self.place_stop("first fill")
            return
        if pos.status is Status.PENDING_ENTRY and order.state in (
            OrderState.ACCEPTED,
            OrderState.PARTIALLY_FILLED,
        ):
            placed = self.moved(pos, Trigger.ENTRY_ACCEPTED)
            if placed is not None:
                self.set_pos(placed, JournalKind.ENTRY_ACCEPTED, via=source)
            return
        if order.state in (OrderState.CANCELED, OrderState.REJECTED) and pos.qty <= 0:
            if pos.status in (Status.PENDING_ENTRY, Status.ENTRY_PLACED):
                self.fail_entry(f"entry_{order.state.value}")

    def stop_fact(self, order: OrderRecord, previous: OrderRecord | None, source: str) -> None:
        pos = self.pos
        assert pos is not None
        if pos.status.terminal:
            self.correct_close_reason(order, source)
            return
        was = previous.state if previous is not None else None
        current = pos.latest(OrderKind.STOP_LOSS)
        is_current = current is not None and current.client_id == order.client_id
        if order.state is OrderState.FILLED or (
            order.state is OrderState.PARTIALLY_FILLED and qty_done(order.filled_qty, pos.qty)
        ):
            self.finish(
                Trigger.STOP_FILLED,
                {"close_reason": CloseReason.STOP_LOSS},
                reason="stop_loss",
                via=source,
            )
            return
        if order.state is OrderState.ACCEPTED and is_current:
            if was is OrderState.ACCEPTED:
                return  # confirmed already (the stream and the reply both say so)
            protected = self.moved(pos, Trigger.STOP_CONFIRMED)
            if protected is None:
                return
            changes: dict[str, object] = {"sl_failures": 0, "sl_since": None}
            if pos.protected_at is None:
                changes["protected_at"] = self.now
            self.set_pos(replace(protected, **changes), JournalKind.STOP_CONFIRMED, via=source)  # type: ignore[arg-type]
            self.effects.append(CancelTimer(pos.key, _SL_DEADLINE))
            # A lookup asked before this confirmation says nothing about this stop.
            self.state = replace(self.state, stop_lookup_at=None)
            # A trailing move: the older stops can go now that the new one rests.
            for o in pos.orders:
                if (
                    o.kind is OrderKind.STOP_LOSS
                    and o.client_id != order.client_id
                    and not o.state.done
                    and o.state is not OrderState.PENDING_CANCEL
                ):
                    self.cancel(o, "replaced")
            return
        if pos.status is Status.CLOSING:
            return
        if not is_current:
            if was is OrderState.ACCEPTED and order.state.done and not self.covered():
                self.cover_lost(order)
            return
        if order.state is OrderState.CANCELED:
            # Our resting stop vanished (canceled on the exchange): protect again.
            self.place_stop("stop canceled on exchange")
        elif order.state is OrderState.REJECTED and was is OrderState.ACCEPTED:
            self.stop_crossed(order)
        elif order.state is OrderState.REJECTED and was in (
            OrderState.INTENDED,
            OrderState.UNKNOWN,
        ):
            # Refused before it ever rested, told (by the stream) before the placement's
            # answer, which then finds it settled and does nothing (rejected()): retried as
            # a refused placement is (stop_rejected), not left unprotected until the deadline.
            self.retry_stop(order, "reported rejected", None, via=source)

    def cover_lost(self, order: OrderRecord) -> None:
        """The confirmed stop that protected the position during a trailing move is gone
        (``order``, not the newest) while its successor is not confirmed: refused at
        trigger, the price crossed it and nothing closed the position: closed at market;
        cancelled (by hand, by the exchange): an unprotected spell starts, with its
        deadline (I5), as the successor's lookup or resend may take long."""
        pos = self.pos
        assert pos is not None
        if order.state is OrderState.REJECTED:
            self.stop_crossed(order)
        elif pos.sl_since is None:
            self.begin_spell()

    def stop_crossed(self, order: OrderRecord) -> None:
        """``order``, a stop that rested, triggered and its market order was refused: the
        price crossed the stop and nothing closed the position. Closed at market now."""
        pos = self.pos
        assert pos is not None
        self.event(JournalKind.STOP_REJECTED_AT_TRIGGER, pos.status, client_id=order.client_id)
        self.start_close(CloseReason.STOP_LOSS, "stop rejected at trigger")

    def close_fact(self, order: OrderRecord, source: str) -> None:
        pos = self.pos
        assert pos is not None
        if pos.status.terminal:
            self.correct_close_reason(order, source)
            return
        if order.state is OrderState.FILLED or qty_done(order.filled_qty, pos.qty):
            pending = [
                o.client_id
                for o in pos.orders
                if o.kind is OrderKind.CLOSE and o.client_id != order.client_id and not o.state.done
            ]
            if pending:
                # Another close is still working (one for a quantity added while closing):
                # closed when the last one is done, so that the stop stays until then.
                self.event(JournalKind.CLOSE_PART_DONE, pos.status, client_id=order.client_id)
                return
            reason = pos.close_reason or CloseReason.MANUAL
            self.finish(Trigger.CLOSE_FILLED, reason=reason.value)
            return
        if order.state in (OrderState.CANCELED, OrderState.REJECTED):
            self.close_retry("close order " + order.state.value)

    def close_retry(self, why: str) -> None:
        """A close did not go through: send another after a delay that doubles with every
        close sent (``close_retry_delay_s`` up to ``close_retry_max_delay_s``), for ever.
        From ``close_max_attempts`` on, each retry is journaled ``close_failing`` (the shell
        logs it at ERROR and counts it; the supervisor's readiness shows the symbol)."""
        pos = self.pos
        assert pos is not None
        policy = self.ctx.policy
        n = max(0, pos.close_seq - 1)
        delay = min(policy.close_retry_max_delay_s, policy.close_retry_delay_s * 2.0 ** min(n, 30))
        self.effects.append(StartTimer(pos.key, _CLOSE_RETRY, delay))
        self.effects.append(RequestSync(pos.key, why))
        kind = (
            JournalKind.CLOSE_FAILING
            if pos.close_seq >= policy.close_max_attempts
            else JournalKind.CLOSE_RETRY_SCHEDULED
        )
        self.event(kind, pos.status, why=why, attempts=pos.close_seq, delay=delay)

    # -- message handlers

    def order_update(self, upd: OrderUpdate) -> _Step:
        pos = self.pos
        if pos is None:
            return self
        order = pos.order(upd.client_id)
        if order is None:
            return self
        if pos.status.terminal and order.kind is OrderKind.CLOSE and not _unsure_close(pos):
            return self
        if pos.status.terminal and order.kind.trigger and _settled(order):
            return self
        # An entry of an ended position too: its cancel settles, a late fill is recorded
        # and the sync asked to adopt it (entry_fact).
        self.apply_order_fact(upd, "stream")
        return self

    def outcome(self, out: ExchangeOutcome) -> _Step:
        pos = self.pos
        order = pos.order(out.client_id) if pos is not None else None
        if pos is not None and order is None and out.client_id == _unwritten_close(pos):
            return self.unwritten_close(out)
        if pos is None or order is None:
            return self
        if out.op is CallOp.CANCEL:
            return self.cancel_outcome(out, order)
        if out.op is CallOp.LOOKUP:
            return self.lookup_outcome(out, order)
        if pos.status.terminal:
            if order.kind is OrderKind.ENTRY:
                # Its placement answered after the position ended: a fill is recorded and
                # adopted (entry_fact), a resting rest cancelled (apply_order_fact).
                if out.update is not None:
                    self.apply_order_fact(out.update, "reply")
                elif out.result is CallResult.ACCEPTED:
                    self.apply_order_fact(
                        OrderUpdate(pos.key, out.client_id, ExchangeStatus.NEW, 0.0, None, 0.0),
                        "reply",
                    )
                return self
            if order.kind is OrderKind.CLOSE and _unsure_close(pos) and not _settled(order):
                if out.update is not None:
                    self.apply_order_fact(out.update, "reply")
                return self
            if not order.kind.trigger or _settled(order):
                return self
            # A protective order of a position that ended while it was being placed: learn
            # whether it landed, and cancel it if it did (apply_order_fact does).
            if out.result is CallResult.ACCEPTED:
                self.apply_order_fact(
                    out.update
                    or OrderUpdate(pos.key, out.client_id, ExchangeStatus.NEW, 0.0, None, 0.0),
                    "reply",
                )
            elif out.result is CallResult.UNKNOWN:
                self.effects.append(
                    StartTimer(
                        pos.key,
                        TimerId(TimerKind.LOOKUP, order.client_id),
                        self.ctx.policy.lookup_delay_s,
                    )
                )
            elif self.order_to(order, OrderEvent.PLACE_REJECTED) is not None:
                self.event(
                    JournalKind.ORDER_FACT, pos.status, client_id=order.client_id, state="rejected"
                )
            return self
        # op == "place"
        if out.result is CallResult.ACCEPTED:
            if out.update is not None:
                self.apply_order_fact(out.update, "reply")
            else:
                self.apply_order_fact(
                    OrderUpdate(pos.key, out.client_id, ExchangeStatus.NEW, 0.0, None, 0.0), "reply"
                )
            return self
        if out.result is CallResult.UNKNOWN:
            if order.state in (OrderState.INTENDED,):
                self.order_to(order, OrderEvent.PLACE_UNKNOWN)
                self.event(
                    JournalKind.ORDER_UNKNOWN, pos.status, client_id=order.client_id, why=out.reason
                )
            self.effects.append(
                StartTimer(
                    pos.key,
                    TimerId(TimerKind.LOOKUP, order.client_id),
                    self.ctx.policy.lookup_delay_s,
                )
            )
            return self
        # REJECTED
        return self.rejected(out, order)

    def cancel_outcome(self, out: ExchangeOutcome, order: OrderRecord) -> _Step:
        """The exchange answered a cancel. Confirmed: the order is done. "Not found": it is
        not open, but filled, cancelled or never there? Looked up. No answer (429, 5xx):
        asked again after a delay (the exchange's Retry-After, or ``cancel_retry_delay_s``)."""
        pos = self.pos
        assert pos is not None
        if order.state.done:
            return self
        if out.result is CallResult.ACCEPTED:
            self.apply_order_fact(
                out.update
                or OrderUpdate(pos.key, out.client_id, ExchangeStatus.CANCELED, 0.0, None, 0.0),
                "cancel",
            )
            return self
        if out.result is CallResult.NOT_FOUND:
            self.effects.append(LookupOrder(pos.key, order.client_id, order.kind))
            return self
        if self.cancel_pending(order):
            delay = out.retry_after or self.ctx.policy.cancel_retry_delay_s
            self.effects.append(
                StartTimer(pos.key, TimerId(TimerKind.CANCEL, order.client_id), delay)
            )
        return self

    def cancel_pending(self, order: OrderRecord) -> bool:
        """Is a cancel of ``order`` still wanted, to be asked again when its answer was
        none (429, 5xx)? Yes for an order recorded ``pending_cancel``, and for the entry of
        a position being closed (``close_reason`` set): :meth:`start_close` asks its cancel
        without recording one, as the entry may still fill; a lost cancel would leave it
        resting, to fill into a position the operator closed."""
        pos = self.pos
        assert pos is not None
        if order.state is OrderState.PENDING_CANCEL:
            return True
        return (
            order.kind is OrderKind.ENTRY
            and not order.state.done
            and pos.close_reason is not None
            and not pos.status.terminal
        )

    def rejected(self, out: ExchangeOutcome, order: OrderRecord) -> _Step:
        pos = self.pos
        assert pos is not None
        policy = self.ctx.policy
        if order.state not in (OrderState.INTENDED, OrderState.UNKNOWN):
            return self  # a fill or acceptance already came in: trust it
        if order.kind is OrderKind.STOP_LOSS:
            return self.stop_rejected(out, order)
        if out.retry_after is not None and order.attempts < policy.place_max_attempts:
            self.order_to(order, OrderEvent.PLACE_THROTTLED)
            self.effects.append(
                StartTimer(pos.key, TimerId(TimerKind.RETRY, order.client_id), out.retry_after)
            )
            self.event(
                JournalKind.ORDER_THROTTLED, pos.status, client_id=order.client_id, why=out.reason
            )
            return self
        self.order_to(order, OrderEvent.PLACE_REJECTED)
        if order.kind is OrderKind.ENTRY:
            if pos.qty <= 0:
                self.fail_entry(f"rejected:{out.reason}")
            return self
        if order.kind is OrderKind.CLOSE:
            self.event(JournalKind.CLOSE_REJECTED, pos.status, why=out.reason)
            self.close_retry(f"close rejected: {out.reason}")
        return self

    def stop_rejected(self, out: ExchangeOutcome, order: OrderRecord) -> _Step:
        """A stop-loss placement refused, for whatever reason (rate limit, margin, refused
        locally before it left): one attempt spent (I5). Retried after the exchange's
        Retry-After or ``sl_retry_delay_s``; "would trigger at once" closes at market now."""
        pos = self.pos
        assert pos is not None
        self.order_to(order, OrderEvent.PLACE_REJECTED)
        if order.client_id != (pos.latest(OrderKind.STOP_LOSS) or order).client_id:
            self.event(
                JournalKind.ORDER_FACT, pos.status, client_id=order.client_id, state="rejected"
            )
            return self  # a newer stop replaced it
        if out.rejection is Rejection.WOULD_TRIGGER:
            self.event(
                JournalKind.STOP_FAILED, pos.status, why=out.reason, failures=pos.sl_failures
            )
            self.start_close(CloseReason.EMERGENCY, f"stop-loss not placed: {out.reason}")
            return self
        self.retry_stop(order, out.reason, out.retry_after)
        return self

    def retry_stop(
        self, order: OrderRecord, why: str, retry_after: float | None, **detail: object
    ) -> None:
        """A stop's placement was refused (its answer, or the stream first): journaled
        ``stop_rejected`` and sent again after the exchange's Retry-After or
        ``sl_retry_delay_s``, whichever is longer; doubled per attempt while an older
        confirmed stop covers a trailing move (no hurry, and no churn)."""
        pos = self.pos
        assert pos is not None
        self.event(
            JournalKind.STOP_REJECTED, pos.status, why=why, failures=pos.sl_failures, **detail
        )
        delay = max(retry_after or 0.0, self.ctx.policy.sl_retry_delay_s)
        if self.covered():
            delay *= 2.0 ** min(order.attempts, 6)
        self.effects.append(StartTimer(pos.key, TimerId(TimerKind.RETRY, order.client_id), delay))

    def lookup_outcome(self, out: ExchangeOutcome, order: OrderRecord) -> _Step:
        pos = self.pos
        assert pos is not None
        policy = self.ctx.policy
        if out.result is CallResult.FOUND and out.update is not None:
            self.apply_order_fact(out.update, "lookup")
            return self
        terminal = pos.status.terminal
        if out.result is CallResult.NOT_FOUND and order.state is OrderState.PENDING_CANCEL:
            # Cancel said "not open" and the lookup knows nothing of it: it never landed (a
            # placement still in flight is cancelled when its acceptance comes back).
            if self.order_to(order, OrderEvent.LOOKUP_NOT_FOUND) is not None:
                self.event(
                    JournalKind.ORDER_FACT, pos.status, client_id=order.client_id, state="not_found"
                )
            return self
        if out.result is CallResult.NOT_FOUND and order.state is OrderState.ACCEPTED:
            latest = pos.latest(OrderKind.STOP_LOSS)
            if (
                order.kind is OrderKind.STOP_LOSS
                and latest is not None
                and latest.client_id == order.client_id
                and self.state.stop_lookup_at is not None
                and self.wanted(order.client_id)
            ):
                # It rested once and the exchange no longer knows it: protect again. Only
                # the answer to the sync's lookup of the newest stop, asked since it was
                # confirmed (stop_lookup_at, cleared at each confirmation): a lookup asked
                # before the stop was (re-)placed answers "not found" for a stop that rests
                # now, and would place another beside it.
                if self.order_to(order, OrderEvent.LOOKUP_NOT_FOUND) is not None:
                    self.place_stop("stop missing on exchange")
            return self
        if out.result is CallResult.NOT_FOUND and order.state in (
            OrderState.INTENDED,
            OrderState.UNKNOWN,
        ):
            started = order.sent_at if order.sent_at is not None else self.now
            if order.kind is OrderKind.STOP_LOSS and not terminal and self.wanted(order.client_id):
                # A stop that is not there is sent again at once with the same id: stops rest,
                # so if it did arrive after all, the duplicate id is refused, never doubled.
                self.resend(order)
                return self
            if self.now < started + policy.lookup_deadline_s:
                self.effects.append(
                    StartTimer(
                        pos.key, TimerId(TimerKind.LOOKUP, order.client_id), policy.lookup_delay_s
                    )
                )
                return self
            if self.order_to(order, OrderEvent.LOOKUP_NOT_FOUND) is None:
                return self
            if terminal or order.kind.trigger:
                self.event(
                    JournalKind.ORDER_FACT, pos.status, client_id=order.client_id, state="not_found"
                )
                return self
            if order.kind is OrderKind.ENTRY:
                if pos.qty <= 0:
                    self.fail_entry("entry_not_found")
                    self.effects.append(RequestSync(pos.key, "entry not found"))
                return self
            if order.kind is OrderKind.CLOSE:
                self.event(
                    JournalKind.ORDER_FACT, pos.status, client_id=order.client_id, state="not_found"
                )
                self.close_retry("close not found")
            return self
        # Lookup itself failed (network): keep asking while the answer matters (for the
        # orders of a position closed on the sync's word alone: until they are settled).
        if not order.state.done and (
            order.state is not OrderState.ACCEPTED
            or order.kind is OrderKind.STOP_LOSS
            or _unsure_close(pos)
        ):
            delay = max(out.retry_after or 0.0, policy.lookup_delay_s * 2)
            self.effects.append(
                StartTimer(pos.key, TimerId(TimerKind.LOOKUP, order.client_id), delay)
            )
        return self

    def resend(self, order: OrderRecord, **changes: object) -> None:
        """Send ``order`` again with the same client id (``intended`` again, one more
        attempt, sent now: its lookup deadline and the sync's grace for a stop run from
        this send; ``changes``: more of its fields)."""
        pos = self.pos
        assert pos is not None
        if order.kind is OrderKind.STOP_LOSS:
            if self.covered():
                # An older confirmed stop protects meanwhile: this one spends no attempt of
                # an unprotected spell, but its own placements are bounded all the same.
                if order.attempts >= self.ctx.policy.sl_max_attempts:
                    self.event(
                        JournalKind.STOP_FAILED,
                        pos.status,
                        client_id=order.client_id,
                        why=f"{order.attempts} attempts while covered",
                        failures=pos.sl_failures,
                    )
                    if not order.state.done:  # a refused one rests nowhere: nothing to cancel
                        self.cancel(order, "given up: an older stop protects")
                    return
            else:
                if pos.sl_since is None:  # the cover went without a report (a lookup)
                    pos = self.begin_spell()
                if not self.stop_budget_left():
                    return
                pos = replace(pos, sl_failures=pos.sl_failures + 1)
                self.pos = pos
        changes.setdefault("sent_at", self.now)
        sent = self.order_to(order, OrderEvent.RESEND, attempts=order.attempts + 1, **changes)
        if sent is None:
            return
        order = sent
        self.effects.append(
            PlaceOrder(
                pos.key,
                pos.id,
                order,
                reduce_only=order.kind is OrderKind.CLOSE,
                close_position=order.kind is OrderKind.STOP_LOSS,
            )
        )
        self.event(
            JournalKind.ORDER_RESENT, pos.status, client_id=order.client_id, attempt=order.attempts
        )

    def timer(self, t: TimerFired) -> _Step:
        pos = self.pos
        if pos is None:
            return self
        kind = t.name.kind
        terminal = pos.status.terminal
        if kind is TimerKind.CLOSE_RETRY:
            if pos.status is Status.CLOSING:
                self.event(JournalKind.CLOSE_RETRY, pos.status)
                self.send_close()
            return self
        if kind is TimerKind.SL_DEADLINE:
            stop = pos.latest(OrderKind.STOP_LOSS)
            unconfirmed = stop is None or stop.state is not OrderState.ACCEPTED
            if pos.status in (Status.PENDING_SL, Status.ACTIVE) and unconfirmed:
                self.stop_budget_left()
            return self
        if kind is TimerKind.FLAT_CONFIRM:
            if not terminal and self.state.flat_seen_at is not None:
                self.close_flat("sync")
            return self
        cid = t.name.client_id
        order = pos.order(cid) if cid is not None else None
        if kind is TimerKind.LOOKUP and cid is not None and _unsure_close(pos):
            if cid == _unwritten_close(pos) or (
                order is not None and order.kind is OrderKind.CLOSE and not _settled(order)
            ):
                self.effects.append(LookupOrder(pos.key, cid, OrderKind.CLOSE))
                return self
        if cid is None or order is None:
            return self
        if kind is TimerKind.CANCEL:
            if self.cancel_pending(order):
                self.effects.append(CancelOrder(pos.key, cid, order.kind, "retry"))
            return self
        if kind is TimerKind.LOOKUP and order.state in (
            OrderState.UNKNOWN,
            OrderState.INTENDED,
            OrderState.PENDING_CANCEL,  # a cancel said "not found" and its lookup was refused
        ):
            self.effects.append(LookupOrder(pos.key, cid, order.kind))
        elif (
            kind is TimerKind.RETRY
            and not terminal
            and order.state in (OrderState.INTENDED, OrderState.REJECTED)
        ):
            if order.kind is OrderKind.STOP_LOSS and order is not pos.latest(OrderKind.STOP_LOSS):
                return self
            self.resend(order)
        return self

    def close_request(self, req: CloseRequest) -> _Step:
        why = req.request_id or "close request"
        return self.start_close(req.reason, why, **_operator_detail(req))

    def recover(self) -> _Step:
        """Resolve a position loaded from the store (S5): a non-terminal one, or a terminal
        one whose protective orders are not confirmed gone (I9)."""
        pos = self.pos
        if pos is None:
            return self
        if pos.status.terminal:
            for o in leftovers(self.state):
                if o.state.done:  # an entry's rest filled after the end: the sync adopts it
                    self.effects.append(RequestSync(pos.key, "recovery: late entry fill"))
                elif o.state in (OrderState.INTENDED, OrderState.UNKNOWN):
                    self.order_to(o, OrderEvent.CANCEL_REQUESTED)
                    self.event(JournalKind.RECOVERING, pos.status, client_id=o.client_id)
                    self.effects.append(LookupOrder(pos.key, o.client_id, o.kind))
                else:
                    self.cancel(o, "recovery")
            return self
        self.effects.append(RequestSync(pos.key, "recovery"))
        for o in pos.orders:
            if o.state in (OrderState.INTENDED, OrderState.UNKNOWN):
                # Sent or not, we cannot tell: look it up by its id before anything else.
                if o.state is OrderState.INTENDED:
                    self.order_to(o, OrderEvent.RECOVERED, sent_at=self.now)
                self.effects.append(LookupOrder(pos.key, o.client_id, o.kind))
            elif o.kind is OrderKind.ENTRY and o.state is OrderState.ACCEPTED:
                self.effects.append(LookupOrder(pos.key, o.client_id, o.kind))
            elif o.state is OrderState.PENDING_CANCEL:
                self.effects.append(CancelOrder(pos.key, o.client_id, o.kind, "recovery"))
        self.event(JournalKind.RECOVERING, pos.status)
        if pos.sl_since is not None and pos.status in (Status.PENDING_SL, Status.ACTIVE):
            left = pos.sl_since + self.ctx.policy.sl_deadline_s - self.now
            self.effects.append(StartTimer(pos.key, _SL_DEADLINE, max(0.0, left)))
        self.resume_retries()
        return self

    def resume_retries(self) -> None:
        """Timers die with the process: resend what was waiting on a retry timer when it did
        (a refused stop-loss, a refused or vanished close); its delay has passed by now. After
        a crash of the actor alone the timer may still be set: it is cancelled first, so the
        order is not sent twice."""
        pos = self.pos
        assert pos is not None
        if pos.qty <= 0:
            return
        if pos.status in (Status.PENDING_SL, Status.ACTIVE):
            stop = pos.latest(OrderKind.STOP_LOSS)
            if stop is None:
                self.place_stop("recovery: no stop-loss on record")
            elif stop.state is OrderState.REJECTED:
                self.effects.append(CancelTimer(pos.key, TimerId(TimerKind.RETRY, stop.client_id)))
                self.resend(stop)
            return
        if pos.status is Status.CLOSING:
            closes = [o for o in pos.orders if o.kind is OrderKind.CLOSE]
            if any(not o.state.done for o in closes):
                return  # a close is working: its outcome or lookup resumes the position
            # Retried for ever, as the close_retry timer does (close_max_attempts only marks
            # the symbol failing): never left closing with nothing sent.
            self.event(JournalKind.CLOSE_RETRY, pos.status, why="recovery")
            self.effects.append(CancelTimer(pos.key, _CLOSE_RETRY))
            self.send_close()

    def sync(self, obs: SyncObservation) -> _Step:
        self.sweep_orphans(obs)
        pos = self.pos
        xp = obs.position
        if pos is None or pos.status.terminal:
            if xp is None or xp.qty <= 0:
                if pos is not None and obs.observed_at > pos.updated_at:
                    self.settle_late_fill(pos)
                return self
            if pos is not None and (pos.closed_at or pos.updated_at) >= obs.observed_at:
                return self  # observed before our close: stale
            if any(self.foreign(o.client_id) for o in obs.open_orders):
                return self  # another installation's position (its orders rest here): not ours
            if not obs.adoptable:
                return self  # adoption stopped on this account (another installation, I7)
            return self.adopt(xp)
        if pos.status in (Status.PENDING_ENTRY, Status.ENTRY_PLACED):
            if xp is not None and xp.qty > 0 and xp.side is pos.side:
                # S3: the sync saw our own entry fill first. Reconcile, never a second row.
                entry = pos.latest(OrderKind.ENTRY)
                assert entry is not None
                status = (
                    ExchangeStatus.FILLED
                    if qty_done(xp.qty, pos.requested_qty)
                    else ExchangeStatus.PARTIALLY_FILLED
                )
                fact = OrderUpdate(
                    pos.key, entry.client_id, status, xp.qty, xp.entry_price, obs.observed_at
                )
                self.apply_order_fact(fact, "sync")
            return self
        # Filled position we hold: pending_sl, active, closing.
        stale = obs.observed_at <= (pos.filled_at or pos.created_at)
        if stale:
            return self
        if xp is None or xp.qty <= 0 or xp.side is not pos.side:
            return self.flat()
        if self.state.flat_seen_at is not None:
            # Seen flat before, open now: that view was stale. Nothing closed it.
            self.state = replace(self.state, flat_seen_at=None)
            self.effects.append(CancelTimer(pos.key, _FLAT_CONFIRM))
        if pos.status is Status.CLOSING:
            # Never lower the quantity while closing: the close in flight explains a smaller
            # position, and its fills (against the whole quantity) finish the position.
            closing = [o for o in pos.orders if o.kind is OrderKind.CLOSE]
            closed = sum(o.filled_qty for o in closing)
            will_close = sum(max(0.0, o.qty - o.filled_qty) for o in closing if not o.state.done)
            excess = xp.qty - will_close
            if (
                obs.observed_at > pos.updated_at
                and excess > 0
                and not qty_done(will_close, xp.qty)
                and pos.close_seq < self.ctx.policy.close_max_attempts
            ):
                # More is open than the closes in flight remove (a fill we have not heard of):
                # close that too.
                self.set_pos(
                    replace(pos, qty=max(pos.qty, closed + xp.qty)),
                    JournalKind.QTY_FROM_SYNC,
                    qty=xp.qty,
                )
                self.send_close(excess)
                self.event(JournalKind.CLOSE_ADDED, Status.CLOSING, qty=excess, via="sync")
            return self
        if not math.isclose(xp.qty, pos.qty, rel_tol=1e-9):
            self.set_pos(replace(pos, qty=xp.qty), JournalKind.QTY_FROM_SYNC, qty=xp.qty)
            pos = self.pos
            assert pos is not None
            entry = pos.latest(OrderKind.ENTRY)
            if entry is not None and entry.state in (
                OrderState.ACCEPTED,
                OrderState.PARTIALLY_FILLED,
            ):
                # The entry filled on without us hearing of it (a stream event lost to a
                # dropped connection): fetch its record so its fills are not lost.
                self.effects.append(LookupOrder(pos.key, entry.client_id, OrderKind.ENTRY))
        stop = pos.latest(OrderKind.STOP_LOSS)
        resting = {o.client_id for o in obs.open_orders}
        if stop is None or stop.state.done:
            return self
        if stop.client_id in resting:
            if stop.state in (OrderState.INTENDED, OrderState.UNKNOWN):
                fact = OrderUpdate(
                    pos.key, stop.client_id, ExchangeStatus.NEW, 0.0, None, obs.observed_at
                )
                self.apply_order_fact(fact, "sync")
            return self
        policy = self.ctx.policy
        last = self.state.stop_lookup_at
        if (
            pos.status is Status.ACTIVE
            and stop.state is OrderState.ACCEPTED
            and obs.observed_at > (stop.sent_at or 0.0) + policy.stop_grace_s
            and (last is None or self.now - last >= policy.stop_grace_s)
        ):
            # Not in the list: the list may lag the placement, so look the stop up by its id
            # (the lookup's answer decides; never re-placed on the list alone).
            self.state = replace(self.state, stop_lookup_at=self.now)
            self.effects.append(LookupOrder(pos.key, stop.client_id, stop.kind))
        return self

    def settle_late_fill(self, pos: Position) -> None:
        """The sync, after we learnt of an entry's fill beyond what its ended position held,
        shows nothing open: that rest is gone (closed by hand). The position records the
        whole fill, so the entry no longer holds new entries back (:func:`leftovers`)."""
        entry = pos.latest(OrderKind.ENTRY)
        if entry is None or not _unaccounted(pos, entry) or not entry.state.done:
            return
        self.set_pos(
            replace(pos, qty=entry.filled_qty),
            JournalKind.QTY_FROM_SYNC,
            qty=entry.filled_qty,
            why="late entry fill gone",
        )

    def flat(self) -> _Step:
        """The exchange shows no position (or the opposite one) where ours is filled: look
        up the orders that may have closed it, so the close reason is the truth (a stop
        whose stream event is late), and close it after ``flat_confirm_s`` at the latest."""
        pos = self.pos
        assert pos is not None
        if self.state.flat_seen_at is not None:
            return self
        candidates = [
            o
            for o in pos.orders
            if o.kind in (OrderKind.STOP_LOSS, OrderKind.CLOSE) and not o.state.done
        ]
        if not candidates:
            return self.close_flat("sync")
        self.state = replace(self.state, flat_seen_at=self.now)
        for o in candidates:
            self.effects.append(LookupOrder(pos.key, o.client_id, o.kind))
        self.effects.append(StartTimer(pos.key, _FLAT_CONFIRM, self.ctx.policy.flat_confirm_s))
        return self

    def close_flat(self, via: str) -> _Step:
        pos = self.pos
        assert pos is not None
        kept = pos.close_reason if pos.status is Status.CLOSING else None
        reason = kept or CloseReason.CLOSED_ON_EXCHANGE
        self.finish(
            Trigger.CLOSED_ON_EXCHANGE, {"close_reason": reason}, reason=reason.value, via=via
        )
        if reason is CloseReason.CLOSED_ON_EXCHANGE and self.pos is not None:
            # Closed on the sync's word alone (its orders' lookups were refused or late):
            # its orders are still looked up, so that the close reason is corrected if one
            # of them closed it (stops through their cancel, closes here), and so is the
            # close a restart may have lost before it was written (the next close id).
            ended = self.pos
            for o in ended.orders:
                if o.kind is OrderKind.CLOSE and not _settled(o):
                    self.effects.append(LookupOrder(ended.key, o.client_id, o.kind))
            self.effects.append(LookupOrder(ended.key, _unwritten_close(ended), OrderKind.CLOSE))
        return self

    def correct_close_reason(self, order: OrderRecord, source: str) -> None:
        """A position closed ``closed_on_exchange`` learns that its own stop or close filled
        (a lookup or stream event after the close): the close reason is corrected."""
        pos = self.pos
        if pos is None or not _unsure_close(pos) or order.filled_qty <= 0:
            return
        if order.state is not OrderState.FILLED and not qty_done(order.filled_qty, pos.qty):
            return
        reason = CloseReason.STOP_LOSS if order.kind is OrderKind.STOP_LOSS else CloseReason.MANUAL
        self.set_pos(
            replace(pos, close_reason=reason),
            JournalKind.CLOSE_REASON_CORRECTED,
            client_id=order.client_id,
            was=CloseReason.CLOSED_ON_EXCHANGE.value,
            reason=reason.value,
            via=source,
        )

    def unwritten_close(self, out: ExchangeOutcome) -> _Step:
        """The answer about the close id a restart may have lost (:meth:`close_flat`): a
        fill of it corrects the close reason (the close is recorded); no answer (a refused
        lookup): asked again."""
        pos = self.pos
        assert pos is not None
        if out.op is not CallOp.LOOKUP or not _unsure_close(pos):
            return self
        if out.result is CallResult.FOUND and out.update is not None:
            upd = out.update
            filled = _EXCHANGE_STATUS.get(upd.status) is OrderEvent.REPORTED_FILLED
            if filled and upd.filled_qty > 0:
                seq = pos.close_seq + 1
                order = intended_order(
                    pos.id, OrderKind.CLOSE, seq, pos.side.exit_side, upd.filled_qty, self.now
                )
                order = replace(
                    order,
                    state=OrderState.FILLED,
                    filled_qty=upd.filled_qty,
                    avg_price=upd.avg_price,
                    exchange_id=upd.exchange_id,
                )
                self.pos = replace(pos, close_seq=seq)
                self.put_order(order)
                self.correct_close_reason(order, "lookup")
            return self
        if out.result is CallResult.UNKNOWN:
            delay = max(out.retry_after or 0.0, self.ctx.policy.lookup_delay_s * 2)
            self.effects.append(
                StartTimer(pos.key, TimerId(TimerKind.LOOKUP, out.client_id), delay)
            )
        return self

    def foreign(self, client_id: str) -> bool:
        """An order with our prefix that another installation (another database) placed: not
        ours to cancel (I7); the supervisor raises the alarm for it."""
        inst = self.ctx.policy.installation
        return inst is not None and inst.foreign(client_id) is not None

    def sweep_orphans(self, obs: SyncObservation) -> None:
        """Cancel every resting order of ours that the open position does not need (I9):
        stops of closed positions, replaced stops, orders of positions this actor never
        knew. An order on record is cancelled through its record (``pending_cancel``);
        one that is not is cancelled directly, at most once per ``orphan_window`` (a
        lagging list shows an order a while after it is gone). Only ours: an order of
        another installation (:class:`~actors.state.Installation`) is left alone."""
        if not obs.open_orders:
            return
        window = _ORPHAN_WINDOW_S
        recent = {cid: at for cid, at in self.state.orphan_cancels if self.now - at < window}
        pos = self.pos
        for o in obs.open_orders:
            cid = o.client_id
            if parse_client_id(cid) is None or self.wanted(cid) or self.foreign(cid):
                continue
            record = pos.order(cid) if pos is not None else None
            if record is not None and not record.state.done:
                if record.state is not OrderState.PENDING_CANCEL:
                    self.cancel(record, "orphan")
                continue
            if cid in recent:
                continue
            recent[cid] = self.now
            kind = OrderKind.STOP_LOSS if o.trigger else OrderKind.CLOSE
            kind = record.kind if record is not None else kind
            self.effects.append(CancelOrder(obs.key, cid, kind, "orphan"))
        self.state = replace(self.state, orphan_cancels=tuple(recent.items()))

    def adopt(self, xp: ExchangePosition) -> _Step:
        """A position on the exchange that the database does not know: adopt and protect."""
        pid = self.ctx.next_id
        if pid is None:
            return self  # no id without the store: adopted at the next sync
        pct = self.ctx.policy.default_stop_pct
        stop = xp.entry_price * (1 - pct) if xp.side is Side.LONG else xp.entry_price * (1 + pct)
        pos = Position(
            id=pid,
            key=self.state.key,
            side=xp.side,
            status=_created(Trigger.ADOPTED),
            source="sync",
            requested_qty=xp.qty,
            qty=xp.qty,
            entry_price=xp.entry_price,
            stop_price=stop,
            created_at=self.now,
            updated_at=self.now,
            filled_at=self.now,
        )
        self.before = None
        self.pos = pos
        self.event(JournalKind.ADOPTED, None, qty=xp.qty, entry_price=xp.entry_price)
        self.place_stop("adopted")
        return self


#: Message type -> its handler (looked up by exact type: messages are final dataclasses).
_HANDLERS: dict[type, Callable[[SymbolState, Any, Context], Transition]] = {
    MarkPriceTick: _on_tick,
    OrderUpdate: lambda s, m, c: _Step(s, m, c).order_update(m).done(),
    ExchangeOutcome: lambda s, m, c: _Step(s, m, c).outcome(m).done(),
    OpenSignal: _on_signal,
    SyncObservation: lambda s, m, c: _Step(s, m, c).sync(m).done(),
    TimerFired: lambda s, m, c: _Step(s, m, c).timer(m).done(),
    CloseRequest: _on_close_request,
    PauseRequest: _on_control,
    UnquarantineRequest: _on_control,
    Recover: lambda s, m, c: _Step(s, m, c).recover().done(),
    MarketInfo: _on_market,
}


# --- helpers: pure checks and figures the handlers (and the feed, the shell) use ---------


# --- signals -----------------------------------------------------------------------------


def _finite_positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def validate_signal(sig: OpenSignal, last_price: float | None, policy: Policy) -> str | None:
    """Why the signal is invalid on its own, or ``None``. Pure; also used by the feed.

    The checks that need no market: types, finite positive numbers, the take-profit on the
    winning side of the stop. With ``last_price`` it also checks the stop and take-profit
    sides against it (the feed passes ``None``; the actor checks the market with
    :func:`check_entry` once it has a fresh reference price and the market's rules).
    """
    if not _clean_text(sig.signal_id):
        return "invalid:signal_id"
    if not _clean_text(sig.source):
        return "invalid:source"
    if not isinstance(sig.side, Side):
        return "invalid:side"
    if not _finite_positive(sig.size):
        return "invalid:size"
    if not _finite_positive(sig.stop_loss):
        return "invalid:stop_loss"
    if sig.take_profit is not None and not _finite_positive(sig.take_profit):
        return "invalid:take_profit"
    if sig.trailing_distance is not None and not _finite_positive(sig.trailing_distance):
        return "invalid:trailing_distance"
    for t in (sig.expires_at, sig.created_at):
        if t is not None and not (isinstance(t, int | float) and math.isfinite(t)):
            return "invalid:time"
    sign = 1.0 if sig.side is Side.LONG else -1.0
    if sig.take_profit is not None and sign * (sig.take_profit - sig.stop_loss) <= 0:
        return "invalid:take_profit_side"
    if last_price is not None:
        return _sides(sig, last_price)
    return None


def _sides(sig: OpenSignal, price: float) -> str | None:
    sign = 1.0 if sig.side is Side.LONG else -1.0
    if sign * (price - sig.stop_loss) <= 0:
        return "invalid:stop_loss_side"
    if sig.take_profit is not None and sign * (sig.take_profit - price) <= 0:
        return "invalid:take_profit_side"
    return None


def on_step(value: float, step: float) -> bool:
    """True when ``value`` is a whole multiple of ``step`` (float noise tolerated)."""
    k = round(value / step)
    return k >= 1 and abs(k * step - value) <= 1e-9 * max(abs(value), step)


def to_tick(price: float, tick: float | None) -> float:
    """``price`` rounded to the nearest multiple of ``tick`` (unchanged without a tick)."""
    if tick is None or tick <= 0 or not math.isfinite(price):
        return price
    return float(format(round(price / tick) * tick, ".15g"))


def check_entry(sig: OpenSignal, price: float, rules: MarketRules, policy: Policy) -> str | None:
    """Why the market cannot take this entry at mark ``price``, or ``None`` (I10). Pure.

    Sides of the stop and take-profit against the mark (as sent, then as rounded to the
    tick), the stop's (and trailing distance's) sanity bound
    ``policy.max_stop_distance_pct``, the market's price bounds, its quantity step and
    bounds, its minimum notional and ``policy.max_notional``.
    """
    sides = _sides(sig, price)
    if sides is not None:
        return sides
    bound = policy.max_stop_distance_pct * price
    if abs(price - sig.stop_loss) > bound:
        return "invalid:stop_distance"
    if sig.trailing_distance is not None and sig.trailing_distance > bound:
        return "invalid:trailing_distance"
    lo, hi = rules.min_price, rules.max_price
    stop = to_tick(sig.stop_loss, rules.tick_size)
    if stop <= 0 or (lo is not None and stop < lo) or (hi is not None and stop > hi):
        return "invalid:stop_price"
    if _sides(replace(sig, stop_loss=stop), price) is not None:
        return "invalid:stop_loss_side"  # within half a tick of the mark
    if sig.take_profit is not None:
        tp = to_tick(sig.take_profit, rules.tick_size)
        if tp <= 0 or (lo is not None and tp < lo) or (hi is not None and tp > hi):
            return "invalid:take_profit_price"
        if _sides(replace(sig, take_profit=tp), price) is not None:
            return "invalid:take_profit_side"  # within half a tick of the mark
    size = sig.size
    if rules.step_size is not None and rules.step_size > 0 and not on_step(size, rules.step_size):
        return "invalid:size_step"
    if rules.min_qty is not None and size < rules.min_qty * (1 - 1e-9):
        return "invalid:min_qty"
    if rules.max_qty is not None and size > rules.max_qty * (1 + 1e-9):
        return "invalid:max_qty"
    notional = size * price
    if rules.min_notional is not None and notional < rules.min_notional:
        return "invalid:min_notional"
    if policy.max_notional is not None and notional > policy.max_notional:
        return "max_notional"
    return None


def _clean_text(x: object) -> bool:
    return isinstance(x, str) and 0 < len(x) <= 64 and x.isprintable()


def _settled(order: OrderRecord) -> bool:
    """Done for good: filled, cancelled or refused. ``not_found`` is not settled: a placement
    that was in flight may still land (and must then be cancelled)."""
    return order.state.done and order.state is not OrderState.NOT_FOUND


def leftovers(state: SymbolState) -> tuple[OrderRecord, ...]:
    """Orders of the latest position, which is terminal, that may still trade (I9: a new
    entry waits until there are none): its protective orders and its entry not yet
    confirmed gone (a working entry may still fill), and an entry that filled beyond what
    the position held, until a sync has adopted that rest or seen it gone."""
    pos = state.position
    if pos is None or not pos.status.terminal:
        return ()
    return tuple(
        o
        for o in pos.orders
        if ((o.kind.trigger or o.kind is OrderKind.ENTRY) and not o.state.done)
        or (o.kind is OrderKind.ENTRY and _unaccounted(pos, o))
    )


def _unsure_close(pos: Position) -> bool:
    """Closed on the sync's word alone (``closed_on_exchange``): its own orders' reports may
    still show that one of them closed it."""
    return pos.status is Status.CLOSED and pos.close_reason is CloseReason.CLOSED_ON_EXCHANGE


def _unwritten_close(pos: Position) -> str:
    """The id the position's next close order would have: one sent but lost with its
    unwritten commit (a restart during a store outage) carries it."""
    return client_order_id(pos.id, OrderKind.CLOSE, pos.close_seq + 1)


def _unaccounted(pos: Position, entry: OrderRecord) -> bool:
    """Did ``entry`` fill beyond the quantity its (ended) position held and closed?"""
    return entry.filled_qty > pos.qty and not qty_done(pos.qty, entry.filled_qty)


def _mark_fresh(state: SymbolState, ctx: Context) -> bool:
    at = state.last_price_at
    return (
        state.last_price is not None
        and at is not None
        and ctx.now - at <= ctx.policy.max_mark_age_s
        and state.market is not None
    )


def _created(trigger: Trigger) -> Status:
    """The status a new position starts in (the table's rows from ``None``)."""
    status = next_status(None, trigger)
    assert status is not None
    return status


def _remember(state: SymbolState, rec: SignalRecord, policy: Policy) -> SymbolState:
    """Keep a final decision in the actor's memory of recent signal ids."""
    memory = max(0, policy.recent_signal_memory)
    # A source and a reason are a handful of distinct strings; interned, the memory holds
    # each once instead of once per remembered signal.
    rec = replace(rec, source=sys.intern(rec.source), reason=sys.intern(rec.reason))
    decided = (*state.decided, rec)[-memory:] if memory else ()
    return replace(state, decided=decided)


_BAND_MARGIN = 1e-9  # relative: the band is a hair narrower than the exact conditions


def tick_band(state: SymbolState, policy: Policy) -> tuple[float, float]:
    """The open interval of mark prices that change nothing durable for ``state``: a tick
    whose low and high both lie strictly inside moves no stop, triggers no guard and no
    take-profit (only in-memory figures: the last price, the trailing high-water mark).

    Pure. The actor publishes it to its tick slot, so the feed thread can leave such ticks
    parked instead of waking the actor for each (:class:`actors.conflation.TickSlot`); it
    mirrors :func:`_on_tick` and is property-tested against it.
    """
    pos = state.position
    if pos is None or pos.qty <= 0 or pos.status not in (Status.PENDING_SL, Status.ACTIVE):
        return (-math.inf, math.inf)
    if state.flat_seen_at is not None:
        return (-math.inf, math.inf)
    long = pos.side is Side.LONG
    lo, hi = -math.inf, math.inf
    if not pos.stop_confirmed:  # the local stop guard
        if long:
            lo = pos.stop_price
        else:
            hi = pos.stop_price
    if pos.take_profit is not None:
        if long:
            hi = min(hi, pos.take_profit)
        else:
            lo = max(lo, pos.take_profit)
    if pos.trailing_distance is not None and pos.status is Status.ACTIVE:
        step = _trailing_step(pos, policy)
        best = pos.best_price
        if best is not None and (
            best - pos.trailing_distance > pos.stop_price + step
            if long
            else best + pos.trailing_distance < pos.stop_price - step
        ):
            return (math.inf, -math.inf)  # the best seen already moves the stop: any tick does
        if long:
            hi = min(hi, pos.stop_price + step + pos.trailing_distance)
        else:
            lo = max(lo, pos.stop_price - step - pos.trailing_distance)
    if not (math.isfinite(lo) or lo == -math.inf) or not (math.isfinite(hi) or hi == math.inf):
        return (math.inf, -math.inf)  # NaN in a price: an empty band, every tick wakes
    lo = lo + abs(lo) * _BAND_MARGIN if math.isfinite(lo) else lo
    hi = hi - abs(hi) * _BAND_MARGIN if math.isfinite(hi) else hi
    return (lo, hi)


def _trailing_step(pos: Position, policy: Policy) -> float:
    """How far the ideal trailing stop must be ahead of the placed one before it moves: a
    fraction of the trailing distance (``trailing_step_fraction``), at least
    ``trailing_min_step_pct`` of the price. Every move is an order: a step of half a distance
    keeps 500 trailing positions within Binance's 20 orders/s on a steady trend."""
    distance = pos.trailing_distance or 0.0
    return max(
        pos.stop_price * policy.trailing_min_step_pct, distance * policy.trailing_step_fraction
    )


# --- durable state -----------------------------------------------------------------------


def _durable(pos: Position) -> Position:
    """``pos`` without what is not compared: its version and write time (set by the commit)
    and the trailing high-water mark (memory between stop moves, saved with them)."""
    return replace(pos, version=0, updated_at=0.0, best_price=None)


def durable_change(before: Position | None, after: Position | None) -> bool:
    """Does ``after`` differ from ``before`` in a durable field (a new position does)?"""
    if after is None:
        return False
    if before is None or before.id != after.id:
        return True
    return _durable(before) != _durable(after)


def difference_event(before: Position | None, after: Position, now: float) -> JournalEvent:
    """The journal event of a change no handler named: the orders whose records changed
    (``order_fact``, with their new state and fill), else the fields that did. Pure; called
    by :func:`transition` (public so that its branches no handler reaches today, a change of
    fields other than orders or a new position, are tested directly)."""
    old = {o.client_id: o for o in before.orders} if before is not None else {}
    changed = [o for o in after.orders if old.get(o.client_id) != o]
    status = before.status if before is not None else None
    if changed:
        o = changed[-1]
        detail: dict[str, object] = {
            "client_id": o.client_id,
            "state": o.state.value,
            "filled": o.filled_qty,
        }
        if len(changed) > 1:
            detail["orders"] = [c.client_id for c in changed]
        return JournalEvent(after.id, JournalKind.ORDER_FACT, status, after.status, now, detail)
    fields = [
        name
        for name in Position.__dataclass_fields__
        if before is None or getattr(_durable(before), name) != getattr(_durable(after), name)
    ]
    return JournalEvent(
        after.id, JournalKind.POSITION_CHANGED, status, after.status, now, {"fields": fields}
    )
