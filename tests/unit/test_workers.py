"""The per-account exchange worker pool: protection jumps the queue of entries.

The fake exchange blocks each call whose client id has a gate until the test opens it, and
records the order in which calls reached it. Nothing here sleeps to synchronise: waits are on
conditions with deadlines, and a negative claim ("has not started") is only made where the
pool's rules make it certain.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from actors.effects import CancelOrder, LookupOrder, PlaceOrder
from actors.messages import CallResult, ExchangeOutcome, Message
from actors.model import ExchangeStatus, Key, OrderKind, OrderRecord, OrderState
from actors.ports import AccountView, MarketReply, OrderReply, OrderRequest
from actors.workers import ExchangeWorkers

ACCOUNT = "acct"
KEY = Key(ACCOUNT, "BTCUSDT")
WAIT = 5.0  # deadline for anything that should happen promptly

Call = PlaceOrder | CancelOrder | LookupOrder


# --- fakes ---------------------------------------------------------------------------------


class GatedExchange:
    """An :class:`~actors.ports.ExchangePort` whose calls block on per-client-id gates."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.started: list[str] = []  # client ids in the order their call began
        self.threads: list[str] = []  # the name of the thread that made each call
        self.gates: dict[str, threading.Event] = {}
        self.raise_for: set[str] = set()

    def gate(self, *client_ids: str) -> None:
        """Make the calls for these client ids block until :meth:`release`."""
        for cid in client_ids:
            self.gates[cid] = threading.Event()

    def release(self, *client_ids: str) -> None:
        for cid in client_ids or tuple(self.gates):
            self.gates[cid].set()

    def wait_started(self, *client_ids: str, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: all(c in self.started for c in client_ids), timeout)

    def snapshot(self) -> list[str]:
        with self._cond:
            return list(self.started)

    def _call(self, cid: str, ok: CallResult) -> OrderReply:
        with self._cond:
            self.started.append(cid)
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()
        gate = self.gates.get(cid)
        if gate is not None:
            assert gate.wait(30), f"gate for {cid} never opened"
        if cid in self.raise_for:
            raise RuntimeError("adapter bug")
        return OrderReply(ok, status=ExchangeStatus.NEW)

    def place_order(self, req: OrderRequest) -> OrderReply:
        return self._call(req.client_id, CallResult.ACCEPTED)

    def cancel_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        return self._call(client_id, CallResult.ACCEPTED)

    def lookup_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        return self._call(client_id, CallResult.FOUND)

    def fetch_account(self, account: str) -> AccountView:
        return AccountView(account, {}, {}, 0.0)

    def fetch_market(self, key: Key) -> MarketReply:
        return MarketReply(CallResult.UNKNOWN, reason="not used here")


