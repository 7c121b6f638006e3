"""The /_sim control API over HTTP, and the ``python -m sim`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ccxt
import pytest

from sim import SimExchange
from tests.sim.conftest import SYMBOL, WsReader, make_ccxt

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def test_control_routes(sim: SimExchange, client: Any, ws_reader: Callable[..., WsReader]) -> None:
    base = sim.base_url
    assert call(base, "GET", "/_sim/health")[1]["ok"] is True
    assert call(base, "POST", "/_sim/price", {"symbol": "BTCUSDT", "price": 61_000})[0] == 200
    assert call(base, "POST", "/_sim/price", {"prices": {"ETHUSDT": 3_100}})[0] == 200
    prices = call(base, "GET", "/_sim/prices")[1]
    assert prices["BTCUSDT"] == 61_000 and prices["ETHUSDT"] == 3_100

    client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "c1"})
    client.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": 60_000, "clientOrderId": "c2"}
    )
    orders = call(base, "GET", "/_sim/orders")[1]
    assert [o["client_id"] for o in orders] == ["c1", "c2"] and orders[0]["outcome"] == "accepted"
    assert [o["client_id"] for o in call(base, "GET", "/_sim/orders?since=1")[1]] == ["c2"]
    assert call(base, "GET", "/_sim/positions")[1]["BTCUSDT"]["qty"] == 0.01
    assert [o["client_id"] for o in call(base, "GET", "/_sim/open_orders")[1]] == ["c2"]
    assert len(call(base, "GET", "/_sim/user_events")[1]) >= 4

    status, body = call(
        base, "POST", "/_sim/faults", {"kind": "http_502", "path": "/fapi/v3/account", "count": 1}
    )
    assert status == 200 and body["id"] >= 1
    assert [f["kind"] for f in call(base, "GET", "/_sim/faults")[1]["armed"]] == ["http_502"]
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.fetch_balance()
    call(base, "POST", "/_sim/faults", {"kind": "latency", "latency_s": 1, "count": None})
    assert call(base, "DELETE", "/_sim/faults?kind=latency")[1] == {"removed": 1}
    assert call(base, "POST", "/_sim/faults", {"kind": "nope"})[0] == 400
    assert call(base, "POST", "/_sim/faults", {"kind": "latency", "bogus": 1})[0] == 400
    # a process-external test (chaos) aims a fault at both cancel endpoints in one call
    cancels = {"kind": "http_429", "path": ["/fapi/v1/order", "/fapi/v1/algoOrder"]}
    assert call(base, "POST", "/_sim/faults", {**cancels, "method": "DELETE"})[0] == 200
    (armed,) = call(base, "GET", "/_sim/faults")[1]["armed"]
    assert (armed["path"], armed["method"]) == (cancels["path"], "DELETE")
    with pytest.raises(ccxt.DDoSProtection):
        client.cancel_order(None, "BTC/USDT:USDT", {"clientOrderId": "c2", "trigger": True})
    assert call(base, "POST", "/_sim/faults", {"kind": "lag_open_orders", "lag_s": -1})[0] == 400

    reader = ws_reader(f"{sim.ws_url}/ws/btcusdt@markPrice")
    assert sim.wait_for_subscribers("btcusdt@markPrice")
    assert (
        call(base, "POST", "/_sim/walk", {"interval_s": 0.01, "step_pct": 0.001})[1]["running"]
        is True
    )
    assert reader.get()["e"] == "markPriceUpdate"
    assert call(base, "DELETE", "/_sim/walk")[1]["running"] is False
    assert not sim.random_walk_running
    stats = call(base, "POST", "/_sim/blast", {"n_frames": 100, "symbols": ["BTCUSDT"]})[1]
    assert stats["deliveries"] == 100
    assert call(base, "POST", "/_sim/drop_streams", {"kind": "market"})[1] == {"dropped": 1}
    assert reader.closed.wait(5)

    assert call(base, "POST", "/_sim/config", {"user_events_first": False})[1] == {
        "user_events_first": False,
        "enforce_rate_limits": False,
    }
    assert call(base, "POST", "/_sim/reset")[1] == {"ok": True}
    assert sim.user_events_first is True
    assert call(base, "GET", "/_sim/positions")[1] == {}
    assert call(base, "GET", "/_sim/orders")[1] == []
    assert call(base, "GET", "/_sim/prices")[1]["BTCUSDT"] == 60_000
    assert call(base, "GET", "/_sim/nothing")[0] == 404
    assert call(base, "POST", "/_sim/price", {"symbol": "NOPE", "price": 1})[0] == 400


def test_separate_ws_port() -> None:
    with SimExchange(ws_port=0) as sim:
        assert sim.ws_url != sim.base_url.replace("http", "ws")
        c = make_ccxt(sim.base_url)
        assert c.fetch_time() > 0
        c.session.close()


@pytest.mark.timeout(60)
def test_cli_runs_until_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim",
            "--port",
            "0",
            "--signals-port",
            "0",
            "--signal-token",
            "t",
            "--symbols",
            "BTCUSDT=60000,ETHUSDT=3000",
            "--walk-interval",
            "0.05",
            "--sources",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("sim ready "), line
        urls = json.loads(line[len("sim ready ") :])
        assert urls["signals"].endswith("/signals")
        status, prices = call(urls["rest"], "GET", "/_sim/prices")
        assert status == 200 and set(prices) == {"BTCUSDT", "ETHUSDT"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
