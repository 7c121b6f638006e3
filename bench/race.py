"""Race trials: the whole system under overlapping signals, fast syncs, a mark-price flood and
slow, faulty order calls; then count what must never happen.

The supervisor runs as the product runs it (:class:`~supervision.app.App`: real PostgreSQL,
real ccxt over HTTP, real websocket-client feeds) against ``sim/`` in this process, either in
this process (:class:`InProcess`, the short variant in ``make test`` and ``make race``) or as a
real process under supervisord that gets SIGKILLed at random moments (``bench.chaos``).

What the trial does, for ``spec.duration_s``:

* four signal sources (``sim.sources``) fire overlapping bursts on the same symbols, with
  replayed signal ids, through the sim's signal feed (WebSocket) into the supervisor;
* the sync runs every ``spec.sync_interval_s``; mark prices move ``spec.marks_per_s`` times a
  second in all (a random walk over every symbol, pushed on the mark-price stream);
* every order call (``/fapi/v1/order``, ``/fapi/v1/algoOrder``) waits a random 0 to
  ``spec.order_latency_max_s`` in the sim, and faults are injected every
  ``spec.fault_interval_s``: 503 after the order was done, a connection closed after it was
  done, 429 with Retry-After, 502, margin rejections, lookups that answer "not found", partial
  fills, duplicated and reordered user-stream events, dropped streams;
* a sampler watches the exchange: a symbol with a position and no stop-loss order resting on
  the exchange is *unprotected*; one unprotected longer than ``spec.unprotected_bound_s`` counts.

The feed re-sends every signal the supervisor has not answered (acknowledged) to the next
connection, as a strategy server that loses nothing would, so a signal sent while the process
was down, or taken by a process that was killed before deciding it, must end recorded too.

Then the sources stop, the faults are cleared, the harness waits until every signal is
answered and every open position is active with its stop confirmed, stops the supervisor and
counts (:class:`RaceCounts`). The last
line printed is ``race: symbols=… signals=… duplicates=… max_entry_orders_per_position=…
unprotected=… lost_updates=… unrecorded_signals=…``.

Run: ``make race`` (long: 200 symbols, 5,000 marks/s, 0–3 s order latency, 120 s;
``make race VENUE=bybit`` against Bybit's wire) or
``python -m bench.race [--long] [--duration S] [--symbols N] [--venue bybit]``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from actors.model import OrderKind, Side, Status
from infra.store import PostgresStore
from sim.bybit import BybitExchange
from sim.exchange import SimExchange
from sim.faults import BYBIT_ORDER_CANCEL, BYBIT_ORDER_CREATE, CANCEL_PATHS
from sim.signals import SignalFeed
from sim.sources import SignalSources
from sim.symbols import make_symbols

__all__ = [
    "LONG",
    "SHORT",
    "InProcess",
    "RaceCounts",
    "RaceSpec",
    "Supervised",
    "UnprotectedSampler",
    "main",
    "make_sim",
    "on_fresh_database",
    "run_race",
]

log = logging.getLogger(__name__)

ACCOUNT = "main"
FEED_TOKEN = "race-feed-token-4b1d"
API_KEY = "race-api-key-not-a-secret"
API_SECRET = "race-api-secret-not-a-secret"
"""The trial's key pair: the Bybit sim checks every request's signature against it."""
ENTRY_ID = re.compile(r"^ps(\d+)e\d+$")
#: A stop-loss, take-profit or close of ours (the position id is group 1).
EXIT_ID = re.compile(r"^ps(\d+)[stc]\d+$")
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class RaceSpec:
    """One trial's knobs (all rates are totals, not per symbol)."""

    symbols: int = 200
    duration_s: float = 120.0
    bursts_per_s: float = 8.0
    sync_interval_s: float = 0.1
    marks_per_s: float = 5000.0
    order_latency_max_s: float = 3.0
    fault_interval_s: float = 0.5
    faults: bool = True
    sl_attempts: int = 5
    restart_allowance_s: float = 0.0
    settle_timeout_s: float = 60.0
    workers: int = 8
    seed: int = 7
    #: The account's ``exchange`` (a name of ``infra.exchange.venues.VENUES``); the sim
    #: speaks that venue's wire (``sim.bybit`` for "bybit").
    venue: str = "binanceusdm"

    @property
    def unprotected_bound_s(self) -> float:
        """How long a filled position may go without a stop on the exchange by design: each of
        ``sl_attempts`` placements costs at most a round trip, a lookup round trip when its
        outcome is unknown and the retry delays; then the emergency close's round trip. Plus
        ``restart_allowance_s`` (chaos: the process is down while a fill happens)."""
        latency = self.order_latency_max_s
        return self.sl_attempts * (2 * latency + 0.5) + latency + 1.0 + self.restart_allowance_s

    @property
    def walk_interval_s(self) -> float:
        """Every symbol moves once per interval: ``symbols / marks_per_s``."""
        return max(0.005, self.symbols / self.marks_per_s)


