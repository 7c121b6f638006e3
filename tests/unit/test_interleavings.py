"""Property test: random interleavings over 20 symbols keep I1, I2, I3 and I5.

Hypothesis drives signals from four sources (fresh and replayed ids), sync rounds, mark
prices that trigger resting stops, exchange faults (rejections, unknown outcomes, lost
orders, lookups that say "not found" for a while), close requests, actor crashes injected
into commits and process restarts (a new supervisor over the same store and exchange, right
after a step's messages are handled and before any of its timers fire). After every step,
once timers and a sync have had their turn as they do in the running process, the
invariants are checked against the exchange's own ledger (I1, I2: :func:`opened_twice`,
:func:`executed_twice` over ``InMemoryExchange.executions``; the tests at the end feed each a
ledger with a violation to show it fails), the store's committed intents at the moment an
order arrives (I2), the metrics (I3) and the exchange's resting orders (I5).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.messages import CloseRequest, MarkPriceTick
from actors.model import CloseReason, Key, OrderKind
from actors.ports import OrderRequest
from actors.restarting import RESTART_TIMER
from actors.state import Policy, Reentry
from supervision.timers import ManualClock
from testkit.exchange import Execution, InMemoryExchange
from testkit.world import ACCOUNT, World, signal

SYMBOLS = [f"S{i:02d}USDT" for i in range(20)]
SOURCES = ("sniper", "whale_copy", "trending", "volume")
POLICY = Policy(reentry=Reentry.ALLOW, lookup_deadline_s=2.0)
EXAMPLES = int(os.environ.get("PS_PROPERTY_EXAMPLES", "250"))
FLAT = 1e-12


def opened_twice(executions: Sequence[Execution]) -> list[str]:
    """I1 on the exchange's ledger: every entry fill lands on a flat symbol or on the position
    that same order (same client id, same placement) opened. An entry that fills on top of a
    position opened by another order, or by nobody here, is a second position on that key."""
    opener: dict[str, tuple[str, int] | None] = {}
    found: list[str] = []
    for e in executions:
        flat_before = abs(e.position_before) < FLAT
        if e.kind is OrderKind.ENTRY and not flat_before:
            if opener.get(e.symbol) != (e.client_id, e.placement):
                found.append(
                    f"{e.symbol}: entry {e.client_id} filled on an open position "
                    f"({e.position_before:+g})"
                )
        if flat_before:
            opened_by_entry = e.kind is OrderKind.ENTRY
            opener[e.symbol] = (e.client_id, e.placement) if opened_by_entry else None
        if abs(e.position_after) < FLAT:
            opener.pop(e.symbol, None)
    return found


def executed_twice(executions: Sequence[Execution]) -> list[str]:
    """I2 on the exchange's ledger: each entry client id is executed by one order at most. The
    exchange takes a client id again once its first order is no longer open (as Binance does),
    so an entry re-sent after it filled shows here as a second placement with fills."""
    placements: dict[str, set[int]] = defaultdict(set)
    for e in executions:
        if e.kind is OrderKind.ENTRY:
            placements[e.client_id].add(e.placement)
    return [
        f"entry {cid} executed by {len(p)} orders" for cid, p in placements.items() if len(p) > 1
    ]


class Interleavings(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World(
            policy=POLICY,
            prices=dict.fromkeys(SYMBOLS, 100.0),
        )
        self.sent_signals = 0
        self.ids: list[str] = []
        self.premature: list[str] = []
        self.crash_armed: list[bool] = []
        self.w.exchange.on_place = self._check_intent_written
        self.w.store.crash_when = self._crash_once
        self.orders_by_id: dict[str, int] = defaultdict(int)
        self.restart_armed = False
        self.signals_counted_before = 0

    # -- hooks

    def _check_intent_written(self, req: OrderRequest) -> None:
        """I2: the order's client id is in a committed position before it reaches us."""
        known = {o.client_id for p in self.w.store.positions(req.key) for o in p.orders}
        if req.client_id not in known:
            self.premature.append(req.client_id)

    def _crash_once(self, _commit: object) -> bool:
        return bool(self.crash_armed and self.crash_armed.pop())

    def _restart_process(self) -> None:
        """The process dies: its timers and mailboxes go, the store and the exchange stay."""
        old = self.w
        self.signals_counted_before += sum(old.metrics.signals.values())
        old.close()
        self.w = World(
            policy=POLICY,
            store=old.store,
            exchange=old.exchange,
            clock=ManualClock(old.clock.now()),
        )
        self.w.sup.recover()
        self.w.settle()

    def _let_time_pass(self) -> None:
        self.w.settle()
        if self.restart_armed and not self.w.sup.timers.pending(RESTART_TIMER):
            # (An actor between a crash and its restart holds messages that would die with
            # the process, as in production; the kill waits for a step without one.)
            self.restart_armed = False
            self._restart_process()
        w = self.w
        w.advance(0.3)
        w.advance(0.3)
        w.sync()
        w.advance(0.3)

    # -- rules

    @rule(sym=st.sampled_from(SYMBOLS), source=st.sampled_from(SOURCES), replay=st.booleans())
    def open_signal(self, sym: str, source: str, replay: bool) -> None:
        sid = self.ids[-1] if replay and self.ids else f"s{len(self.ids)}"
        self.ids.append(sid)
        self.w.tell(signal(sym, source, signal_id=sid, stop=90.0))
        self.sent_signals += 1
        self._let_time_pass()

    @rule(sym=st.sampled_from(SYMBOLS), n=st.integers(2, 4))
    def burst(self, sym: str, n: int) -> None:
        for i in range(n):
            self.w.tell(signal(sym, SOURCES[i % 4], signal_id=f"b{len(self.ids)}-{i}"))
            self.sent_signals += 1
        self.ids.append(f"b{len(self.ids)}")
        self._let_time_pass()

    @rule(sym=st.sampled_from(SYMBOLS), price=st.floats(85.0, 115.0))
    def tick(self, sym: str, price: float) -> None:
        self.w.exchange.set_price(sym, price)
        self.w.tell(MarkPriceTick(Key(ACCOUNT, sym), price, self.w.clock.now()))
        self._let_time_pass()

    @rule()
    def sync(self) -> None:
        self.w.sync()
        self._let_time_pass()

    @rule(
        fault=st.sampled_from(
            ["reject_entry", "unknown", "lose", "not_found", "reject_stop", "raise"]
        )
    )
    def fault(self, fault: str) -> None:
        ex = self.w.exchange
        if fault == "reject_entry":
            ex.reject.setdefault(OrderKind.ENTRY, []).append("insufficient_funds")
        elif fault == "unknown":
            ex.accept_then_unknown += 1
        elif fault == "lose":
            ex.lose += 1
        elif fault == "not_found":
            ex.not_found_lookups += 2
        elif fault == "reject_stop":
            ex.reject.setdefault(OrderKind.STOP_LOSS, []).append("exchange_overloaded")
        else:
            ex.raise_on_call += 1

    @rule(sym=st.sampled_from(SYMBOLS))
    def close(self, sym: str) -> None:
        self.w.tell(CloseRequest(Key(ACCOUNT, sym), CloseReason.MANUAL))
        self._let_time_pass()

    @precondition(lambda self: not self.restart_armed)
    @rule()
    def kill_after_next_step(self) -> None:
        self.restart_armed = True

    @precondition(lambda self: not self.crash_armed)
    @rule()
    def crash_next_commit(self) -> None:
        self.crash_armed.append(True)

    # -- invariants

    @invariant()
    def one_open_position_per_symbol(self) -> None:  # I1
        found = opened_twice(list(self.w.exchange.executions))
        assert not found, f"a second position opened on a key: {found}"

    @invariant()
    def intent_before_order(self) -> None:  # I2
        assert not self.premature, f"orders sent before their intent: {self.premature}"
        # Entries are never re-sent blindly: a retry after a rate limit or a lost request
        # re-uses the id, and the exchange executes that id once at most.
        found = executed_twice(list(self.w.exchange.executions))
        assert not found, f"an entry executed twice: {found}"

    @invariant()
    def every_message_handled(self) -> None:  # I3
        w = self.w
        counted = self.signals_counted_before + sum(w.metrics.signals.values())
        assert counted == self.sent_signals
        assert not w.metrics.dead, w.metrics.dead

    @invariant()
    def every_fill_protected_or_closing(self) -> None:  # I5
        ex = self.w.exchange
        for sym, xp in ex.positions.items():
            stops = [o for o in ex.open_orders(sym) if o.req.kind is OrderKind.STOP_LOSS]
            assert stops, f"{sym}: exchange position {xp} without a stop-loss"

    def teardown(self) -> None:
        self.w.close()


