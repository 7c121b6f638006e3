"""Hostile signal frames through the real signal feed client (websocket-client) against the
sim's signal server: a frame with a repeated key is answered when its id can be trusted, a
huge fragmented frame costs neither the connection nor the signals after it."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from infra.feeds import CountingFeedMetrics, SignalFeedClient, SignalRules
from sim import SignalFeed
from sim.websocket import OP_CONT, OP_TEXT, encode_frame
from tests.feeds.conftest import ACCOUNT, FAST, SYMBOL, Local, make_local, stopped

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

RULES = SignalRules(accounts={ACCOUNT: frozenset({SYMBOL})})


@pytest.fixture
def world() -> Iterator[Local]:
    w = make_local({SYMBOL: 60_000.0})
    try:
        yield w
    finally:
        assert w.sup.stop(grace_s=5.0)


@pytest.fixture
def client(
    signal_server: SignalFeed, world: Local, feed_metrics: CountingFeedMetrics
) -> Iterator[SignalFeedClient]:
    c = SignalFeedClient(
        signal_server.url, world.sup, RULES, backoff=FAST, poll_s=0.05, metrics=feed_metrics
    )
    world.sup.signal_listeners.append(c.signal_decided)  # as the process wires it
    c.start()
    try:
        assert c.runner.wait_connected(1, 5.0)
        assert signal_server.wait_for_clients(1, 5.0)
        yield c
    finally:
        stopped(c)


def signal(signal_id: str) -> dict[str, Any]:
    return {
        "signal_id": signal_id,
        "source": "sniper",
        "account": ACCOUNT,
        "symbol": SYMBOL,
        "side": "long",
        "size": 0.01,
        "stop_loss": 58_000.0,
        "created_at": time.time(),
    }


def repeated(signal_id: str, key: str, value: Any) -> bytes:
    """The signal's JSON with ``key`` written once more at the end."""
    body = json.dumps(signal(signal_id)).encode()
    return body[:-1] + f", {json.dumps(key)}: {json.dumps(value)}}}".encode()


def test_a_repeated_key_is_answered_rejected_with_the_signal_id(
    client: SignalFeedClient, signal_server: SignalFeed
) -> None:
    signal_server.send_raw(repeated("dup-size", "size", 5.0))
    ack = signal_server.wait_for_ack("dup-size", 5.0)
    assert ack is not None, "no answer for a frame with a repeated key and a good id"
    assert (ack["ack"], ack["outcome"], ack["reason"]) == (
        "dup-size",
        "rejected",
        "duplicate_field",
    )
    assert client.stats().refused == {"duplicate_field": 1}


def test_a_repeated_signal_id_gets_no_answer(
    client: SignalFeedClient, signal_server: SignalFeed
) -> None:
    signal_server.send_raw(repeated("dup-id", "signal_id", "dup-id"))
    signal_server.send_raw(repeated("dup-id-2", "signal_id", "other"))
    signal_server.send_raw(repeated("marker", "side", "short"))
    # the feed answers its refusals in order on one connection: the marker's answer comes
    # after any answer to the two frames before it
    assert signal_server.wait_for_ack("marker", 5.0) is not None
    assert set(signal_server.acks) == {"marker"}
    assert client.stats().refused == {"duplicate_field": 3}


def test_a_huge_fragmented_frame_costs_neither_the_connection_nor_what_follows(
    client: SignalFeedClient, signal_server: SignalFeed, feed_metrics: CountingFeedMetrics
) -> None:
    chunk = b"x" * (256 * 1024)
    frames = [encode_frame(OP_TEXT, chunk, fin=False)]
    frames += [encode_frame(OP_CONT, chunk, fin=False)] * 30
    frames.append(encode_frame(OP_CONT, chunk, fin=True))  # 8 MiB > the feed's 1 MiB
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for frame in frames:  # one at a time: the sim's writer joins what is queued
            signal_server.send_frame_bytes(frame)
            assert signal_server.flush(5.0)
        signal_server.send_signal(signal("after-huge"))
        ack = signal_server.wait_for_ack("after-huge", 10.0)
        growth = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert ack is not None and ack["outcome"] == "accepted", ack
    assert growth < 4 * 1024 * 1024, f"peak growth {growth / 2**20:.1f} MiB for an 8 MiB frame"
    assert client.runner.stats().oversized == 1
    assert client.runner.connections == 1 and client.runner.stats().ends == {}
    assert feed_metrics.errors_of("signals")["oversized"] == 1