LONG = RaceSpec()
SHORT = RaceSpec(
    symbols=20,
    duration_s=8.0,
    bursts_per_s=6.0,
    marks_per_s=400.0,
    order_latency_max_s=0.6,
    fault_interval_s=0.3,
    settle_timeout_s=30.0,
)


@dataclass(slots=True)
class RaceCounts:
    """What a trial counted. ``ok`` when every must-hold count holds."""

    symbols: int
    signals: int = 0
    duplicates: int = 0
    accepted: int = 0
    positions: int = 0
    max_open_per_symbol: int = 0
    max_entry_orders_per_position: int = 0
    unprotected: int = 0
    max_unprotected_s: float = 0.0
    unprotected_p50_s: float = 0.0
    unprotected_p99_s: float = 0.0
    unprotected_bound_s: float = 0.0
    lost_updates: int = 0
    unrecorded_signals: int = 0
    redelivered: int = 0
    unanswered: int = 0
    kills: int = 0
    adopted: int = 0
    faults_fired: int = 0
    orphan_stops: int = 0
    orphan_stops_sampled: int = 0
    closed_by_another: int = 0
    settled: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.max_open_per_symbol <= 1
            and self.max_entry_orders_per_position <= 1
            and self.unprotected == 0
            and self.lost_updates == 0
            and self.unrecorded_signals == 0
            and self.orphan_stops == 0
            and self.orphan_stops_sampled == 0
            and self.closed_by_another == 0
            and self.settled
        )

    def detail_line(self) -> str:
        return (
            f"race detail: accepted={self.accepted} positions={self.positions}"
            f" max_open_per_symbol={self.max_open_per_symbol}"
            f" unprotected_s(p50/p99/max)={self.unprotected_p50_s:.2f}/"
            f"{self.unprotected_p99_s:.2f}/{self.max_unprotected_s:.2f}"
            f" bound_s={self.unprotected_bound_s:.1f} faults_fired={self.faults_fired}"
            f" kills={self.kills} redelivered={self.redelivered} unanswered={self.unanswered}"
            f" adopted={self.adopted}"
            f" orphan_stops={self.orphan_stops} orphan_stops_sampled={self.orphan_stops_sampled}"
            f" closed_by_another={self.closed_by_another}"
            f" settled={self.settled}"
        )

    def line(self) -> str:
        return (
            f"race: symbols={self.symbols} signals={self.signals} duplicates={self.duplicates}"
            f" max_entry_orders_per_position={self.max_entry_orders_per_position}"
            f" unprotected={self.unprotected} lost_updates={self.lost_updates}"
            f" unrecorded_signals={self.unrecorded_signals}"
        )


class Supervised(Protocol):
    """How the supervisor under trial runs. Called on the harness's main thread."""

    def start(self, config: Path, env: Mapping[str, str]) -> None:
        """Start it with this configuration file and environment; return when it is ready."""

    def kills(self) -> list[float]:
        """``time.monotonic()`` of every kill so far (empty for a runner that never kills)."""

    def stop(self) -> None:
        """Stop it gracefully (SIGTERM semantics); raise if it does not stop cleanly."""


class InProcess:
    """The :class:`~supervision.app.App` in this process (threads, not a subprocess)."""

    def __init__(self) -> None:
        self.app: Any = None

    def start(self, config: Path, env: Mapping[str, str]) -> None:
        from infra.config import load_config
        from supervision.app import App

        self.app = App(load_config(config, environ=env))
        try:
            self.app.start()
        except BaseException:
            self.app.shutdown()
            raise

    def kills(self) -> list[float]:
        return []

    def stop(self) -> None:
        if self.app is not None and not self.app.shutdown():
            raise RuntimeError("the supervisor did not stop cleanly")


