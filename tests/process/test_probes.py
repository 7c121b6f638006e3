"""``/livez`` and ``/readyz`` of the app: a dead thread fails liveness (and so readiness);
an upstream outage fails readiness only. The app runs on in-memory ports (the HTTP server and
its probes are the real ones); the real process is ``test_operator.py``."""

from __future__ import annotations

import pytest

from testkit.waiting import poll
from testkit.world import signal as make_signal
from tests.process.app_fixture import Fixture, app_config
from tests.process.harness import http_get

pytestmark = pytest.mark.timeout(60)


def test_a_dead_sync_thread_fails_livez_a_database_outage_does_not() -> None:
    fx = Fixture()
    app = fx.app(app_config())
    app.start()
    try:
        assert app.server is not None and app.store is not None and app.sync is not None
        url = app.server.url
        assert http_get(url + "/livez") == (200, "ok\n")
        assert http_get(url + "/readyz") == (200, "ok\n")
        fx.store.down = True
        app.store.probe()
        assert app.intake is not None
        app.intake.tell(make_signal("BTCUSDT", "sniper"))

        def db_down() -> bool:
            return "database" in http_get(url + "/readyz")[1]

        poll(db_down, 10, "readiness names the database")
        assert http_get(url + "/livez") == (200, "ok\n")  # an upstream: not a restart
        fx.store.down = False
        app.sync.stop()  # the sync thread ends: the process cannot work as configured
        code, body = http_get(url + "/livez")
        assert (code, body) == (503, "down: threads (dead: sync)\n")
        assert "threads (dead: sync)" in http_get(url + "/readyz")[1]
        metrics = http_get(url + "/metrics")[1]
        assert 'ps_health_check_up{check="threads",probe="live",upstream=""} 0.0' in metrics
    finally:
        app.shutdown()
