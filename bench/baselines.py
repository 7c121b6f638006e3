"""The floors the figures are compared with, measured in the same run.

Generators here sleep between sends (``threading.Event().wait``), never spin, so the
measured process is not starved by its own pacer.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pykka


class BareActor(pykka.ThreadingActor):
    """The floor of an actor: records ``perf_counter() - stamp`` for each float message."""

    def __init__(self, sink: list[float] | None, counter: list[int]) -> None:
        super().__init__()
        self.sink = sink
        self.counter = counter

    def on_receive(self, message: Any) -> Any:
        if self.sink is not None and isinstance(message, float):
            self.sink.append(time.perf_counter() - message)
        self.counter[0] += 1  # one writer per actor thread; the GIL makes += good enough here
        return None


def stop_refs(refs: list[pykka.ActorRef[Any]]) -> None:
    for r in refs:
        with contextlib.suppress(pykka.ActorDeadError):
            r.stop(block=False)
    for r in refs:
        r.actor_stopped.wait(10)


def paced(n: int, rate: float, send: Callable[[int], object]) -> float:
    """Call ``send(i)`` for i in range(n) at ``rate`` a second from this thread, sleeping
    until each is due (a late one is sent at once, never spun for). Returns the seconds."""
    t0 = time.perf_counter()
    ev = threading.Event()
    for i in range(n):
        d = t0 + i / rate - time.perf_counter()
        if d > 0:
            ev.wait(d)
        send(i)
    return time.perf_counter() - t0


def pykka_latency(n_actors: int, rate: float, n: int) -> list[float]:
    """Bare pykka ``tell`` -> ``on_receive`` latencies (s) at ``rate`` over ``n_actors``
    actors, round robin, from a sleeping generator."""
    lat: list[float] = []
    count = [0]
    refs = [BareActor.start(lat, count) for _ in range(n_actors)]
    try:
        paced(n, rate, lambda i: refs[i % n_actors].tell(time.perf_counter()))
        deadline = time.monotonic() + 30
        while count[0] < n and time.monotonic() < deadline:
            threading.Event().wait(0.005)
    finally:
        stop_refs(refs)
    return lat


def pykka_throughput(n_actors: int, n: int, batch: int = 500) -> float:
    """Messages/s handled by ``n_actors`` bare actors fed round robin by one generator that
    tells in batches and yields (sleeps 0.5 ms) between them: the rate at which the actor
    threads drain, not the rate of a spinning sender."""
    count = [0]
    refs = [BareActor.start(None, count) for _ in range(n_actors)]
    ev = threading.Event()
    try:
        for r in refs:  # every thread started and idle
            r.ask(1.0)
        count[0] = 0
        t0 = time.perf_counter()
        i = 0
        while i < n:
            for _ in range(min(batch, n - i)):
                refs[i % n_actors].tell(1)
                i += 1
            ev.wait(0.0005)
        deadline = time.monotonic() + 60
        while count[0] < n and time.monotonic() < deadline:
            ev.wait(0.001)
        elapsed = time.perf_counter() - t0
    finally:
        stop_refs(refs)
    return count[0] / elapsed


def ask_latency(n: int) -> list[float]:
    """One pykka ``ask`` round trip (s), ``n`` times, on one idle actor."""
    ref = BareActor.start(None, [0])
    out: list[float] = []
    try:
        for _ in range(20):
            ref.ask(1.0)
        for _ in range(n):
            t0 = time.perf_counter()
            ref.ask(1.0)
            out.append(time.perf_counter() - t0)
    finally:
        stop_refs([ref])
    return out


def bare_start(n: int) -> float:
    """Seconds to start ``n`` bare pykka actors (each thread running)."""
    t0 = time.perf_counter()
    refs = [BareActor.start(None, [0]) for _ in range(n)]
    for r in refs:
        r.ask(1.0)
    elapsed = time.perf_counter() - t0
    stop_refs(refs)
    return elapsed


def insert_commit_paced(dsn: str, rate: float, n: int) -> list[float]:
    """INSERT + COMMIT latencies (s) on one connection at ``rate`` a second (sleeping)."""
    import psycopg

    out: list[float] = []
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (id bigserial primary key, v text)")
        conn.commit()

        def one(_: int) -> None:
            t0 = time.perf_counter()
            conn.execute("INSERT INTO bench_commit (v) VALUES (%s)", ("x",))
            conn.commit()
            out.append(time.perf_counter() - t0)

        paced(n, rate, one)
    return out


def insert_commit_rate(dsn: str, seconds: float, connections: int = 8) -> float:
    """INSERT + COMMIT per second, ``connections`` threads on a pool of as many."""
    from psycopg_pool import ConnectionPool

    with ConnectionPool(dsn, min_size=connections, max_size=connections, open=True) as pool:
        with pool.connection() as c:
            c.execute("CREATE TABLE IF NOT EXISTS bench_rate (id bigserial primary key, v text)")
        stop = time.monotonic() + seconds
        counts = [0] * connections

        def work(i: int) -> None:
            while time.monotonic() < stop:
                with pool.connection() as conn:
                    conn.execute("INSERT INTO bench_rate (v) VALUES (%s)", ("x",))
                counts[i] += 1

        t0 = time.perf_counter()
        with ThreadPoolExecutor(connections) as ex:
            list(ex.map(work, range(connections)))
        elapsed = time.perf_counter() - t0
    return sum(counts) / elapsed


def isolated(kind: str, *args: float) -> dict[str, float]:
    """A floor measured in a fresh interpreter of its own (``python -m bench.baselines``):
    nothing of the product runs beside it (its background threads would disturb the floor).
    ``latency`` (n_actors, rate, n) and ``ask`` (n): p50 / p99 in ms."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    p = subprocess.run(
        [sys.executable, "-m", "bench.baselines", kind, *(str(a) for a in args)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if p.returncode != 0:
        raise RuntimeError(f"baseline {kind} failed: {p.stderr.strip()[-500:]}")
    out: dict[str, float] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def _main(argv: list[str]) -> dict[str, float]:
    from bench.stats import pct

    kind = argv[0]
    if kind == "latency":
        lat = pykka_latency(int(argv[1]), float(argv[2]), int(argv[3]))
    elif kind == "ask":
        lat = ask_latency(int(argv[1]))
    else:
        raise SystemExit(f"unknown baseline {kind!r}")
    ms = [x * 1e3 for x in lat]
    return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "n": float(len(ms))}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(_main(sys.argv[1:])))
