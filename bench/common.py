"""Shared helpers for the benchmarks: quick mode, percentiles, pacing, bare pykka actors."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

QUICK = os.environ.get("QUICK", "0") not in ("", "0")


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    i = min(len(s) - 1, max(0, round(p / 100.0 * (len(s) - 1))))
    return s[i]


def paced(n: int, rate: float, send: Callable[[int], object]) -> float:
    """Call ``send(i)`` for i in range(n) at ``rate`` per second (spin + short sleeps)."""
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        while True:
            d = due - time.perf_counter()
            if d <= 0:
                break
            if d > 0.0005:
                time.sleep(d - 0.0003)
        send(i)
    return time.perf_counter() - t0


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


class BareActor(pykka.ThreadingActor):
    """The floor: records perf_counter() - sent stamp for each (stamp,) message."""

    def __init__(self, sink: list[float] | None, counter: list[int]) -> None:
        super().__init__()
        self.sink = sink
        self.counter = counter

    def on_receive(self, message: Any) -> Any:
        if self.sink is not None and isinstance(message, float):
            self.sink.append(time.perf_counter() - message)
        self.counter[0] += 1  # GIL makes this good enough for a count
        return None


def stop_refs(refs: list[pykka.ActorRef[Any]]) -> None:
    for r in refs:
        with contextlib.suppress(pykka.ActorDeadError):
            r.stop(block=False)
    for r in refs:
        r.actor_stopped.wait(5)


def no_threads_left(timeout: float = 5.0) -> int:
    """Wait for benchmark threads to go; returns how many non-daemon threads remain."""
    pykka.ActorRegistry.stop_all(block=True, timeout=timeout)
    main = threading.main_thread()
    wait_until(
        lambda: not [t for t in threading.enumerate() if t is not main and not t.daemon],
        timeout,
    )
    return len([t for t in threading.enumerate() if t is not main and not t.daemon])


def fig(
    name: str,
    value: float | None,
    unit: str,
    baseline: float | None,
    bunit: str,
    ratio: float | None,
    target: str,
    met: bool | None,
) -> str:
    v = "n/a" if value is None else f"{value:.4g} {unit}"
    b = "n/a" if baseline is None else f"{baseline:.4g} {bunit}"
    r = "n/a" if ratio is None else f"{ratio:.3g}x"
    m = "n/a" if met is None else ("met" if met else "NOT met")
    line = f"{name}: {v} | baseline {b} | ratio {r} | target {target} | {m}"
    print(line, flush=True)
    return line
