"""``python -m demo`` (``make run``): the whole system on one machine.

Starts, in this process: one ``sim/`` exchange per venue the accounts trade on (Binance USD-M's
wire, :class:`sim.exchange.SimExchange`, and Bybit v5's, :class:`sim.bybit.BybitExchange`;
prices on a random walk each) and the ``sim/`` signal feed with four sources (sniper,
whale_copy, trending, volume) per venue sending overlapping signals to that venue's accounts,
priced from that venue's marks, then the supervisor (:class:`~supervision.app.App`) against them
with an embedded PostgreSQL, metrics on the configured address, and a live status view in the
terminal (positions by status, duplicates refused by source, protected and unprotected counts).
Runs until Ctrl-C / SIGTERM (or ``--duration``); then stops the sources first, the supervisor,
the sim last. Log lines go to ``.data/demo.log`` while the live view is on.

The ports come from the configuration (``deploy/demo.toml``: account ``main`` on Binance,
``bybit`` on Bybit); a venue's sim listens on the port of its first account's ``rest_url``;
a port of 0 picks a free one, and the configuration handed to the supervisor is rewritten
with the real URLs.

Called by :mod:`demo.__main__` on the main thread (it installs the SIGTERM/SIGINT handlers);
the sim sources send to the sim signal feed from their own threads, and the supervisor's
signal feed client reads them there, as in production. This package sits above
the product and ``sim/``: it imports both; nothing of the product imports it.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlsplit

from infra.config import DUMMY_API_KEY, DUMMY_API_SECRET, AccountConfig, Config, load_config
from infra.logs import setup_logging
from infra.metrics import PrometheusMetrics
from sim.bybit import BybitExchange
from sim.exchange import SimExchange
from sim.signals import SignalFeed
from sim.sources import SignalSources
from sim.symbols import DEFAULT_SYMBOLS
from supervision.app import App

__all__ = ["render_view", "run_demo"]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "deploy" / "demo.toml"
SOURCES = ("sniper", "whale_copy", "trending", "volume")
STATUSES = ("pending_entry", "entry_placed", "pending_sl", "active", "closing", "closed", "failed")


def _signal_counts(metrics: PrometheusMetrics) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for fam in metrics.signals.collect():
        for s in fam.samples:
            if s.name.endswith("_total"):
                k = (s.labels["source"], s.labels["outcome"])
                out[k] = out.get(k, 0.0) + s.value
    return out


def render_view(
    by_status: Mapping[str, int],
    signals: Mapping[tuple[str, str], float],
    prices: Mapping[str, float],
    elapsed: float,
    urls: Mapping[str, str],
) -> str:
    """The live status view (plain text, one screen)."""
    lines = [
        f"position-supervisor demo — {elapsed:6.0f}s — Ctrl-C stops",
        "  " + "   ".join(f"{k}: {v}" for k, v in urls.items()),
        "",
        "positions by status (live actors)",
        "  " + "  ".join(f"{s}={by_status.get(s, 0)}" for s in STATUSES),
    ]
    protected = by_status.get("active", 0) + by_status.get("closing", 0)
    unprotected = by_status.get("pending_sl", 0)
    lines.append(
        f"  protected (stop on exchange): {protected}   unprotected (filled, stop pending):"
        f" {unprotected}"
    )
    lines += ["", "signals by source", "  source        accepted  duplicate  cooldown  rejected"]
    for src in sorted({s for s, _ in signals} | set(SOURCES)):
        a = int(signals.get((src, "accepted"), 0))
        d = int(signals.get((src, "duplicate"), 0))
        c = int(signals.get((src, "cooldown"), 0))
        r = int(signals.get((src, "rejected"), 0))
        lines.append(f"  {src:<12} {a:9d} {d:10d} {c:9d} {r:9d}")
    total_dup = int(sum(v for (_, o), v in signals.items() if o == "duplicate"))
    lines.append(f"  duplicates refused: {total_dup}")
    if prices:
        lines += ["", "mark prices"]
        items = sorted(prices.items())
        for i in range(0, len(items), 5):
            lines.append("  " + "  ".join(f"{s} {p:.6g}" for s, p in items[i : i + 5]))
    return "\n".join(lines)


def _port(url: str | None) -> int:
    if not url:
        return 0
    return urlsplit(url).port or 0


def run_demo(config_path: str | None, duration: float | None = None, ui: bool = True) -> int:
    """Run the demo; returns the exit code (0 after Ctrl-C/SIGTERM or ``duration``).

    Raises :class:`~infra.config.ConfigError` for an invalid configuration (the CLI exits 2).
    """
    cfg = load_config(config_path or DEFAULT_CONFIG)
    live = ui and sys.stdout.isatty()
    log_stream: TextIO | None = None
    if live:
        log_path = ROOT / ".data" / "demo.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_stream = log_path.open("a", encoding="utf-8")
    setup_logging(cfg.logging.level, cfg.logging.json, cfg.secret_values(), stream=log_stream)

    symbols: dict[str, float] = {}
    for acc in cfg.accounts.values():
        for s in acc.symbols:
            symbols[s] = DEFAULT_SYMBOLS.get(s, 100.0)
    exchanges = _exchanges(cfg, symbols)
    first = next(iter(cfg.accounts.values()))
    host = urlsplit(first.rest_url).hostname or "127.0.0.1"
    feed = SignalFeed(host, _port(cfg.feeds.signal_url), token=cfg.feeds.token)
    app: App | None = None
    try:
        for exchange in exchanges.values():
            exchange.start()
            exchange.start_random_walk(0.25, 0.0015)
        feed.start()
        cfg = _point_at(cfg, exchanges, feed.url)
        app = running = App(cfg)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            running.handle_signal(signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            app.start()
            sources = [
                _start_sources(
                    feed.send_signal,
                    list(symbols),
                    exchange.mark_price,
                    [n for n, a in cfg.accounts.items() if a.exchange == venue],
                )
                for venue, exchange in exchanges.items()
            ]
            marks = next(iter(exchanges.values()))
            urls = {
                **{venue: ex.base_url for venue, ex in exchanges.items()},
                "signals": feed.url,
                "metrics": f"http://{cfg.metrics.address}/metrics"
                if cfg.metrics.enabled
                else "off",
            }
            started = time.monotonic()

            def tick() -> None:
                if app is None or app.supervisor is None:
                    return
                view = render_view(
                    app.supervisor.stats().by_status,
                    _signal_counts(app.metrics),
                    marks.mark_prices(),
                    time.monotonic() - started,
                    urls,
                )
                if live:
                    sys.stdout.write("\x1b[H\x1b[2J" + view + "\n")
                    sys.stdout.flush()

            try:
                app.wait(duration, on_tick=tick)
            finally:
                for source in sources:
                    source.stop()
        finally:
            clean = app.shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if not live and app.supervisor is not None:
            print(
                render_view(
                    app.supervisor.stats().by_status,
                    _signal_counts(app.metrics),
                    {},
                    0.0,
                    {},
                )
            )
        log.info("demo stopped (clean=%s)", clean)
        return 0
    except Exception as exc:
        log.error("demo failed: %r", exc, exc_info=True)
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        feed.stop()
        for exchange in exchanges.values():
            exchange.stop()
        if log_stream is not None:
            logging.getLogger().handlers[-1].flush()


def _start_sources(
    send: Callable[[dict[str, Any]], object],
    symbols: list[str],
    price_of: Callable[[str], float],
    accounts: list[str],
) -> SignalSources:
    sources = SignalSources(send, symbols, price_of, accounts=accounts, rate_per_s=1.5)
    sources.start()
    return sources


def _exchanges(cfg: Config, symbols: dict[str, float]) -> dict[str, SimExchange]:
    """One sim per venue the accounts trade on, on the port of that venue's first account
    (its ``ws_url`` port too when it differs, on Binance's front); not started."""
    firsts: dict[str, AccountConfig] = {}
    for acc in cfg.accounts.values():
        firsts.setdefault(acc.exchange, acc)
    out: dict[str, SimExchange] = {}
    for venue, acc in firsts.items():
        host = urlsplit(acc.rest_url).hostname or "127.0.0.1"
        rest_port, ws_port = _port(acc.rest_url), _port(acc.ws_url)
        if venue == "bybit":
            # The dummy key pair signs every request; the sim checks the signatures.
            out[venue] = BybitExchange(
                dict(symbols), host, rest_port, secrets={DUMMY_API_KEY: DUMMY_API_SECRET}
            )
        else:
            ws = ws_port if ws_port and ws_port != rest_port else None
            out[venue] = SimExchange(dict(symbols), host, rest_port, ws)
    return out


def _point_at(cfg: Config, exchanges: Mapping[str, SimExchange], signals: str) -> Config:
    """The configuration with each account's URLs those of its venue's sim."""
    accounts = {
        name: dataclasses.replace(
            acc, rest_url=exchanges[acc.exchange].base_url, ws_url=exchanges[acc.exchange].ws_url
        )
        for name, acc in cfg.accounts.items()
    }
    feeds = dataclasses.replace(cfg.feeds, signal_url=signals)
    return dataclasses.replace(cfg, accounts=accounts, feeds=feeds)
