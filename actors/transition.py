"""The position state machine as a pure function: ``(state, message, ctx) -> Transition``.

No I/O, no clock, no randomness: ``ctx`` brings the time, the policy and a source of new
position ids. The actor shell writes ``Transition.commit`` and then performs
``Transition.effects``; that split is what lets tests drive every interleaving.

Rules that remove the field reports' races:

* one non-terminal position per symbol (I1): a signal while one is open is a duplicate;
* the entry is an *intent* (``pending_entry``) with a deterministic client id before any order
  leaves (I2, S6); an order of unknown outcome is looked up by that id, never re-sent blindly;
* fills are applied from whatever reports them first: the stream, the REST reply, a lookup or
  the sync (S3, S7); cumulative quantities make duplicates and reordering harmless;
* the first fill places a ``closePosition`` stop-loss; bounded retries, then an emergency close
  (I5, S8); ticks keep a local stop guard until the stop is confirmed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from actors.effects import (
    CancelOrder,
    CancelTimer,
    Effect,
    LookupOrder,
    PlaceOrder,
    RequestSync,
    StartTimer,
)
from actors.messages import (
    CallResult,
    CloseRequest,
    ExchangeOutcome,
    MarkPriceTick,
    Message,
    OpenSignal,
    OrderUpdate,
    Recover,
    SyncObservation,
    TicksReady,
    TimerFired,
)
from actors.model import (
    CloseReason,
    ExchangePosition,
    OrderKind,
    OrderRecord,
    OrderState,
    Side,
    Status,
    qty_done,
)
from actors.state import (
    Commit,
    JournalEvent,
    Policy,
    Position,
    Reentry,
    SignalOutcome,
    SignalRecord,
    SymbolState,
    Transition,
    client_order_id,
)

__all__ = ["Context", "tick_band", "transition", "validate_signal"]

#: Reasons in a rejection that mean "the stop would trigger at once": close instead.
_WOULD_TRIGGER = "would_trigger"


@dataclass(frozen=True, slots=True)
class Context:
    """What a transition may know besides state and message."""

    now: float
    policy: Policy
    new_id: Callable[[], int]


def transition(state: SymbolState, msg: Message, ctx: Context) -> Transition:
    """Apply one message. Never raises for bad input: it refuses or ignores with a reason."""
    if isinstance(msg, MarkPriceTick):
        return _on_tick(state, msg, ctx)
    if isinstance(msg, OrderUpdate):
        return _Step(state, msg, ctx).order_update(msg).done()
    if isinstance(msg, ExchangeOutcome):
        return _Step(state, msg, ctx).outcome(msg).done()
    if isinstance(msg, OpenSignal):
        return _on_signal(state, msg, ctx)
    if isinstance(msg, SyncObservation):
        return _Step(state, msg, ctx).sync(msg).done()
    if isinstance(msg, TimerFired):
        return _Step(state, msg, ctx).timer(msg).done()
    if isinstance(msg, CloseRequest):
        return _Step(state, msg, ctx).close_request(msg).done()
    if isinstance(msg, Recover):
        return _Step(state, msg, ctx).recover().done()
    if isinstance(msg, TicksReady):
        tick = msg.slot.take()
        return Transition(state) if tick is None else _on_tick(state, tick, ctx)
    raise TypeError(f"not a position message: {type(msg).__name__}")


# --- signals -----------------------------------------------------------------------------


def _finite_positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def validate_signal(sig: OpenSignal, last_price: float | None, policy: Policy) -> str | None:
    """Return why the signal is invalid, or ``None``. Pure; also used by the feed."""
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
    if last_price is not None:
        if sign * (last_price - sig.stop_loss) <= 0:
            return "invalid:stop_loss_side"
        if sig.take_profit is not None and sign * (sig.take_profit - last_price) <= 0:
            return "invalid:take_profit_side"
    if sig.take_profit is not None and sign * (sig.take_profit - sig.stop_loss) <= 0:
        return "invalid:take_profit_side"
    if policy.max_notional is not None and last_price is not None:
        if sig.size * last_price > policy.max_notional:
            return "max_notional"
    return None


def _clean_text(x: object) -> bool:
    return isinstance(x, str) and 0 < len(x) <= 64 and x.isprintable()


def _safe(x: object) -> str:
    """A text that any store can record: printable, at most 64 characters."""
    text = x if isinstance(x, str) else repr(x)
    return "".join(c if c.isprintable() else "?" for c in text[:64]) or "?"


def _on_signal(state: SymbolState, sig: OpenSignal, ctx: Context) -> Transition:
    now = ctx.now
    if sig.signal_id in state.recent_signals:
        rec = SignalRecord(
            state.key,
            _safe(sig.signal_id),
            _safe(sig.source),
            SignalOutcome.DUPLICATE,
            "signal_replayed",
            now,
        )
        return Transition(state, signal=rec)
    memory = ctx.policy.recent_signal_memory
    recent = (*state.recent_signals, sig.signal_id)[-memory:]
    st = replace(state, recent_signals=recent)
    open_pos = st.open_position

    def refuse(outcome: SignalOutcome, reason: str) -> Transition:
        rec = SignalRecord(
            st.key,
            _safe(sig.signal_id),
            _safe(sig.source),
            outcome,
            reason,
            now,
            open_pos.id if open_pos is not None else None,
        )
        event = JournalEvent(None, "signal_refused", None, None, now, {"reason": reason})
        commit = Commit(st.key, sig, None, 0, (event,), rec)
        return Transition(st, commit=commit, signal=rec)

    invalid = validate_signal(sig, st.last_price, ctx.policy)
    if invalid is not None:
        return refuse(SignalOutcome.REJECTED, invalid)
    if sig.expires_at is not None and now > sig.expires_at:
        return refuse(SignalOutcome.REJECTED, "expired")
    if st.quarantined:
        return refuse(SignalOutcome.REJECTED, "quarantined")
    if open_pos is not None:
        return refuse(SignalOutcome.DUPLICATE, "position_open")
    if ctx.policy.reentry is Reentry.NEVER and st.bought:
        return refuse(SignalOutcome.REJECTED, "never_again")
    if (
        ctx.policy.reentry is Reentry.COOLDOWN
        and st.last_closed_at is not None
        and now < st.last_closed_at + ctx.policy.cooldown_s
    ):
        return refuse(SignalOutcome.COOLDOWN, "cooldown")

    pid = ctx.new_id()
    entry = OrderRecord(
        client_id=client_order_id(pid, OrderKind.ENTRY, 1),
        kind=OrderKind.ENTRY,
        side=sig.side.entry_side,
        qty=sig.size,
        state=OrderState.INTENDED,
        sent_at=now,
        attempts=1,
    )
    pos = Position(
        id=pid,
        key=st.key,
        side=sig.side,
        status=Status.PENDING_ENTRY,
        source=sig.source,
        signal_id=sig.signal_id,
        requested_qty=sig.size,
        stop_price=sig.stop_loss,
        take_profit=sig.take_profit,
        trailing_distance=sig.trailing_distance,
        created_at=now,
        updated_at=now,
        orders=(entry,),
        version=1,
    )
    rec = SignalRecord(st.key, sig.signal_id, sig.source, SignalOutcome.ACCEPTED, "", now, pid)
    event = JournalEvent(pid, "entry_intent", None, Status.PENDING_ENTRY, now, {})
    commit = Commit(st.key, sig, pos, 0, (event,), rec)
    effect = PlaceOrder(st.key, pid, entry)
    return Transition(replace(st, position=pos), (effect,), commit, rec)


# --- ticks (hot path: no allocation unless something is decided) --------------------------


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
        step = pos.stop_price * policy.trailing_min_step_pct
        if long:
            hi = min(hi, pos.stop_price + step + pos.trailing_distance)
        else:
            lo = max(lo, pos.stop_price - step - pos.trailing_distance)
    if not (math.isfinite(lo) or lo == -math.inf) or not (math.isfinite(hi) or hi == math.inf):
        return (math.inf, -math.inf)  # NaN in a price: an empty band, every tick wakes
    lo = lo + abs(lo) * _BAND_MARGIN if math.isfinite(lo) else lo
    hi = hi - abs(hi) * _BAND_MARGIN if math.isfinite(hi) else hi
    return (lo, hi)


def _on_tick(state: SymbolState, tick: MarkPriceTick, ctx: Context) -> Transition:
    pos = state.position
    st = replace(state, last_price=tick.price)
    if pos is None or pos.qty <= 0 or pos.status not in (Status.PENDING_SL, Status.ACTIVE):
        return Transition(st)
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
        if improved:
            new_stop = best - pos.trailing_distance if long else best + pos.trailing_distance
            step = pos.stop_price * ctx.policy.trailing_min_step_pct
            moves = new_stop > pos.stop_price + step if long else new_stop < pos.stop_price - step
            if moves and pos.status is Status.ACTIVE:
                return _Step(st, tick, ctx).move_stop(new_stop, best).done()
            # Remember the extreme in memory only: nothing durable changed.
            return Transition(replace(st, position=replace(pos, best_price=best)))
    return Transition(st)


# --- everything else: a small mutable builder around immutable values --------------------


_EXCHANGE_STATUS = {
    "new": OrderState.ACCEPTED,
    "triggered": OrderState.ACCEPTED,
    "partially_filled": OrderState.PARTIALLY_FILLED,
    "filled": OrderState.FILLED,
    "finished": OrderState.FILLED,
    "canceled": OrderState.CANCELED,
    "cancelled": OrderState.CANCELED,
    "expired": OrderState.CANCELED,
    "rejected": OrderState.REJECTED,
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
        if not self.events:
            # Nothing durable happened (in-memory only changes, or nothing at all).
            return Transition(st, tuple(self.effects))
        assert pos is not None
        before = self.before
        new = before is None or before.id != pos.id
        expected = 0 if new else pos.version
        written = replace(pos, version=expected + 1, updated_at=self.now)
        st = replace(st, position=written)
        commit = Commit(st.key, self.msg, written, expected, tuple(self.events))
        return Transition(st, tuple(self.effects), commit)

    def event(self, kind: str, before: Status | None, **detail: object) -> None:
        pid = self.pos.id if self.pos is not None else None
        after = self.pos.status if self.pos is not None else None
        self.events.append(JournalEvent(pid, kind, before, after, self.now, detail))

    def set_pos(self, pos: Position, kind: str, **detail: object) -> None:
        before = self.pos.status if self.pos is not None and self.pos.id == pos.id else None
        self.pos = pos
        self.event(kind, before, **detail)

    def put_order(self, order: OrderRecord) -> None:
        assert self.pos is not None
        orders = tuple(order if o.client_id == order.client_id else o for o in self.pos.orders)
        if self.pos.order(order.client_id) is None:
            orders = (*orders, order)
        self.pos = replace(self.pos, orders=orders)

    # -- opening, protecting, closing

    def place_stop(self, why: str) -> None:
        """Record and send a new stop-loss order for the current position (closePosition)."""
        pos = self.pos
        assert pos is not None
        seq = pos.stop_seq + 1
        stop = OrderRecord(
            client_id=client_order_id(pos.id, OrderKind.STOP_LOSS, seq),
            kind=OrderKind.STOP_LOSS,
            side=pos.side.exit_side,
            qty=pos.qty,
            state=OrderState.INTENDED,
            trigger_price=pos.stop_price,
            sent_at=self.now,
            attempts=1,
        )
        self.pos = replace(pos, stop_seq=seq)
        self.put_order(stop)
        self.effects.append(PlaceOrder(pos.key, pos.id, stop, close_position=True))
        self.event("stop_intent", pos.status, client_id=stop.client_id, why=why)

    def start_close(self, reason: CloseReason, why: str) -> _Step:
        """Close the open position at market with a reduce-only order (stops stay until filled)."""
        pos = self.pos
        if pos is None or pos.status.terminal or pos.status is Status.CLOSING:
            return self
        before = pos.status
        if pos.qty <= 0:
            # Nothing filled yet: there is nothing to close. Cancel the entry if we can.
            entry = pos.latest(OrderKind.ENTRY)
            if entry is not None and not entry.state.done:
                self.effects.append(CancelOrder(pos.key, entry.client_id, OrderKind.ENTRY))
            self.pos = replace(pos, close_reason=reason)
            self.event("close_requested_unfilled", before, reason=reason.value, why=why)
            return self
        self.pos = replace(pos, status=Status.CLOSING, close_reason=reason)
        self.event("closing", before, reason=reason.value, why=why)
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
        order = OrderRecord(
            client_id=client_order_id(pos.id, OrderKind.CLOSE, seq),
            kind=OrderKind.CLOSE,
            side=pos.side.exit_side,
            qty=pos.qty if qty is None else qty,
            state=OrderState.INTENDED,
            sent_at=self.now,
            attempts=1,
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

    def finish(self, status: Status, **detail: object) -> None:
        """Enter a terminal state; cancel what still rests on the exchange and our timers."""
        pos = self.pos
        assert pos is not None
        before = pos.status
        changes: dict[str, object] = {"status": status}
        if status is Status.CLOSED:
            changes["closed_at"] = self.now
        self.pos = replace(pos, **changes)  # type: ignore[arg-type]
        for o in pos.orders:
            if o.kind.trigger and o.state in (OrderState.ACCEPTED, OrderState.UNKNOWN):
                self.effects.append(CancelOrder(pos.key, o.client_id, o.kind))
                self.put_order(replace(o, state=OrderState.CANCELED))
            if not o.state.done:
                self.effects.append(CancelTimer(pos.key, f"lookup:{o.client_id}"))
                self.effects.append(CancelTimer(pos.key, f"retry:{o.client_id}"))
        self.event(status.value, before, **detail)

    def fail_entry(self, reason: str) -> None:
        pos = self.pos
        assert pos is not None
        self.pos = replace(pos, fail_reason=reason)
        self.finish(Status.FAILED, reason=reason)

    # -- order facts from any source

    def apply_order_fact(self, update: OrderUpdate, source: str) -> None:
        """Apply a status/fill report for one of our orders, from the stream or a reply."""
        pos = self.pos
        if pos is None:
            return
        order = pos.order(update.client_id)
        if order is None:
            return
        new_state = _EXCHANGE_STATUS.get(update.status.lower())
        if new_state is None:
            return
        filled = max(order.filled_qty, update.filled_qty if math.isfinite(update.filled_qty) else 0)
        good_avg = update.avg_price is not None and _finite_positive(update.avg_price)
        avg = update.avg_price if good_avg and update.filled_qty >= order.filled_qty else None
        if order.state.done and order.state is not OrderState.NOT_FOUND:
            # Terminal already: a duplicate or an older report. Keep the larger fill only.
            if filled <= order.filled_qty:
                return
            new_state = order.state
        if new_state is OrderState.ACCEPTED and filled > 0:
            new_state = OrderState.PARTIALLY_FILLED
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
            self.entry_fact(order, source)
        elif kind is OrderKind.STOP_LOSS:
            self.stop_fact(order, source)
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
                "order_fact",
                now.status if now is not None else None,
                client_id=order.client_id,
                state=order.state.value,
                filled=order.filled_qty,
                via=source,
            )

    def entry_fact(self, order: OrderRecord, source: str) -> None:
        pos = self.pos
        assert pos is not None
        if order.filled_qty > pos.qty and not pos.status.terminal:
            first = pos.qty <= 0
            added = order.filled_qty - pos.qty
            pos = replace(
                pos,
                qty=order.filled_qty,
                entry_price=order.avg_price or pos.entry_price,
                filled_at=pos.filled_at if pos.filled_at is not None else self.now,
            )
            if pos.status in (Status.PENDING_ENTRY, Status.ENTRY_PLACED):
                pos = replace(pos, status=Status.PENDING_SL)
            self.set_pos(pos, "entry_fill", qty=pos.qty, price=pos.entry_price, via=source)
            if pos.status is Status.CLOSING and not first:
                # Filled further while closing: the close in flight covers the old quantity
                # only, so close what was added too (else it stays open, and unprotected once
                # the close completes and the stop is canceled).
                self.send_close(added)
                self.event("close_added", pos.status, qty=added)
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
            self.set_pos(replace(pos, status=Status.ENTRY_PLACED), "entry_accepted", via=source)
            return
        if order.state in (OrderState.CANCELED, OrderState.REJECTED) and pos.qty <= 0:
            if pos.status in (Status.PENDING_ENTRY, Status.ENTRY_PLACED):
                self.fail_entry(f"entry_{order.state.value}")

    def stop_fact(self, order: OrderRecord, source: str) -> None:
        pos = self.pos
        assert pos is not None
        if pos.status.terminal:
            return
        current = pos.latest(OrderKind.STOP_LOSS)
        is_current = current is not None and current.client_id == order.client_id
        if order.state is OrderState.FILLED or (
            order.state is OrderState.PARTIALLY_FILLED and qty_done(order.filled_qty, pos.qty)
        ):
            self.pos = replace(pos, close_reason=CloseReason.STOP_LOSS)
            self.finish(Status.CLOSED, reason="stop_loss", via=source)
            return
        if order.state is OrderState.ACCEPTED and is_current:
            changes: dict[str, object] = {"sl_failures": 0}
            if pos.protected_at is None:
                changes["protected_at"] = self.now
            if pos.status is Status.PENDING_SL:
                changes["status"] = Status.ACTIVE
            self.set_pos(replace(pos, **changes), "stop_confirmed", via=source)  # type: ignore[arg-type]
            # A trailing move: the older stops can go now that the new one rests.
            for o in pos.orders:
                if (
                    o.kind is OrderKind.STOP_LOSS
                    and o.client_id != order.client_id
                    and o.state in (OrderState.ACCEPTED, OrderState.UNKNOWN, OrderState.INTENDED)
                ):
                    self.effects.append(CancelOrder(pos.key, o.client_id, o.kind))
                    self.put_order(replace(o, state=OrderState.CANCELED))
            return
        if order.state is OrderState.CANCELED and is_current and pos.status is not Status.CLOSING:
            # Our resting stop vanished (canceled on the exchange): protect again.
            self.place_stop("stop canceled on exchange")

    def close_fact(self, order: OrderRecord, source: str) -> None:
        pos = self.pos
        assert pos is not None
        if pos.status.terminal:
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
                self.event("close_part_done", pos.status, client_id=order.client_id)
                return
            self.finish(Status.CLOSED, reason=(pos.close_reason or CloseReason.MANUAL).value)
            return
        if order.state in (OrderState.CANCELED, OrderState.REJECTED):
            self.close_retry("close order " + order.state.value)

    def close_retry(self, why: str) -> None:
        pos = self.pos
        assert pos is not None
        if pos.close_seq >= self.ctx.policy.close_max_attempts:
            self.effects.append(RequestSync(pos.key, f"close exhausted: {why}"))
            self.event("close_exhausted", pos.status, why=why)
            return
        self.effects.append(StartTimer(pos.key, "close_retry", self.ctx.policy.close_retry_delay_s))
        self.effects.append(RequestSync(pos.key, why))
        self.event("close_retry_scheduled", pos.status, why=why)

    # -- message handlers

    def order_update(self, upd: OrderUpdate) -> _Step:
        pos = self.pos
        if pos is None:
            return self
        order = pos.order(upd.client_id)
        if order is None:
            return self
        if pos.status.terminal:
            if order.kind is OrderKind.ENTRY and upd.filled_qty > order.filled_qty:
                # A late fill of an entry we gave up on: the sync adopts and protects it.
                self.effects.append(RequestSync(pos.key, "late entry fill"))
            return self
        self.apply_order_fact(upd, "stream")
        return self

    def outcome(self, out: ExchangeOutcome) -> _Step:
        pos = self.pos
        if pos is None or pos.order(out.client_id) is None:
            return self
        order = pos.order(out.client_id)
        assert order is not None
        if pos.status.terminal:
            if out.update is not None and out.kind is OrderKind.ENTRY:
                if out.update.filled_qty > order.filled_qty:
                    self.effects.append(RequestSync(pos.key, "late entry fill"))
            return self
        if out.op == "cancel":
            return self
        if out.op == "lookup":
            return self.lookup_outcome(out, order)
        # op == "place"
        if out.result is CallResult.ACCEPTED:
            if out.update is not None:
                self.apply_order_fact(out.update, "reply")
            else:
                self.apply_order_fact(
                    OrderUpdate(pos.key, out.client_id, "new", 0.0, None, 0.0), "reply"
                )
            return self
        if out.result is CallResult.UNKNOWN:
            if order.state in (OrderState.INTENDED,):
                self.put_order(replace(order, state=OrderState.UNKNOWN))
                self.event("order_unknown", pos.status, client_id=order.client_id, why=out.reason)
            self.effects.append(
                StartTimer(pos.key, f"lookup:{order.client_id}", self.ctx.policy.lookup_delay_s)
            )
            return self
        # REJECTED
        return self.rejected(out, order)

    def rejected(self, out: ExchangeOutcome, order: OrderRecord) -> _Step:
        pos = self.pos
        assert pos is not None
        policy = self.ctx.policy
        if order.state not in (OrderState.INTENDED, OrderState.UNKNOWN):
            return self  # a fill or acceptance already came in: trust it
        if out.retry_after is not None and order.attempts < policy.place_max_attempts:
            self.put_order(replace(order, state=OrderState.INTENDED))
            self.effects.append(StartTimer(pos.key, f"retry:{order.client_id}", out.retry_after))
            self.event("order_throttled", pos.status, client_id=order.client_id, why=out.reason)
            return self
        self.put_order(replace(order, state=OrderState.REJECTED))
        if order.kind is OrderKind.ENTRY:
            if pos.qty <= 0:
                self.fail_entry(f"rejected:{out.reason}")
            return self
        if order.kind is OrderKind.STOP_LOSS:
            assert self.pos is not None
            failures = self.pos.sl_failures + 1
            self.pos = replace(self.pos, sl_failures=failures)
            if _WOULD_TRIGGER in out.reason or failures >= policy.sl_max_attempts:
                self.event("stop_failed", pos.status, why=out.reason, failures=failures)
                self.start_close(CloseReason.EMERGENCY, f"stop-loss not placed: {out.reason}")
            else:
                self.event("stop_rejected", pos.status, why=out.reason, failures=failures)
                self.effects.append(
                    StartTimer(pos.key, f"retry:{order.client_id}", policy.sl_retry_delay_s)
                )
            return self
        if order.kind is OrderKind.CLOSE:
            self.event("close_rejected", pos.status, why=out.reason)
            self.close_retry(f"close rejected: {out.reason}")
        return self

    def lookup_outcome(self, out: ExchangeOutcome, order: OrderRecord) -> _Step:
        pos = self.pos
        assert pos is not None
        policy = self.ctx.policy
        if out.result is CallResult.FOUND and out.update is not None:
            self.apply_order_fact(out.update, "lookup")
            return self
        if out.result is CallResult.NOT_FOUND and order.state in (
            OrderState.INTENDED,
            OrderState.UNKNOWN,
        ):
            started = order.sent_at if order.sent_at is not None else self.now
            if order.kind is OrderKind.STOP_LOSS:
                # A stop that is not there is sent again at once with the same id: stops rest,
                # so if it did arrive after all, the duplicate id is refused, never doubled.
                self.resend(replace(order, state=OrderState.INTENDED))
                return self
            if self.now < started + policy.lookup_deadline_s:
                self.effects.append(
                    StartTimer(pos.key, f"lookup:{order.client_id}", policy.lookup_delay_s)
                )
                return self
            self.put_order(replace(order, state=OrderState.NOT_FOUND))
            if order.kind is OrderKind.ENTRY:
                if pos.qty <= 0:
                    self.fail_entry("entry_not_found")
                    self.effects.append(RequestSync(pos.key, "entry not found"))
                return self
            if order.kind is OrderKind.CLOSE:
                self.effects.append(
                    StartTimer(pos.key, "close_retry", self.ctx.policy.close_retry_delay_s)
                )
            return self
        # Lookup itself failed (network): keep asking, the order stays unknown.
        if not order.state.done and order.state is not OrderState.ACCEPTED:
            self.effects.append(
                StartTimer(pos.key, f"lookup:{order.client_id}", policy.lookup_delay_s * 2)
            )
        return self

    def resend(self, order: OrderRecord) -> None:
        pos = self.pos
        assert pos is not None
        order = replace(order, attempts=order.attempts + 1)
        self.put_order(order)
        self.effects.append(
            PlaceOrder(
                pos.key,
                pos.id,
                order,
                reduce_only=order.kind is OrderKind.CLOSE,
                close_position=order.kind is OrderKind.STOP_LOSS,
            )
        )
        self.event("order_resent", pos.status, client_id=order.client_id, attempt=order.attempts)

    def timer(self, t: TimerFired) -> _Step:
        pos = self.pos
        if pos is None or pos.status.terminal:
            return self
        name = t.name
        if name == "close_retry":
            if pos.status is Status.CLOSING:
                self.event("close_retry", pos.status)
                self.send_close()
            return self
        prefix, _, cid = name.partition(":")
        order = pos.order(cid)
        if order is None:
            return self
        if prefix == "lookup" and order.state in (OrderState.UNKNOWN, OrderState.INTENDED):
            self.effects.append(LookupOrder(pos.key, cid, order.kind))
        elif prefix == "retry" and order.state in (OrderState.INTENDED, OrderState.REJECTED):
            if order.kind is OrderKind.STOP_LOSS and order is not pos.latest(OrderKind.STOP_LOSS):
                return self
            self.resend(replace(order, state=OrderState.INTENDED))
        return self

    def close_request(self, req: CloseRequest) -> _Step:
        return self.start_close(req.reason, req.request_id or "close request")

    def recover(self) -> _Step:
        """Resolve a non-terminal position loaded from the store (S5)."""
        pos = self.pos
        if pos is None or pos.status.terminal:
            return self
        self.effects.append(RequestSync(pos.key, "recovery"))
        for o in pos.orders:
            if o.state in (OrderState.INTENDED, OrderState.UNKNOWN):
                # Sent or not, we cannot tell: look it up by its id before anything else.
                if o.state is OrderState.INTENDED:
                    self.put_order(replace(o, state=OrderState.UNKNOWN, sent_at=self.now))
                self.effects.append(LookupOrder(pos.key, o.client_id, o.kind))
            elif o.kind is OrderKind.ENTRY and o.state is OrderState.ACCEPTED:
                self.effects.append(LookupOrder(pos.key, o.client_id, o.kind))
        self.event("recovering", pos.status)
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
                self.effects.append(CancelTimer(pos.key, f"retry:{stop.client_id}"))
                self.resend(replace(stop, state=OrderState.INTENDED, sent_at=self.now))
            return
        if pos.status is Status.CLOSING:
            closes = [o for o in pos.orders if o.kind is OrderKind.CLOSE]
            if any(not o.state.done for o in closes):
                return  # a close is working: its outcome or lookup resumes the position
            if pos.close_seq < self.ctx.policy.close_max_attempts:
                self.event("close_retry", pos.status, why="recovery")
                self.effects.append(CancelTimer(pos.key, "close_retry"))
                self.send_close()

    def sync(self, obs: SyncObservation) -> _Step:
        pos = self.pos
        xp = obs.position
        if pos is None or pos.status.terminal:
            if xp is None or xp.qty <= 0:
                return self
            if pos is not None and (pos.closed_at or pos.updated_at) >= obs.observed_at:
                return self  # observed before our close: stale
            return self.adopt(xp, obs)
        if pos.status in (Status.PENDING_ENTRY, Status.ENTRY_PLACED):
            if xp is not None and xp.qty > 0 and xp.side is pos.side:
                # S3: the sync saw our own entry fill first. Reconcile, never a second row.
                entry = pos.latest(OrderKind.ENTRY)
                assert entry is not None
                status = "filled" if qty_done(xp.qty, pos.requested_qty) else "partially_filled"
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
            reason = pos.close_reason if pos.status is Status.CLOSING else None
            self.pos = replace(pos, close_reason=reason or CloseReason.CLOSED_ON_EXCHANGE)
            self.finish(Status.CLOSED, reason=self.pos.close_reason.value, via="sync")  # type: ignore[union-attr]
            return self
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
                    replace(pos, qty=max(pos.qty, closed + xp.qty)), "qty_from_sync", qty=xp.qty
                )
                self.send_close(excess)
                self.event("close_added", Status.CLOSING, qty=excess, via="sync")
            return self
        if not math.isclose(xp.qty, pos.qty, rel_tol=1e-9):
            self.set_pos(replace(pos, qty=xp.qty), "qty_from_sync", qty=xp.qty)
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
        if stop is not None and stop.client_id in resting and stop.state is not OrderState.ACCEPTED:
            fact = OrderUpdate(pos.key, stop.client_id, "new", 0.0, None, obs.observed_at)
            self.apply_order_fact(fact, "sync")
        elif (
            pos.status is Status.ACTIVE
            and stop is not None
            and stop.client_id not in resting
            and stop.state is OrderState.ACCEPTED
            and obs.observed_at > (stop.sent_at or 0.0)
        ):
            self.place_stop("stop missing on exchange")
        return self

    def adopt(self, xp: ExchangePosition, obs: SyncObservation) -> _Step:
        """A position on the exchange that the database does not know: adopt and protect."""
        pid = self.ctx.new_id()
        pct = self.ctx.policy.default_stop_pct
        stop = xp.entry_price * (1 - pct) if xp.side is Side.LONG else xp.entry_price * (1 + pct)
        pos = Position(
            id=pid,
            key=self.state.key,
            side=xp.side,
            status=Status.PENDING_SL,
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
        self.event("adopted", None, qty=xp.qty, entry_price=xp.entry_price)
        self.place_stop("adopted")
        return self
