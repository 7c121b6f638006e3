"""Crash at every step of a position's life, recover from PostgreSQL, and check the outcome
against the exchange (S5, I1, I2, I6).

Real components: the PostgreSQL store, the ccxt adapter over HTTP, the sim exchange. Two ways
to die at each step:

* ``actor``: the actor crashes right there (after the step's commit, before its effects) and
  the supervisor restarts it in place from the store;
* ``process``: everything in memory is thrown away at that instant (its store and exchange
  adapter go dead, as a killed process's would) and a new supervisor with a new store and a
  new adapter recovers from the database.

Steps: the entry intent is committed (its order not sent); the entry order was sent and its
reply is outstanding; the entry filled (its stop-loss intent committed, not sent); the
stop-loss was sent and its reply is outstanding; the close intent is committed (not sent).
Each ends with exactly one position, protected on the exchange or closed/failed with the
exchange flat, and no order executed twice. Every case runs on each venue
(:data:`tests.venues.VENUES`: the sim speaking Binance's or Bybit's wire), where the lookup of
an order by client id, which recovery rests on, differs.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.messages import CloseRequest, OpenSignal
from actors.model import CloseReason, Key, OrderKind, OrderState, Side, Status
from actors.ports import StoreUnavailable, SystemClock
from actors.state import Commit, Policy, Position, Reentry
from infra.exchange import CcxtExchange
from infra.store import PostgresStore
from sim import SimExchange
from supervision.supervisor import Supervisor, SupervisorConfig
from testkit.waiting import poll
from tests.venues import ENTRY_IDS, STOP_IDS, VENUES, create_paths, make_sim, venue_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ACCOUNT = "main"
SYMBOL = "BTCUSDT"
KEY = Key(ACCOUNT, SYMBOL)
POLICY = Policy(
    reentry=Reentry.ALLOW,
    lookup_delay_s=0.1,
    lookup_deadline_s=1.5,
    close_retry_delay_s=0.2,
    sl_retry_delay_s=0.1,
)


class CrashingStore(PostgresStore):
    """The real store; ``crash_after(commit)`` true: the commit is durable, then the caller
    (the actor) crashes. ``dead``: every call fails, as for a process that is gone."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn, migrate_schema=False, pool_max=4)
        self.crash_after: Callable[[Commit], bool] | None = None
        self.die_on_crash = False
        self.dead = False
        self.crashed = threading.Event()

    def _alive(self) -> None:
        if self.dead:
            raise StoreUnavailable("the process is gone")

    def commit(self, commit: Commit) -> None:
        self._alive()
        super().commit(commit)
        pred = self.crash_after
        if pred is not None and pred(commit):
            self.crash_after = None
            if self.die_on_crash:
                self.dead = True
            self.crashed.set()
            raise RuntimeError("injected crash after a durable commit")

    def load(self, key: Key) -> Any:
        self._alive()
        return super().load(key)

    def allocate_ids(self, n: int) -> Any:
        self._alive()
        return super().allocate_ids(n)

    def open_positions(self, account: str | None = None) -> list[Position]:
        self._alive()
        return super().open_positions(account)


class Killable:
    """The real adapter behind a switch: once dead, no call reaches the exchange."""

    def __init__(self, inner: CcxtExchange) -> None:
        self.inner = inner
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise ConnectionError("the process is gone")
            return attr(*args, **kwargs)

        return call


@dataclass
class Process:
    """One supervisor 'process': its store, its adapter, its supervisor."""

    store: CrashingStore
    exchange: CcxtExchange
    killable: Killable
    sup: Supervisor
    stopped: bool = False

    def position(self) -> Position | None:
        return self.sup.state(KEY).position

    def kill(self) -> None:
        """Everything in memory is gone: nothing reaches the store or the exchange again."""
        self.store.dead = True
        self.killable.dead = True

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.sup.stop(grace_s=2.0)
        self.exchange.close()
        self.store.close()