# --- the harness ----------------------------------------------------------------------


def write_config(path: Path, spec: RaceSpec, sim: SimExchange, feed: SignalFeed) -> None:
    """The supervisor's TOML for the trial (secrets stay in the environment)."""
    symbols = ", ".join(f'"{s}"' for s in sim.initial_prices)
    path.write_text(
        f"""# race trial (bench/race.py)
[accounts.{ACCOUNT}]
exchange = "{spec.venue}"
rest_url = "{sim.base_url}"
ws_url = "{sim.ws_url}"
symbols = [{symbols}]
workers = {spec.workers}
enable_rate_limit = false
timeout_s = {spec.order_latency_max_s + 5.0}

[risk]
sl_max_attempts = {spec.sl_attempts}

[signal_policy]
reentry = "allow"
max_signal_age_s = 30.0

[sync]
interval_s = {spec.sync_interval_s}

[supervisor]
shutdown_grace_s = {spec.order_latency_max_s + 5.0}

[database]
account_lock_wait = true

[metrics]
address = "127.0.0.1:0"

[feeds]
signal_url = "{feed.url}"
silence_timeout_s = 15.0

[logging]
level = "WARNING"
json = true
"""
    )


def environment(dsn: str) -> dict[str, str]:
    """The supervisor's environment: this one, less any ``PS_`` variable, plus the trial's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    env.update(
        PS_MAIN_API_KEY=API_KEY,
        PS_MAIN_API_SECRET=API_SECRET,
        PS_DATABASE_DSN=dsn,
        PS_FEED_TOKEN=FEED_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    return env


class _SentLog:
    """Every signal the sources sent, with when and whether a client got it."""

    def __init__(self, feed: SignalFeed) -> None:
        self._feed = feed
        self._lock = threading.Lock()
        self.sent: list[tuple[str, float, bool]] = []
        self.symbols: dict[str, str] = {}

    def send(self, signal: dict[str, Any]) -> int:
        n = self._feed.send_signal(signal)
        with self._lock:
            self.sent.append((str(signal["signal_id"]), time.monotonic(), n > 0))
            self.symbols[str(signal["signal_id"])] = str(signal.get("symbol"))
        return n

    def snapshot(self) -> list[tuple[str, float, bool]]:
        with self._lock:
            return list(self.sent)


def _latest_entries(sim: SimExchange) -> dict[str, int]:
    """For each symbol, the highest position id whose entry the exchange executed."""
    latest: dict[str, int] = {}
    for e in sim.order_log():
        m = ENTRY_ID.match(e.client_id)
        if m and e.outcome == "accepted":
            latest[e.symbol] = max(latest.get(e.symbol, 0), int(m.group(1)))
    return latest


def _stale_stops(sim: SimExchange) -> list[str]:
    """Resting stops (or take-profits) of an *earlier* position on a symbol where a later
    position's entry was executed and a position is open: what closed #400 with #394's stop."""
    latest = _latest_entries(sim)
    open_symbols = {s for s, p in sim.positions().items() if abs(p.qty) > EPS}
    out = []
    for o in sim.open_orders():
        m = EXIT_ID.match(o.client_id)
        if o.kind != "algo" or m is None or o.symbol not in open_symbols:
            continue
        if int(m.group(1)) < latest.get(o.symbol, 0):
            out.append(f"{o.symbol}:{o.client_id}")
    return out


def _protected(sim: SimExchange) -> dict[str, bool]:
    """For each symbol with a position on the exchange: is a stop-loss resting against it?"""
    positions = {s: p.qty for s, p in sim.positions().items() if abs(p.qty) > EPS}
    out = dict.fromkeys(positions, False)
    for o in sim.open_orders():
        qty = positions.get(o.symbol)
        if qty is None or o.kind != "algo" or o.type != "STOP_MARKET":
            continue
        closing_side = "SELL" if qty > 0 else "BUY"
        if o.side == closing_side and (o.close_position or o.qty + EPS >= abs(qty)):
            out[o.symbol] = True
    return out


class UnprotectedSampler:
    """Watches the exchange every ``period_s``: how long each position went without a stop.

    ``start``/``stop`` from the harness's main thread; the sampler's own daemon thread calls
    :meth:`sample`, which the main thread may call too while settling (a lock keeps them one at
    a time). A failing look is logged and the next one runs; ``episodes`` holds the spells over
    ``bound_s``, ``max_s`` the longest, ``stale_stops`` the earlier positions' stops still
    resting (I9). Used by :func:`run_race` and by ``tests/process/test_race.py``."""

    def __init__(self, sim: SimExchange, bound_s: float, period_s: float = 0.05) -> None:
        self.sim = sim
        self.bound_s = bound_s
        self.period_s = period_s
        self.since: dict[str, float] = {}
        self.counted: set[str] = set()
        self.episodes: list[tuple[str, float, float]] = []  # symbol, seconds, wall start
        self.max_s = 0.0
        self.spells: list[float] = []  # every unprotected spell that ended, in seconds
        self.unprotected_now: list[str] = []
        self.stale_stops: set[str] = set()  # earlier positions' stops seen resting (I9)
        self._n = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="race-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def sample(self) -> None:
        """One look at the exchange. Called by the sampler thread and, while settling, by the
        harness's main thread: one at a time, or a spell could be ended twice."""
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        state = _protected(self.sim)
        naked = [s for s, ok in state.items() if not ok]
        for s in list(self.since):
            if s not in naked:
                self.spells.append(now - self.since.pop(s))
                self.counted.discard(s)
        for s in naked:
            t0 = self.since.setdefault(s, now)
            self.max_s = max(self.max_s, now - t0)
            if now - t0 > self.bound_s and s not in self.counted:
                self.counted.add(s)
                self.episodes.append((s, now - t0, time.time() - (now - t0)))
        self.unprotected_now = naked
        self._n += 1
        if self._n % 10 == 0:  # reads the whole order log: twice a second is enough
            self.stale_stops.update(_stale_stops(self.sim))

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.sample()
            except Exception:
                log.exception("race sampler failed")


