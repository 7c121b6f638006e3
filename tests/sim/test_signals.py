"""The signal feed through the real websocket-client: delivery, token, fuzz frames, sources."""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
import websocket

from sim import SignalFeed
from sim.sources import SOURCES, SignalSources, make_signal
from sim.websocket import OP_TEXT, encode_frame
from tests.sim.conftest import WsReader

pytestmark = pytest.mark.timeout(30)

SIGNAL = {
    "signal_id": "sig-1",
    "source": "sniper",
    "account": "main",
    "symbol": "BTCUSDT",
    "side": "long",
    "size": 0.01,
    "stop_loss": 59_000.0,
}


def test_signals_reach_every_client(feed: SignalFeed, ws_reader: Callable[..., WsReader]) -> None:
    assert feed.url.startswith("ws://127.0.0.1:") and feed.url.endswith("/signals")
    a = ws_reader(feed.url)
    b = ws_reader(feed.url)
    assert feed.wait_for_clients(2)
    assert feed.send_signal(SIGNAL) == 2
    assert a.get() == SIGNAL and b.get() == SIGNAL


def test_token_required() -> None:
    with SignalFeed(token="s3cret") as feed:
        for header in ([], ["Authorization: Bearer wrong"]):
            with pytest.raises(websocket.WebSocketBadStatusException) as err:
                websocket.create_connection(feed.url, timeout=5, header=header)
            assert err.value.status_code == 401
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(feed.url + "?token=wrong", timeout=5)
        assert feed.client_count() == 0
        by_header = websocket.create_connection(
            feed.url, timeout=5, header=["Authorization: Bearer s3cret"]
        )
        by_query = websocket.create_connection(feed.url + "?token=s3cret", timeout=5)
        try:
            assert feed.wait_for_clients(2)
            feed.send_signal(SIGNAL)
            assert json.loads(by_header.recv()) == SIGNAL == json.loads(by_query.recv())
        finally:
            by_header.close()
            by_query.close()
        assert feed.wait_for_no_clients()


def test_fuzz_frames(feed: SignalFeed) -> None:
    ws = websocket.create_connection(feed.url, timeout=5)
    try:
        assert feed.wait_for_clients(1)
        feed.send_raw("not json")
        assert ws.recv() == "not json"
        feed.send_raw(b"\x00\x01binary", binary=True)
        assert ws.recv() == b"\x00\x01binary"
        big = "x" * (3 << 19)  # 1.5 MiB: a 64-bit length header
        feed.send_raw(big)
        assert ws.recv() == big
        feed.send_raw(b"\xff\xfe bad utf-8")  # a text frame with invalid UTF-8
        with pytest.raises(websocket.WebSocketException):
            ws.recv()
    finally:
        ws.close()
    ok = websocket.create_connection(feed.url, timeout=5)  # the feed keeps serving others
    try:
        assert feed.wait_for_clients(1)
        feed.send_signal(SIGNAL)
        assert json.loads(ok.recv()) == SIGNAL
    finally:
        ok.close()


def test_fragmented_and_raw_frames(feed: SignalFeed) -> None:
    ws = websocket.create_connection(feed.url, timeout=5)
    try:
        assert feed.wait_for_clients(1)
        first = encode_frame(OP_TEXT, b'{"a":', fin=False)
        rest = encode_frame(0, b"1}")
        feed.send_frame_bytes(first + rest)
        assert json.loads(ws.recv()) == {"a": 1}
        ws.ping(b"hi")  # the server answers pings; the connection stays usable
        feed.send_signal(SIGNAL)
        assert json.loads(ws.recv()) == SIGNAL
    finally:
        ws.close()


def test_drop_connections(feed: SignalFeed, ws_reader: Callable[..., WsReader]) -> None:
    reader = ws_reader(feed.url)
    assert feed.wait_for_clients(1)
    assert feed.drop_connections() == 1
    assert reader.closed.wait(5)
    assert feed.wait_for_no_clients()