@dataclass
class Rig:
    sim: SimExchange
    dsn: str
    venue: str
    processes: list[Process] = field(default_factory=list)

    def start(self) -> Process:
        store = CrashingStore(self.dsn)
        exchange = CcxtExchange(ACCOUNT, venue_config(self.venue, self.sim, timeout_s=1.0))
        killable = Killable(exchange)
        sup = Supervisor(
            store,
            {ACCOUNT: killable},
            SystemClock(),
            config=SupervisorConfig(policy=POLICY, shutdown_grace_s=2.0),
        )
        sup.start()
        p = Process(store, exchange, killable, sup)
        self.processes.append(p)
        sup.recover()
        return p

    def wait(self, p: Process, cond: Callable[[Position], bool], what: str) -> Position:
        seen: list[Position | None] = [None]

        def reached() -> Position | None:
            pos = seen[0] = p.position()
            return pos if pos is not None and cond(pos) else None

        try:
            return poll(reached, 20.0, what, 0.02)
        except AssertionError:
            raise AssertionError(f"{what} not reached: {seen[0]}") from None

    def wait_protected(self, p: Process) -> Position:
        return self.wait(p, lambda q: q.status is Status.ACTIVE and q.stop_confirmed, "protected")

    def executed(self, pattern: str) -> int:
        """Orders the exchange executed whose client id matches ``pattern``."""
        rx = re.compile(pattern)
        return sum(
            1 for e in self.sim.order_log() if rx.match(e.client_id) and e.outcome == "accepted"
        )

    def open_stops(self) -> int:
        return sum(1 for o in self.sim.open_orders() if o.kind == "algo" and o.symbol == SYMBOL)

    def exchange_qty(self) -> float:
        p = self.sim.positions().get(SYMBOL)
        return 0.0 if p is None else p.qty


@pytest.fixture(params=VENUES)
def rig(request: pytest.FixtureRequest, pg_dsn: str) -> Iterator[Rig]:
    venue: str = request.param
    with make_sim(venue, {SYMBOL: 60_000.0, "ETHUSDT": 3_000.0}, seed=5) as sim:
        r = Rig(sim, pg_dsn, venue)
        try:
            yield r
        finally:
            for p in r.processes:
                p.stop()


def _signal(signal_id: str = "sig-1") -> OpenSignal:
    return OpenSignal(KEY, signal_id, "sniper", Side.LONG, 0.01, 58_000.0)


def _crash(rig: Rig, p: Process, how: str, pred: Callable[[Commit], bool]) -> None:
    p.store.die_on_crash = how == "process"
    p.store.crash_after = pred


def _poke(p: Process) -> None:
    """A message whose commit the armed store crashes on (a duplicate signal is recorded)."""
    p.sup.tell(_signal("poke"))


def _after_crash(rig: Rig, p: Process, how: str) -> Process:
    assert p.store.crashed.wait(10.0), "the crash point was never reached"
    if how == "process":
        p.kill()
        p.stop()
        return rig.start()
    return p


def _crash_in_flight(rig: Rig, p: Process, how: str, sent: Callable[[], bool]) -> Process:
    """Once ``sent()`` (an order reached the exchange, its reply is held), die: the actor on
    its next commit (a duplicate signal's record), or the whole process at once."""
    try:
        poll(sent, 10.0, "an order reached the exchange", 0.01)
    except AssertionError:
        raise AssertionError(rig.sim.order_log()) from None
    _crash(rig, p, how, _is_poke)
    if how == "actor":
        _poke(p)
    else:
        p.store.crashed.set()
    return _after_crash(rig, p, how)


def _is_poke(c: Commit) -> bool:
    return isinstance(c.cause, OpenSignal) and c.cause.signal_id == "poke"


def _protected(rig: Rig, pos: Position) -> None:
    assert pos.status is Status.ACTIVE and pos.stop_confirmed
    assert rig.open_stops() == 1, rig.sim.open_orders()
    assert abs(rig.exchange_qty() - pos.qty) < 1e-9


def _one_position(p: Process) -> Position:
    positions = p.store.positions(ACCOUNT)
    assert len(positions) == 1, positions
    return positions[0]


