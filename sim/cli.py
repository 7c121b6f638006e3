"""Command line: run the exchange (and optionally the signal feed) until SIGTERM/SIGINT.

``python -m sim --host 127.0.0.1 --port 8900 [--ws-port M] [--signals-port S]
[--signal-token T] [--symbols BTCUSDT=60000,...] [--walk-interval 0.2] [--sources]
[--rate-limits] [--bybit-port B [--bybit-unsigned]]``

``--bybit-port`` also runs a Bybit v5 front (``sim.bybit``: its own exchange, same symbols,
walk and limits switch) on port B.

Prints one line with the URLs (flushed) once everything listens, then blocks on the main
thread; a signal stops everything cleanly and the process exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from sim.bybit import BybitExchange
from sim.exchange import SimExchange
from sim.signals import SignalFeed
from sim.symbols import DEFAULT_SYMBOLS, make_symbols


def parse_symbols(text: str) -> dict[str, float]:
    """``BTCUSDT=60000,ETHUSDT=3000`` → dict; ``n:1000`` → 1,000 synthetic symbols."""
    if text.startswith("n:"):
        return make_symbols(int(text[2:]))
    out: dict[str, float] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, price = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected SYMBOL=PRICE, got {part!r}")
        out[name.strip().upper()] = float(price)
    if not out:
        raise argparse.ArgumentTypeError("no symbols given")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="python -m sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="REST/WS port (0: any free port)")
    p.add_argument("--ws-port", type=int, default=None, help="extra port for WebSocket streams")
    p.add_argument(
        "--signals-port", type=int, default=None, help="run the signal feed on this port"
    )
    p.add_argument("--signal-token", default=None, help="bearer token the signal feed requires")
    p.add_argument("--symbols", type=parse_symbols, default=None, help="SYM=PRICE,... or n:COUNT")
    p.add_argument("--walk-interval", type=float, default=None, help="random-walk period (s)")
    p.add_argument("--walk-step", type=float, default=0.001, help="random-walk step (sd, fraction)")
    p.add_argument("--sources", action="store_true", help="run the four demo signal sources")
    p.add_argument("--signal-rate", type=float, default=2.0, help="demo signal bursts per second")
    p.add_argument("--accounts", default="main", help="comma-separated accounts for demo signals")
    p.add_argument(
        "--rate-limits",
        action="store_true",
        help="enforce Binance's request weight and order limits (429 with Retry-After beyond)",
    )
    p.add_argument(
        "--bybit-port",
        type=int,
        default=None,
        help="also run a Bybit v5 exchange (linear USDT perpetuals) on this port (0: any)",
    )
    p.add_argument(
        "--bybit-unsigned",
        action="store_true",
        help="the Bybit front accepts any signature (timestamps are still checked)",
    )
    p.add_argument("--wallet", type=float, default=1_000_000.0)
    p.add_argument("--leverage", type=int, default=20)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    args = build_parser().parse_args(argv)
    symbols = args.symbols or dict(DEFAULT_SYMBOLS)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exchange = SimExchange(
        symbols,
        args.host,
        args.port,
        args.ws_port,
        wallet_usdt=args.wallet,
        leverage=args.leverage,
        enforce_rate_limits=args.rate_limits,
    )
    bybit: BybitExchange | None = None
    if args.bybit_port is not None:
        bybit = BybitExchange(
            symbols,
            args.host,
            args.bybit_port,
            wallet_usdt=args.wallet,
            leverage=args.leverage,
            check_signatures=not args.bybit_unsigned,
            enforce_rate_limits=args.rate_limits,
        )
    feed: SignalFeed | None = None
    if args.signals_port is not None or args.sources:
        feed = SignalFeed(args.host, args.signals_port or 0, token=args.signal_token)
    try:
        exchange.start()
        if bybit is not None:
            bybit.start()
        if feed is not None:
            feed.start()
        if args.walk_interval:
            exchange.start_random_walk(args.walk_interval, args.walk_step)
            if bybit is not None:
                bybit.start_random_walk(args.walk_interval, args.walk_step)
        if feed is not None and args.sources:
            feed.start_sources(
                list(symbols),
                exchange.mark_price,
                accounts=[a for a in args.accounts.split(",") if a],
                rate_per_s=args.signal_rate,
            )
        info = {
            "rest": exchange.base_url,
            "ws": exchange.ws_url,
            "signals": feed.url if feed else None,
        }
        if bybit is not None:
            info["bybit"] = bybit.base_url
            info["bybit_ws"] = bybit.ws_url
        print("sim ready " + json.dumps(info), flush=True)
        while not done.wait(0.5):
            pass
    finally:
        if feed is not None:
            feed.stop()
        if bybit is not None:
            bybit.stop()
        exchange.stop()
    print("sim stopped", file=sys.stderr, flush=True)
    return 0