def test_client_messages_are_recorded(feed: SignalFeed) -> None:
    ws = websocket.create_connection(feed.url, timeout=5)
    try:
        ws.send("hello")
        assert feed.wait_for_received(1)
        assert feed.received == ["hello"]
    finally:
        ws.close()


def _check_schema(sig: dict[str, Any]) -> None:
    required = {"signal_id": str, "source": str, "account": str, "symbol": str, "side": str}
    for key, typ in required.items():
        assert isinstance(sig[key], typ)
    assert sig["side"] in ("long", "short") and sig["source"] in SOURCES
    assert isinstance(sig["size"], float) and sig["size"] > 0
    assert isinstance(sig["stop_loss"], float)
    for opt in ("take_profit", "trailing_distance", "expires_at", "created_at"):
        assert opt not in sig or isinstance(sig[opt], float)
    allowed = set(required) | {
        "size",
        "stop_loss",
        "take_profit",
        "trailing_distance",
        "expires_at",
        "created_at",
    }
    assert set(sig) <= allowed


def test_make_signal_sides() -> None:
    rng = random.Random(1)
    long_ = make_signal(rng, "sniper", "main", "ETHUSDT", 3_000.0, "long", 1.0)
    short = make_signal(rng, "volume", "main", "ETHUSDT", 3_000.0, "short", 1.0)
    _check_schema(long_)
    _check_schema(short)
    assert long_["stop_loss"] < 3_000.0 < short["stop_loss"]
    assert "take_profit" not in long_ or long_["take_profit"] > 3_000.0


def test_sources_overlap_and_replay(feed: SignalFeed, ws_reader: Callable[..., WsReader]) -> None:
    reader = ws_reader(feed.url)
    assert feed.wait_for_clients(1)
    prices = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 150.0, "DOGEUSDT": 0.15}
    feed.start_sources(
        list(prices),
        prices.__getitem__,
        accounts=("main", "alt"),
        rate_per_s=40,
        replay_prob=0.3,
        seed=3,
    )
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(got) < 80 and time.monotonic() < deadline:
        got.append(reader.get())
    feed.stop_sources()
    for sig in got:
        _check_schema(sig)
    ids = [s["signal_id"] for s in got]
    assert len(ids) > len(set(ids)), "some signal must be replayed with the same id"
    same_symbol_close = [
        (a, b)
        for a, b in itertools.pairwise(got)
        if a["symbol"] == b["symbol"]
        and a["source"] != b["source"]
        and abs(a["created_at"] - b["created_at"]) < 0.05
    ]
    assert same_symbol_close, "sources must overlap on a symbol within milliseconds"
    assert {s["account"] for s in got} == {"main", "alt"}


def test_sources_direct_burst() -> None:
    sent: list[dict[str, Any]] = []
    src = SignalSources(
        sent.append, ["BTCUSDT"], lambda s: 60_000.0, burst_prob=1.0, replay_prob=0.0, seed=5
    )
    burst = src.burst()
    assert 2 <= len(burst) <= 4 and sent == burst
    assert len({s["source"] for s in burst}) == len(burst)


def test_each_accounts_first_burst_overlaps() -> None:
    """The demo shows deduplication on every account from its first seconds: each
    account's first burst carries two sources at least on one symbol, however rarely the
    sources overlap afterwards (here never: ``burst_prob=0``)."""
    sent: list[dict[str, Any]] = []
    src = SignalSources(
        sent.append,
        ["BTCUSDT", "ETHUSDT"],
        lambda s: 100.0,
        accounts=("main", "bybit"),
        burst_prob=0.0,
        replay_prob=0.0,
        seed=1,
    )
    first, second, third = src.burst(), src.burst(), src.burst()
    for burst, account in ((first, "main"), (second, "bybit")):
        assert len(burst) >= 2
        assert {s["account"] for s in burst} == {account}
        assert len({s["symbol"] for s in burst}) == 1
        assert len({s["source"] for s in burst}) == len(burst)
    assert len(third) == 1
