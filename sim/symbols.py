"""Symbol definitions: default set, bulk generation, and trading filters.

Pure functions and frozen data; no I/O. ``SymbolSpec.for_price`` derives Binance-like
filters (tick size, step size, minimum notional) from a start price so any price works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_SYMBOLS: dict[str, float] = {
    "BTCUSDT": 60_000.0,
    "ETHUSDT": 3_000.0,
    "BNBUSDT": 550.0,
    "SOLUSDT": 150.0,
    "XRPUSDT": 0.55,
    "DOGEUSDT": 0.15,
    "ADAUSDT": 0.45,
    "AVAXUSDT": 35.0,
    "LINKUSDT": 15.0,
    "LTCUSDT": 80.0,
}
"""Ten liquid USD-M perpetuals with plausible start mark prices."""

MIN_NOTIONAL = 5.0
"""Minimum order notional in USDT for non-reduce-only orders (Binance: 5 for most symbols)."""


def make_symbols(n: int, price: float = 100.0, prefix: str = "SYM") -> dict[str, float]:
    """``n`` synthetic symbols ``SYM0001USDT``… with start prices spread around ``price``.

    Used by benchmarks with hundreds or thousands of symbols. Deterministic.
    """
    width = max(4, len(str(n)))
    out: dict[str, float] = {}
    for i in range(1, n + 1):
        spread = 0.5 + (i % 97) / 97.0  # 0.5x .. 1.5x, deterministic
        out[f"{prefix}{i:0{width}d}USDT"] = round(price * spread, 4)
    return out


def _decimals(step: float) -> int:
    """Number of decimals needed to print multiples of ``step`` (step a power of ten)."""
    return max(0, round(-math.log10(step)))


@dataclass(frozen=True)
class SymbolSpec:
    """Static description of one perpetual contract (what exchangeInfo publishes)."""

    symbol: str
    base: str
    quote: str
    tick_size: float
    step_size: float
    min_notional: float = MIN_NOTIONAL
    #: LOT_SIZE maxQty (any order) and MARKET_LOT_SIZE maxQty (market orders; Binance keeps
    #: it lower, e.g. BTCUSDT 1000 / 120).
    max_qty: float = 100_000_000.0
    market_max_qty: float = 100_000_000.0
    #: PRICE_FILTER maxPrice; 0 publishes "0" (no bound), as Binance does for some symbols.
    max_price: float = 10_000_000.0

    @property
    def price_precision(self) -> int:
        """Decimals of the tick size."""
        return _decimals(self.tick_size)

    @property
    def quantity_precision(self) -> int:
        """Decimals of the step size."""
        return _decimals(self.step_size)

    @property
    def min_qty(self) -> float:
        """Smallest order quantity: one step."""
        return self.step_size

    @classmethod
    def for_price(cls, symbol: str, price: float) -> SymbolSpec:
        """Filters for ``symbol`` derived from a start ``price`` > 0.

        Tick size is about 1e-5 of the price, one step is worth 0.1–1 USDT.
        Raises ValueError for a non-positive price or a symbol not ending in USDT.
        """
        if price <= 0 or not math.isfinite(price):
            raise ValueError(f"start price of {symbol} must be > 0, got {price}")
        if not symbol.endswith("USDT") or len(symbol) <= 4:
            raise ValueError(f"symbol must be like XXXUSDT, got {symbol!r}")
        mag = math.floor(math.log10(price))
        tick = 10.0 ** max(mag - 5, -8)
        step = 10.0 ** min(max(math.ceil(-math.log10(price)) - 1, -8), 3)
        return cls(symbol=symbol, base=symbol[:-4], quote="USDT", tick_size=tick, step_size=step)

    def round_qty(self, qty: float) -> float:
        """``qty`` rounded to the step size's decimals (kills float noise)."""
        return round(qty, self.quantity_precision)

    def round_price(self, price: float) -> float:
        """``price`` rounded to the tick size's decimals."""
        return round(price, self.price_precision)

    def is_tick_multiple(self, price: float) -> bool:
        """True when ``price`` is a whole number of ticks (within float tolerance)."""
        ticks = price / self.tick_size
        if not math.isfinite(ticks):
            return False
        return abs(ticks - round(ticks)) < 1e-6

    def is_step_multiple(self, qty: float) -> bool:
        """True when ``qty`` is a whole number of steps (within float tolerance)."""
        steps = qty / self.step_size
        if not math.isfinite(steps):
            return False
        return abs(steps - round(steps)) < 1e-6
