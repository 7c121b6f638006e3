"""What every figure runs on: the product as shipped, ``sim/`` in another process, PostgreSQL.

* :class:`SimProc` runs ``python -m sim`` in a child process (its own interpreter and GIL:
  the generator never competes with the measured process), speaking :data:`VENUE`'s wire
  (Binance USD-M, or Bybit v5 on the sim's ``--bybit-port``) with that venue's rate limits
  enforced, and drives it over its control API (``/_sim/...``) and its signal feed's
  (``/send``, ``/acks``).
* :class:`Database` is the embedded PostgreSQL (``infra.store.embedded``) on
  ``.data/bench-pg``, one fresh database per product start.
* :class:`Product` is :class:`supervision.app.App` built from a configuration that leaves
  every knob at its shipped default (ccxt through the account's limiter, 4 workers, a sync
  every 5 s, exchange streams and the signal feed on), logging at INFO as JSON lines to a
  file. Only what the figure must see is added, outside the measured path where possible:
  stamps where the exchange port is called (:class:`StampedPort`), where a frame arrives at
  a feed (the runner's frame callback is wrapped), and read-only inspection.

Every start is undone by ``close()``/``stop()``; nothing here sleeps as synchronisation
(conditions are polled with a deadline by :func:`wait_for`).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from actors.model import Key, OrderKind
from actors.ports import (
    AccountView,
    ExchangePort,
    MarketReply,
    OrderReply,
    OrderRequest,
)
from testkit.waiting import poll

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".data"
ACCOUNT = "main"
QUICK = os.environ.get("QUICK", "0") not in ("", "0")
VENUE = os.environ.get("BENCH_VENUE", "binanceusdm")
"""The venue every figure's account trades on (``make bench VENUE=bybit``; ``python -m bench
--venue``): the sim child serves that venue's wire, the product's account names it."""
VENUES = ("binanceusdm", "bybit")


def wait_for(pred: Callable[[], object], timeout: float, what: str, every: float = 0.005) -> Any:
    """Poll ``pred`` until it returns something truthy (returned); TimeoutError after
    ``timeout`` seconds (:func:`testkit.waiting.poll`, the one deadline wait)."""
    return poll(pred, timeout, what, every, error=TimeoutError)


# --- the exchange in another process -----------------------------------------------------


class SimProc:
    """``python -m sim`` in a child process; see the module docstring.

    ``symbols``: how many synthetic symbols (``SYM0001USDT``…, prices 50–150, see
    ``sim.symbols.make_symbols``). ``walk_interval_s``: every mark price moves once per
    interval on the sim's random walk (Binance pushes ``markPrice@1s`` once a second).
    """

    def __init__(
        self,
        symbols: int,
        *,
        rate_limits: bool = True,
        walk_interval_s: float | None = None,
        workdir: Path | None = None,
        venue: str = VENUE,
    ) -> None:
        from sim.symbols import make_symbols

        if venue not in VENUES:
            raise ValueError(f"unknown venue {venue!r}: one of {VENUES}")
        self.venue = venue
        self.prices = make_symbols(symbols)
        self.symbols = list(self.prices)
        self.rate_limits = rate_limits
        self.walk_interval_s = walk_interval_s
        self.workdir = workdir or DATA / "bench"
        self.proc: subprocess.Popen[str] | None = None
        self.rest = self.ws = self.signals = ""
        self._local = threading.local()
        self._stderr: IO[str] | None = None

    def start(self) -> SimProc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "sim",
            "--port",
            "0",
            "--signals-port",
            "0",
            "--symbols",
            f"n:{len(self.symbols)}",
            "--wallet",
            "1e12",
        ]
        if self.rate_limits:
            cmd.append("--rate-limits")
        if self.walk_interval_s:
            cmd += ["--walk-interval", str(self.walk_interval_s), "--walk-step", "0.0002"]
        if self.venue == "bybit":
            # The product signs every request; the sim skips checking the dummy pair's
            # signature (the check is the sim's cost, not the product's).
            cmd += ["--bybit-port", "0", "--bybit-unsigned"]
        self._stderr = open(self.workdir / "sim.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("sim ready "):
            self.stop()
            raise RuntimeError(f"sim did not start: {line!r}")
        info = json.loads(line[len("sim ready ") :])
        self.rest, self.ws, self.signals = info["rest"], info["ws"], info["signals"]
        if self.venue == "bybit":
            # Bybit's front serves its REST, streams and the control API on its own port.
            self.rest, self.ws = info["bybit"], info["bybit_ws"]
        return self

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if p is not None and p.stdout is not None:
            p.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.proc = None

    def __enter__(self) -> SimProc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP to the child (one keep-alive connection per calling thread and server)

    def _conn(self, base: str) -> http.client.HTTPConnection:
        conns: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "c", None)
        if conns is None:
            conns = self._local.c = {}
        c = conns.get(base)
        if c is None:
            u = urlsplit(base)
            c = conns[base] = http.client.HTTPConnection(u.hostname or "", u.port, timeout=300)
        return c

    def call(self, method: str, path: str, body: object = None, *, signals: bool = False) -> Any:
        """One control request; the decoded JSON answer (RuntimeError on an HTTP error)."""
        base = self.signals.rsplit("/", 1)[0].replace("ws://", "http://") if signals else self.rest
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            c = self._conn(base)
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                break
            except (ConnectionError, http.client.HTTPException):
                c.close()
                self._local.c.pop(base, None)
                if attempt:
                    raise
        if r.status >= 400:
            raise RuntimeError(f"sim {method} {path}: HTTP {r.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None

    # -- conveniences

    def limits(self) -> dict[str, Any]:
        """The sim's rate-limit counters (429s given, peaks)."""
        out: dict[str, Any] = self.call("GET", "/_sim/limits")
        return out

    def set_price(self, symbol: str, price: float) -> None:
        self.call("POST", "/_sim/price", {"symbol": symbol, "price": price})

    def send_signals(self, signals: Sequence[Mapping[str, Any]], rate: float | None) -> list[float]:
        """Send through the sim's signal feed, paced in the sim process, each stamped
        ``created_at`` as it goes out; returns the send times."""
        out = self.call(
            "POST",
            "/send",
            {"signals": list(signals), "rate_per_s": rate, "stamp": True},
            signals=True,
        )
        return list(out["times"])

    def acks(self, since: int = 0) -> tuple[int, list[tuple[float, dict[str, Any]]]]:
        out = self.call("GET", f"/acks?since={since}", signals=True)
        return int(out["next"]), [(float(t), a) for t, a in out["acks"]]

    def blast_in_thread(
        self, n_frames: int, rate: float | None, **extra: Any
    ) -> tuple[threading.Thread, dict[str, Any]]:
        """Start a mark-price blast (``POST /_sim/blast``) on a thread of this process; the
        frames are generated and paced in the sim process. Returns the thread and the dict
        its result is put in (``result``)."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = self.call(
                    "POST",
                    "/_sim/blast",
                    {"n_frames": n_frames, "rate_per_s": rate, **extra},
                )
            except Exception as exc:  # reported by the caller
                box["error"] = repr(exc)

        t = threading.Thread(target=run, name="bench-blast", daemon=True)
        t.start()
        return t, box


# --- PostgreSQL --------------------------------------------------------------------------


class Database:
    """The embedded server on ``.data/bench-pg``; :meth:`fresh` gives an empty database."""

    def __init__(self) -> None:
        from infra.store.embedded import EmbeddedPostgres

        self._pg = EmbeddedPostgres(DATA / "bench-pg")
        self.admin = ""
        self._n = itertools.count()

    def start(self) -> Database:
        self.admin = self._pg.start()
        return self

    def close(self) -> None:
        self._pg.close()

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        """A new, empty database (the product migrates it); dropped afterwards."""
        import psycopg
        from psycopg import sql

        name = f"bench_{os.getpid()}_{next(self._n)}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self._pg.dsn_for(name)
        finally:
            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


# --- stamps --------------------------------------------------------------------------------


@dataclass
class Placed:
    """One call of the exchange port's ``place_order``: when (``time.time()``), what."""

    at: float
    kind: OrderKind
    symbol: str
    client_id: str
    reply_at: float = 0.0
    result: str = ""


