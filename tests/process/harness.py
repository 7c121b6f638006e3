"""A supervisor on the in-memory ports whose metrics go to Prometheus (and are counted).

Like :class:`testkit.world.World`, but the metrics object is a tee of
:class:`~testkit.world.CountingMetrics` (which ``settle`` needs) and
:class:`~infra.metrics.PrometheusMetrics` (what the tests scrape).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from actors.messages import Message
from actors.model import Key
from actors.state import Policy, Reentry, SymbolState
from infra.metrics import PrometheusMetrics
from supervision.supervisor import Supervisor, SupervisorConfig
from supervision.timers import ManualClock
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore
from testkit.world import ACCOUNT, CountingMetrics

__all__ = ["MetricsWorld", "TeeMetrics", "http_get"]


class TeeMetrics(CountingMetrics):
    """Counts (for ``settle``) and forwards every report to Prometheus."""

    def __init__(self, prom: PrometheusMetrics) -> None:
        super().__init__()
        self.prom = prom

    def signal(self, source: str, outcome: str, reason: str) -> None:
        super().signal(source, outcome, reason)
        self.prom.signal(source, outcome, reason)

    def order(self, kind: str, op: str, result: str) -> None:
        self.prom.order(kind, op, result)

    def transition(self, before: str | None, after: str | None) -> None:
        self.prom.transition(before, after)

    def handled(self, message_type: str, seconds: float) -> None:
        self.prom.handled(message_type, seconds)
        super().handled(message_type, seconds)

    def tick_decision(self, seconds: float) -> None:
        self.prom.tick_decision(seconds)

    def unprotected(self, seconds: float) -> None:
        super().unprotected(seconds)
        self.prom.unprotected(seconds)

    def commit_failed(self, reason: str) -> None:
        self.prom.commit_failed(reason)

    def dead_letter(self, reason: str) -> None:
        super().dead_letter(reason)
        self.prom.dead_letter(reason)

    def exchange_call(self, op: str, seconds: float) -> None:
        self.prom.exchange_call(op, seconds)


class MetricsWorld:
    """Supervisor + InMemoryStore + InMemoryExchange + ManualClock + PrometheusMetrics."""

    def __init__(self, prices: dict[str, float] | None = None) -> None:
        self.clock = ManualClock()
        self.store = InMemoryStore()
        self.exchange = InMemoryExchange(ACCOUNT, prices)
        self.exchange.use_clock(self.clock.now)
        self.prom = PrometheusMetrics()
        self.metrics = TeeMetrics(self.prom)
        self.sup = Supervisor(
            self.store,
            {ACCOUNT: self.exchange},
            self.clock,
            config=SupervisorConfig(policy=Policy(reentry=Reentry.ALLOW)),
            metrics=self.metrics,
        )
        self.exchange.listener = self.sup.tell
        self.clock.on_advance(self.sup.timers.fire_due)
        self.prom.watch_supervisor(self.sup.stats)

    def __enter__(self) -> MetricsWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.sup.stop(grace_s=5.0), "supervisor did not stop cleanly"

    def tell(self, *msgs: Message) -> None:
        for m in msgs:
            self.sup.tell(m)

    def settle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            before = self.metrics.handled_n
            if not self.sup.drain_calls(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("exchange calls still in flight")
            for key in list(self.sup.keys()):
                self.sup.state(key, timeout=max(0.1, deadline - time.monotonic()))
            if self.sup.in_flight() == 0 and self.metrics.handled_n == before:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("actors did not settle")

    def state(self, symbol: str) -> SymbolState:
        return self.sup.state(Key(ACCOUNT, symbol))


def http_get(url: str) -> tuple[int, str]:
    """``(status, body)`` of a GET, an HTTP error status included (``/healthz`` says 503)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
