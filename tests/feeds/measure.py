"""``measure_ingest(n_frames, n_symbols)``: mark-price ingest rate next to websocket-client's raw
receive rate, in the same run, from the same sim (a measurement for ``bench/``, not a test).

    .venv/bin/python -m tests.feeds.measure [--frames 200000] [--symbols 100] [--in-process]

The sim runs as ``python -m sim`` in a child process by default (the exchange is another
process in production; sharing our GIL would slow both sides), or in this process with
``in_process=True``. Each round:

* **raw**: a bare ``websocket.WebSocketApp`` (``skip_utf8_validation=True``) on the same
  combined-stream URL counts frames in ``on_message`` and does nothing else;
* **ingest**: :class:`infra.feeds.MarkPriceFeed` parses each frame and tells the real
  :class:`~supervision.supervisor.Supervisor` (``tell_tick``, conflation) whose position
  actors (one per symbol, spawned and loaded before the clock starts; in-memory store) handle
  the ticks. The clock stops when every frame was parsed *and* an ``ask`` through every actor's
  mailbox returned, i.e. every tick was handled by its actor.

Both clocks start when the sim is asked to blast ``n_frames`` mark prices round-robin over the
symbols (as fast as the sim can write them; it waits for a reader that falls 20,000 frames
behind rather than dropping frames). Rates are ``n_frames / elapsed``; the best of ``rounds``
rounds of each is reported. Returns ``ingest_per_s``, ``raw_per_s``, ``ratio`` and details.
Everything it starts is stopped before it returns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

from actors.model import Key
from actors.ports import SystemClock
from actors.state import Policy
from infra.feeds import MarkPriceFeed
from sim import SimExchange, make_symbols
from supervision.supervisor import Supervisor, SupervisorConfig
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore
from testkit.waiting import poll
from testkit.world import CountingMetrics

__all__ = ["measure_ingest"]

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "bench"


@dataclass
class _Target:
    base_url: str
    ws_url: str
    sim: SimExchange | None

    def blast(self, frames: int, symbols: list[str]) -> dict[str, float]:
        if self.sim is not None:
            return self.sim.blast_mark_prices(frames, symbols)
        body = json.dumps({"n_frames": frames, "symbols": symbols}).encode()
        req = urllib.request.Request(self.base_url + "/_sim/blast", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=600) as resp:
            out: dict[str, float] = json.loads(resp.read())
        return out

    def subscribers(self, stream: str) -> int:
        if self.sim is not None:
            return self.sim.hub.count(stream)
        with urllib.request.urlopen(self.base_url + "/_sim/streams", timeout=10) as resp:
            counts: dict[str, int] = json.loads(resp.read())
        return counts.get(stream, 0)


@contextlib.contextmanager
def _running(in_process: bool, n_symbols: int) -> Iterator[_Target]:
    if in_process:
        with SimExchange(make_symbols(n_symbols)) as sim:
            yield _Target(sim.base_url, sim.ws_url, sim)
        return
    cmd = [sys.executable, "-m", "sim", "--port", "0", "--symbols", f"n:{n_symbols}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline().removeprefix("sim ready "))
        yield _Target(urls["rest"], urls["ws"], None)
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait(pred: Any, timeout: float, what: str) -> None:
    poll(pred, timeout, what, 0.002, TimeoutError)


def _blast_in_thread(
    target: _Target, n: int, symbols: list[str]
) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out.update(target.blast(n, symbols))
        except Exception as exc:  # reported by the caller
            out["error"] = repr(exc)

    t = threading.Thread(target=run, name="bench-blast", daemon=True)
    return t, out


def _raw_round(target: _Target, url: str, first_stream: str, n: int, symbols: list[str]) -> float:
    count = [0]
    done = threading.Event()

    def on_message(ws: Any, msg: Any) -> None:
        count[0] += 1
        if count[0] >= n:
            done.set()

    app = websocket.WebSocketApp(url, on_message=on_message)
    thread = threading.Thread(
        target=app.run_forever,
        kwargs={"ping_timeout": 0.2, "skip_utf8_validation": True},
        name="bench-raw",
        daemon=True,
    )
    thread.start()
    try:
        _wait(lambda: target.subscribers(first_stream) >= 1, 10, "raw client subscribed")
        blast, stats = _blast_in_thread(target, n, symbols)
        t0 = time.perf_counter()
        blast.start()
        if not done.wait(600):
            raise TimeoutError(f"raw client got {count[0]} of {n} frames")
        elapsed = time.perf_counter() - t0
        blast.join(60)
        if "error" in stats:
            raise RuntimeError(stats["error"])
        return n / elapsed
    finally:
        app.close()
        thread.join(5)


def _ingest_round(
    target: _Target, symbols: list[str], first_stream: str, n: int
) -> dict[str, float]:
    store = InMemoryStore()
    exchange = InMemoryExchange(ACCOUNT, dict.fromkeys(symbols, 100.0))
    exchange.stream = False
    metrics = CountingMetrics()
    sup = Supervisor(
        store,
        {ACCOUNT: exchange},
        SystemClock(),
        config=SupervisorConfig(policy=Policy()),
        metrics=metrics,
    )
    keys = [Key(ACCOUNT, s) for s in symbols]
    feed = MarkPriceFeed(target.ws_url, {ACCOUNT: symbols}, sup, silence_timeout_s=None)
    try:
        for k in keys:  # spawn and load every actor first: creation is not the steady state
            sup.state(k)
        handled_before = metrics.handled_n
        feed.start()
        if not feed.runner.wait_connected(1, 10):
            raise TimeoutError("feed did not connect")
        _wait(lambda: target.subscribers(first_stream) >= 1, 10, "feed subscribed")
        blast, stats = _blast_in_thread(target, n, symbols)
        t0 = time.perf_counter()
        blast.start()
        _wait(lambda: feed.ticks >= n and not feed.pending, 600, f"feed parsed {n} frames")
        for k in keys:  # barrier: an ask queues behind any tick wake-up still in the mailbox
            sup.state(k)
        elapsed = time.perf_counter() - t0
        blast.join(60)
        if "error" in stats:
            raise RuntimeError(stats["error"])
        return {
            "rate": n / elapsed,
            "wakeups": float(metrics.handled_n - handled_before),
            "sim_rate": float(stats.get("rate", 0.0)),
        }
    finally:
        feed.stop()
        sup.stop(grace_s=5.0)


def measure_ingest(
    n_frames: int, n_symbols: int = 100, *, in_process: bool = False, rounds: int = 2
) -> dict[str, float]:
    """Ticks/s from WebSocket frame to actor handled, and websocket-client's raw receive rate
    in the same run (see the module docstring). Keys: ``ingest_per_s``, ``raw_per_s``,
    ``ratio``, ``n_frames``, ``n_symbols``, ``actor_wakeups`` (ticks handled by actors after
    conflation, best ingest round), ``sim_in_process`` (1.0/0.0)."""
    symbols = sorted(make_symbols(n_symbols))
    raw_rates: list[float] = []
    ingest: list[dict[str, float]] = []
    with _running(in_process, n_symbols) as target:
        probe = MarkPriceFeed(target.ws_url, {ACCOUNT: symbols}, _NullSink())
        url = probe.url
        first_stream = (
            f"{symbols[0].lower()}@markPrice@1s" if "/stream?" in url else ("!markPrice@arr@1s")
        )
        for _ in range(rounds):
            raw_rates.append(_raw_round(target, url, first_stream, n_frames, symbols))
            ingest.append(_ingest_round(target, symbols, first_stream, n_frames))
    best = max(ingest, key=lambda r: r["rate"])
    raw = max(raw_rates)
    return {
        "ingest_per_s": best["rate"],
        "raw_per_s": raw,
        "ratio": best["rate"] / raw,
        "n_frames": float(n_frames),
        "n_symbols": float(n_symbols),
        "actor_wakeups": best["wakeups"],
        "sim_in_process": 1.0 if in_process else 0.0,
    }


class _NullSink:
    def tell(self, msg: Any) -> bool:
        return True

    def tell_tick(self, tick: Any) -> bool:
        return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=200_000)
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--in-process", action="store_true")
    args = p.parse_args()
    where = "in this process" if args.in_process else "in a child process"
    print(f"sim {where}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    r = measure_ingest(args.frames, args.symbols, in_process=args.in_process, rounds=args.rounds)
    print(
        f"ingest (frame -> actor handled): {r['ingest_per_s']:,.0f} ticks/s; "
        f"websocket-client raw receive: {r['raw_per_s']:,.0f} frames/s; "
        f"ratio {r['ratio']:.2f}; {r['n_frames']:,.0f} frames over {r['n_symbols']:.0f} symbols, "
        f"{r['actor_wakeups']:,.0f} actor wake-ups after conflation"
    )


if __name__ == "__main__":
    main()