class StampedPort:
    """The product's exchange port (the real :class:`~infra.exchange.CcxtExchange`), with a
    stamp when each order is handed to it and when its reply came back. Everything else is
    delegated unchanged (``limiter``, ``close``...). Listeners run on the worker thread."""

    def __init__(self, inner: ExchangePort) -> None:
        self.inner = inner
        self.placed: list[Placed] = []
        self.listeners: list[Callable[[Placed], None]] = []

    def place_order(self, req: OrderRequest) -> OrderReply:
        p = Placed(time.time(), req.kind, req.key.symbol, req.client_id)
        for fn in self.listeners:
            fn(p)
        reply = self.inner.place_order(req)
        p.reply_at = time.time()
        p.result = reply.result.value
        self.placed.append(p)
        return reply

    def cancel_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        return self.inner.cancel_order(key, client_id, trigger)

    def lookup_order(self, key: Key, client_id: str, trigger: bool) -> OrderReply:
        return self.inner.lookup_order(key, client_id, trigger)

    def fetch_account(self, account: str) -> AccountView:
        return self.inner.fetch_account(account)

    def fetch_market(self, key: Key) -> MarketReply:
        return self.inner.fetch_market(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FrameTap:
    """Wraps a feed runner's frame callback: ``hook(data)`` runs first on the feed thread
    (keep it to a byte search), then the product's own handler."""

    def __init__(self, runner: Any, hook: Callable[[bytes], None]) -> None:
        self._inner = runner._on_frame
        self._hook = hook
        runner._on_frame = self

    def __call__(self, data: bytes, binary: bool) -> None:
        self._hook(data)
        self._inner(data, binary)


# --- the product ---------------------------------------------------------------------------


@dataclass
class Product:
    """The supervisor process's :class:`~supervision.app.App`, shipped configuration.

    ``symbols``: the account's allow-list. ``overrides``: configuration keys that differ
    from the shipped defaults (each figure says which, and why; most set none).
    """

    sim: SimProc
    dsn: str
    symbols: Sequence[str]
    workdir: Path
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    signals: bool = True
    app: Any = None
    port: StampedPort | None = None
    market_feed: Any = None
    signal_feed: Any = None
    #: Hooks on the frames the feeds read (installed before they connect): see FrameTap.
    market_tap: Callable[[bytes], None] | None = None
    signal_tap: Callable[[bytes], None] | None = None
    #: The app's metrics (a PrometheusMetrics subclass may observe), and a wrapper around
    #: the store the app is given (both for figures that inject a crash).
    metrics: Any = None
    wrap_store: Callable[[Any], Any] | None = None

    def config(self) -> Any:
        from infra.config import parse_config

        doc: dict[str, Any] = {
            "accounts": {
                ACCOUNT: {
                    "exchange": self.sim.venue,
                    "rest_url": self.sim.rest,
                    "ws_url": self.sim.ws,
                    "symbols": list(self.symbols),
                    "credentials": "dummy",
                }
            },
            "database": {"dsn": self.dsn},
            "metrics": {"address": "127.0.0.1:0"},
            "logging": {"level": "INFO", "json": True},
        }
        if self.signals:
            doc["feeds"] = {"signal_url": self.sim.signals}
        for section, values in self.overrides.items():
            doc.setdefault(section, {}).update(values)
        return parse_config(doc, {})

    def start(self, timeout: float = 120.0) -> Product:
        from infra.logs import setup_logging
        from supervision.app import App
        from supervision.wiring import wire_feeds, wire_infra

        cfg = self.config()
        self.workdir.mkdir(parents=True, exist_ok=True)
        _log_to(self.workdir / "product.log", cfg, setup_logging)

        def infra(config: Any, metrics: Any) -> Any:
            built = wire_infra(config, metrics)
            self.port = StampedPort(built.exchanges[ACCOUNT])
            built.exchanges = {ACCOUNT: self.port}
            if self.wrap_store is not None:
                built.store = self.wrap_store(built.store)
            return built

        def feeds(config: Any, app: Any) -> Any:
            from infra.feeds.market import MarkPriceFeed
            from infra.feeds.signals import SignalFeedClient

            out = wire_feeds(config, app)
            for f in out:
                if isinstance(f, MarkPriceFeed):
                    self.market_feed = f
                    if self.market_tap is not None:
                        FrameTap(f.runner, self.market_tap)
                elif isinstance(f, SignalFeedClient):
                    self.signal_feed = f
                    if self.signal_tap is not None:
                        FrameTap(f.runner, self.signal_tap)
            return out

        self.app = App(cfg, infra_factory=infra, feeds_factory=feeds, metrics=self.metrics)
        try:
            self.app.start()
            mf = self.market_feed
            if mf is not None:
                wait_for(mf.runner.connected.is_set, timeout, "the mark-price stream")
            sf = self.signal_feed
            if sf is not None:
                wait_for(sf.runner.connected.is_set, timeout, "the signal feed")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> bool:
        clean = True
        if self.app is not None:
            clean = bool(self.app.shutdown())
            self.app = None
        return clean

    @property
    def supervisor(self) -> Any:
        return self.app.supervisor

    def priced(self) -> int:
        """Symbols whose mark price the process holds: a live actor's, or the last one the
        stream brought for a symbol without an actor (given to its actor at start). A mark
        price starts no actor: a signal does."""
        sizes = self.supervisor.structure_sizes()
        return int(sizes["actors"]) + int(sizes["actorless_marks"])

    def limiter_stats(self) -> Any:
        assert self.port is not None
        lim = getattr(self.port.inner, "limiter", None)
        return None if lim is None else lim.stats()

    def actor(self, key: Key) -> Any:
        """The actor object of ``key`` (read-only inspection from another thread: its state
        is an immutable value replaced after each message)."""
        import pykka

        ref = self.supervisor._actors.get(key)
        if ref is None:
            return None
        with contextlib.suppress(pykka.ActorDeadError):
            return ref.proxy()._actor
        return None


_LOG: dict[str, Any] = {}


def _log_to(path: Path, cfg: Any, setup: Callable[..., Any]) -> None:
    """The product's logging as configured (INFO, JSON lines) into ``path``. The file stays
    open until the process exits: actor threads may log while they wind down."""
    if _LOG.get("path") == path:
        return
    stream = open(path, "a")  # noqa: SIM115
    setup(cfg.logging.level, cfg.logging.json, cfg.secret_values(), stream=stream)
    old = _LOG.get("stream")
    _LOG.update(path=path, stream=stream)
    if old is not None:
        old.flush()


def signal_doc(
    symbol: str,
    price: float,
    *,
    sid: str,
    stop_pct: float = 0.02,
    trailing_pct: float | None = None,
    take_profit_pct: float | None = None,
    size: float = 1.0,
) -> dict[str, Any]:
    """A long signal as a strategy would send it (stop ``stop_pct`` below ``price``)."""
    doc: dict[str, Any] = {
        "signal_id": sid,
        "source": "bench",
        "account": ACCOUNT,
        "symbol": symbol,
        "side": "long",
        "size": size,
        "stop_loss": round(price * (1 - stop_pct), 6),
        "created_at": time.time(),
    }
    if trailing_pct is not None:
        doc["trailing_distance"] = round(price * trailing_pct, 6)
    if take_profit_pct is not None:
        doc["take_profit"] = round(price * (1 + take_profit_pct), 6)
    return doc
