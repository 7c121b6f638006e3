"""Tick throughput: ``tick_throughput_ratio`` (the product as shipped) and
``band_off_throughput_ratio`` (every tick through an actor).

1,000 open positions (700 with a fixed stop, 300 trailing at 1 % of the entry) are written
into PostgreSQL and the sim (``bench/seed.py``), the product starts on them as shipped, and
the sim (its own process) sends mark prices as fast as the reader takes them (``/_sim/blast``
on ``!markPrice@arr@1s``, one symbol a frame, round robin, a random walk of 0.05 % a frame;
the sim slows down for a reader 20,000 frames behind, it never drops one). The rate is the
frames the product's mark-price feed read, divided by the time from the first frame read
until the last was read *and* every actor woken by the ticks had handled them (no slot
holds a tick that still waits for its actor). Reported: the share of ticks that woke an
actor (a tick inside the actor's band is parked, see the README), and the trailing moves the
ticks caused.

Baselines, same run, a second sim process of the same build blasting the same frames:
the product's own reader (``ReconnectingWebSocket`` with a handler that does nothing) and
websocket-client's ``WebSocketApp`` (``on_message`` counts). The target is against the first.

Band off: the same, with every actor's band switched off (the bench replaces each tick slot
by one whose band is always "none", before the first tick): every tick not conflated behind
a pending wake-up goes through its actor. Baseline: bare pykka actors, 1,000, fed round robin
by one generator that yields between batches.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import websocket

from actors.conflation import TickSlot
from actors.model import Key
from bench import baselines
from bench.harness import ACCOUNT, QUICK, Product, SimProc, wait_for
from bench.seed import seed
from bench.stats import Rep, Target, summarise

N_POSITIONS = 1000
TRAILING = 300


class NoBandSlot(TickSlot):
    """A tick slot whose band is always "none": every tick wakes its actor (bench only)."""

    __slots__ = ()

    def set_band(self, band: tuple[float, float] | None) -> bool:
        return super().set_band(None)


def _metrics() -> Any:
    from infra.metrics import PrometheusMetrics

    class Counting(PrometheusMetrics):
        """The app's metrics, counting the ticks the actors handled."""

        def __init__(self) -> None:
            super().__init__()
            self.ticks = 0

        def handled(self, message_type: str, seconds: float) -> None:
            super().handled(message_type, seconds)
            if message_type == "MarkPriceTick":
                self.ticks += 1  # one writer at a time is not guaranteed: a close count

    return Counting()


def _reader_stream(sim: SimProc) -> tuple[str, list[str], str, int]:
    """Where a baseline reader reads the blast on ``sim``'s venue: (URL, text frames to send
    once open, the sim hub's stream name to wait for, how many of its readers to wait for).
    Binance names the stream in the URL; Bybit's public stream is subscribed per symbol
    (``tickers.<symbol>``, ten topics a request, as the product's wire asks)."""
    if sim.venue == "bybit":
        topics = [f"tickers.{s}" for s in sim.symbols]
        requests = [
            json.dumps({"op": "subscribe", "args": topics[i : i + 10]})
            for i in range(0, len(topics), 10)
        ]
        return f"{sim.ws}/v5/public/linear", requests, topics[-1], 1
    return f"{sim.ws}/ws/!markPrice@arr@1s", [], "!markPrice@arr@1s", 1


def _reader_rate(sim: SimProc, n: int, kind: str) -> float:
    """Frames/s one reader takes from a blast of ``n`` frames (``own`` or ``app``)."""
    url, requests, stream, readers = _reader_stream(sim)
    count = [0]
    first = [0.0]
    last = [0.0]
    done = threading.Event()

    def seen(*args: Any) -> None:
        frame = next((a for a in args if isinstance(a, (bytes, str))), b"")
        raw = frame.encode() if isinstance(frame, str) else frame
        if requests and (b'"type":"snapshot"' in raw or b'"op":' in raw):
            return  # Bybit's snapshot on subscribing and the subscribe replies: not the blast
        if not count[0]:
            first[0] = time.perf_counter()
        count[0] += 1
        if count[0] >= n:
            last[0] = time.perf_counter()
            done.set()

    if kind == "own":
        from infra.feeds.ws_client import Connect, ReconnectingWebSocket

        def subscribe(_: int) -> None:
            for text in requests:
                runner.send_text(text)

        runner = ReconnectingWebSocket(
            "bench-raw", lambda: Connect(url), seen, on_open=subscribe if requests else None
        )
        runner.start()
        stop = runner.stop
        wait_for(runner.connected.is_set, 20, "the reader connected")
    else:

        def on_open(ws: websocket.WebSocketApp) -> None:
            for text in requests:
                ws.send(text)

        app = websocket.WebSocketApp(url, on_message=seen, on_open=on_open)
        t = threading.Thread(
            target=lambda: app.run_forever(skip_utf8_validation=True, ping_timeout=0.5),
            daemon=True,
        )
        t.start()

        def stop(timeout: float = 5.0) -> bool:
            app.close()
            t.join(timeout)
            return not t.is_alive()

    try:
        wait_for(
            lambda: sim.call("GET", "/_sim/streams").get(stream, 0) >= readers,
            20,
            "the reader subscribed",
        )
        sim.call("POST", "/_sim/blast", {"n_frames": n})
        done.wait(120)
    finally:
        stop(5.0)
    return n / (last[0] - first[0]) if last[0] > first[0] else 0.0


