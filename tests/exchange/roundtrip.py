"""``measure_round_trip(n)``: create-order round trip through the adapter and ccxt to the sim.

For ``bench/`` (``from tests.exchange.roundtrip import measure_round_trip``) and by hand::

    .venv/bin/python -m tests.exchange.roundtrip 1000

Starts a ``SimExchange`` on 127.0.0.1 (port 0), points a ``CcxtExchange`` at it with ccxt's
rate limiter off (it would add its own spacing, not the exchange's latency), warms up, then
times ``n`` market orders (``CcxtExchange.place_order`` = ccxt ``create_order`` + reply
mapping, one HTTP POST each), alternating buy and sell so the position stays small.
Everything it starts is stopped before it returns.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

from actors.messages import CallResult
from actors.model import Key, OrderKind
from actors.ports import OrderRequest
from infra.exchange import CcxtExchange, VenueConfig
from sim import SimExchange

__all__ = ["RoundTrip", "measure_round_trip"]


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """Round-trip figures in milliseconds over ``n`` orders."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    def __str__(self) -> str:
        return (
            f"create_order round trip via ccxt to the sim, n={self.n}: "
            f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, "
            f"mean {self.mean_ms:.2f} ms, max {self.max_ms:.2f} ms"
        )


def measure_round_trip(n: int = 500, symbol: str = "BTCUSDT", warmup: int = 20) -> RoundTrip:
    """Place ``n`` market orders through the adapter against a fresh sim; p50/p99 in ms."""
    if n < 2:
        raise ValueError("n must be at least 2")
    with SimExchange({symbol: 100.0}, wallet_usdt=1e12) as sim:
        cfg = VenueConfig(base_url=sim.base_url, require_credentials=False, enable_rate_limit=False)
        ex = CcxtExchange("bench", cfg)
        try:
            ex.load_markets()
            key = Key("bench", symbol)
            samples: list[float] = []
            for i in range(warmup + n):
                side = "buy" if i % 2 == 0 else "sell"
                req = OrderRequest(key, f"rt{i}", OrderKind.ENTRY, side, 1.0)
                t0 = time.perf_counter()
                reply = ex.place_order(req)
                elapsed = time.perf_counter() - t0
                if reply.result is not CallResult.ACCEPTED:
                    raise RuntimeError(f"order {req.client_id} not accepted: {reply}")
                if i >= warmup:
                    samples.append(elapsed * 1e3)
        finally:
            ex.close()
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return RoundTrip(
        n=n,
        p50_ms=statistics.median(samples),
        p99_ms=cuts[98],
        mean_ms=statistics.fmean(samples),
        max_ms=max(samples),
    )


if __name__ == "__main__":
    print(measure_round_trip(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
