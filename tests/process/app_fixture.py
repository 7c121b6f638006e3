"""The app on in-memory ports, shared by ``test_app.py`` and ``test_probes.py``.

:class:`Fixture` builds an :class:`~supervision.app.App` whose infrastructure factory hands it
an in-memory store and exchange and a :class:`FakeFeed` (the HTTP server and its probes are the
real ones); :func:`app_config` is the one-account configuration they run. Test thread only.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from infra.config import Config, parse_config
from infra.metrics import PrometheusMetrics
from supervision.app import App
from supervision.wiring import Infra
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore

__all__ = ["SYMBOLS", "FakeFeed", "Fixture", "app_config"]

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def app_config(**extra: Any) -> Config:
    """A valid configuration of one account ``main`` trading :data:`SYMBOLS` with dummy
    credentials, metrics on a free port, a fast sync; ``extra`` sections are merged in."""
    doc: dict[str, Any] = {
        "accounts": {
            "main": {
                "rest_url": "http://127.0.0.1:1",
                "ws_url": "ws://127.0.0.1:1",
                "symbols": SYMBOLS,
                "credentials": "dummy",
            }
        },
        "metrics": {"address": "127.0.0.1:0"},
        "sync": {"interval_s": 0.2},
        "supervisor": {"shutdown_grace_s": 2.0},
        "signal_policy": {"reentry": "allow"},
    }
    for k, v in extra.items():
        doc.setdefault(k, {}).update(v)
    return parse_config(doc, {})


class FakeFeed:
    """A feed that only logs its start and stop; ``block`` holds ``stop`` until it is set."""

    def __init__(self, log: list[str], block: threading.Event | None = None) -> None:
        self.log = log
        self.block = block
        self.stopping = threading.Event()

    def start(self) -> None:
        self.log.append("feed started")

    def stop(self) -> None:
        self.stopping.set()
        self.log.append("feed stopped")
        if self.block is not None:
            while not self.block.wait(0.02):
                pass


class Fixture:
    """In-memory store and exchange, a :class:`FakeFeed`, and the ``force_exit`` calls."""

    def __init__(self, block: threading.Event | None = None) -> None:
        self.store = InMemoryStore()
        self.exchange = InMemoryExchange("main", dict.fromkeys(SYMBOLS, 100.0))
        self.events: list[str] = []
        self.feed = FakeFeed(self.events, block)
        self.forced: list[int] = []

    def infra(self, config: Config, metrics: PrometheusMetrics) -> Infra:
        resources = contextlib.ExitStack()
        resources.callback(self.events.append, "store closed")
        return Infra(store=self.store, exchanges={"main": self.exchange}, resources=resources)

    def app(self, config: Config) -> App:
        """An :class:`App` on these ports (not started); exchange events reach its supervisor."""
        app = App(
            config,
            infra_factory=self.infra,
            feeds_factory=lambda cfg, a: [self.feed],
            force_exit=self.forced.append,
        )
        self.exchange.listener = lambda m: app.supervisor.tell(m) if app.supervisor else False
        return app