def _product_rate(
    sim: SimProc, product: Product, metrics: Any, n: int, box: dict[str, Any]
) -> dict[str, float]:
    feed = product.market_feed
    sup = product.supervisor
    frames0 = feed.runner.frames
    ticks0 = feed.ticks
    woke0 = metrics.ticks
    moves0 = _stop_moves(product)
    marks: list[float] = []

    def first_frame(data: bytes) -> None:
        if not marks:
            marks.append(time.perf_counter())

    box["hook"] = first_frame
    t_blast, box = sim.blast_in_thread(n, None)
    wait_for(lambda: feed.runner.frames - frames0 >= n, 300, "every frame read", every=0.002)
    t_read = time.perf_counter()

    def drained() -> bool:
        return all(s._tick is None or s._parked for s in list(sup._slots.values()))

    wait_for(drained, 120, "every woken actor done", every=0.002)
    t_end = time.perf_counter()
    t_blast.join(60)
    box["hook"] = None
    start = marks[0] if marks else t_read
    ticks = feed.ticks - ticks0
    return {
        "ticks_per_s": n / (t_end - start),
        "read_per_s": n / max(t_read - start, 1e-9),
        "woke_share": (metrics.ticks - woke0) / max(ticks, 1),
        "stop_moves": _stop_moves(product) - moves0,
    }


def _loaded(product: Product) -> None:
    """Every position loaded, then one frame per symbol (every slot made, every band set)."""
    sup = product.supervisor
    wait_for(lambda: sup.stats().by_status.get("active", 0) >= N_POSITIONS, 300, "every position")
    product.sim.call("POST", "/_sim/blast", {"n_frames": N_POSITIONS})
    feed = product.market_feed
    wait_for(lambda: feed.runner.frames >= N_POSITIONS, 60, "warm-up read")


def _stop_moves(product: Product) -> int:
    assert product.port is not None
    return sum(1 for p in product.port.placed if p.kind.value == "stop_loss")


def run(ctx: Any) -> dict[str, dict[str, Any]]:
    quick = ctx.quick or QUICK
    n = 30_000 if quick else 100_000
    on: list[Rep] = []
    off: list[Rep] = []
    with SimProc(N_POSITIONS, workdir=ctx.workdir) as base_sim:
        own = [_reader_rate(base_sim, n, "own") for _ in range(ctx.repeat)]
        app = [_reader_rate(base_sim, n, "app") for _ in range(ctx.repeat)]
    bare = [baselines.pykka_throughput(N_POSITIONS, n) for _ in range(ctx.repeat)]
    for band, reps in ((True, on), (False, off)):
        with SimProc(N_POSITIONS, workdir=ctx.workdir) as sim, ctx.db.fresh() as dsn:
            from infra.store.postgres import PostgresStore

            st = PostgresStore(dsn)
            try:
                seed(st, sim, [(s, "active") for s in sim.symbols[TRAILING:]])
                seed(st, sim, [(s, "active") for s in sim.symbols[:TRAILING]], trailing_pct=0.01)
            finally:
                st.close()
            metrics = _metrics()
            box: dict[str, Any] = {"hook": None}
            product = Product(sim, dsn, sim.symbols, ctx.workdir / f"ticks-{band}", signals=False)
            product.metrics = metrics

            def tap(data: bytes, box: dict[str, Any] = box) -> None:
                hook = box["hook"]
                if hook is not None:
                    hook(data)

            product.market_tap = tap
            product.start(timeout=300)
            try:
                sup = product.supervisor
                if not band:
                    for s in sim.symbols:
                        sup._slots[Key(ACCOUNT, s)] = NoBandSlot()
                _loaded(product)
                for r in range(ctx.repeat):
                    got = _product_rate(sim, product, metrics, n, box)
                    if band:
                        reps.append(
                            Rep(
                                got["ticks_per_s"] / own[r],
                                {k: got[k] for k in ("ticks_per_s", "read_per_s")},
                                {"own_reader_per_s": own[r], "websocketapp_per_s": app[r]},
                                {"woke_share": got["woke_share"], "stop_moves": got["stop_moves"]},
                            )
                        )
                    else:
                        reps.append(
                            Rep(
                                got["ticks_per_s"] / bare[r],
                                {k: got[k] for k in ("ticks_per_s", "read_per_s")},
                                {"bare_pykka_per_s": bare[r]},
                                {"woke_share": got["woke_share"], "stop_moves": got["stop_moves"]},
                            )
                        )
            finally:
                product.stop()
    return {
        "tick_throughput_ratio": summarise(
            "tick_throughput_ratio",
            "ticks/s from the sim stream through the product's feed, 1,000 positions (30 %"
            " trailing), shipped configuration",
            Target(">= 0.8 of the product's own reader", ">=", 0.8),
            on,
            main="ticks_per_s",
            base="own_reader_per_s",
            unit="x",
        ),
        "band_off_throughput_ratio": summarise(
            "band_off_throughput_ratio",
            "the same with every tick through its actor (band off)",
            Target(">= 1.0 of bare pykka round robin", ">=", 1.0),
            off,
            main="ticks_per_s",
            base="bare_pykka_per_s",
            unit="x",
        ),
    }