WAYS = ["actor", "process"]


@pytest.mark.parametrize("how", WAYS)
def test_crash_after_the_entry_intent_is_committed(rig: Rig, how: str) -> None:
    p = rig.start()
    _crash(rig, p, how, lambda c: c.risk_increasing)
    p.sup.tell(_signal())
    p = _after_crash(rig, p, how)
    pos = rig.wait(p, lambda q: q.status.terminal, "the unsent entry resolved")
    assert pos.status is Status.FAILED and pos.fail_reason == "entry_not_found"
    assert rig.executed(r"^ps\d+e") == 0 and rig.exchange_qty() == 0.0
    assert _one_position(p).status is Status.FAILED


@pytest.mark.parametrize("how", WAYS)
def test_crash_while_the_entry_order_awaits_its_reply(rig: Rig, how: str) -> None:
    rig.sim.add_fault(
        "timeout", path=create_paths(rig.venue), client_id=ENTRY_IDS, method="POST", hold_s=3.0
    )
    p = rig.start()
    p.sup.tell(_signal())
    # the order is on the exchange, its reply held
    p = _crash_in_flight(rig, p, how, lambda: rig.executed(r"^ps\d+e1$") > 0)
    pos = rig.wait_protected(p)
    _protected(rig, pos)
    assert rig.executed(r"^ps\d+e") == 1, "the entry was sent twice"
    _one_position(p)


@pytest.mark.parametrize("how", WAYS)
def test_crash_after_the_fill_before_the_stop_loss_is_sent(rig: Rig, how: str) -> None:
    p = rig.start()

    def filled(c: Commit) -> bool:
        return c.position is not None and c.position.status is Status.PENDING_SL

    _crash(rig, p, how, filled)
    p.sup.tell(_signal())
    p = _after_crash(rig, p, how)
    pos = rig.wait_protected(p)
    _protected(rig, pos)
    assert rig.executed(r"^ps\d+e") == 1
    assert rig.executed(r"^ps\d+s") == 1, "the stop-loss was placed twice"
    _one_position(p)


@pytest.mark.parametrize("how", WAYS)
def test_crash_while_the_stop_loss_awaits_its_reply(rig: Rig, how: str) -> None:
    rig.sim.add_fault(
        "timeout", path=create_paths(rig.venue), client_id=STOP_IDS, method="POST", hold_s=3.0
    )
    p = rig.start()
    p.sup.tell(_signal())
    # the stop rests on the exchange, its reply held
    p = _crash_in_flight(rig, p, how, lambda: rig.open_stops() > 0)
    pos = rig.wait_protected(p)
    _protected(rig, pos)
    assert rig.executed(r"^ps\d+s") == 1, "the stop-loss was placed twice"
    _one_position(p)


@pytest.mark.parametrize("how", WAYS)
def test_crash_after_the_close_intent_is_committed(rig: Rig, how: str) -> None:
    p = rig.start()
    p.sup.tell(_signal())
    rig.wait_protected(p)

    def closing(c: Commit) -> bool:
        return c.position is not None and c.position.status is Status.CLOSING

    _crash(rig, p, how, closing)
    p.sup.tell(CloseRequest(KEY, CloseReason.MANUAL, "operator"))
    p = _after_crash(rig, p, how)
    pos = rig.wait(p, lambda q: q.status.terminal, "closed")
    assert pos.status is Status.CLOSED and pos.close_reason is CloseReason.MANUAL
    assert rig.exchange_qty() == 0.0
    try:  # the stop's cancel follows the close on a worker
        poll(lambda: not rig.open_stops(), 10.0, "the stop cancelled", 0.02)
    except AssertionError:
        raise AssertionError(rig.sim.open_orders()) from None
    assert rig.executed(r"^ps\d+c") == 1, "closed twice"
    assert all(
        o.state is not OrderState.ACCEPTED for o in pos.orders if o.kind is OrderKind.STOP_LOSS
    )
    _one_position(p)