Interleavings.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
test_interleavings = pytest.mark.timeout(480)(Interleavings.TestCase)


# -- the checks themselves can fail ------------------------------------------------------


def _x(placement: int, cid: str, kind: OrderKind, before: float, after: float) -> Execution:
    return Execution(placement, cid, kind, "S00USDT", abs(after - before), before, after)


def test_opened_twice_finds_an_entry_filled_on_an_open_position() -> None:
    """The I1 check fails on a ledger where a second entry (another client id) fills while the
    first entry's position is open, and on one where an entry fills over a position nobody here
    opened; it passes the same entries once a stop has flattened the symbol in between, and the
    second part of one entry's own partial fill."""
    ok = [
        _x(0, "ps1e1", OrderKind.ENTRY, 0.0, 0.5),
        _x(0, "ps1e1", OrderKind.ENTRY, 0.5, 1.0),  # the rest of the same order
        _x(1, "ps1s1", OrderKind.STOP_LOSS, 1.0, 0.0),
        _x(2, "ps2e1", OrderKind.ENTRY, 0.0, 1.0),
    ]
    assert opened_twice(ok) == []
    stacked = [_x(0, "ps1e1", OrderKind.ENTRY, 0.0, 1.0), _x(1, "ps2e1", OrderKind.ENTRY, 1.0, 2.0)]
    assert opened_twice(stacked) == ["S00USDT: entry ps2e1 filled on an open position (+1)"]
    over_manual = [_x(0, "ps3e1", OrderKind.ENTRY, -1.0, 0.0)]
    assert len(opened_twice(over_manual)) == 1


