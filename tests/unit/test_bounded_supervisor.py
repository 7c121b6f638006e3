"""Every per-key structure of the supervisor returns to its size when symbols come and go
(issue 14, item 1): actors, their cells and tick slots, restart trackers, the timers.

Many symbols each open a position (some entries of unknown outcome, looked up by id on a
timer; some actors crash once and restart), see mark prices, close, and go idle; once idle
for ``passivate_after_s`` and quiet for the restart window, nothing of them is left.
"""

from __future__ import annotations

import threading

import pytest

from actors.messages import CloseRequest, MarkPriceTick, SyncObservation, TicksReady
from actors.model import CloseReason, ExchangePosition, Key, Side, Status
from actors.state import Commit, Policy, Reentry
from supervision.restart import RestartPolicy
from supervision.timers import TimerService
from testkit.world import ACCOUNT, World, signal

pytestmark = pytest.mark.timeout(120)

N = 60
SYMBOLS = [f"B{i:03d}USDT" for i in range(N)]
KEYS = [Key(ACCOUNT, s) for s in SYMBOLS]


class CrashOnce:
    """A store crash predicate: the first commit of each of ``symbols`` raises once."""

    def __init__(self, symbols: set[str]) -> None:
        self._left = set(symbols)
        self._lock = threading.Lock()

    def __call__(self, commit: Commit) -> bool:
        with self._lock:
            if commit.key.symbol in self._left:
                self._left.discard(commit.key.symbol)
                return True
            return False


def _cycle(w: World, price: float) -> None:
    """Open a position on every symbol, move the price, close them all, let them settle."""
    crashing = set(SYMBOLS[::4])
    w.store.crash_when = CrashOnce(crashing)
    w.exchange.accept_then_unknown = N // 3  # looked up by client order id on a timer
    w.tell(*(signal(s, stop=90.0) for s in SYMBOLS))
    w.settle()
    for _ in range(10):
        if all(p.status is Status.ACTIVE for p in w.open_positions()) and len(
            w.open_positions()
        ) == len(SYMBOLS):
            break
        w.advance(2.0)  # lookup timers fire
    assert len(w.open_positions()) == N
    assert all(p.status is Status.ACTIVE for p in w.open_positions())
    now = w.clock.now()
    for k in KEYS:
        w.sup.tell_tick(MarkPriceTick(k, price, now, received_at=now))
    w.settle()
    w.tell(*(CloseRequest(k, CloseReason.MANUAL, "op") for k in KEYS))
    w.settle()
    assert not w.open_positions()
    assert w.sup.structure_sizes()["restart_trackers"] == len(crashing)


def test_every_per_key_structure_returns_to_its_size_when_symbols_come_and_go() -> None:
    prices = dict.fromkeys(SYMBOLS, 100.0)
    with World(prices=prices, policy=Policy(reentry=Reentry.ALLOW)) as w:
        baseline = w.sup.structure_sizes()
        assert baseline["actors"] == 0
        quiet_after = max(w.sup.config.passivate_after_s, w.sup.config.restart.window_s) + 1.0
        for price in (101.0, 102.0):  # twice: the second round starts the actors again
            _cycle(w, price)
            grown = w.sup.structure_sizes()
            assert grown["actors"] == grown["cells"] == grown["tick_slots"] == N
            w.advance(quiet_after)
            assert w.sup.passivate_idle() == N
            w.wait_for(lambda: not w.sup.keys())
            sizes = w.sup.structure_sizes()
            assert sizes.pop("timer_heap") <= TimerService.COMPACT_SLACK  # dead, not yet due
            assert sizes == {k: v for k, v in baseline.items() if k != "timer_heap"}
        assert len(w.store.positions()) == 2 * N  # every position went through


