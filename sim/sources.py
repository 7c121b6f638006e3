"""Demo signal sources: sniper, whale_copy, trending and volume, emitting OVERLAPPING signals.

``SignalSources`` runs one background thread that, at about ``rate_per_s`` bursts a
second, picks a symbol (skewed to a few "hot" ones) and lets one source signal it; often
other sources signal the same symbol within milliseconds (the race the product removes),
and sometimes an earlier signal is replayed with the same ``signal_id``.

Signals follow the product's schema::

    {"signal_id": str, "source": str, "account": str, "symbol": "BTCUSDT",
     "side": "long" | "short", "size": float (base qty), "stop_loss": float,
     "take_profit": float?, "trailing_distance": float?, "expires_at": float?,
     "created_at": float?}

``send`` is called on the generator thread; its exceptions are logged and ignored.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from sim.symbols import SymbolSpec

log = logging.getLogger(__name__)

SOURCES = ("sniper", "whale_copy", "trending", "volume")

Signal = dict[str, Any]


def _round_sig(x: float, digits: int = 6) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def make_signal(
    rng: random.Random,
    source: str,
    account: str,
    symbol: str,
    price: float,
    side: str,
    now: float,
    notional_usdt: float = 100.0,
) -> Signal:
    """One signal for ``symbol`` at ``price``: size worth about ``notional_usdt``.

    The stop is 1–3 % away on the losing side; take-profit, trailing distance and expiry
    are present most of the time, so consumers see every optional field both ways.
    """
    spec = SymbolSpec.for_price(symbol, price)
    steps = max(1, round(notional_usdt * rng.uniform(0.5, 1.5) / price / spec.step_size))
    size = spec.round_qty(steps * spec.step_size)
    sign = 1.0 if side == "long" else -1.0
    sl_pct = rng.uniform(0.01, 0.03)
    sig: Signal = {
        "signal_id": f"{source}-{secrets.token_hex(6)}",
        "source": source,
        "account": account,
        "symbol": symbol,
        "side": side,
        "size": size,
        "stop_loss": _round_sig(price * (1 - sign * sl_pct)),
    }
    if rng.random() < 0.7:
        sig["take_profit"] = _round_sig(price * (1 + sign * sl_pct * rng.uniform(1.5, 3.0)))
    if rng.random() < 0.3:
        sig["trailing_distance"] = _round_sig(price * rng.uniform(0.005, 0.015))
    if rng.random() < 0.8:
        sig["expires_at"] = round(now + rng.uniform(30, 120), 3)
    sig["created_at"] = round(now, 6)
    return sig


class SignalSources:
    """Background generator of overlapping demo signals. ``start``/``stop`` from any thread."""

    def __init__(
        self,
        send: Callable[[Signal], object],
        symbols: Sequence[str],
        price_of: Callable[[str], float],
        *,
        accounts: Sequence[str] = ("main",),
        rate_per_s: float = 2.0,
        burst_prob: float = 0.5,
        replay_prob: float = 0.1,
        seed: int | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("need at least one symbol")
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        self._send = send
        self.symbols = list(symbols)
        self.price_of = price_of
        self.accounts = list(accounts)
        self.rate_per_s = rate_per_s
        self.burst_prob = burst_prob
        self.replay_prob = replay_prob
        self.rng = random.Random(seed)
        self.hot = self.symbols[: max(1, min(3, len(self.symbols)))]
        self.sent = 0
        #: Accounts whose first burst is still to come: it overlaps (two sources at least),
        #: so that every account shows a duplicate refused from its first seconds.
        self._unprimed = list(self.accounts)
        self._recent: deque[Signal] = deque(maxlen=50)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the generator thread (no-op if running)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sim-signal-sources", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and join the generator thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def burst(self) -> list[Signal]:
        """One burst of signals (1–4 sources on one symbol, maybe a replay; each account's
        first burst has two at least). Also sends them."""
        out: list[Signal] = []
        rng = self.rng
        if self._recent and rng.random() < self.replay_prob:
            out.append(dict(rng.choice(list(self._recent))))
        symbol = rng.choice(self.hot) if rng.random() < 0.6 else rng.choice(self.symbols)
        price = float(self.price_of(symbol))
        side = "long" if rng.random() < 0.6 else "short"
        account = rng.choice(self.accounts)
        n = 1 + (rng.randint(1, 3) if rng.random() < self.burst_prob else 0)
        if self._unprimed:
            account = self._unprimed.pop(0)
            n = max(n, 2)
        for source in rng.sample(SOURCES, n):
            s_side = side if rng.random() < 0.9 else ("short" if side == "long" else "long")
            sig = make_signal(rng, source, account, symbol, price, s_side, time.time())
            self._recent.append(sig)
            out.append(sig)
        for i, sig in enumerate(out):
            if i and self._stop.wait(rng.uniform(0.0, 0.005)):
                break
            self._emit(sig)
        return out

    def _emit(self, sig: Signal) -> None:
        try:
            self._send(sig)
            self.sent += 1
        except Exception:
            log.exception("signal send failed")

    def _run(self) -> None:
        interval = 1.0 / self.rate_per_s
        while not self._stop.wait(self.rng.expovariate(1.0 / interval)):
            try:
                self.burst()
            except Exception:
                log.exception("signal burst failed")
