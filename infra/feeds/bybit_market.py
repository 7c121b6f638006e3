"""Bybit's mark prices: ``tickers.<symbol>`` on ``/v5/public/linear``, deltas merged.

:class:`BybitTickers` is the :class:`~infra.feeds.market.MarkPriceWire` of a
:class:`~infra.feeds.market.MarkPriceFeed` on Bybit, so the batching, conflation and sync on
reconnect are the Binance feed's. On each connection it subscribes ``tickers.<symbol>`` for
every symbol (:class:`~infra.feeds.bybit_session.BybitSession`: ten topics a request, a
refused request asked again topic by topic, ``{"op": "ping"}`` every ``ping_interval_s``).

Bybit sends a ``snapshot`` of the whole ticker, then ``delta`` messages carrying only the
fields that changed. The wire keeps each symbol's last mark price (per connection: a new
connection starts from its own snapshot) and turns every message into the *merged* mark
price at the message's time ``ts``: a delta without ``markPrice`` says the mark is unchanged
at ``ts``, so it yields the known mark (never a missing or zero price), and keeps the mark's
age fresh for the actors. A delta before any mark of its symbol yields nothing
(``no_mark_yet``, counted). A symbol not subscribed is refused (``unknown_symbol``); a bad
``markPrice`` (not a number, NaN, ≤ 0, huge) is refused (``bad_price``) and the known mark
kept.

Pongs are data frames, so the runner's silence watchdog (no data for a while) cannot tell a
stream that stopped ticking from a quiet one: the wire has its own, ``silence_timeout_s``
without any ``tickers`` message once subscribed ends the connection (``silence``).

Threads: the feed's runner thread only. Never raises for bad input.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from infra.feeds.bybit_session import BybitSession, Send
from infra.feeds.parsing import MarkPrice, OpReply, Refusal, TickerUpdate, parse_bybit_ticker

__all__ = ["PUBLIC_PATH", "BybitTickers"]

PUBLIC_PATH = "/v5/public/linear"


class BybitTickers:
    """The ``tickers.<symbol>`` wire of ``symbols`` at ``url`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        symbols: Sequence[str],
        *,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 10.0,
        reply_timeout_s: float = 10.0,
        silence_timeout_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self._mono = monotonic
        self.silence_timeout_s = silence_timeout_s
        self._last_ticker = monotonic()
        self._symbols = frozenset(symbols)
        self.session = BybitSession(
            f"tickers@{self.url}",
            [f"tickers.{s}" for s in sorted(self._symbols)],
            ping_interval_s=ping_interval_s,
            pong_timeout_s=pong_timeout_s,
            reply_timeout_s=reply_timeout_s,
            monotonic=monotonic,
        )
        self._marks: dict[str, float] = {}
        self.snapshots = 0
        self.deltas = 0

    def mark(self, symbol: str) -> float | None:
        """The merged mark price of ``symbol`` on this connection (None: none yet)."""
        return self._marks.get(symbol)

    def opened(self, n: int, send: Send) -> None:
        self._marks.clear()
        self._last_ticker = self._mono()
        self.session.opened(n, send)

    def parse(self, data: bytes, send: Send) -> tuple[list[MarkPrice], list[Refusal]]:
        msg = parse_bybit_ticker(data)
        if isinstance(msg, TickerUpdate):
            self._last_ticker = self._mono()
            return self._merge(msg)
        if isinstance(msg, OpReply):
            step = self.session.reply(msg, send)
            bad = [step.refusal] if step.refusal is not None else []
            return [], bad
        return [], [msg]

    def _merge(self, u: TickerUpdate) -> tuple[list[MarkPrice], list[Refusal]]:
        sym = u.symbol
        if sym not in self._symbols:
            return [], [Refusal("unknown_symbol", repr(sym[:32]))]
        if u.snapshot:
            self.snapshots += 1
        else:
            self.deltas += 1
        if u.mark is not None:
            self._marks[sym] = u.mark
            return [MarkPrice(sym, u.mark, u.event_time)], []
        mark = self._marks.get(sym)
        if mark is None:
            return [], [Refusal("no_mark_yet", sym)]
        return [MarkPrice(sym, mark, u.event_time)], []

    def idle(self, send: Send) -> tuple[Refusal | None, str | None]:
        step = self.session.idle(send)
        silence = self.silence_timeout_s
        if step.reconnect is None and silence is not None and self.session.ready:
            quiet = self._mono() - self._last_ticker
            if quiet > silence:
                return Refusal("silence", f"no ticker for {quiet:.1f}s"), "silence"
        return step.refusal, step.reconnect
