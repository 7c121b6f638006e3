"""One supervisor process in the deterministic simulation: the router and the supervisor's
housekeeping (:class:`SimProcess`, the :class:`actors.host.ActorHost`), the actors
(:class:`SimActor`: the real :class:`~actors.position_actor.PositionShell` with the
simulation's mailbox), the pool's workers (:class:`SimPool` over the real
:class:`actors.workers.CallQueue`), the timer service (:class:`SimTimers`) and the clock
(:class:`SimClock`).

Who calls: :class:`testkit.dst.world.Simulation`, on its one thread; a kill drops the whole
process object and the next one recovers from the store. Nothing here reads the wall clock or
iterates an unordered collection.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actors import exchange_calls as calls
from actors.conflation import TickSlot
from actors.effects import CancelOrder, FetchMarket, LookupOrder, PlaceOrder
from actors.host import ActorCell, ActorDeps, Passivate, RestartDecision
from actors.ids import IdPool
from actors.messages import (
    MarkPriceTick,
    Message,
    SyncObservation,
    TicksReady,
    TimerId,
)
from actors.model import Key
from actors.orders import parse_client_id
from actors.ports import NullMetrics
from actors.position_actor import PositionShell
from actors.restarting import HANDED_BACK
from actors.state import ControlOutcome, SignalRecord
from actors.workers import CallQueue
from supervision.restart import RestartPolicy, RestartTracker
from testkit.dst.store import InjectedCrash

__all__ = [
    "ACCOUNT",
    "START",
    "SimActor",
    "SimClock",
    "SimPool",
    "SimProcess",
    "SimTimers",
    "describe",
]

if TYPE_CHECKING:
    from testkit.dst.world import Simulation

ACCOUNT = "main"
PASSIVATE_AFTER_S = 30.0
MAX_WORKERS = 4
#: When the simulation starts (the epoch seconds its clock begins at).
START = 1_700_000_000.0


class SimClock:
    """Simulated seconds since the epoch; only the simulation moves it."""

    def __init__(self, start: float = START) -> None:
        self.t = start

    def now(self) -> float:
        return self.t


class SimTimers:
    """The timer service (:class:`actors.ports.Timers`) on the simulated clock: a newer timer
    of the same ``(key, name)`` supersedes the older; due timers are ready events."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._live: dict[tuple[Key, TimerId], int] = {}
        self._heap: list[tuple[float, int, Key, TimerId]] = []
        self._seq = 0

    def start(self, key: Key, name: TimerId, delay: float) -> None:
        self._seq += 1
        self._live[(key, name)] = self._seq
        heapq.heappush(self._heap, (self._clock.now() + max(0.0, delay), self._seq, key, name))

    def cancel(self, key: Key, name: TimerId) -> None:
        self._live.pop((key, name), None)

    def cancel_key(self, key: Key) -> None:
        for k in [k for k in self._live if k[0] == key]:
            del self._live[k]

    def next_due(self) -> float | None:
        while (
            self._heap
            and self._live.get((self._heap[0][2], self._heap[0][3])) != (self._heap[0][1])
        ):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[Key, TimerId] | None:
        due = self.next_due()
        if due is None or due > now:
            return None
        _, _, key, name = heapq.heappop(self._heap)
        del self._live[(key, name)]
        return key, name


class SimPool:
    """The account's worker pool: the real scheduling (:class:`actors.workers.CallQueue`:
    priorities, a queued stop superseded by a newer one, the entry reservation) on
    ``max_workers`` simulated workers. A worker makes its call when the scheduler starts it
    and is busy until the reply arrives."""

    def __init__(self, max_workers: int, deliver: Callable[[Message], object]) -> None:
        self.max_workers = max_workers
        self.queue = CallQueue(max_workers)
        self._deliver = deliver

    def submit(self, effect: calls.ExchangeCall) -> None:
        older = self.queue.push(effect)
        if older is not None:
            self._deliver(calls.superseded(older))

    def runnable(self) -> bool:
        return self.queue.running < self.max_workers and self.queue.ready()


class SimActor(PositionShell):
    """A position actor whose mailbox is the simulation's (one deque per incarnation)."""

    def __init__(self, key: Key, deps: ActorDeps, cell: ActorCell) -> None:
        super().__init__(key, deps, cell)
        self.inbox: deque[Message | Passivate] = deque()
        self.started = False
        self.stopped = False

    def _self_ref(self) -> Any:
        return self

    def _stop_self(self) -> None:
        self.stopped = True

    def _queued_tells(self) -> list[Message]:
        told = [m for m in self.inbox if isinstance(m, HANDED_BACK)]
        self.inbox.clear()
        return told