def test_executed_twice_finds_an_entry_id_executed_by_two_orders() -> None:
    """The I2 check fails when one entry client id has fills from two placements, and passes
    one placement filled in parts."""
    parts = [_x(0, "ps1e1", OrderKind.ENTRY, 0.0, 0.5), _x(0, "ps1e1", OrderKind.ENTRY, 0.5, 1.0)]
    assert executed_twice(parts) == []
    twice = [_x(0, "ps1e1", OrderKind.ENTRY, 0.0, 1.0), _x(3, "ps1e1", OrderKind.ENTRY, 1.0, 2.0)]
    assert executed_twice(twice) == ["entry ps1e1 executed by 2 orders"]


def test_the_exchange_ledger_records_what_the_checks_look_for() -> None:
    """Against the in-memory exchange itself: an entry re-sent under its id after it filled
    executes again (the exchange takes the id once the first order is done), and both checks
    see it in the exchange's ledger; a second entry on another id stacks on the position."""
    ex = InMemoryExchange(ACCOUNT, {"S00USDT": 100.0})
    key = Key(ACCOUNT, "S00USDT")
    entry = OrderRequest(key, "ps1e1", OrderKind.ENTRY, "buy", 1.0)
    ex.place_order(entry)
    assert executed_twice(ex.executions) == [] and opened_twice(ex.executions) == []
    ex.place_order(entry)
    assert executed_twice(ex.executions) == ["entry ps1e1 executed by 2 orders"]
    assert len(opened_twice(ex.executions)) == 1
    ex.place_order(OrderRequest(key, "ps2e1", OrderKind.ENTRY, "buy", 1.0))
    assert len(opened_twice(ex.executions)) == 2