_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("http_503", {"path": "/fapi/v1/order", "method": "POST"}),
    ("timeout", {"path": "/fapi/v1/order", "method": "POST", "close": True}),
    ("http_429", {"retry_after_s": 0.5}),
    ("http_502", {"path": "/fapi/v1/algoOrder", "method": "POST"}),
    ("http_503", {"path": "/fapi/v1/algoOrder", "method": "POST"}),
    ("reject_2019", {}),
    ("not_found", {}),
    ("partial_fill", {"parts": 3, "part_interval_s": 0.2}),
    ("ws_duplicate", {"count": 5}),
    ("ws_reorder", {}),
    # A 429 aimed at cancels (item A3 of "Money safety at the edges": an old stop whose
    # cancel failed was recorded cancelled and later closed a new position).
    ("http_429", {"path": CANCEL_PATHS, "method": "DELETE", "retry_after_s": 1, "count": 3}),
]

_BYBIT_CREATE = BYBIT_ORDER_CREATE[0][1]
_BYBIT_CANCEL = BYBIT_ORDER_CANCEL[0][1]
#: The same faults on Bybit's front, where one endpoint places entries and stops alike: its
#: 503 / 502 / timeout hit either; the rate-limit refusal is retCode 10006 with
#: X-Bapi-Limit-Reset-Timestamp (no Retry-After); "reject_2019" is 110007.
_BYBIT_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("http_503", {"path": _BYBIT_CREATE, "method": "POST"}),
    ("timeout", {"path": _BYBIT_CREATE, "method": "POST", "close": True}),
    ("http_429", {"retry_after_s": 0.5}),
    ("http_502", {"path": _BYBIT_CREATE, "method": "POST"}),
    ("http_503", {"path": _BYBIT_CREATE, "method": "POST"}),
    ("reject_2019", {}),
    ("not_found", {}),
    ("partial_fill", {"parts": 3, "part_interval_s": 0.2}),
    ("ws_duplicate", {"count": 5}),
    ("ws_reorder", {}),
    ("http_429", {"path": _BYBIT_CANCEL, "method": "POST", "retry_after_s": 1, "count": 3}),
]

