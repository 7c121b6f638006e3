"""The process on in-memory ports: start, signals in, SIGTERM → clean stop; second signal
forces; failed start exits 1; the intake's checks. No sleep: conditions are polled."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from actors.model import Key, Status
from actors.state import SignalRecord
from infra.config import Config
from infra.metrics import PrometheusMetrics
from supervision.app import App
from supervision.intake import Intake
from supervision.wiring import Infra
from testkit.waiting import poll
from testkit.world import signal as make_signal
from tests.process.app_fixture import Fixture, app_config
from tests.process.harness import http_get

pytestmark = pytest.mark.timeout(60)


def _until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    poll(cond, timeout, what, 0.01, TimeoutError)


def _set(event: threading.Event, what: str, timeout: float = 10.0) -> None:
    """Wait on the event itself (no polling); fail after ``timeout``."""
    if not event.wait(timeout):
        raise TimeoutError(f"{what}: not within {timeout}s")


def test_sigterm_stops_cleanly_with_state_kept() -> None:
    fx = Fixture()
    app = fx.app(app_config())
    seen: dict[str, Any] = {}

    def drive() -> None:
        try:
            _set(app.ready, "ready")
            assert app.server is not None and app.intake is not None
            seen["health"] = http_get(app.server.url + "/healthz")
            for src in ("sniper", "whale_copy", "trending", "volume"):
                app.intake.tell(make_signal("BTCUSDT", src))
            _until(
                lambda: any(p.status is Status.ACTIVE for p in fx.store.positions()),
                what="active position",
            )
            seen["metrics"] = http_get(app.server.url + "/metrics")[1]
        except BaseException as exc:
            seen["error"] = exc
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=drive)
    t.start()
    code = app.run()
    t.join(10)
    assert "error" not in seen, seen.get("error")
    assert code == 0
    assert seen["health"] == (200, "ok\n")
    assert 'ps_signals_total{outcome="duplicate"' in seen["metrics"].replace(
        'ps_signals_total{source="whale_copy",outcome="duplicate"',
        'ps_signals_total{outcome="duplicate"',
    )
    positions = fx.store.positions(Key("main", "BTCUSDT"))
    assert len(positions) == 1 and positions[0].status is Status.ACTIVE
    assert fx.events == ["feed started", "feed stopped", "store closed"]
    assert app.stopped.is_set() and fx.forced == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGTERM)
    )


def test_second_signal_forces_exit() -> None:
    release = threading.Event()
    fx = Fixture(block=release)
    app = fx.app(app_config())
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            _set(app.ready, "ready")
            os.kill(os.getpid(), signal.SIGTERM)
            _set(fx.feed.stopping, "shutdown began")
            os.kill(os.getpid(), signal.SIGINT)
            _until(lambda: fx.forced == [1], what="forced exit")
        except BaseException as exc:
            errors.append(exc)
        finally:
            release.set()

    t = threading.Thread(target=drive)
    t.start()
    code = app.run()
    t.join(10)
    assert not errors, errors
    assert fx.forced == [1]
    assert code == 0  # the injected force did not exit; the stop then completed


def test_failed_start_exits_1_and_cleans_up() -> None:
    def boom(config: Config, metrics: PrometheusMetrics) -> Infra:
        raise RuntimeError("database unreachable")

    app = App(app_config(), infra_factory=boom, feeds_factory=lambda c, a: [])
    assert app.run() == 1
    assert app.stopped.is_set() and app.server is not None
    assert app.server._server is None  # the HTTP server was stopped


def test_duration_and_health_while_database_down() -> None:
    fx = Fixture()
    app = fx.app(app_config())
    app.start()
    try:
        assert app.server is not None and app.store is not None
        assert http_get(app.server.url + "/healthz")[0] == 200
        fx.store.down = True
        app.intake.tell(make_signal("ETHUSDT", "sniper"))  # type: ignore[union-attr]
        _until(lambda: app.store.health() is not None, what="database down seen")  # type: ignore[union-attr]
        code, body = http_get(app.server.url + "/healthz")
        assert code == 503 and "database (unavailable" in body
        fx.store.down = False
        app.store.probe()  # the fake has no ping(): the next store call decides
        app.intake.tell(make_signal("BTCUSDT", "sniper"))  # type: ignore[union-attr]
        _until(lambda: app.store.health() is None, what="database back")  # type: ignore[union-attr]
        assert http_get(app.server.url + "/healthz")[0] == 200
        app.wait(duration=0.01)
        assert app.stopping.is_set()
    finally:
        assert app.shutdown()


def test_intake_checks() -> None:
    fx = Fixture()
    cfg = app_config(risk={"max_open_positions": 1}, signal_policy={"max_signal_age_s": 5.0})
    app = fx.app(cfg)
    app.start()
    decided: list[SignalRecord] = []
    try:
        intake = app.intake
        assert isinstance(intake, Intake) and app.supervisor is not None
        app.supervisor.signal_listeners.append(decided.append)  # what the signal feed answers
        assert not intake.tell(make_signal("XRPUSDT", "sniper"))
        assert not intake.tell(make_signal("BTCUSDT", "sniper", account="other"))
        assert intake.tell(make_signal("BTCUSDT", "sniper"))
        _until(lambda: bool(fx.store.open_positions()), what="first position")
        # A second symbol is over the per-account limit: refused and recorded.
        assert not intake.tell(make_signal("ETHUSDT", "volume", signal_id="over-1"))
        recs = fx.store.signals(Key("main", "ETHUSDT"))
        assert [(r.signal_id, r.reason) for r in recs] == [("over-1", "max_open_positions")]
        refused = [(r.key.symbol, r.outcome.value, r.reason) for r in decided]
        assert refused[:2] == [
            ("XRPUSDT", "rejected", "symbol_not_allowed"),
            ("BTCUSDT", "rejected", "unknown_account"),
        ]
        assert ("ETHUSDT", "rejected", "max_open_positions") in refused
        assert ("BTCUSDT", "accepted", "") in refused
        # A stale signal reaches the actor, which refuses it for its age.
        old = make_signal("BTCUSDT", "trending", signal_id="old-1")
        old = old.__class__(**{**_fields(old), "created_at": time.time() - 60})
        assert intake.tell(old)
        _until(
            lambda: any(r.signal_id == "old-1" for r in fx.store.signals(Key("main", "BTCUSDT"))),
            what="stale signal recorded",
        )
        rec = next(r for r in fx.store.signals(Key("main", "BTCUSDT")) if r.signal_id == "old-1")
        assert rec.reason == "too_old"
        text = app.metrics.exposition()
        assert 'reason="symbol_not_allowed"' in text and 'reason="unknown_account"' in text
    finally:
        assert app.shutdown()


def _fields(obj: Any) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in obj.__dataclass_fields__}