def test_a_quarantined_actor_is_not_passivated_and_keeps_its_tracker() -> None:
    restart = RestartPolicy(max_restarts=2, window_s=60.0)
    with World(restart=restart) as w:
        w.store.crash_when = lambda c: c.signal is not None
        for i in range(3):
            w.tell(signal(signal_id=f"crash-{i}"))
            w.settle()
            w.advance(restart.max_backoff_s + 1)
        w.store.crash_when = None
        w.advance(restart.max_backoff_s + 1)
        assert w.state().quarantined
        w.advance(w.sup.config.passivate_after_s + restart.window_s + 1)
        assert w.sup.passivate_idle() == 0
        assert w.sup.keys() == [Key(ACCOUNT, "BTCUSDT")]
        assert w.sup.structure_sizes()["restart_trackers"] == 1
        assert w.sup.stats().quarantined == (f"{ACCOUNT}:BTCUSDT",)


def test_nothing_here_and_stale_wake_ups_start_no_actor() -> None:
    with World() as w:
        key = Key(ACCOUNT, "BTCUSDT")
        now = w.clock.now()
        assert not w.sup.tell(SyncObservation(key, None, (), now))
        assert not w.sup.tell_tick(MarkPriceTick(key, 100.0, now, received_at=now))
        assert w.sup.ticks_without_actor == 1
        w.sup.state(key)  # now an actor exists, with a tick slot
        slot = w.sup._slots[key]
        ref = w.sup._actors[key]
        assert w.sup.retire(key, ref)
        ref.stop()
        assert not w.sup.tell(TicksReady(key, slot))  # a wake-up for the retired slot
        assert w.sup.keys() == []
        # An observation with a position does start one (adoption).
        w.exchange.open_position("BTCUSDT", Side.LONG, 1.0, 100.0)
        assert w.sup.tell(SyncObservation(key, ExchangePosition(Side.LONG, 1.0, 100.0), (), now))
        w.settle()
        pos = w.state().position
        assert pos is not None and pos.source == "sync"


def test_a_tick_parked_at_shutdown_is_not_a_dead_letter() -> None:
    """Every actor with a parked tick handed it back at stop, and each was logged and counted
    as a dead letter (``shutting_down``): 80 WARNING lines per stop of an 80-symbol run."""
    w = World(prices=dict.fromkeys(SYMBOLS[:10], 100.0))
    keys = KEYS[:10]
    for k in keys:
        w.sup.state(k)
    now = w.clock.now()
    for k in keys:  # teaches each slot its band (no position: every price)
        w.sup.tell_tick(MarkPriceTick(k, 100.0, now, received_at=now))
    w.settle()
    for k in keys:  # parked in the slot, no wake-up
        assert w.sup.tell_tick(MarkPriceTick(k, 101.0, now, received_at=now))
    assert all(w.sup._slots[k].parked == 1 for k in keys)
    w.close()
    assert w.metrics.dead["shutting_down"] == 0


def test_a_running_actor_adopts_nothing_while_the_accounts_adoption_is_stopped() -> None:
    """Another installation trades the account (I7): adoption is stopped. A symbol whose
    actor is already running (a signal started it) must not adopt the position the sync
    finds either; the failover trial saw such an actor place a stop on the other
    installation's position."""
    with World(prices={SYMBOLS[0]: 100.0}) as w:
        key = KEYS[0]
        w.sup.state(key)  # the actor runs
        w.sup.set_adoption(key.account, False)
        w.exchange.open_position(key.symbol, Side.LONG, 1.0, 100.0)
        now = w.clock.now()
        w.sup.tell(SyncObservation(key, ExchangePosition(Side.LONG, 1.0, 100.0), (), now))
        w.settle()
        assert w.state(key.symbol).position is None
        assert w.exchange.log == []  # no stop placed on a position that is not ours
        w.sup.set_adoption(key.account, True)  # confirmed: adoption allowed again
        w.sup.tell(SyncObservation(key, ExchangePosition(Side.LONG, 1.0, 100.0), (), now + 1))
        w.settle()
        pos = w.state(key.symbol).position
        assert pos is not None and pos.source == "sync"
