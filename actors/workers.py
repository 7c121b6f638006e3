"""The bounded per-account worker pool that runs exchange calls for the actors (I4, S6).

An actor never waits on the exchange: it hands an effect to :meth:`ExchangeWorkers.submit`
and returns to its mailbox. A worker thread makes the blocking call and the outcome comes back
to the actor as an :class:`~actors.messages.ExchangeOutcome` through ``deliver`` (the router,
so that an outcome reaches a restarted actor too).

Protection jumps the queue. Calls are not run first come, first served but by
``(priority, submission sequence)``:

* ``0`` — anything that reduces risk: placing a stop-loss, take-profit or close, every cancel,
  and lookups of non-entry orders;
* ``1`` — lookups of entry orders (resolving an entry of unknown outcome);
* ``2`` — placing an entry order.

Among equal priorities the order is FIFO. A stop-loss placement that has not started yet is
*superseded* by a newer one of the same position (a trailing move): the newer takes the older's
place in the queue (so a symbol whose stop keeps moving keeps its turn) and the older is
answered ``REJECTED`` ``superseded`` without being sent (the actor records it as replaced:
its newest stop is the one that matters). So when the exchange's order limits hold placements
back, every position's stop moves in turn, at most one placement per position waiting,
instead of a backlog of stale moves. Entry placements also may occupy at most
``max_workers - 1`` threads at once, so one worker is always free for protection even when
the exchange is slow and every entry takes seconds: a freshly filled position gets its stop
without waiting for the entry backlog. With ``max_workers == 1`` there is nothing to reserve:
the single worker runs entries too, and protection can only overtake the *queued* entries,
not the one being placed.

Fenced (I7): with a ``gate``, a call leaves only while this process holds the account's
lease. ``gate()`` returns the lease's epoch while the process may send for the account and
``None`` once it may not (its lease could not be renewed in time, or another process took
the account). It is asked when a call is submitted and again on the worker thread
immediately before the port call; a call is made only when the epoch is the one it was
submitted under. Otherwise it is dropped: no call, no outcome delivered (the actors of a
fenced account are being stopped; the next owner recovers from the database and the
exchange), counted as ``result="fenced"`` and logged.

What a call becomes (its priority, its port request, the message its reply becomes) is
:mod:`actors.exchange_calls`. Size: a little over 400 lines, one class: scheduling, the gate
and shutdown share one lock and one queue.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from actors import exchange_calls as calls
from actors.effects import CancelOrder, FetchMarket, PlaceOrder
from actors.messages import CallResult, Message
from actors.ports import (
    ExchangePort,
    MarketReply,
    Metrics,
    NullMetrics,
    OrderReply,
)

__all__ = ["CallQueue", "ExchangeWorkers"]

log = logging.getLogger(__name__)


@dataclass(order=True, slots=True)
class _Queued:
    """One accepted call waiting for a worker, ordered by ``(priority, seq)``."""

    priority: int
    seq: int
    effect: calls.ExchangeCall = field(compare=False)
    token: int = field(default=0, compare=False)


class CallQueue:
    """The pool's scheduling, without threads or locks: queued calls by ``(priority,
    submission)``, a queued stop-loss placement superseded by a newer one of the same
    position, entry placements on at most ``max_workers - 1`` workers (module docstring).

    Who calls: :class:`ExchangeWorkers` with its lock held, and the deterministic simulation
    (``testkit.dst``) on its one thread. Nothing here raises.
    """

    __slots__ = ("_heap", "_seq", "entry_limit", "running", "running_entries")

    def __init__(self, max_workers: int) -> None:
        # One worker stays free for protection; with a single worker there is none to spare.
        self.entry_limit = max_workers - 1 if max_workers > 1 else 1
        self._heap: list[_Queued] = []
        self._seq = itertools.count()
        self.running = 0  # calls being made right now
        self.running_entries = 0  # of which entry placements

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, effect: calls.ExchangeCall, token: int = 0) -> PlaceOrder | None:
        """Queue ``effect``; a stop-loss placement takes the place of a queued one of the same
        position instead, and the one it replaced is returned (answer it ``superseded``)."""
        if calls.is_stop(effect):
            assert isinstance(effect, PlaceOrder)
            for item in self._heap:
                old = item.effect
                if (
                    isinstance(old, PlaceOrder)
                    and calls.is_stop(old)
                    and old.key == effect.key
                    and old.position_id == effect.position_id
                ):
                    item.effect = effect
                    item.token = token
                    return old
        heapq.heappush(self._heap, _Queued(calls.priority(effect), next(self._seq), effect, token))
        return None

    def ready(self) -> bool:
        """Whether a free worker may start a call now: something is queued and it is not
        only entries the reservation keeps back (the head is the only candidate: the rest
        ranks after it)."""
        if not self._heap:
            return False
        return self._heap[0].priority != calls.ENTRY or self.running_entries < self.entry_limit

    def take(self) -> _Queued | None:
        """The next call a free worker may start (counted running), or None (:meth:`ready`)."""
        if not self.ready():
            return None
        head = heapq.heappop(self._heap)
        self.running += 1
        if head.priority == calls.ENTRY:
            self.running_entries += 1
        return head

    def done(self, item: _Queued) -> None:
        """A call :meth:`take` gave out has finished."""
        self.running -= 1
        if item.priority == calls.ENTRY:
            self.running_entries -= 1

    def clear(self) -> list[calls.ExchangeCall]:
        """Take every queued call out, in the order they would have run."""
        out = [q.effect for q in sorted(self._heap)]
        self._heap.clear()
        return out


class ExchangeWorkers:
    """Runs one account's exchange calls on at most ``max_workers`` threads, protection first.

    Who calls what:

    * :meth:`submit` is called on actor threads (any thread) and returns at once; it never
      blocks on the exchange and never raises for a call it cannot make.
    * ``deliver`` is called exactly once per submitted call: on a worker thread with the
      call's outcome, on the submitting thread when the pool is already shut down, or on the
      thread calling :meth:`shutdown` for a queued call that could not run before the bound.
    * :meth:`drain`, :meth:`shutdown` and :attr:`in_flight` may be called from any thread.

    On failure: an exception from the port (it should map errors itself) becomes an
    ``UNKNOWN`` outcome with reason ``error:<ExceptionType>``: the order may have reached the
    exchange, so the actor looks it up. An exception from ``deliver`` is logged and the worker
    goes on. A call the ``gate`` stops (see the module docstring) is dropped without an
    outcome; an exception from the gate counts as a closed gate. After :meth:`shutdown`
    nothing new is accepted: a submitted call is answered
    ``UNKNOWN`` with reason ``shutting_down`` so the actor keeps the order for recovery.

    Scheduling (see the module docstring): by ``(priority, submission sequence)``; entry
    placements hold at most ``max_workers - 1`` threads when ``max_workers > 1`` (no
    reservation with a single worker). Threads are named ``xchg-<account>-N``, started on
    demand up to ``max_workers`` and joined by :meth:`shutdown`.
    """

    def __init__(
        self,
        account: str,
        exchange: ExchangePort,
        deliver: Callable[[Message], object],
        max_workers: int = 4,
        metrics: Metrics | None = None,
        gate: Callable[[], int | None] | None = None,
    ) -> None:
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self.account = account
        self._gate = gate
        self.fenced_drops = 0  # calls the gate stopped (read by tests and metrics)
        self._last_drop_log = 0.0
        self._exchange = exchange
        self._deliver = deliver
        self._metrics = metrics or NullMetrics()
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # workers wait here for a runnable call
        self._idle = threading.Condition(self._lock)  # drain waits here for in_flight == 0
        self._queue = CallQueue(max_workers)  # the scheduling; guarded by the lock
        self._threads: list[threading.Thread] = []
        self._busy: set[threading.Thread] = set()  # threads in a call right now
        self._in_flight = 0  # queued + running
        self._submitted = 0  # accepted since start
        self._closed = False  # no new calls accepted
        self._stopped = False  # workers exit; nothing more is taken from the queue

    @property
    def exchange(self) -> ExchangePort:
        """The port the calls go to (read-only)."""
        return self._exchange

    @property
    def in_flight(self) -> int:
        """Calls accepted and not yet answered: queued plus running."""
        return self._in_flight

    @property
    def submitted(self) -> int:
        """Calls accepted since start (a counter that only grows: a test's progress mark)."""
        return self._submitted

    def submit(self, effect: calls.ExchangeCall) -> None:
        """Queue ``effect`` for a worker and return at once (any thread, usually an actor's).

        After :meth:`shutdown` the call is not made: ``UNKNOWN`` ``shutting_down`` is delivered
        on the calling thread before this returns. With the ``gate`` closed the call is
        dropped (module docstring).
        """
        token = self._token()
        if token is None:
            self._dropped(effect, "submitted while fenced")
            return
        superseded: PlaceOrder | None = None
        with self._lock:
            closed = self._closed
            if not closed:
                superseded = self._queue.push(effect, token)
            if superseded is None and not closed:
                self._in_flight += 1
                self._submitted += 1
                idle = len(self._threads) - self._queue.running
                if len(self._queue) > idle and len(self._threads) < self._max_workers:
                    self._start_worker()
                self._work.notify()
        if closed:
            self._deliver(calls.shutting_down(effect))
        if superseded is not None:
            self._deliver(calls.superseded(superseded))

    def _start_worker(self) -> None:
        """Start one more worker thread. Called with the lock held."""
        t = threading.Thread(
            target=self._worker,
            name=f"xchg-{self.account}-{len(self._threads)}",
        )
        try:
            t.start()
        except RuntimeError:  # out of threads: the ones running (if any) take the call later
            log.exception("%s: could not start an exchange worker", self.account)
            return
        self._threads.append(t)

    def _take(self) -> _Queued | None:
        """The next call this worker may run, or None to exit. Called with the lock held.

        Blocks while the queue is empty or only holds entries that the reservation keeps
        back; the heap's head is the only candidate, as everything else ranks after it.
        """
        while not self._stopped:
            head = self._queue.take()
            if head is not None:
                self._busy.add(threading.current_thread())
                return head
            self._work.wait()
        return None

    def _worker(self) -> None:
        """A worker thread's loop: take, call, deliver, until :meth:`shutdown` stops it."""
        while True:
            with self._lock:
                item = self._take()
            if item is None:
                return
            try:
                self._run(item.effect, item.token)
            except Exception:  # never lose a worker (and its reserved capacity)
                log.exception("exchange worker for %s failed", item.effect.key)
            finally:
                with self._lock:
                    self._queue.done(item)
                    self._busy.discard(threading.current_thread())
                    if item.priority == calls.ENTRY:
                        self._work.notify()  # an entry held back by the reservation may go
                    self._in_flight -= 1
                    if self._in_flight == 0:
                        self._idle.notify_all()

    def _token(self) -> int | None:
        """The gate's epoch (0 without a gate); ``None`` when calls may not leave."""
        if self._gate is None:
            return 0
        try:
            return self._gate()
        except Exception:
            log.exception("%s: the ownership gate failed; treated as closed", self.account)
            return None

    def _dropped(self, effect: calls.ExchangeCall, why: str) -> None:
        """A call the gate stopped: counted, logged (at most one WARNING a second)."""
        self.fenced_drops += 1
        try:
            if isinstance(effect, FetchMarket):
                self._metrics.exchange_call("market_fenced", 0.0)
            else:
                self._metrics.order(calls.order_kind(effect).value, calls.op(effect), "fenced")
        except Exception:
            log.exception("metrics failed for a fenced call of %s", effect.key)
        now = time.monotonic()
        level = logging.WARNING if now - self._last_drop_log >= 1.0 else logging.DEBUG
        if level == logging.WARNING:
            self._last_drop_log = now
        log.log(
            level,
            "%s not sent for %s: this process may not send for the account (%s; %d dropped)",
            type(effect).__name__,
            effect.key,
            why,
            self.fenced_drops,
        )

    def drop_queued(self) -> int:
        """Drop every queued call without making it or answering it (the account was fenced:
        the gate would stop them anyway). Calls running now are not touched. Returns how
        many were dropped. Any thread."""
        with self._lock:
            dropped = self._queue.clear()
            self._in_flight -= len(dropped)
            if self._in_flight == 0:
                self._idle.notify_all()
        for effect in dropped:
            self._dropped(effect, "queued when the account was fenced")
        return len(dropped)

    def _gone(self, effect: calls.ExchangeCall, token: int) -> bool:
        """The gate, asked immediately before the port call: True (and the call dropped)
        when the epoch ``effect`` was submitted under is no longer this process's."""
        if self._gate is None or self._token() == token:
            return False
        self._dropped(effect, "the lease it was submitted under is gone")
        return True

    def _run(self, effect: calls.ExchangeCall, token: int = 0) -> None:
        """Make one call on this worker thread and deliver its outcome (never raises); a
        call the gate stops is dropped (:meth:`_gone`)."""
        if isinstance(effect, FetchMarket):
            self._run_fetch_market(effect, token)
            return
        op = calls.op(effect)
        cid = calls.client_id(effect)
        t0 = time.perf_counter()
        try:
            if isinstance(effect, PlaceOrder):
                req = calls.order_request(effect)
                if self._gone(effect, token):
                    return
                reply = self._exchange.place_order(req)
            elif isinstance(effect, CancelOrder):
                if self._gone(effect, token):
                    return
                reply = self._exchange.cancel_order(effect.key, cid, effect.kind.trigger)
            else:
                if self._gone(effect, token):
                    return
                reply = self._exchange.lookup_order(effect.key, cid, effect.kind.trigger)
        except Exception as exc:  # the port should not raise; never lose the outcome
            log.exception("exchange %s for %s raised", op, effect.key)
            reply = OrderReply(CallResult.UNKNOWN, f"error:{type(exc).__name__}")
        try:
            self._metrics.order(calls.order_kind(effect).value, op, reply.result.value)
            self._metrics.exchange_call(op, time.perf_counter() - t0)
        except Exception:
            log.exception("metrics failed for %s %s", op, effect.key)
        try:
            self._deliver(calls.order_outcome(effect, reply))
        except Exception:
            log.exception("could not deliver %s outcome for %s", op, effect.key)

    def _run_fetch_market(self, effect: FetchMarket, token: int) -> None:
        t0 = time.perf_counter()
        try:
            if self._gone(effect, token):
                return
            reply = self._exchange.fetch_market(effect.key)
        except Exception as exc:  # the port should not raise; never lose the answer
            log.exception("exchange fetch_market for %s raised", effect.key)
            reply = MarketReply(CallResult.UNKNOWN, reason=f"error:{type(exc).__name__}")
        try:
            self._metrics.exchange_call("market", time.perf_counter() - t0)
        except Exception:
            log.exception("metrics failed for fetch_market %s", effect.key)
        try:
            self._deliver(calls.market_info(effect, reply))
        except Exception:
            log.exception("could not deliver fetch_market outcome for %s", effect.key)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for queued and running calls to finish.

        True if none is left. Does not stop intake: calls submitted meanwhile are waited for.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Refuse new calls, let queued and running ones finish (bounded), stop the threads.

        Calls still queued when ``timeout`` is up are not made: each is answered ``UNKNOWN``
        ``shutting_down`` on this thread (never dropped), so the actor keeps the order for
        recovery. Idle threads are joined; a thread stuck in an exchange call is waited for
        until the bound only, and delivers its outcome whenever the call returns.

        Returns True when every call finished within the bound and every thread is joined.
        Safe to call more than once.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            finished = self._in_flight == 0
            # Stop at once, under the same lock: no queued call starts after the bound.
            self._stopped = True
            leftover = self._queue.clear()
            self._work.notify_all()
            busy = set(self._busy)
            threads = list(self._threads)
        for effect in leftover:
            try:
                self._deliver(calls.shutting_down(effect))
            except Exception:
                log.exception("could not deliver shutting_down for %s", effect.key)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    if self._in_flight == 0:
                        self._idle.notify_all()
        if leftover:
            log.warning(
                "%s: %d queued exchange calls answered shutting_down", self.account, len(leftover)
            )
        me = threading.current_thread()
        for t in threads:
            if t is me:  # shutdown from a deliver callback: this thread ends on its own
                continue
            if t in busy:  # in an exchange call: wait for it until the bound only
                t.join(max(0.0, deadline - time.monotonic()))
            else:  # idle, and it will take nothing more now: it exits at once
                t.join()
        alive = [t for t in threads if t.is_alive() and t is not me]
        if alive:
            log.warning("%s: %d exchange calls still running at shutdown", self.account, len(alive))
        with self._lock:
            self._threads = alive
        return finished and not alive
