"""The invariants of the deterministic simulation, checked against the simulated exchange's
ledger and the signal sender's own record of answers, never against the store's guards.

Who calls: :class:`testkit.dst.world.Simulation`, after every step (:meth:`Invariants.check`)
and once after the quiet tail (:meth:`Invariants.final`). Each returns the first
:class:`Violation` found, named after the invariant:

* ``two_positions``: an entry of ours executed while another position of ours still held
  exposure on the symbol (at most one open position per key that we opened, I1);
* ``entry_twice``: one entry client id executed more than once (I2);
* ``foreign_close``: an order of a position whose own exposure was gone traded on another
  position's (a leftover stop closing a later position, issue 10 item A3);
* ``unprotected``: a net position on the exchange without a resting stop of ours for longer
  than ``sl_deadline_s`` + :data:`SLACK_S`;
* ``orphan_stop``: a resting stop of ours that belongs to no open position (its position's
  exposure is gone, or the symbol is flat) for longer than :data:`ORPHAN_SETTLE_S`;
* ``risk_unchecked``: an entry executed above ``max_notional``, or whose first stop sits on
  the wrong side of its fill (issue 10 item A1);
* ``late_entry``: an entry executed more than :data:`LATE_S` after its signal was sent (B6);
* ``stop_churn``: more than :data:`MAX_STOPS` stop placements sent for one position, or
  two of its stops resting at once for longer than :data:`OVERLAP_S` (A2/A4);
* ``close_reason``: a position closed by its own stop or close order on the ledger, recorded
  ``closed_on_exchange`` (A5);
* ``signal_unanswered`` / ``answer_not_recorded``: a signal never answered, or a final
  (not transient) answer that is not the outcome recorded for it, or none (issue 10 C8);
* ``crash``: an actor crashed (an exception escaped a transition or the shell: a defect);
* ``db_exchange_disagree``: after the quiet tail, the store's open position and the exchange's
  position (and resting orders of ours) differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors.model import CloseReason, Key, OrderKind, Status
from actors.orders import parse_client_id
from actors.state import SignalOutcome, SignalRecord

if TYPE_CHECKING:
    from testkit.dst.world import SentSignal, Simulation

__all__ = [
    "LATE_S",
    "MAX_STOPS",
    "ORPHAN_SETTLE_S",
    "OVERLAP_S",
    "SLACK_S",
    "Invariants",
    "Violation",
]

EPS = 1e-9
#: Beyond ``sl_deadline_s``: the emergency close's own retries, a restart, a sync round.
SLACK_S = 30.0
#: How long a stop of ours may rest once its position is gone (the orphan window, a sync
#: round, the cancel's retries).
ORPHAN_SETTLE_S = 30.0
#: From a signal's last sending to its entry on the exchange, at most.
LATE_S = 15.0
#: Stop placements one position may create on the exchange, at most.
MAX_STOPS = 12
#: How long two stops of one position may rest at once (a replacement and its cancel).
OVERLAP_S = 15.0
MANUAL = -1


@dataclass(frozen=True)
class Violation:
    """An invariant that did not hold: its name, when (simulated seconds since the start),
    at which step, and what."""

    name: str
    at: float
    step: int
    detail: str

    def __str__(self) -> str:
        return f"{self.name} at step {self.step} (t={self.at:.3f}s): {self.detail}"


class Invariants:
    """The checks of one simulation (module docstring)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self._executions = 0
        self._orders = 0
        self._placements = 0
        self._holders: dict[str, dict[int, float]] = {}  # symbol -> holder -> exposure
        self._entered: set[int] = set()
        self._entry_fill: dict[int, float] = {}
        self._stops: dict[int, int] = {}
        self._unprotected_since: dict[str, float] = {}
        self._orphan_since: dict[int, float] = {}
        self._last_timed = 0.0
        self._overlap_since: dict[int, float] = {}
        #: Position id -> the kind of its own order that took its exposure to zero (None:
        #: something else did: a hand trade, a stop of another position).
        self.closer: dict[int, OrderKind | None] = {}

    def _v(self, name: str, detail: str) -> Violation:
        sim = self.sim
        return Violation(name, sim.clock.now() - sim.started_at, sim.steps, detail)

    # -- after every step ---------------------------------------------------------------

    def check(self) -> Violation | None:
        if self.sim.crashes:
            return self._v("crash", self.sim.crashes[0])
        x = self.sim.exchange
        while self._placements < len(x.placements):
            req = x.placements[self._placements]
            self._placements += 1
            parsed = parse_client_id(req.client_id)
            if parsed is not None and parsed[1] is OrderKind.STOP_LOSS:
                pid = parsed[0]
                n = self._stops[pid] = self._stops.get(pid, 0) + 1
                if n > MAX_STOPS:
                    return self._v("stop_churn", f"position {pid}: {n} stop placements sent")

        while self._orders < len(x.orders):
            o = x.orders[self._orders]
            self._orders += 1
            bad = self._created(o.req.client_id, o.req.trigger_price, o.placed_at)
            if bad is not None:
                return bad
        while self._executions < len(x.executions):
            e = x.executions[self._executions]
            self._executions += 1
            bad = self._executed(e.symbol, e.client_id, e.qty, e.price)
            if bad is not None:
                return bad
        now = self.sim.clock.now()
        if now - self._last_timed >= 0.25:
            self._last_timed = now
            return self._timed(now)
        return None

    def _created(self, cid: str, trigger: float | None, at: float) -> Violation | None:
        parsed = parse_client_id(cid)
        if parsed is None:
            return None
        pid, kind, _ = parsed
        x = self.sim.exchange
        if kind is OrderKind.ENTRY:
            if x.created[cid] > 1:
                return self._v("entry_twice", f"entry {cid} executed {x.created[cid]} times")
            sent = self._signal_of(pid)
            if sent is not None:
                before = [t for t in sent.sends if t <= at]
                if before:
                    # The world stalls with every blocked store call (one thread): count
                    # only the longest single wait, as if the others ran alongside.
                    waits = [s for t, s in self.sim.stalls if before[-1] <= t < at]
                    late = at - before[-1] - sum(waits) + max(waits, default=0.0)
                    if late > LATE_S:
                        return self._v(
                            "late_entry",
                            f"entry {cid} of {sent.sig.signal_id} sent {late:.1f}s after the "
                            "signal",
                        )
        return None

    def _stop_side(self, pid: int) -> Violation | None:
        """An entry that executed: its signal's stop must have been on the right side of the
        mark when the signal was sent (a stop on the wrong side means it was never checked,
        A1; 1 % of slack for the mark's moves meanwhile)."""
        sent = self._signal_of(pid)
        if sent is None:
            return None
        sig, mark = sent.sig, sent.mark
        long = sig.side.entry_side == "buy"
        if sig.stop_loss > mark * 1.01 if long else sig.stop_loss < mark * 0.99:
            return self._v(
                "risk_unchecked",
                f"position {pid}: entry executed with its stop {sig.stop_loss} on the wrong "
                f"side of the mark {mark} when {sig.signal_id} was sent",
            )
        return None

    def _signal_of(self, pid: int) -> SentSignal | None:
        for sent in self.sim.signals.values():
            for _, rec in sent.answers:
                if rec.outcome is SignalOutcome.ACCEPTED and rec.position_id == pid:
                    return sent
        return None

    def _executed(self, sym: str, cid: str, qty: float, price: float) -> Violation | None:
        parsed = parse_client_id(cid)
        holders = self._holders.setdefault(sym, {})
        net_before = sum(holders.values())  # exposures are unsigned; the sign is the net's
        x = self.sim.exchange
        after = x.executions[self._executions - 1].net_after
        before = after - qty
        pid = parsed[0] if parsed is not None else MANUAL
        kind = parsed[1] if parsed is not None else None
        del net_before
        increases = abs(after) > abs(before) + EPS and (
            abs(before) <= EPS or (before > 0) == (after > 0)
        )
        if increases:
            if kind is OrderKind.ENTRY:
                others = [h for h, q in holders.items() if h not in (pid, MANUAL) and q > EPS]
                if others:
                    return self._v(
                        "two_positions",
                        f"{sym}: entry {cid} executed while position {others[0]} is open "
                        "on the exchange",
                    )
                self._entered.add(pid)
                self._entry_fill[pid] = price
                bad = self._stop_side(pid)
                if bad is not None:
                    return bad
                policy = self.sim.policy
                placed = x.order(cid)
                notional = abs(placed.req.qty if placed is not None else qty) * price
                if policy.max_notional is not None and notional > policy.max_notional * 1.1:
                    return self._v(
                        "risk_unchecked",
                        f"entry {cid}: notional {notional:.0f} over {policy.max_notional:.0f}",
                    )
            holder = pid if kind is OrderKind.ENTRY else MANUAL
            holders[holder] = holders.get(holder, 0.0) + abs(qty)
            return None
        # reduces (or flips: reduce to zero, the rest opens manually)
        reduce = min(abs(qty), abs(before))
        own = holders.get(pid, 0.0)
        victims = [h for h, q in holders.items() if q > EPS and h not in (pid, MANUAL)]
        if pid != MANUAL and pid in self._entered and own <= EPS and reduce > EPS and victims:
            # (A position someone opened by hand is adopted: ours to close. Another
            # position of ours is not.)
            return self._v(
                "foreign_close",
                f"{sym}: {cid} of closed position {pid} traded on the exposure of "
                f"{victims[0] if victims else '?'}",
            )
        if pid != MANUAL and own > EPS and own <= reduce + EPS and kind is not None:
            self.closer[pid] = kind  # its own order took its exposure to zero
        elif pid == MANUAL or own <= EPS:
            for h in [h for h in holders if h not in (pid, MANUAL)]:
                self.closer.setdefault(h, None)
        left = reduce
        order = [pid] + [h for h in holders if h != pid]
        for h in order:
            take = min(left, holders.get(h, 0.0))
            if take > 0:
                holders[h] -= take
                left -= take
        for h in [h for h, q in holders.items() if q <= EPS]:
            del holders[h]
        rest = abs(qty) - reduce
        if rest > EPS:
            holders[MANUAL] = holders.get(MANUAL, 0.0) + rest
        return None

    def _timed(self, now: float) -> Violation | None:
        x = self.sim.exchange
        policy = self.sim.policy
        stops_by_sym: dict[str, list[tuple[int, str]]] = {}
        for o in x.open.values():
            parsed = parse_client_id(o.req.client_id)
            if parsed is not None and parsed[1] is OrderKind.STOP_LOSS:
                stops_by_sym.setdefault(o.req.key.symbol, []).append((o.number, o.req.side))
        per_position: dict[int, int] = {}
        for numbers in stops_by_sym.values():
            for number, _ in numbers:
                parsed = parse_client_id(x.orders[number].req.client_id)
                assert parsed is not None
                per_position[parsed[0]] = per_position.get(parsed[0], 0) + 1
        for pid, n in per_position.items():
            if n < 2:
                self._overlap_since.pop(pid, None)
                continue
            since = self._overlap_since.setdefault(pid, now)
            if now - since > OVERLAP_S:
                return self._v(
                    "stop_churn", f"position {pid}: {n} stops resting for {now - since:.1f}s"
                )
        for pid in [p for p in self._overlap_since if p not in per_position]:
            del self._overlap_since[pid]
        seen_orphans: set[int] = set()
        for sym, net in x.net.items():
            exits = [side for _, side in stops_by_sym.get(sym, [])]
            want = "sell" if net > 0 else "buy"
            if abs(net) > EPS and want not in exits:
                since = self._unprotected_since.setdefault(sym, now)
                bound = policy.sl_deadline_s + SLACK_S
                if now - since > bound:
                    return self._v(
                        "unprotected",
                        f"{sym}: net {net:+g} without a stop for {now - since:.1f}s "
                        f"(bound {bound:.0f}s)",
                    )
            else:
                self._unprotected_since.pop(sym, None)
            holders = self._holders.get(sym, {})
            for number, _ in stops_by_sym.get(sym, []):
                o = x.orders[number]
                parsed = parse_client_id(o.req.client_id)
                assert parsed is not None
                pid = parsed[0]
                orphan = abs(net) <= EPS or (pid in self._entered and holders.get(pid, 0.0) <= EPS)
                if not orphan:
                    continue
                seen_orphans.add(number)
                since = self._orphan_since.setdefault(number, now)
                if now - since > ORPHAN_SETTLE_S:
                    return self._v(
                        "orphan_stop",
                        f"{sym}: stop {o.req.client_id} rests {now - since:.1f}s with no "
                        "open position of its own",
                    )
        for number in [n for n in self._orphan_since if n not in seen_orphans]:
            del self._orphan_since[number]
        return None

    # -- after the quiet tail -------------------------------------------------------------

    def final(self) -> Violation | None:
        """The first violation after the quiet tail whose name is not in ``sim.known`` (the
        known product defects, recorded in ``sim.known_seen`` instead)."""
        for bad in self._final_all():
            if bad.name not in self.sim.known:
                return bad
            self.sim.known_seen.append(bad)
        return None

    def _final_all(self) -> Iterator[Violation]:
        bad = self._timed(self.sim.clock.now())
        if bad is not None:
            yield bad
        sim = self.sim
        for sid, sent in sim.signals.items():
            if not sent.answers:
                yield self._v("signal_unanswered", f"{sid} sent {len(sent.sends)} times")
                continue
            recorded = sim.store.final.get((sent.sig.key.account, sid))
            if recorded is None:
                continue
            # A transient refusal says "send it again", not an outcome: every final answer
            # must be the recorded one, and there must be one.
            finals = [rec for _, rec in sent.answers if not rec.retry]
            wrong = [rec for rec in finals if not _same(recorded, rec)]
            if wrong or not finals:
                got = wrong[0] if wrong else sent.answers[-1][1]
                yield self._v(
                    "answer_not_recorded",
                    f"{sid}: answered {got.outcome.value} {got.reason} "
                    f"(position {got.position_id}), recorded {recorded.outcome.value} "
                    f"{recorded.reason} (position {recorded.position_id})",
                )
        for pid, kind in self.closer.items():
            stored = sim.store.positions.get(pid)
            if stored is None or stored.status is not Status.CLOSED or kind is None:
                continue
            if stored.close_reason is CloseReason.CLOSED_ON_EXCHANGE:
                yield self._v(
                    "close_reason",
                    f"position {pid} closed by its own {kind.value} order, recorded "
                    f"{stored.close_reason.value}",
                )
        x = sim.exchange
        for sym, net in x.net.items():
            pos = sim.store.open_position(Key(x.account, sym))
            ours = [
                o.req.client_id
                for o in x.resting(sym)
                if parse_client_id(o.req.client_id) is not None
            ]
            if pos is None:
                if abs(net) > EPS or ours:
                    yield self._v(
                        "db_exchange_disagree",
                        f"{sym}: no open position in the store, exchange net {net:+g}, "
                        f"our resting orders {ours}",
                    )
                continue
            signed = pos.qty if pos.side.entry_side == "buy" else -pos.qty
            stray = [c for c in ours if parse_client_id(c)[0] != pos.id]  # type: ignore[index]
            if (
                pos.status is not Status.ACTIVE
                or abs(signed - net) > 1e-6 * max(1.0, abs(net))
                or not ours
                or stray
            ):
                yield self._v(
                    "db_exchange_disagree",
                    f"{sym}: store has position {pos.id} {pos.status.value} {signed:+g}, "
                    f"exchange net {net:+g}, our resting orders {ours}",
                )


def _same(a: SignalRecord, b: SignalRecord) -> bool:
    return a.outcome is b.outcome and a.position_id == b.position_id and a.reason == b.reason
