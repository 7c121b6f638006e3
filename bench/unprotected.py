"""4: unprotected window (fill → stop-loss acknowledged) against sim/ through ccxt, vs one ccxt
order round trip to the same sim in the same run.

The real path, wired as ``supervision.app.App`` wires it: an in-process
:class:`sim.SimExchange` (REST over 127.0.0.1), the real :class:`infra.exchange.CcxtExchange`
(real ccxt, rate limiter off), a :class:`supervision.supervisor.Supervisor` (timer thread
running, default worker pool) on a :class:`infra.store.postgres.PostgresStore` behind the
app's :class:`supervision.app.TimedStore`, on a fresh database of the embedded PostgreSQL
(``bench/pg.py``). No exchange stream runs here: the adapter sends market orders with
``newOrderRespType=RESULT`` (as on Binance), so the entry's REST reply carries its fill, which
is one of the two ways the product learns of it (the user stream's copy is the other; the
first to arrive is applied). No sync runs (it is not on the fill → stop path).

One position at a time, each on a symbol of its own: ``OpenSignal`` → entry (market, filled in
the reply) → the actor commits the fill and places the ``closePosition`` stop → the stop's
reply → ``stop_confirmed``. The figure is what the actor reports through
``Metrics.unprotected(protected_at - filled_at)`` (both stamped with the actor's clock when it
handled the fill and the stop's acknowledgement). Between positions, two market orders on a
symbol of their own through the same adapter and sim are timed as the baseline (what
``tests.exchange.roundtrip.measure_round_trip`` times: ``CcxtExchange.place_order``, one HTTP
POST); that helper is also run as is (its own sim) and reported as a cross-check.

The window is split with stamps the adapter subclass takes around the stop's ``place_order``:
fill handled → stop request starts (fill commit + hand-off to a worker), the stop's ccxt round
trip, reply → acknowledgement handled (delivery + mailbox). Warm-up positions (opened
``workers_per_account`` at a time until every worker thread has made its ccxt client, at most
five rounds) are not counted, nor a later position whose stop was a thread's first call (the
client is made once per worker thread and process; ``unprotected_cold_client_excluded``).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

from actors.messages import CallResult, OpenSignal
from actors.model import Key, OrderKind, Side, Status
from actors.ports import NullMetrics, OrderReply, OrderRequest, Store, SystemClock
from actors.state import Commit
from bench.common import QUICK, pct
from bench.pg import database
from infra.exchange import CcxtExchange, VenueConfig
from sim import SimExchange
from supervision.app import TimedStore
from supervision.supervisor import Supervisor, SupervisorConfig

ACCOUNT = "bench"
PRICE = 100.0
QTY = 1.0
STOP = 98.0
BASE_SYMBOL = "BASEUSDT"
WORKERS = SupervisorConfig().workers_per_account
WARM_ROUNDS = 5


def _sym(i: int) -> str:
    return f"UP{i:05d}USDT"


class WindowMetrics(NullMetrics):
    """The metrics port: keeps every ``unprotected`` report and the dead letters."""

    def __init__(self) -> None:
        self.windows: list[float] = []
        self.dead: list[str] = []
        self._cv = threading.Condition()

    def unprotected(self, seconds: float) -> None:
        with self._cv:
            self.windows.append(seconds)
            self._cv.notify_all()

    def dead_letter(self, reason: str) -> None:
        with self._cv:
            self.dead.append(reason)

    def wait_count(self, n: int, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: len(self.windows) >= n, timeout)


class StampedExchange(CcxtExchange):
    """The real adapter; also stamps (actor clock) when a stop-loss request starts and ends,
    and notes the stops sent by a thread on its first call (its ccxt client made then)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.stop_calls: dict[str, tuple[float, float]] = {}
        self.cold_stops: set[str] = set()
        self.threads: set[int] = set()

    def place_order(self, req: OrderRequest) -> OrderReply:
        me = threading.get_ident()
        cold = me not in self.threads
        self.threads.add(me)
        if req.kind is not OrderKind.STOP_LOSS:
            return super().place_order(req)
        if cold:
            self.cold_stops.add(req.key.symbol)
        t0 = time.time()
        reply = super().place_order(req)
        self.stop_calls[req.key.symbol] = (t0, time.time())
        return reply


