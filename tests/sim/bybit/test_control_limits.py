"""The Bybit front's limits (per account and endpoint, and per IP), the faults that answer
order lists (``lag_open_orders``, ``not_found``), the raw wire (HTTP 200 envelopes,
signatures by hand), the control API on its port, and ``python -m sim --bybit-port``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import ccxt
import pytest

from sim.bybit import BybitExchange, sign
from sim.bybit.limits import IP_LIMIT
from tests.sim.bybit.conftest import KEY, SECRET, SYMBOL, make_bybit_ccxt

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[3]


def raw(
    base: str, method: str, path: str, *, query: str = "", body: Any = None, signed: bool = True
) -> tuple[int, dict[str, str], Any]:
    """One request signed by hand (Bybit's rule), without ccxt: status, headers, JSON."""
    text = json.dumps(body) if body is not None else ""
    url = base + path + (f"?{query}" if query else "")
    req = urllib.request.Request(
        url, data=text.encode() if body is not None else None, method=method
    )
    req.add_header("Content-Type", "application/json")
    if signed:
        ts = str(int(time.time() * 1000))
        payload = ts + KEY + "5000" + (text if method == "POST" else query)
        for name, value in (
            ("X-BAPI-API-KEY", KEY),
            ("X-BAPI-TIMESTAMP", ts),
            ("X-BAPI-RECV-WINDOW", "5000"),
            ("X-BAPI-SIGN", sign(SECRET, payload)),
        ):
            req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            data = err.read()
            try:
                return err.code, dict(err.headers), json.loads(data)
            except ValueError:
                return err.code, dict(err.headers), data.decode()


def test_refusals_are_http_200_envelopes(bybit: BybitExchange) -> None:
    status, headers, reply = raw(
        bybit.base_url,
        "POST",
        "/v5/order/cancel",
        body={"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "none"},
    )
    assert status == 200 and reply["retCode"] == 110001
    assert set(reply) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert headers["X-Bapi-Limit"] == "10" and headers["X-Bapi-Limit-Status"] == "9"
    status, _, reply = raw(
        bybit.base_url, "GET", "/v5/position/list", query="category=linear&symbol=BTCUSDT"
    )
    assert (
        status == 200 and reply["retCode"] == 0 and reply["result"]["list"][0]["size"] == "0.00000"
    )
    _, _, reply = raw(
        bybit.base_url, "GET", "/v5/position/list", query="category=linear", signed=False
    )
    assert reply["retCode"] == 10003
    status, _, reply = raw(bybit.base_url, "GET", "/v5/nothing")
    assert status == 404 and reply["retCode"] == 10017
    _, _, reply = raw(bybit.base_url, "GET", "/v5/position/list", query="category=linear")
    assert reply["retCode"] == 10001  # symbol, baseCoin or settleCoin


def test_a_signature_over_another_query_is_refused(bybit: BybitExchange) -> None:
    ts = str(int(time.time() * 1000))
    query = "category=linear&symbol=BTCUSDT"
    req = urllib.request.Request(f"{bybit.base_url}/v5/position/list?{query}&x=1")
    for name, value in (
        ("X-BAPI-API-KEY", KEY),
        ("X-BAPI-TIMESTAMP", ts),
        ("X-BAPI-RECV-WINDOW", "5000"),
        ("X-BAPI-SIGN", sign(SECRET, ts + KEY + "5000" + query)),
    ):
        req.add_header(name, value)
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.loads(resp.read())["retCode"] == 10004


def test_limits_are_per_account_and_endpoint(bybit: BybitExchange) -> None:
    main = make_bybit_ccxt(bybit.base_url)
    other = make_bybit_ccxt(bybit.base_url, "key-other", "secret-other")
    try:
        main.load_markets()
        other.load_markets()
        bybit.limits.enforce = True
        for _ in range(10):
            main.create_order(SYMBOL, "market", "buy", 0.001)
        with pytest.raises(ccxt.RateLimitExceeded):
            main.create_order(SYMBOL, "market", "buy", 0.001)
        other.create_order(SYMBOL, "market", "buy", 0.001)  # another account's budget
        assert main.fetch_positions()[0]["contracts"] == pytest.approx(0.01)  # another endpoint
        snap = json.loads(urllib.request.urlopen(f"{bybit.base_url}/_sim/limits", timeout=5).read())
        assert snap["enforce"] is True and snap["refused"] == {"POST /v5/order/create": 1}
        assert snap["peak"]["POST /v5/order/create"] == 10 and snap["orders"] == 11
        assert snap["limits"]["GET /v5/order/realtime"] == 50
    finally:
        main.session.close()
        other.session.close()


def test_the_ip_limit_answers_403(bybit: BybitExchange, client: Any) -> None:
    bybit.limits.enforce = True
    for _ in range(IP_LIMIT - 2):  # load_markets made two
        client.publicGetV5MarketTime()
    with pytest.raises(ccxt.RateLimitExceeded) as err:  # ccxt's bybit: HTTP 403 is a limit
        client.publicGetV5MarketTime()
    assert "403" in str(err.value) and "access too frequent" in str(err.value)
    assert bybit.limits.snapshot()["refused"] == {"ip": 1}


def test_lagging_open_order_lists(bybit: BybitExchange, client: Any) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01)
    bybit.add_fault("lag_open_orders", lag_s=5)
    client.create_order(
        SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "s1", "stopLossPrice": 58_000}
    )
    stale = client.fetch_open_orders(SYMBOL, None, None, {"trigger": True})
    assert stale == []  # the list of 5 s ago
    fresh = client.fetch_open_orders(SYMBOL, None, None, {"trigger": True})
    assert [o["clientOrderId"] for o in fresh] == ["s1"]


def test_not_found_fault_hides_an_order_from_lookups_by_id(
    bybit: BybitExchange, client: Any
) -> None:
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    bybit.add_fault("not_found", count=1)
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_closed_order(None, SYMBOL, {"orderLinkId": "e1", "orderId": ""})
    found = client.fetch_closed_order(None, SYMBOL, {"orderLinkId": "e1", "orderId": ""})
    assert found["clientOrderId"] == "e1"


def test_control_api_on_the_bybit_port(bybit: BybitExchange, client: Any) -> None:
    base = bybit.base_url

    def post(path: str, body: Any) -> Any:
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    post("/_sim/price", {"symbol": "BTCUSDT", "price": 61_000})
    assert client.fetch_ticker(SYMBOL)["markPrice"] == 61_000
    post("/_sim/faults", {"kind": "reject_2019", "path": "/v5/order/create"})
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order(SYMBOL, "market", "buy", 0.01)
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})
    with urllib.request.urlopen(f"{base}/_sim/orders?account=main", timeout=5) as resp:
        log = json.loads(resp.read())
    assert [(e["client_id"], e["outcome"], e["code"]) for e in log] == [
        ("", "rejected", 110007),
        ("e1", "accepted", None),
    ]
    post("/_sim/reset", {})
    assert bybit.positions("main") == {}
    client.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "e1"})  # forgotten


@pytest.mark.timeout(60)
def test_cli_runs_a_bybit_front_until_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim",
            "--port",
            "0",
            "--bybit-port",
            "0",
            "--symbols",
            "BTCUSDT=60000",
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
        assert urls["bybit_ws"].startswith("ws://")
        c = make_bybit_ccxt(urls["bybit"], "any-key", "sim-secret")  # the default secret
        try:
            c.load_markets()
            assert list(c.markets) == [SYMBOL]
            c.create_order(SYMBOL, "market", "buy", 0.01)
            assert c.fetch_positions()[0]["contracts"] == 0.01
        finally:
            c.session.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
