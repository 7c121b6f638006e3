"""Measurements of the Bybit front with the real clients (not a test: run it by hand).

``.venv/bin/python -m tests.sim.bybit.measure [--orders 200] [--frames 20000]``

Prints, for the Bybit front and (for comparison, same conditions) Binance's: the ccxt
``create_order`` and ``fetch_positions`` round trips, ``load_markets`` with 650 symbols, the
order → private-stream message latency through websocket-client, and the rate of a
mark-price blast to one websocket-client subscriber. The sims run in this process (as in
the tests): client and server share a GIL, so the figures are upper bounds of the cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

import websocket

from sim import SimExchange, make_symbols
from sim.bybit import BybitExchange, sign
from tests.sim.bybit.conftest import make_bybit_ccxt
from tests.sim.conftest import SYMBOL, make_ccxt


def _median_ms(fn: Any, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times) * 1000, times[int(n * 0.9)] * 1000


def _round_trips(name: str, client: Any, n: int) -> None:
    side = ("buy", "sell")
    create = _median_ms(lambda i: client.create_order(SYMBOL, "market", side[i % 2], 0.001), n)
    positions = _median_ms(lambda i: client.fetch_positions(), n)
    print(
        f"{name}: create_order median {create[0]:.2f} ms (p90 {create[1]:.2f}),"
        f" fetch_positions median {positions[0]:.2f} ms"
    )


def _load_markets(name: str, make: Any) -> None:
    client = make()
    try:
        t0 = time.perf_counter()
        client.load_markets()
        print(
            f"{name}: load_markets with {len(client.markets)} symbols"
            f" {(time.perf_counter() - t0) * 1000:.0f} ms"
        )
    finally:
        client.session.close()


class _Reader:
    """A websocket-client app on a thread; ``stamp`` records when each message arrived."""

    def __init__(self, url: str, first: list[str]) -> None:
        self.arrivals: list[tuple[float, Any]] = []
        self.arrived = threading.Condition()  # notified on each message
        self.ready = threading.Event()
        self.first = first

        def on_open(ws: Any) -> None:
            for frame in self.first:
                ws.send(frame)

        def on_message(ws: Any, msg: str) -> None:
            data = json.loads(msg)
            with self.arrived:
                self.arrivals.append((time.perf_counter(), data))
                self.arrived.notify_all()
            if data.get("op") == "subscribe":
                self.ready.set()

        self.app = websocket.WebSocketApp(url, on_open=on_open, on_message=on_message)
        self.thread = threading.Thread(
            target=self.app.run_forever, kwargs={"ping_timeout": 0.2}, daemon=True
        )
        self.thread.start()

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Wait until ``predicate()`` holds after a message arrived (or ``timeout`` s)."""
        with self.arrived:
            return bool(self.arrived.wait_for(predicate, timeout))

    def close(self) -> None:
        self.app.close()
        self.thread.join(5)


def _stream_latency(ex: BybitExchange, client: Any, n: int) -> None:
    expires = str(int(time.time() * 1000) + 60_000)
    auth = json.dumps(
        {"op": "auth", "args": ["m", expires, sign("sim-secret", "GET/realtime" + expires)]}
    )
    reader = _Reader(
        f"{ex.ws_url}/v5/private", [auth, json.dumps({"op": "subscribe", "args": ["execution"]})]
    )
    try:
        assert reader.ready.wait(5)
        lat = []
        for i in range(n):
            before = len(reader.arrivals)
            t0 = time.perf_counter()
            client.create_order(SYMBOL, "market", ("buy", "sell")[i % 2], 0.001)
            reader.wait_for(lambda n=before: len(reader.arrivals) > n, 5)
            lat.append(reader.arrivals[before][0] - t0)
        print(f"bybit: order -> execution message median {statistics.median(lat) * 1000:.2f} ms")
    finally:
        reader.close()


def _blast(name: str, ex: SimExchange, url: str, first: list[str], frames: int) -> None:
    reader = _Reader(url, first)
    try:
        if first:
            assert reader.ready.wait(5)
        else:
            assert ex.wait_for_subscribers("btcusdt@markPrice")
        stats = ex.blast_mark_prices(frames, ["BTCUSDT"], step_pct=0.0001)

        def received() -> int:
            return sum(
                1
                for _, d in list(reader.arrivals)
                if d.get("type") == "delta" or d.get("e") == "markPriceUpdate"
            )

        reader.wait_for(lambda: received() >= frames, 30)
        print(
            f"{name}: blast of {frames} frames {stats['rate']:.0f} frames/s sent,"
            f" {received()} received"
        )
    finally:
        reader.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--orders", type=int, default=200)
    p.add_argument("--frames", type=int, default=20_000)
    args = p.parse_args()
    with BybitExchange() as by, SimExchange() as bn:
        bc = make_bybit_ccxt(by.base_url, "m", "sim-secret")
        nc = make_ccxt(bn.base_url)
        bc.load_markets()
        nc.load_markets()
        _round_trips("bybit", bc, args.orders)
        _round_trips("binance", nc, args.orders)
        _stream_latency(by, bc, args.orders)
        _blast(
            "bybit",
            by,
            f"{by.ws_url}/v5/public/linear",
            [json.dumps({"op": "subscribe", "args": ["tickers.BTCUSDT"]})],
            args.frames,
        )
        _blast("binance", bn, f"{bn.ws_url}/ws/btcusdt@markPrice", [], args.frames)
        bc.session.close()
        nc.session.close()
    many = make_symbols(650)
    with BybitExchange(many) as by, SimExchange(many) as bn:
        _load_markets("bybit", lambda: make_bybit_ccxt(by.base_url, "m", "sim-secret"))
        _load_markets("binance", lambda: make_ccxt(bn.base_url))


if __name__ == "__main__":
    main()