class FillTimedStore(TimedStore):
    """The app's store wrapper; also times the commit that records a first fill."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner, None)
        self.fill_commits: dict[str, float] = {}

    def commit(self, commit: Commit) -> None:
        t0 = time.perf_counter()
        super().commit(commit)
        if any(ev.kind == "entry_fill" for ev in commit.events):
            self.fill_commits.setdefault(commit.key.symbol, time.perf_counter() - t0)


@dataclass
class Split:
    to_send: list[float]
    stop_rt: list[float]
    to_ack: list[float]
    fill_commit: list[float]


def _round_trip(ex: CcxtExchange, i: int) -> float:
    side = "buy" if i % 2 == 0 else "sell"
    req = OrderRequest(Key(ACCOUNT, BASE_SYMBOL), f"rt{i}", OrderKind.ENTRY, side, QTY)
    t0 = time.perf_counter()
    reply = ex.place_order(req)
    elapsed = time.perf_counter() - t0
    if reply.result is not CallResult.ACCEPTED:
        raise RuntimeError(f"baseline order {req.client_id} not accepted: {reply}")
    return elapsed


def _signal(i: int) -> OpenSignal:
    return OpenSignal(Key(ACCOUNT, _sym(i)), f"u{i}", "bench", Side.LONG, QTY, STOP)


def _helper_round_trip(n: int) -> tuple[float | None, float | None, str | None]:
    try:
        from tests.exchange.roundtrip import measure_round_trip

        rt = measure_round_trip(n)
    except Exception as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
    return rt.p50_ms, rt.p99_ms, None


def _nulls(note: str) -> dict[str, Any]:
    return {
        "unprotected_p50_ms": None,
        "unprotected_p99_ms": None,
        "ccxt_round_trip_p50_ms": None,
        "ccxt_round_trip_p99_ms": None,
        "unprotected_p99_ratio": None,
        "unprotected_p99_ratio_note": note,
    }


def run() -> dict[str, Any]:
    n = 40 if QUICK else 500
    cap = WORKERS * WARM_ROUNDS
    out: dict[str, Any] = {}
    h50, h99, h_err = _helper_round_trip(100 if QUICK else 300)
    with database() as (dsn, note):
        if dsn is None:
            return _nulls(note + "; the window needs the PostgreSQL store")
        from infra.store.postgres import PostgresStore

        symbols = {_sym(i): PRICE for i in range(cap + n)}
        symbols[BASE_SYMBOL] = PRICE
        metrics = WindowMetrics()
        windows: list[float] = []
        base: list[float] = []
        split = Split([], [], [], [])
        lost = cold = 0
        main = threading.get_ident()
        with SimExchange(symbols, wallet_usdt=1e12, seed=4) as sim:
            cfg = VenueConfig(
                base_url=sim.base_url, require_credentials=False, enable_rate_limit=False
            )
            ex = StampedExchange(ACCOUNT, cfg)
            inner = PostgresStore(dsn)
            store = FillTimedStore(inner)
            sup = Supervisor(
                store,
                {ACCOUNT: ex},
                SystemClock(),
                config=SupervisorConfig(shutdown_grace_s=5.0),
                metrics=metrics,
            )
            try:
                sup.start()
                sup.recover()
                ex.load_markets()
                for i in range(20):  # the main thread's ccxt client, HTTP connection
                    _round_trip(ex, i)
                # Warm-up: WORKERS entries at once until every worker thread has its client.
                done = 0
                while done < WORKERS * WARM_ROUNDS and len(ex.threads - {main}) < WORKERS:
                    for i in range(done, done + WORKERS):
                        sup.tell(_signal(i))
                    done += WORKERS
                    if not metrics.wait_count(done, 15.0):
                        raise RuntimeError(f"warm-up positions not protected: {sup.stats()}")
                warm = done
                rt_i = 20
                for j in range(warm, warm + n):
                    for _ in range(2):
                        base.append(_round_trip(ex, rt_i))
                        rt_i += 1
                    sup.tell(_signal(j))
                    if not metrics.wait_count(done + 1, 10.0):
                        lost += 1  # stop here: a late report would be taken for the next one
                        break
                    done += 1
                    if _sym(j) in ex.cold_stops:  # a ccxt client made in the window: once
                        cold += 1  # per worker thread and process, not the steady state
                        continue
                    windows.append(metrics.windows[-1])
                    pos = sup.state(Key(ACCOUNT, _sym(j))).position
                    sent = ex.stop_calls.get(_sym(j))
                    if (
                        pos is not None
                        and pos.filled_at is not None
                        and pos.protected_at is not None
                        and sent is not None
                    ):
                        split.to_send.append(sent[0] - pos.filled_at)
                        split.stop_rt.append(sent[1] - sent[0])
                        split.to_ack.append(pos.protected_at - sent[1])
                    fc = store.fill_commits.get(_sym(j))
                    if fc is not None:
                        split.fill_commit.append(fc)
                active = sum(1 for p in store.open_positions(ACCOUNT) if p.status is Status.ACTIVE)
                resting = sum(1 for o in sim.open_orders() if o.close_position)
            finally:
                clean = sup.stop(grace_s=5.0)
                ex.close()
                inner.close()
        out["unprotected_store"] = note
    ms = 1e3
    p50, p99 = pct(windows, 50) * ms, pct(windows, 99) * ms
    b50, b99 = pct(base, 50) * ms, pct(base, 99) * ms
    out.update(
        {
            "unprotected_n": len(windows),
            "unprotected_lost": lost,
            "unprotected_warmup": warm,
            "unprotected_p50_ms": p50,
            "unprotected_p99_ms": p99,
            "unprotected_max_ms": max(windows) * ms if windows else None,
            "unprotected_mean_ms": statistics.fmean(windows) * ms if windows else None,
            "ccxt_round_trip_n": len(base),
            "ccxt_round_trip_p50_ms": b50,
            "ccxt_round_trip_p99_ms": b99,
            "ccxt_round_trip_helper_p50_ms": h50,
            "ccxt_round_trip_helper_p99_ms": h99,
            "unprotected_p50_ratio": p50 / b50 if windows and base else None,
            "unprotected_p99_ratio": p99 / b99 if windows and base else None,
            "unprotected_fill_to_stop_sent_p50_ms": pct(split.to_send, 50) * ms,
            "unprotected_fill_to_stop_sent_p99_ms": pct(split.to_send, 99) * ms,
            "unprotected_fill_commit_p50_ms": pct(split.fill_commit, 50) * ms,
            "unprotected_fill_commit_p99_ms": pct(split.fill_commit, 99) * ms,
            "unprotected_stop_round_trip_p50_ms": pct(split.stop_rt, 50) * ms,
            "unprotected_stop_round_trip_p99_ms": pct(split.stop_rt, 99) * ms,
            "unprotected_reply_to_ack_p50_ms": pct(split.to_ack, 50) * ms,
            "unprotected_reply_to_ack_p99_ms": pct(split.to_ack, 99) * ms,
            "unprotected_active_positions": active,
            "unprotected_resting_stops": resting,
            "unprotected_worker_threads": len(ex.threads - {main}),
            "unprotected_cold_client_excluded": cold,
            "unprotected_dead_letters": len(metrics.dead),
            "unprotected_clean_stop": clean,
        }
    )
    if h_err is not None:
        out["ccxt_round_trip_helper_note"] = h_err
    if lost:
        out["unprotected_p99_ratio_note"] = "a position was not protected within 10 s; stopped"
    return out
