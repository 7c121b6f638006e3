"""``restart_p99_ms``: an actor crashes; its successor, a new actor, handles the next message
with the position reloaded from PostgreSQL.

The product runs as shipped (``sim/`` in its own process, PostgreSQL) on open positions
written straight into the store and the sim (``bench/seed.py``). The crash is an exception
escaping the actor's message handling (raised from the app's metrics port, after a probe
message was handled), which stops the pykka actor; the probe sent right behind it was
queued in the dead actor's mailbox, is handed back to the router as the actor winds down,
and the supervisor starts a new actor for the key, which loads the position from
PostgreSQL (resolving it: ``Recover``) and handles the probe. From the raise to the end of
the successor's handling of the probe.

Also reported: the restart *in place* that an exception inside a transition gets (raised
from the store's commit): the same actor object reloads its state from PostgreSQL and
handles the message again.

Baseline: one pykka ``ask`` round trip (in a fresh interpreter of its own).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from actors.messages import OpenSignal, TimerFired, TimerId, TimerKind
from actors.model import Key, Side
from bench import baselines
from bench.harness import ACCOUNT, QUICK, Product, SimProc, wait_for
from bench.seed import seed
from bench.stats import Rep, Target, pct, summarise


class _Crash(RuntimeError):
    """The injected crash."""


def _metrics_class() -> Any:
    from infra.metrics import PrometheusMetrics

    class CrashingMetrics(PrometheusMetrics):
        """The app's metrics; raises once in ``handled`` on the armed actor's thread, then
        stamps the next ``TimerFired`` handled on another thread (the successor's probe)."""

        def __init__(self) -> None:
            super().__init__()
            self.armed: threading.Thread | None = None
            self.crashed_at = 0.0
            self.probe_at = 0.0
            self.done = threading.Event()

        def handled(self, message_type: str, seconds: float) -> None:
            super().handled(message_type, seconds)
            if message_type != "TimerFired" or self.armed is None:
                return
            me = threading.current_thread()
            if me is self.armed and not self.crashed_at:
                self.crashed_at = time.perf_counter()
                raise _Crash("injected")
            if self.crashed_at and me is not self.armed and not self.done.is_set():
                self.probe_at = time.perf_counter()
                self.done.set()

        def arm(self, thread: threading.Thread) -> None:
            self.crashed_at = 0.0
            self.done.clear()
            self.armed = thread

    return CrashingMetrics


class _FailingStore:
    """The app's store; the armed key's next commit raises (a crash inside a transition)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed: Key | None = None
        self.crashed_at = 0.0

    def commit(self, commit: Any) -> None:
        if self.armed is not None and commit.key == self.armed:
            self.armed = None
            self.crashed_at = time.perf_counter()
            raise _Crash("injected")
        self.inner.commit(commit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run(ctx: Any) -> dict[str, dict[str, Any]]:
    quick = ctx.quick or QUICK
    n = 10 if quick else 100
    reps: list[Rep] = []
    metrics = _metrics_class()()
    stores: list[_FailingStore] = []

    def wrap(store: Any) -> Any:
        f = _FailingStore(store)
        stores.append(f)
        return f

    # Each crash on a key of its own: a key that crashes again within the restart window is
    # restarted after a backoff, then quarantined, by design (the restart policy counts every
    # crash, also one that stops the pykka actor).
    total = 2 * n * ctx.repeat
    with SimProc(total, walk_interval_s=1.0, workdir=ctx.workdir) as sim, ctx.db.fresh() as dsn:
        from infra.store.postgres import PostgresStore

        st = PostgresStore(dsn)
        try:
            seeded = seed(st, sim, [(s, "active") for s in sim.symbols])
        finally:
            st.close()
        product = Product(sim, dsn, sim.symbols, ctx.workdir / "restart")
        product.metrics = metrics
        product.wrap_store = wrap
        product.start()
        sup = product.supervisor
        try:
            wait_for(
                lambda: sup.stats().by_status.get("active", 0) >= total, 120, "positions loaded"
            )
            keys = [x.key for x in seeded]
            for r in range(ctx.repeat):
                ask = baselines.isolated("ask", 200)
                lat: list[float] = []
                in_place: list[float] = []
                mine = keys[2 * n * r : 2 * n * (r + 1)]
                for a, b in zip(mine[0::2], mine[1::2], strict=True):
                    lat.append(_new_actor(product, metrics, a))
                    in_place.append(_in_place(product, stores[0], b))
                reps.append(
                    Rep(
                        pct(lat, 99),
                        {
                            "p50_ms": pct(lat, 50),
                            "p99_ms": pct(lat, 99),
                            "in_place_p50_ms": pct(in_place, 50),
                            "in_place_p99_ms": pct(in_place, 99),
                        },
                        {"ask_p50_ms": ask["p50_ms"], "ask_p99_ms": ask["p99_ms"]},
                        {"crashes": len(lat), "restarts": sup.stats().restarts},
                    )
                )
        finally:
            product.stop()
    return {
        "restart_p99_ms": summarise(
            "restart_p99_ms",
            "crash -> successor (a new actor) handling with its state reloaded from PostgreSQL",
            Target("p99 <= 20 ms", "<=", 20.0),
            reps,
            main="p99_ms",
            base="ask_p99_ms",
            unit="ms",
        )
    }


def _actor_thread(product: Product, key: Key) -> threading.Thread:
    """The thread of ``key``'s actor (asked on that thread)."""
    actor = product.actor(key)
    if actor is None:
        raise RuntimeError(f"no actor for {key}")
    actor.bench_thread = threading.current_thread  # runs on the actor's thread via the proxy
    thread: threading.Thread = actor.actor_ref.proxy().bench_thread().get(timeout=5)
    return thread


def _new_actor(product: Product, metrics: Any, key: Key) -> float:
    sup = product.supervisor
    old = sup._actors.get(key)
    metrics.arm(_actor_thread(product, key))
    sup.tell(TimerFired(key, TimerId(TimerKind.LOOKUP, "bench-probe")))  # handled, then the crash
    sup.tell(
        TimerFired(key, TimerId(TimerKind.LOOKUP, "bench-probe"))
    )  # queued behind it: the successor handles it
    if not metrics.done.wait(10):
        raise TimeoutError(f"no successor handled the probe for {key}")
    metrics.armed = None
    new = sup._actors.get(key)
    if new is None or new is old:
        raise RuntimeError(f"{key}: the successor is not a new actor")
    return float((metrics.probe_at - metrics.crashed_at) * 1e3)


def _in_place(product: Product, store: _FailingStore, key: Key) -> float:
    sup = product.supervisor
    done = threading.Event()
    sig = OpenSignal(key, f"dup-{time.monotonic_ns()}", "bench", Side.LONG, 1.0, 1.0)
    listener = _decided(key, sig.signal_id, done)
    sup.signal_listeners.append(listener)
    try:
        store.armed = key
        sup.tell(sig)  # refused (a position is open): its record is a commit -> crash
        if not done.wait(10):
            raise TimeoutError(f"no answer after the in-place restart of {key}")
        return float((listener.at - store.crashed_at) * 1e3)
    finally:
        sup.signal_listeners.remove(listener)


def _decided(key: Key, sid: str, done: threading.Event) -> Any:
    def listener(rec: Any) -> None:
        if rec.key == key and rec.signal_id == sid:
            listener.at = time.perf_counter()  # type: ignore[attr-defined]
            done.set()

    return listener


__all__ = ["ACCOUNT", "run"]