class Outcomes:
    """The ``deliver`` callback: collects outcomes, lets a test wait for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[ExchangeOutcome] = []

    def __call__(self, msg: Message) -> None:
        assert isinstance(msg, ExchangeOutcome)
        with self._cond:
            self.items.append(msg)
            self._cond.notify_all()

    def wait_for(self, *client_ids: str, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: all(c in self.by_id() for c in client_ids), timeout)

    def by_id(self) -> dict[str, ExchangeOutcome]:
        with self._cond:
            return {o.client_id: o for o in self.items}


class Pool:
    """A pool under test with its fake exchange and collected outcomes."""

    def __init__(self, max_workers: int) -> None:
        self.exchange = GatedExchange()
        self.outcomes = Outcomes()
        self.workers = ExchangeWorkers(ACCOUNT, self.exchange, self.outcomes, max_workers)


@pytest.fixture
def pool() -> Iterator[Callable[[int], Pool]]:
    """Make pools; at teardown open every gate and shut each pool down (no thread left)."""
    made: list[Pool] = []

    def make(max_workers: int) -> Pool:
        p = Pool(max_workers)
        made.append(p)
        return p

    yield make
    for p in made:
        p.exchange.release()
        p.workers.shutdown(WAIT)


# --- effects -------------------------------------------------------------------------------


def place(cid: str, kind: OrderKind) -> PlaceOrder:
    side = "buy" if kind is OrderKind.ENTRY else "sell"
    trigger = 90.0 if kind.trigger else None
    order = OrderRecord(cid, kind, side, 1.0, OrderState.INTENDED, trigger)
    return PlaceOrder(KEY, 1, order, reduce_only=kind is OrderKind.CLOSE)


def entry(cid: str) -> PlaceOrder:
    return place(cid, OrderKind.ENTRY)


def stop(cid: str) -> PlaceOrder:
    return place(cid, OrderKind.STOP_LOSS)


def submit_all(p: Pool, *calls: Call) -> None:
    for c in calls:
        p.workers.submit(c)


def xchg_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"xchg-{ACCOUNT}")]


# --- priority and reservation --------------------------------------------------------------


@pytest.mark.timeout(20)
def test_stop_loss_runs_on_the_reserved_worker_while_every_entry_is_blocked(
    pool: Callable[[int], Pool],
) -> None:
    p = pool(4)
    entries = ["e1", "e2", "e3", "e4"]
    p.exchange.gate(*entries)
    submit_all(p, *(entry(e) for e in entries))
    assert p.exchange.wait_started("e1", "e2", "e3")
    assert p.workers.in_flight == 4

    p.workers.submit(stop("s1"))
    # The stop-loss reaches the exchange and comes back while no entry has been released.
    assert p.outcomes.wait_for("s1"), f"stop-loss stuck behind entries: {p.exchange.snapshot()}"
    assert p.outcomes.by_id()["s1"].result is CallResult.ACCEPTED
    assert not any(p.exchange.gates[e].is_set() for e in entries)
    # Entries held at most max_workers - 1 threads: the fourth is still waiting in the queue.
    assert sorted(p.exchange.snapshot()) == ["e1", "e2", "e3", "s1"]
    assert p.workers.in_flight == 4

    p.exchange.release()
    assert p.outcomes.wait_for(*entries)
    assert p.workers.shutdown(WAIT)
    names = set(p.exchange.threads)
    assert len(names) <= 4
    assert all(re.fullmatch(rf"xchg-{ACCOUNT}-[0-3]", n) for n in names), names


@pytest.mark.timeout(20)
def test_stop_loss_submitted_later_runs_before_queued_entries(
    pool: Callable[[int], Pool],
) -> None:
    p = pool(1)  # no reservation with one worker: protection overtakes only the queue
    p.exchange.gate("e1")
    p.workers.submit(entry("e1"))
    assert p.exchange.wait_started("e1")
    submit_all(p, entry("e2"), entry("e3"), stop("s1"), place("c1", OrderKind.CLOSE))
    assert p.workers.in_flight == 5

    p.exchange.release("e1")
    assert p.outcomes.wait_for("e1", "e2", "e3", "s1", "c1")
    assert p.exchange.snapshot() == ["e1", "s1", "c1", "e2", "e3"]


@pytest.mark.timeout(20)
def test_entry_lookup_ranks_between_protection_and_entry_placements(
    pool: Callable[[int], Pool],
) -> None:
    p = pool(2)  # one thread for entries, one kept for protection
    p.exchange.gate("e1", "x1")
    p.workers.submit(entry("e1"))
    p.workers.submit(CancelOrder(KEY, "x1", OrderKind.STOP_LOSS))  # busy the reserved worker
    assert p.exchange.wait_started("e1", "x1")
    submit_all(
        p,
        entry("e2"),
        LookupOrder(KEY, "l1", OrderKind.ENTRY),
        entry("e3"),
        stop("s1"),
        LookupOrder(KEY, "l2", OrderKind.STOP_LOSS),
    )
    p.exchange.release("x1")
    # The freed worker takes protection first, then the entry lookup; the entry placements
    # stay queued because e1 holds the only thread entries may use.
    assert p.outcomes.wait_for("x1", "s1", "l2", "l1")
    started = p.exchange.snapshot()
    assert sorted(started[:2]) == ["e1", "x1"]  # started in parallel, in either order
    assert started[2:] == ["s1", "l2", "l1"]
    assert p.workers.in_flight == 3

    p.exchange.release("e1")
    assert p.outcomes.wait_for("e1", "e2", "e3")
    assert p.exchange.snapshot()[5:] == ["e2", "e3"]


@pytest.mark.timeout(20)
def test_equal_priorities_run_in_submission_order(pool: Callable[[int], Pool]) -> None:
    p = pool(1)
    p.exchange.gate("x0")
    p.workers.submit(CancelOrder(KEY, "x0", OrderKind.ENTRY))
    assert p.exchange.wait_started("x0")
    submit_all(
        p,
        entry("e1"),
        stop("s1"),
        entry("e2"),
        CancelOrder(KEY, "t1", OrderKind.STOP_LOSS),
        LookupOrder(KEY, "l1", OrderKind.ENTRY),
        entry("e3"),
        CancelOrder(KEY, "x1", OrderKind.STOP_LOSS),
        LookupOrder(KEY, "l2", OrderKind.ENTRY),
        place("c1", OrderKind.CLOSE),
        LookupOrder(KEY, "l3", OrderKind.CLOSE),
    )
    p.exchange.release("x0")
    expected = ["x0", "s1", "t1", "x1", "c1", "l3", "l1", "l2", "e1", "e2", "e3"]
    assert p.outcomes.wait_for(*expected)
    assert p.exchange.snapshot() == expected


# --- failures ------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_port_exception_becomes_an_unknown_outcome(pool: Callable[[int], Pool]) -> None:
    p = pool(1)
    p.exchange.raise_for = {"e1", "s1"}
    submit_all(p, entry("e1"), stop("s1"), LookupOrder(KEY, "l1", OrderKind.ENTRY))
    assert p.outcomes.wait_for("e1", "s1", "l1")
    got = p.outcomes.by_id()
    for cid, op, kind in (("e1", "place", OrderKind.ENTRY), ("s1", "place", OrderKind.STOP_LOSS)):
        assert (got[cid].op, got[cid].kind) == (op, kind)
        assert got[cid].result is CallResult.UNKNOWN
        assert got[cid].reason == "error:RuntimeError"
        assert got[cid].key == KEY
    assert got["l1"].result is CallResult.FOUND  # the worker survived the failures
    assert p.workers.drain(WAIT)
    assert p.workers.in_flight == 0


# --- shutdown and drain --------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_shutdown_answers_every_queued_call_and_leaves_no_thread(
    pool: Callable[[int], Pool],
) -> None:
    p = pool(2)
    p.exchange.gate("e1", "x1")
    p.workers.submit(entry("e1"))
    p.workers.submit(CancelOrder(KEY, "x1", OrderKind.CLOSE))
    assert p.exchange.wait_started("e1", "x1")
    queued = ["e2", "s1", "l1", "e3"]
    submit_all(p, entry("e2"), stop("s1"), LookupOrder(KEY, "l1", OrderKind.ENTRY), entry("e3"))
    assert p.workers.in_flight == 6

    t0 = time.monotonic()
    assert not p.workers.shutdown(0.3)  # both workers stay stuck past the bound
    assert time.monotonic() - t0 < WAIT
    got = p.outcomes.by_id()
    assert sorted(got) == sorted(queued)  # every queued call answered, none made
    for cid in queued:
        assert (got[cid].result, got[cid].reason) == (CallResult.UNKNOWN, "shutting_down")
    assert got["l1"].op == "lookup" and got["s1"].kind is OrderKind.STOP_LOSS
    assert sorted(p.exchange.snapshot()) == ["e1", "x1"]
    assert p.workers.in_flight == 2

    # Refused at once once shut down: answered before submit returns.
    p.workers.submit(stop("s2"))
    s2 = p.outcomes.by_id()["s2"]
    assert (s2.result, s2.reason) == (CallResult.UNKNOWN, "shutting_down")

    # The stuck calls still deliver when they come back; a second shutdown joins the threads.
    p.exchange.release("e1", "x1")
    assert p.outcomes.wait_for("e1", "x1")
    assert p.outcomes.by_id()["e1"].result is CallResult.ACCEPTED
    assert p.workers.shutdown(WAIT)
    assert p.workers.in_flight == 0
    assert xchg_threads() == []
    assert "e2" not in p.exchange.snapshot()


@pytest.mark.timeout(20)
def test_shutdown_lets_queued_calls_finish_within_the_bound(
    pool: Callable[[int], Pool],
) -> None:
    p = pool(1)
    p.exchange.gate("e1")
    p.workers.submit(entry("e1"))
    assert p.exchange.wait_started("e1")
    submit_all(p, entry("e2"), stop("s1"))
    result: list[bool] = []
    stopper = threading.Thread(target=lambda: result.append(p.workers.shutdown(WAIT)))
    stopper.start()
    p.exchange.release("e1")
    stopper.join(WAIT + 5)
    assert result == [True]
    got = p.outcomes.by_id()
    assert {c: got[c].result for c in ("e1", "e2", "s1")} == dict.fromkeys(
        ("e1", "e2", "s1"), CallResult.ACCEPTED
    )
    assert p.exchange.snapshot() == ["e1", "s1", "e2"]
    assert xchg_threads() == []


@pytest.mark.timeout(20)
def test_drain_waits_for_queued_calls(pool: Callable[[int], Pool]) -> None:
    p = pool(1)
    p.exchange.gate("e1", "e2")
    submit_all(p, entry("e1"), entry("e2"), entry("e3"))
    assert p.exchange.wait_started("e1")
    assert not p.workers.drain(0.05)
    assert p.workers.in_flight == 3

    drained = threading.Event()
    seen_at_return: list[int] = []

    def drain() -> None:
        assert p.workers.drain(WAIT)
        seen_at_return.append(len(p.outcomes.by_id()))
        drained.set()

    drainer = threading.Thread(target=drain)
    drainer.start()
    p.exchange.release("e1")
    assert p.exchange.wait_started("e2")
    # e1 is done and no call is running unblocked, but e2 runs and e3 is queued.
    assert not drained.is_set()
    assert p.workers.in_flight == 2
    p.exchange.release("e2")
    assert drained.wait(WAIT)
    drainer.join(WAIT)
    assert seen_at_return == [3]
    assert p.workers.in_flight == 0
    # drain does not stop intake
    p.workers.submit(stop("s1"))
    assert p.outcomes.wait_for("s1")


@pytest.mark.timeout(20)
def test_rejects_a_pool_without_workers() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        ExchangeWorkers(ACCOUNT, GatedExchange(), Outcomes(), 0)


@pytest.mark.timeout(20)
def test_a_newer_stop_of_the_position_takes_the_place_of_a_queued_one(
    pool: Callable[[int], Pool],
) -> None:
    """A trailing move queued behind the exchange's limits is superseded by the next one: the
    older placement is answered ``superseded`` without being sent, the newer keeps its turn
    (ahead of another position's stop queued after the older one)."""
    p = pool(1)
    p.exchange.gate("busy")
    other = PlaceOrder(
        Key(ACCOUNT, "ETHUSDT"),
        2,
        OrderRecord("o1", OrderKind.STOP_LOSS, "sell", 1.0, OrderState.INTENDED, 90.0),
    )
    submit_all(p, place("busy", OrderKind.CLOSE))
    assert p.exchange.wait_started("busy")
    submit_all(p, stop("s1"), other, stop("s2"))
    assert p.outcomes.wait_for("s1")
    s1 = p.outcomes.by_id()["s1"]
    assert (s1.result, s1.reason) == (CallResult.REJECTED, "superseded")
    assert s1.kind is OrderKind.STOP_LOSS
    p.exchange.release("busy")
    assert p.outcomes.wait_for("s2", "o1")
    assert p.exchange.snapshot() == ["busy", "s2", "o1"]
    assert p.workers.in_flight == 0