#: Per venue: the order-placing paths that get the latency, and the fault table.
_VENUE_FAULTS: dict[str, tuple[tuple[str, ...], list[tuple[str, dict[str, Any]]]]] = {
    "binanceusdm": (("/fapi/v1/order", "/fapi/v1/algoOrder"), _FAULTS),
    "bybit": ((_BYBIT_CREATE,), _BYBIT_FAULTS),
}


class _Faults:
    """Latency on every order call, and one random fault every ``spec.fault_interval_s``."""

    def __init__(self, sim: SimExchange, spec: RaceSpec) -> None:
        self.sim = sim
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.order_paths, self.table = _VENUE_FAULTS[spec.venue]
        self.fired: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="race-faults", daemon=True)

    def start(self) -> None:
        for path in self.order_paths:
            self.sim.add_fault(
                "latency",
                path=path,
                count=None,
                latency_s=0.0,
                latency_max_s=self.spec.order_latency_max_s,
            )
        if self.spec.faults:
            # The exchange's open-order lists lag placement by 3 s for the whole trial (item
            # A4: the sync used to re-place every stop it did not see yet).
            self.sim.add_fault("lag_open_orders", lag_s=3.0, count=None)
            self.fired["lag_open_orders"] += 1
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self.sim.clear_faults()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.spec.fault_interval_s):
            n += 1
            try:
                if n % 20 == 0:
                    kind = self.rng.choice(["user", "market"])
                    self.sim.drop_streams(kind)
                    self.fired[f"drop_{kind}_streams"] += 1
                    continue
                kind, options = self.rng.choice(self.table)
                self.sim.add_fault(kind, **options)
                self.fired[kind] += 1
            except Exception:
                log.exception("fault injection failed")


def _settled(store: PostgresStore, sampler: UnprotectedSampler, feed: SignalFeed) -> bool:
    if feed.pending():  # a signal not answered yet: still on its way, or to be re-sent
        return False
    sampler.sample()
    if sampler.unprotected_now:
        return False
    open_positions = store.positions(ACCOUNT, include_terminal=False)
    for p in open_positions:
        if p.status is not Status.ACTIVE or not p.stop_confirmed:
            return False
    return not _orphans(sampler.sim, {p.id for p in open_positions})


def _orphans(sim: SimExchange, open_ids: set[int]) -> list[str]:
    """Resting orders of ours that belong to no open position (I9: must be none at rest)."""
    out = []
    for o in sim.open_orders():
        m = EXIT_ID.match(o.client_id) or ENTRY_ID.match(o.client_id)
        if m is not None and int(m.group(1)) not in open_ids:
            out.append(f"{o.symbol}:{o.client_id}")
    return out


def _closed_by_another(sim: SimExchange) -> list[str]:
    """Stops and closes of ours that executed while a *later* position was open on their
    symbol: a leftover of an earlier position closed a newer one (the sim's own books)."""
    entries: dict[str, list[tuple[int, int]]] = {}  # symbol -> [(time ms, position id)]
    exits: list[tuple[str, int, int, str]] = []  # symbol, time ms, position id, client id
    with sim.lock:
        for symbol in sim.initial_prices:
            for so in sim.engine.orders(symbol):
                if so.executed_qty <= EPS:
                    continue
                m = ENTRY_ID.match(so.client_order_id)
                if m:
                    entries.setdefault(symbol, []).append((so.time, int(m.group(1))))
                    continue
                m = EXIT_ID.match(so.client_order_id)
                if m:
                    exits.append((symbol, so.time, int(m.group(1)), so.client_order_id))
    out = []
    for symbol, t, pid, cid in exits:
        before = [p for at, p in entries.get(symbol, []) if at <= t]
        if before and max(before) > pid:
            out.append(f"{symbol}: {cid} executed while position {max(before)} was open")
    return out


