"""PostgreSQL frozen (SIGSTOP) under a running supervisor (real store, ccxt, sim).

While it is frozen: a signal is refused ``store_unavailable`` within the store's bound (not
decided when the server wakes, 20 s later) and its entry never reaches the exchange, neither
then nor after; the open position keeps its stop, its actor keeps handling ticks, and a
close goes ahead. After: the writes held back land once, no actor crashed on a write that
landed behind its back, and entries start again.

And the one window no client can close: an entry intent whose COMMIT was sent but not
answered within the bound is refused, then lands; the actor's recovery fails it (its entry
order looked up by client id, not found) and never sends it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from actors.messages import CloseRequest, MarkPriceTick, OpenSignal
from actors.model import CloseReason, Key, OrderKind, Side, Status
from actors.ports import SystemClock
from actors.state import Policy, Position, Reentry, SignalOutcome, SignalRecord
from infra.exchange import CcxtExchange, VenueConfig
from infra.store import EmbeddedPostgres, PostgresStore
from sim import SimExchange
from supervision.restart import RestartPolicy
from supervision.supervisor import Supervisor, SupervisorConfig
from testkit import pg
from testkit.waiting import poll
from tests.store.test_hang import slow_commit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ACCOUNT = "main"
BTC = Key(ACCOUNT, "BTCUSDT")
ETH = Key(ACCOUNT, "ETHUSDT")
BOUND = 2.0  # the store's default deadline
SLACK = 0.75  # routing, the actor, scheduling on a shared 2-core machine
FREEZE_S = 6.0


class Answers:
    """Signal outcomes as the supervisor reports them, with the time each came (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[SignalRecord, float]] = {}

    def __call__(self, record: SignalRecord) -> None:
        with self._lock:
            self._seen.setdefault(record.signal_id, (record, time.monotonic()))

    def get(self, signal_id: str) -> tuple[SignalRecord, float] | None:
        with self._lock:
            return self._seen.get(signal_id)


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    with SimExchange({"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}, seed=3) as s:
        yield s


@pytest.fixture
def exchange(sim: SimExchange) -> Iterator[CcxtExchange]:
    ex = CcxtExchange(
        ACCOUNT,
        VenueConfig(base_url=sim.base_url, require_credentials=False, enable_rate_limit=False),
    )
    try:
        yield ex
    finally:
        ex.close()


def _supervisor(store: PostgresStore, exchange: CcxtExchange, policy: Policy) -> Supervisor:
    return Supervisor(
        store,
        {ACCOUNT: exchange},
        SystemClock(),
        config=SupervisorConfig(
            policy=policy,
            shutdown_grace_s=2.0,
            restart=RestartPolicy(max_restarts=3, window_s=60.0, min_backoff_s=0.05),
        ),
    )


def _until(cond: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    poll(cond, timeout, what, interval=0.02)


def _active(sup: Supervisor, key: Key) -> bool:
    p = sup.state(key).position
    return p is not None and p.status is Status.ACTIVE and p.stop_confirmed


def _positions(store: PostgresStore, key: Key) -> list[Position]:
    return [p for p in store.positions(ACCOUNT) if p.key == key]


def _readable(store: PostgresStore, key: Key) -> list[Position] | None:
    try:
        return _positions(store, key)
    except Exception:
        return None


def test_a_signal_while_frozen_is_refused_within_the_bound_and_never_entered(
    pg_private: tuple[EmbeddedPostgres, str], sim: SimExchange, exchange: CcxtExchange
) -> None:
    server, dsn = pg_private
    store = PostgresStore(dsn, migrate_schema=False, pool_max=4)
    sup = _supervisor(store, exchange, Policy(reentry=Reentry.ALLOW))
    answers = Answers()
    sup.signal_listeners.append(answers)
    sup.start()
    try:
        sup.tell(OpenSignal(BTC, "btc-1", "sniper", Side.LONG, 0.01, 58_000.0))
        _until(lambda: _active(sup, BTC), "BTC protected")
        # ETH's actor is up (loaded) before the freeze: the signal meets it, not a load.
        sup.tell_tick(MarkPriceTick(ETH, 3_000.0, time.time()))
        _until(lambda: sup.state(ETH).last_price == 3_000.0, "ETH actor loaded")

        def eth_orders() -> list[str]:
            return [e.client_id for e in sim.order_log() if e.symbol == "ETHUSDT"]

        with pg.frozen(server):
            t0 = time.monotonic()
            sup.tell(OpenSignal(ETH, "eth-1", "sniper", Side.LONG, 0.1, 2_900.0))
            rec, at = poll(
                lambda: answers.get("eth-1"), BOUND + SLACK, "eth-1 answered while frozen"
            )
            assert (rec.outcome, rec.reason) == (SignalOutcome.REJECTED, "store_unavailable")
            assert at - t0 <= BOUND + SLACK
            # The open position keeps its stop; its actor handles ticks.
            assert any(o.kind == "algo" and o.symbol == "BTCUSDT" for o in sim.open_orders())
            sup.tell_tick(MarkPriceTick(BTC, 60_123.0, time.time()))
            _until(
                lambda: sup.state(BTC).last_price == 60_123.0,
                "tick handled while frozen",
                timeout=BOUND + SLACK,
            )
            # A close goes ahead although it cannot be written now.
            sup.tell(CloseRequest(BTC, CloseReason.MANUAL, "operator"))
            _until(lambda: "BTCUSDT" not in sim.positions(), "closed on the exchange, frozen")

            def frozen_long_enough() -> bool:
                assert not eth_orders(), f"an ETH order left while frozen: {eth_orders()}"
                return time.monotonic() - t0 >= FREEZE_S

            poll(frozen_long_enough, FREEZE_S + 10, "the freeze to last")

        # Resumed: the close is written once; nothing written before is lost.
        _until(
            lambda: [p.status for p in _readable(store, BTC) or []] == [Status.CLOSED],
            "the close written once the database runs again",
            timeout=30,
        )
        # eth-1 opens nothing after the freeze either; a new signal opens normally.
        sup.tell(OpenSignal(ETH, "eth-2", "sniper", Side.LONG, 0.1, 2_900.0))
        _until(lambda: _active(sup, ETH), "ETH protected after the freeze", timeout=30)
        eth = _positions(store, ETH)
        assert [p.signal_id for p in eth] == ["eth-2"]
        assert set(eth_orders()) <= {o.client_id for o in eth[0].orders}
        assert [o.kind for o in eth[0].orders].count(OrderKind.ENTRY) == 1
        # No write abandoned during the freeze landed behind an actor's back (a retried
        # write would then be stale, and its actor would have crashed and restarted).
        assert sup.stats().restarts == 0
    finally:
        sup.stop(grace_s=2.0)
        store.close()


def test_an_entry_intent_that_lands_after_its_refusal_is_failed_by_recovery_never_sent(
    pg_private: tuple[EmbeddedPostgres, str], sim: SimExchange, exchange: CcxtExchange
) -> None:
    _, dsn = pg_private
    slow_commit(dsn)  # the COMMIT of a "slow-commit…" signal's intent takes 1.5 s
    store = PostgresStore(dsn, migrate_schema=False, pool_max=4, deadline=1.0)
    policy = Policy(reentry=Reentry.ALLOW, lookup_delay_s=0.1, lookup_deadline_s=1.0)
    sup = _supervisor(store, exchange, policy)
    answers = Answers()
    sup.signal_listeners.append(answers)
    sup.start()
    try:
        sup.tell(OpenSignal(ETH, "slow-commit-eth", "sniper", Side.LONG, 0.1, 2_900.0))
        rec, _ = poll(lambda: answers.get("slow-commit-eth"), 1.0 + SLACK, "refused in time")
        assert (rec.outcome, rec.reason) == (SignalOutcome.REJECTED, "store_unavailable")
        # ... and yet its COMMIT lands: a pending entry whose order was never sent.
        _until(
            lambda: [p.status for p in _readable(store, ETH) or []] == [Status.PENDING_ENTRY],
            "the unanswered COMMIT to land",
        )
        (orphan,) = _positions(store, ETH)
        entry = orphan.latest(OrderKind.ENTRY)
        assert entry is not None

        # The actor's next entry meets it (one open position per symbol): the actor reloads,
        # looks the entry up by its client id, does not find it, and fails the position.
        sup.tell(OpenSignal(ETH, "eth-2", "sniper", Side.LONG, 0.1, 2_900.0))

        def orphan_failed() -> bool:
            found = [p for p in _readable(store, ETH) or [] if p.id == orphan.id]
            return bool(found) and found[0].status is Status.FAILED

        _until(orphan_failed, "the landed intent failed by recovery", timeout=30)
        (failed,) = [p for p in _positions(store, ETH) if p.id == orphan.id]
        assert failed.fail_reason == "entry_not_found"
        assert sim.orders_sent(entry.client_id) == 0
        # Entries go on.
        sup.tell(OpenSignal(ETH, "eth-3", "sniper", Side.LONG, 0.1, 2_900.0))
        _until(lambda: _active(sup, ETH), "ETH protected after the recovery", timeout=30)
        assert sim.orders_sent(entry.client_id) == 0
        opened = [p for p in _positions(store, ETH) if p.qty > 0]
        assert len(opened) == 1 and opened[0].signal_id in ("eth-2", "eth-3")
    finally:
        sup.stop(grace_s=2.0)
        store.close()