class SimProcess:
    """One run of the supervisor process: the router, the pool, the timers, the restart
    trackers and the passivation housekeeping (the :class:`actors.host.ActorHost`)."""

    def __init__(self, sim: Simulation, epoch: int) -> None:
        self.sim = sim
        self.epoch = epoch
        self.timers = SimTimers(sim.clock)
        self.pool = SimPool(MAX_WORKERS, self.deliver)
        self.ids = IdPool(sim.store, block=4)
        self.actors: dict[Key, SimActor] = {}
        self.slots: dict[Key, TickSlot] = {}
        self.trackers: dict[Key, RestartTracker] = {}
        self.sync_wanted = False
        self.outbox: deque[SignalRecord] = deque()  # answers not sent yet, in order

    # -- the host (actors.host.ActorHost) ------------------------------------------------

    def deliver(self, msg: Message) -> object:
        key = msg.key
        if isinstance(msg, TicksReady) and self.slots.get(key) is not msg.slot:
            return False
        actor = self.actors.get(key)
        if actor is None:
            if isinstance(msg, SyncObservation) and msg.position is None:
                if not any(parse_client_id(o.client_id) for o in msg.open_orders):
                    return False  # "nothing here" starts no actor
            actor = self._spawn(key)
        actor.inbox.append(msg)
        return True

    def submit(self, effect: PlaceOrder | CancelOrder | LookupOrder | FetchMarket) -> None:
        self.pool.submit(effect)

    def request_sync(self, key: Key, reason: str) -> None:
        self.sync_wanted = True

    def signal_decided(self, record: SignalRecord) -> None:
        # The answer goes out through the signal feed, in order (one outbox): lost if the
        # process dies first.
        self.outbox.append(record)
        self.sim.at(0.05 + self.sim.rng.random() * 0.5, "answer", None, self.epoch)

    def control_decided(self, outcome: ControlOutcome) -> None:
        pass

    def clear_quarantine(self, key: Key) -> None:
        self.trackers.pop(key, None)

    def on_crash(self, key: Key, exc: BaseException) -> RestartDecision:
        if isinstance(exc, InjectedCrash):
            self.sim.injected_crashes += 1
        else:
            self.sim.crashes.append(f"{key} {type(exc).__name__}: {exc}")
        tracker = self.trackers.get(key)
        if tracker is None:
            tracker = self.trackers[key] = RestartTracker(RestartPolicy(), self.sim.rng)
        return tracker.on_crash(self.sim.clock.now())

    def retire(self, key: Key, ref: Any) -> bool:
        actor = self.actors.get(key)
        if actor is not ref or actor is None or actor.inbox:
            return False
        del self.actors[key]
        self.slots.pop(key, None)
        self.timers.cancel_key(key)
        return True

    def not_owner(self, key: Key, why: str, certain: bool) -> None:
        pass

    # -- the supervisor's side -------------------------------------------------------------

    def _spawn(self, key: Key) -> SimActor:
        sim = self.sim
        cell = ActorCell(key, sim.clock.now())
        deps = ActorDeps(
            sim.store, self.timers, sim.clock, NullMetrics(), sim.policy, self, self.ids
        )
        actor = SimActor(key, deps, cell)
        self.actors[key] = actor
        self.slots[key] = TickSlot()
        return actor

    def tell_tick(self, tick: MarkPriceTick) -> None:
        slot = self.slots.get(tick.key)
        if slot is not None and slot.put(tick):
            self.deliver(TicksReady(tick.key, slot))

    def recover(self) -> None:
        for pos in self.sim.store.open_positions(ACCOUNT):
            if pos.key not in self.actors:
                self._spawn(pos.key)

    def housekeep(self) -> None:
        now = self.sim.clock.now()
        for actor in self.actors.values():
            report = actor.cell.report
            if report.idle and now - report.last_activity >= PASSIVATE_AFTER_S:
                actor.inbox.append(Passivate())

    def step_actor(self, key: Key) -> str:
        """The actor of ``key`` handles its next message (its first step: starts). What
        escapes the shell is handled as pykka does: the actor stops, ``on_failure`` hands its
        mailbox back (and it is a violation: a defect outside a transition)."""
        actor = self.actors[key]
        msg: Message | Passivate | None = None
        try:
            if not actor.started:
                actor.started = True
                actor.on_start()
            else:
                msg = actor.inbox.popleft()
                actor.on_receive(msg)
        except Exception as exc:
            self.sim.crashes.append(f"{key} escaped the shell: {type(exc).__name__}: {exc}")
            self._drop(key, actor)
            actor.on_failure(type(exc), exc, None)
            return f"failed {describe(msg)}"
        if actor.stopped:
            self._drop(key, actor)
            actor.on_stop()
        return "start" if msg is None else describe(msg)

    def _drop(self, key: Key, actor: SimActor) -> None:
        if self.actors.get(key) is actor:
            del self.actors[key]
            self.slots.pop(key, None)


def describe(msg: object) -> str:
    """One message as a trace line: its type and fields, with no object addresses."""
    if isinstance(msg, TicksReady):
        return f"TicksReady({msg.key})"
    if isinstance(msg, Passivate):
        return "Passivate()"
    text = repr(msg)
    return text.replace("Key(account='main', symbol=", "Key(")