def _wait(cond: Callable[[], bool], timeout: float, period: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return True
        except Exception as exc:  # the database may be restarting with the supervisor
            log.debug("condition raised %r", exc)
        if time.monotonic() >= deadline:
            return False
        threading.Event().wait(period)


def _story(store: PostgresStore, symbol: str, ids: set[int], last: int = 16) -> str:
    """The journal of ``symbol`` for positions ``ids`` as ``kind:cause`` words (diagnostics)."""
    words = [
        f"{e.event.kind}:{e.cause_type}"
        for e in store.journal(ACCOUNT, symbol)
        if e.event.position_id is None or e.event.position_id in ids
    ]
    return " ".join(words[-last:])


def count(
    spec: RaceSpec,
    sim: SimExchange,
    store: PostgresStore,
    sent: list[tuple[str, float, bool]],
    kills: list[float],
    sampler: UnprotectedSampler,
    symbols_of: Mapping[str, str] | None = None,
    feed: SignalFeed | None = None,
) -> RaceCounts:
    """The counts, from the exchange (sim) and the database, after the supervisor stopped.

    Every signal the sources sent counts, also one sent while no supervisor was connected
    or in the second before a kill: the feed re-sends what the supervisor did not answer
    when the next process connects, so each must end with a recorded outcome."""
    c = RaceCounts(symbols=len(sim.initial_prices))
    delivered: dict[str, float] = {}
    for sid, at, _ in sent:
        delivered.setdefault(sid, at)
    c.signals = len(delivered)
    records = store.signals(ACCOUNT)
    recorded = {r.signal_id for r in records}
    outcomes = Counter(r.outcome.value for r in records)
    c.duplicates = outcomes.get("duplicate", 0)
    c.accepted = outcomes.get("accepted", 0)
    if feed is not None:
        c.redelivered = feed.redelivered
        c.unanswered = len(feed.pending())
    missing = [sid for sid in delivered if sid not in recorded]
    c.unrecorded_signals = len(missing)
    for sid in missing[:5]:
        after = [k - delivered[sid] for k in kills if k >= delivered[sid]]
        when = f", {min(after):.2f}s before a kill" if after else ", after the last kill"
        symbol = (symbols_of or {}).get(sid, "?")
        c.problems.append(f"signal {sid} ({symbol}) delivered, not recorded{when}")

    log_by_symbol: dict[str, list[str]] = {}
    t_first = min((e.time for e in sim.order_log()), default=0.0)
    for e in sim.order_log():
        log_by_symbol.setdefault(e.symbol, []).append(
            f"{e.time - t_first:.2f}s {e.endpoint} {e.client_id} {e.outcome}"
            + ("" if e.code is None else f" {e.code}")
            + (" " + ",".join(e.faults) if e.faults else "")
        )
    positions = store.positions(ACCOUNT)
    c.positions = len(positions)
    open_per_symbol = Counter(p.key.symbol for p in positions if not p.status.terminal)
    c.max_open_per_symbol = max(open_per_symbol.values(), default=0)
    # Nobody else trades on this exchange: an adopted position is one of ours we lost track of
    # (reported, with its journal; the counts above say whether it did harm).
    for p in positions:
        if p.source == "sync":
            c.adopted += 1
            c.problems.append(
                f"{p.key.symbol}: position {p.id} adopted ({p.status.value}); journal: "
                + _story(store, p.key.symbol, {p.id - 1, p.id})
            )

    # Entry orders that the exchange executed, per position (the sim's order log).
    entries: Counter[int] = Counter()
    for e in sim.order_log():
        m = ENTRY_ID.match(e.client_id)
        if m and e.outcome == "accepted":
            entries[int(m.group(1))] += 1
    c.max_entry_orders_per_position = max(entries.values(), default=0)
    for pid, n in entries.items():
        if n > 1:
            c.problems.append(f"position {pid}: {n} entry orders executed")

    # Lost updates: what the exchange says happened and the database does not know.
    executed: dict[str, float] = {}
    with sim.lock:
        for symbol in sim.initial_prices:
            for so in sim.engine.orders(symbol):
                if ENTRY_ID.match(so.client_order_id) and so.executed_qty > EPS:
                    executed[so.client_order_id] = so.executed_qty
    known: dict[str, float] = {}
    for p in positions:
        for o in p.orders:
            if o.kind is OrderKind.ENTRY:
                known[o.client_id] = o.filled_qty
    for cid, qty in executed.items():
        if cid not in known or not math.isclose(known[cid], qty, rel_tol=1e-6, abs_tol=1e-9):
            c.lost_updates += 1
            pid = int(ENTRY_ID.match(cid).group(1))  # type: ignore[union-attr]
            symbol = next((p.key.symbol for p in positions if p.id == pid), "?")
            c.problems.append(
                f"entry {cid} ({symbol}): exchange filled {qty}, database {known.get(cid)};"
                f" journal: {_story(store, symbol, {pid})}; orders: "
                + "; ".join(log_by_symbol.get(symbol, [])[-12:])
            )
    on_exchange = {s: p.qty for s, p in sim.positions().items() if abs(p.qty) > EPS}
    held: dict[str, float] = {}
    for p in positions:
        if not p.status.terminal:
            held[p.key.symbol] = p.qty if p.side is Side.LONG else -p.qty
    for symbol in set(on_exchange) | set(held):
        a, b = on_exchange.get(symbol, 0.0), held.get(symbol, 0.0)
        if not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9):
            c.lost_updates += 1
            c.problems.append(f"{symbol}: exchange holds {a}, database {b}")

    c.unprotected = len(sampler.episodes)
    c.max_unprotected_s = sampler.max_s
    c.unprotected_bound_s = spec.unprotected_bound_s
    spells = sorted(sampler.spells + [time.monotonic() - t for t in sampler.since.values()])
    if spells:
        c.unprotected_p50_s = spells[len(spells) // 2]
        c.unprotected_p99_s = spells[min(len(spells) - 1, round(0.99 * (len(spells) - 1)))]
    for symbol, s, at in sampler.episodes:
        c.problems.append(
            f"{symbol}: without a stop-loss for over {s:.1f}s from {at - t_first:.2f}s;"
            " its orders: " + "; ".join(log_by_symbol.get(symbol, [])[:12])
        )
    c.orphan_stops = 0
    open_ids = {p.id for p in positions if not p.status.terminal}
    for orphan in _orphans(sim, open_ids):
        c.orphan_stops += 1
        c.problems.append(f"{orphan}: resting, no open position of ours needs it")
    c.orphan_stops_sampled = len(sampler.stale_stops)
    for stale in sorted(sampler.stale_stops)[:5]:
        c.problems.append(f"{stale}: an earlier position's stop rested beside a later one")
    closed = _closed_by_another(sim)
    c.closed_by_another = len(closed)
    c.problems.extend(closed[:5])
    c.kills = len(kills)
    return c


def make_sim(spec: RaceSpec) -> SimExchange:
    """The sim speaking ``spec.venue``'s wire (raises ``ValueError`` for another venue)."""
    symbols = make_symbols(spec.symbols)
    if spec.venue == "binanceusdm":
        return SimExchange(symbols, seed=spec.seed)
    if spec.venue == "bybit":
        return BybitExchange(symbols, seed=spec.seed, secrets={API_KEY: API_SECRET})
    raise ValueError(f"no sim for venue {spec.venue!r}: binanceusdm or bybit")


@contextlib.contextmanager
def _exchange_and_feed(spec: RaceSpec) -> Iterator[tuple[SimExchange, SignalFeed]]:
    sim = make_sim(spec)
    feed = SignalFeed("127.0.0.1", 0, token=FEED_TOKEN, redeliver=True)
    try:
        sim.start()
        feed.start()
        yield sim, feed
    finally:
        feed.stop()
        sim.stop()


def run_race(
    spec: RaceSpec,
    dsn: str,
    workdir: Path,
    runner: Supervised | None = None,
    during: Callable[[Supervised, float], None] | None = None,
) -> RaceCounts:
    """One trial against a migrated, empty database ``dsn``; files go in ``workdir``.

    ``during(runner, deadline)`` runs on this thread while the sources fire (the chaos
    variant kills the process from there); by default it just waits for the deadline.
    """
    runner = runner or InProcess()
    workdir.mkdir(parents=True, exist_ok=True)
    with _exchange_and_feed(spec) as (sim, feed):
        config = workdir / "race.toml"
        write_config(config, spec, sim, feed)
        sent = _SentLog(feed)
        sampler = UnprotectedSampler(sim, spec.unprotected_bound_s)
        faults = _Faults(sim, spec)
        sources = SignalSources(
            sent.send,
            list(sim.initial_prices),
            sim.mark_price,
            accounts=[ACCOUNT],
            rate_per_s=spec.bursts_per_s,
            seed=spec.seed,
        )
        store = PostgresStore(dsn, migrate_schema=False)
        started = False
        try:
            runner.start(config, environment(dsn))
            started = True
            if not feed.wait_for_clients(1, 30.0):
                raise RuntimeError("the supervisor did not connect to the signal feed")
            sim.start_random_walk(spec.walk_interval_s, 0.0005)
            sampler.start()
            faults.start()
            sources.start()
            deadline = time.monotonic() + spec.duration_s
            if during is not None:
                during(runner, deadline)
            remaining = deadline - time.monotonic()
            if remaining > 0:
                threading.Event().wait(remaining)
            sources.stop()
            faults.stop()
            sim.stop_random_walk()
            settled = _wait(lambda: _settled(store, sampler, feed), spec.settle_timeout_s)
            # A few more syncs, so that what the sync repairs is repaired before counting.
            threading.Event().wait(3 * spec.sync_interval_s + 0.2)
            kills = runner.kills()
            runner.stop()
            started = False
            sampler.stop()
            counts = count(
                spec,
                sim,
                store,
                sent.snapshot(),
                kills,
                sampler,
                symbols_of=dict(sent.symbols),
                feed=feed,
            )
            counts.settled = settled
            counts.faults_fired = sum(faults.fired.values())
            if not settled:
                stuck = [
                    f"{p.key.symbol}#{p.id} {p.status.value} stop_confirmed={p.stop_confirmed}"
                    for p in store.positions(ACCOUNT, include_terminal=False)
                    if p.status is not Status.ACTIVE or not p.stop_confirmed
                ]
                counts.problems.append(
                    "positions did not settle (active with a stop) in time: "
                    f"{stuck[:5]}, without a stop on the exchange: {sampler.unprotected_now[:5]},"
                    f" signals not answered: {feed.pending()[:5]}"
                )
            return counts
        finally:
            sources.stop()
            faults.stop()
            sim.stop_random_walk()
            sampler.stop()
            if started:
                with contextlib.suppress(Exception):
                    runner.stop()
            store.close()


def report(counts: RaceCounts) -> None:
    for p in counts.problems[:20]:
        print(f"race problem: {p}")
    print(counts.detail_line())
    print(counts.line(), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.race", description=__doc__.split("\n")[0])
    ap.add_argument("--long", action="store_true", help="200 symbols, 5,000 marks/s, 120 s")
    ap.add_argument("--duration", type=float, help="seconds of signals (overrides the preset)")
    ap.add_argument("--symbols", type=int, help="number of symbols (overrides the preset)")
    ap.add_argument("--no-faults", action="store_true", help="latency only, no other fault")
    ap.add_argument("--seed", type=int, help="random seed of sources and faults")
    ap.add_argument(
        "--venue",
        choices=sorted(_VENUE_FAULTS),
        default="binanceusdm",
        help="the exchange the account trades on (the sim speaks its wire)",
    )
    args = ap.parse_args(argv)
    spec = LONG if args.long else SHORT
    if args.duration is not None:
        spec = replace(spec, duration_s=args.duration)
    if args.symbols is not None:
        spec = replace(spec, symbols=args.symbols)
    if args.no_faults:
        spec = replace(spec, faults=False)
    if args.seed is not None:
        spec = replace(spec, seed=args.seed)
    spec = replace(spec, venue=args.venue)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s %(message)s")
    return on_fresh_database(lambda dsn: run_race(spec, dsn, Path(".data") / "race"), f"{spec}")


def on_fresh_database(trial: Callable[[str], RaceCounts], label: str) -> int:
    """Run ``trial(dsn)`` on a fresh migrated database of the test server (embedded unless
    ``PS_TEST_DSN``), print its counts; the exit code is 0 when every count holds."""
    from testkit import pg

    admin = pg.admin_dsn()
    t0 = time.monotonic()
    try:
        with pg.fresh_database(admin) as dsn:
            counts = trial(dsn)
    finally:
        pg.shutdown()
    print(f"# {label} in {time.monotonic() - t0:.1f}s")
    report(counts)
    return 0 if counts.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
