"""Measurements of the sim with the real clients (not a test: run it by hand).

``.venv/bin/python -m tests.sim.measure [--orders 500] [--frames 100000] [--in-process]``

Prints: ccxt round trips (create_order, fetch_positions, load_markets with 650 symbols),
order → ORDER_TRADE_UPDATE latency through websocket-client, and the mark-price receive
rate of a websocket-client ``WebSocketApp`` (json.loads in on_message) with and without
``skip_utf8_validation``. By default the sim runs as ``python -m sim`` in a child process
(as in the demo), so client and server do not share a GIL; ``--in-process`` runs it in
this process, as the tests do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
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

from sim import SimExchange, make_symbols
from testkit.waiting import poll
from tests.sim.conftest import SYMBOL, make_ccxt

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Target:
    """A running sim, in this process or in a child process."""

    base_url: str
    ws_url: str
    sim: SimExchange | None

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=300) as resp:
            return json.loads(resp.read())

    def wait_subscribers(self, stream: str, n: int = 1) -> None:
        poll(
            lambda: self.control("GET", "/_sim/streams").get(stream, 0) >= n,
            10.0,
            stream,
            0.01,
            TimeoutError,
        )

    def blast(self, frames: int, symbols: list[str]) -> dict[str, float]:
        if self.sim is not None:
            return self.sim.blast_mark_prices(frames, symbols)
        result: dict[str, float] = self.control(
            "POST", "/_sim/blast", {"n_frames": frames, "symbols": symbols}
        )
        return result


@contextlib.contextmanager
def running(in_process: bool, symbols: str | None = None) -> Iterator[Target]:
    if in_process:
        with SimExchange(make_symbols(int(symbols[2:])) if symbols else None) as sim:
            yield Target(sim.base_url, sim.ws_url, sim)
        return
    cmd = [sys.executable, "-m", "sim", "--port", "0"] + (["--symbols", symbols] if symbols else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline().removeprefix("sim ready "))
        yield Target(urls["rest"], urls["ws"], None)
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1e3:.2f} ms, p99 {pct(values, 0.99) * 1e3:.2f} ms"


def measure_rest(n: int, in_process: bool) -> None:
    with running(in_process) as sim:
        client = make_ccxt(sim.base_url)
        client.load_markets()
        times: list[float] = []
        for i in range(n):
            side = "buy" if i % 2 == 0 else "sell"
            t0 = time.perf_counter()
            client.create_order(SYMBOL, "market", side, 0.001, params={"clientOrderId": f"m{i}"})
            times.append(time.perf_counter() - t0)
        print(f"ccxt create_order (market, RESULT), {n} orders: {ms(times)}")
        times = []
        for _ in range(n // 5):
            t0 = time.perf_counter()
            client.fetch_positions()
            times.append(time.perf_counter() - t0)
        print(f"ccxt fetch_positions: {ms(times)}")
        client.session.close()
    with running(in_process, "n:650") as sim:
        times = []
        for _ in range(5):
            client = make_ccxt(sim.base_url)
            t0 = time.perf_counter()
            client.load_markets()
            times.append(time.perf_counter() - t0)
            client.session.close()
        print(f"ccxt load_markets, 650 symbols: {ms(times)}")


def measure_user_stream(n: int, in_process: bool) -> None:
    with running(in_process) as sim:
        client = make_ccxt(sim.base_url)
        client.load_markets()
        key = client.fapiPrivatePostListenKey()["listenKey"]
        arrived: dict[str, float] = {}
        got = threading.Condition()

        def on_message(ws: Any, msg: str) -> None:
            ev = json.loads(msg)
            if ev.get("e") == "ORDER_TRADE_UPDATE" and ev["o"]["x"] == "NEW":
                with got:
                    arrived[ev["o"]["c"]] = time.perf_counter()
                    got.notify_all()

        app = websocket.WebSocketApp(f"{sim.ws_url}/ws/{key}", on_message=on_message)
        thread = threading.Thread(target=app.run_forever, kwargs={"ping_timeout": 0.2}, daemon=True)
        thread.start()
        sim.wait_subscribers(key)
        lat: list[float] = []
        for i in range(n):
            cid = f"u{i}"
            t0 = time.perf_counter()
            client.create_order(
                SYMBOL,
                "market",
                "buy" if i % 2 == 0 else "sell",
                0.001,
                params={"clientOrderId": cid},
            )
            with got:
                got.wait_for(lambda c=cid: c in arrived, 5)  # type: ignore[misc]
            lat.append(arrived[cid] - t0)
        print(f"order sent → ORDER_TRADE_UPDATE(NEW) handled by websocket-client: {ms(lat)}")
        app.close()
        thread.join(5)
        client.session.close()


def measure_ws_rate(frames: int, skip_utf8: bool, in_process: bool) -> None:
    with running(in_process) as sim:
        count = 0
        first = last = 0.0
        done = threading.Event()

        def on_message(ws: Any, msg: str) -> None:
            nonlocal count, first, last
            json.loads(msg)
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count == frames:
                last = time.perf_counter()
                done.set()

        app = websocket.WebSocketApp(f"{sim.ws_url}/ws/btcusdt@markPrice", on_message=on_message)
        thread = threading.Thread(
            target=app.run_forever,
            kwargs={"ping_timeout": 0.2, "skip_utf8_validation": skip_utf8},
            daemon=True,
        )
        thread.start()
        sim.wait_subscribers("btcusdt@markPrice")
        stats = sim.blast(frames, ["BTCUSDT"])
        done.wait(120)
        rate = (count - 1) / (last - first) if last > first else float("nan")
        print(
            f"websocket-client mark-price receive rate (skip_utf8_validation={skip_utf8}): "
            f"{rate:,.0f} msg/s over {count:,} frames "
            f"(server pushed {stats['rate']:,.0f} frames/s incl. drain)"
        )
        app.close()
        thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()
    where = "in this process" if args.in_process else "in a child process"
    print(f"sim running {where}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    measure_rest(args.orders, args.in_process)
    measure_user_stream(args.orders // 5, args.in_process)
    measure_ws_rate(args.frames, False, args.in_process)
    measure_ws_rate(args.frames, True, args.in_process)


if __name__ == "__main__":
    main()
