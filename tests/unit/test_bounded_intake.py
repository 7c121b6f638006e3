"""The intake's recent admissions and the sync's pending requests stay bounded (issue 14,
item 1), and the app reports them with the supervisor's structure sizes."""

from __future__ import annotations

from typing import Any

import pytest

from actors.model import Key
from infra.config import Config, parse_config
from infra.metrics import PrometheusMetrics
from supervision.app import App
from supervision.intake import Intake
from supervision.sync import SyncService
from supervision.wiring import Infra
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore
from testkit.waiting import poll
from testkit.world import ACCOUNT, World, signal

pytestmark = pytest.mark.timeout(60)

SYMBOLS = [f"I{i:03d}USDT" for i in range(300)]


def _config(**extra: Any) -> Config:
    doc: dict[str, Any] = {
        "accounts": {
            ACCOUNT: {
                "rest_url": "http://127.0.0.1:1",
                "ws_url": "ws://127.0.0.1:1",
                "symbols": SYMBOLS,
                "credentials": "dummy",
            }
        },
        "metrics": {"enabled": False},
        "signal_policy": {"reentry": "allow"},
    }
    for k, v in extra.items():
        doc.setdefault(k, {}).update(v)
    return parse_config(doc, {})


def test_recent_admissions_return_to_their_size() -> None:
    cfg = _config(risk={"max_open_positions": 1000})
    with World(prices=dict.fromkeys(SYMBOLS, 100.0)) as w:
        intake = Intake(cfg, w.sup, clock=w.clock, store=w.store)
        for s in SYMBOLS:
            assert intake.tell(signal(s))
        assert intake.admitted() == len(SYMBOLS)
        w.settle()
        intake.ADMITTED_MEMORY_S = -1.0  # every admission is older than the memory now
        assert intake.tell(signal(SYMBOLS[0]))  # the next check forgets them
        assert intake.admitted() == 1
        w.settle()


def test_sync_requests_hold_configured_accounts_only_and_empty_each_round() -> None:
    exchange = InMemoryExchange(ACCOUNT, {"BTCUSDT": 100.0})
    told: list[object] = []
    sync = SyncService({ACCOUNT: exchange}, told.append, list, interval_s=3600.0)
    for i in range(1000):
        sync.request(f"acct{i}", "test")  # accounts this process does not sync: ignored
        sync.request(ACCOUNT, "test")
    assert sync.sizes() == {"sync_requested": 1}
    sync.start()
    try:
        poll(lambda: sync.rounds >= 1, 10.0, "the request was served")
        assert sync.sizes() == {"sync_requested": 0}
        sync.request("elsewhere", "test")
        sync.request(ACCOUNT, "again")
        poll(lambda: sync.rounds >= 2, 10.0, "the sync thread is still alive")
        assert sync.sizes() == {"sync_requested": 0}
    finally:
        sync.stop()


def test_the_app_reports_the_sizes_of_the_intake_and_the_sync() -> None:
    store = InMemoryStore()
    exchange = InMemoryExchange(ACCOUNT, dict.fromkeys(SYMBOLS, 100.0))

    def infra(config: Config, metrics: PrometheusMetrics) -> Infra:
        return Infra(store=store, exchanges={ACCOUNT: exchange})

    app = App(
        _config(risk={"max_open_positions": 5}), infra_factory=infra, feeds_factory=lambda c, a: []
    )
    app.start()
    try:
        assert app.supervisor is not None and app.intake is not None
        app.intake.tell(signal(SYMBOLS[1]))
        sizes = poll(
            lambda: (s := app.supervisor.structure_sizes())["intake_admitted"] == 1 and s,  # type: ignore[union-attr]
            10.0,
            "the admission is reported",
        )
        assert sizes["sync_requested"] >= 0
        assert {"actors", "cells", "tick_slots", "restart_trackers", "timers"} <= set(sizes)
        poll(lambda: Key(ACCOUNT, SYMBOLS[1]) in app.supervisor.keys(), 10.0)  # type: ignore[union-attr]
    finally:
        assert app.shutdown()
