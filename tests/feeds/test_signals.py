"""The signal feed client against the sim's ``SignalFeed`` server: real websocket-client, real
supervisor and actors (in-memory store and exchange).

Every bad frame is refused with a counted reason and a log line, the feed keeps running and no
position is touched; ``accepted + refused == frames`` always; a wrong token never connects.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.messages import MarkPriceTick, Message
from actors.model import Key, Status
from infra.feeds import (
    CountingFeedMetrics,
    SignalFeedClient,
    SignalRules,
)
from sim import SignalFeed
from tests.feeds.conftest import ACCOUNT, FAST, KEY, SYMBOL, Local, make_local, stopped, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PRICES = {SYMBOL: 60_000.0, "ETHUSDT": 3_000.0}
RULES = SignalRules(accounts={ACCOUNT: frozenset(PRICES)})
TOKEN = "feed-token-7f3a9c"


@pytest.fixture
def world() -> Iterator[Local]:
    w = make_local(PRICES)
    try:
        yield w
    finally:
        assert w.sup.stop(grace_s=5.0)


def make_client(
    server: SignalFeed, world: Local, metrics: CountingFeedMetrics | None = None, **kw: Any
) -> SignalFeedClient:
    options: dict[str, Any] = {"backoff": FAST, "poll_s": 0.05, "metrics": metrics}
    options.update(kw)
    c = SignalFeedClient(server.url, world.sup, RULES, **options)
    world.sup.signal_listeners.append(c.signal_decided)  # as the process wires it
    return c


@pytest.fixture
def client(
    signal_server: SignalFeed, world: Local, feed_metrics: CountingFeedMetrics
) -> Iterator[SignalFeedClient]:
    c = make_client(signal_server, world, feed_metrics)
    c.start()
    try:
        assert c.runner.wait_connected(1, 5.0)
        assert signal_server.wait_for_clients(1, 5.0)
        yield c
    finally:
        stopped(c)


def good(**changes: Any) -> dict[str, Any]:
    sig: dict[str, Any] = {
        "signal_id": f"s-{time.monotonic_ns()}",
        "source": "sniper",
        "account": ACCOUNT,
        "symbol": SYMBOL,
        "side": "long",
        "size": 0.01,
        "stop_loss": 58_000.0,
        "take_profit": 63_000.0,
        "created_at": time.time(),
    }
    sig.update(changes)
    return {k: v for k, v in sig.items() if v is not _DROP}


_DROP = object()


def wait_frames(c: SignalFeedClient, n: int, timeout: float = 5.0) -> None:
    def counted() -> bool:
        s = c.stats()
        return s.frames >= n and s.accepted + s.refused_total == s.frames

    wait_until(counted, timeout, f"{n} frames counted")


def test_a_valid_signal_opens_a_position(
    client: SignalFeedClient,
    signal_server: SignalFeed,
    world: Local,
    feed_metrics: CountingFeedMetrics,
) -> None:
    signal_server.send_signal(good(signal_id="first"))
    wait_frames(client, 1)
    assert client.stats().accepted == 1
    wait_until(lambda: (p := world.sup.state(KEY).position) and p.status is Status.ACTIVE, 5.0)
    assert feed_metrics.lags["signals"]


def bad_frames_now() -> list[tuple[str, str | bytes, bool]]:
    """(expected reason, frame, binary), with times taken now: built at import, the valid
    times went stale when the test ran more than the signal age limit later."""
    return [
        # (expected reason, frame, binary)
        ("binary_frame", json.dumps(good()).encode(), True),
        ("oversized", json.dumps(good(signal_id="x" * 20_000)), False),
        ("invalid_utf8", b'{"signal_id": "\xff\xfe"}', False),
        ("malformed_json", '{"signal_id": "a", ', False),
        ("malformed_json", "", False),
        ("not_an_object", "[1, 2, 3]", False),
        ("not_an_object", "null", False),
        ("duplicate_field", '{"size": 1, "size": 2}', False),
        ("unknown_field", json.dumps({**good(), "stoploss": 1}), False),
        ("missing:stop_loss", json.dumps(good(stop_loss=_DROP)), False),
        ("missing:size", json.dumps(good(size=None)), False),
        ("type:size", json.dumps(good(size="0.01")), False),
        ("type:size", json.dumps(good(size=True)), False),
        ("type:signal_id", json.dumps(good(signal_id=17)), False),
        ("type:side", json.dumps(good(side=["long"])), False),
        ("invalid:size", json.dumps(good(size=math.nan)), False),
        ("invalid:size", json.dumps(good(size=math.inf)), False),
        (
            "invalid:size",
            '{"signal_id":"a","source":"s","account":"main","symbol":"BTCUSDT",'
            '"side":"long","size":1e400,"stop_loss":1}',
            False,
        ),
        ("invalid:size", json.dumps(good(size=-0.01)), False),
        ("invalid:size", json.dumps(good(size=0)), False),
        ("invalid:stop_loss", json.dumps(good(stop_loss=-1.0)), False),
        ("invalid:take_profit", json.dumps(good(take_profit=0.0)), False),
        ("invalid:side", json.dumps(good(side="buy")), False),
        ("invalid:signal_id", json.dumps(good(signal_id="")), False),
        ("invalid:signal_id", json.dumps(good(signal_id="a b")), False),
        ("invalid:signal_id", json.dumps(good(signal_id="x" * 65)), False),
        ("invalid:source", json.dumps(good(source="\u202e")), False),
        ("invalid:created_at", json.dumps(good(created_at=time.time() * 1000)), False),
        ("unknown_account", json.dumps(good(account="other")), False),
        ("symbol_not_allowed", json.dumps(good(symbol="DOGEUSDT")), False),
        ("created_in_future", json.dumps(good(created_at=time.time() + 300)), False),
        ("invalid:take_profit_side", json.dumps(good(take_profit=57_000.0)), False),
    ]


def test_bad_frames_are_refused_with_their_reason(
    client: SignalFeedClient,
    signal_server: SignalFeed,
    world: Local,
    feed_metrics: CountingFeedMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="infra.feeds")
    bad = bad_frames_now()
    for _, frame, binary in bad:
        signal_server.send_raw(frame, binary=binary)
    wait_frames(client, len(bad))
    stats = client.stats()
    expected: dict[str, int] = {}
    for reason, _, _ in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert stats.accepted == 0
    assert stats.refused == expected
    assert dict(feed_metrics.errors_of("signals")) == expected
    assert world.store.positions() == [] and world.exchange.log == []
    for reason in expected:
        assert f"refused signal frame: {reason}" in caplog.text
    assert "x" * 200 not in caplog.text, "the preview is truncated"
    # and the feed still works
    signal_server.send_signal(good(signal_id="after-bad"))
    wait_frames(client, len(bad) + 1)
    assert client.stats().accepted == 1


# --- fuzz -------------------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _wrong_type(field: str) -> st.SearchStrategy[Any]:
    if field in (
        "size",
        "stop_loss",
        "take_profit",
        "trailing_distance",
        "expires_at",
        "created_at",
    ):
        bad: st.SearchStrategy[Any] = st.one_of(
            st.booleans(),
            st.text(max_size=10),
            st.lists(st.integers(), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        )
        if field in ("size", "stop_loss"):
            bad = bad | st.none()
        return bad
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.lists(st.text(max_size=3))
    )


@st.composite
def bad_frames(draw: st.DrawFn) -> tuple[bytes, bool]:
    """One frame that must be refused: the payload and whether it is binary."""
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "binary",
                "truncated",
                "wrong_type",
                "non_finite",
                "not_positive",
                "missing",
                "unknown_field",
                "huge",
                "not_object",
                "bad_name",
                "unknown_account",
            ]
        )
    )
    # deterministic (no clock): hypothesis replays draws, so the base must not change
    base = good(signal_id=f"fz-{draw(st.integers(0, 10**9))}", created_at=_DROP)
    if kind == "bytes":
        raw = draw(st.binary(max_size=200))
        return b"\x00" + raw, False  # a NUL first: never JSON
    if kind == "binary":
        return draw(st.binary(max_size=300)), True
    if kind == "truncated":
        text = json.dumps(base)
        return text[: draw(st.integers(0, len(text) - 1))].encode(), False
    if kind == "wrong_type":
        name = draw(st.sampled_from(sorted(base)))
        base[name] = draw(_wrong_type(name))
    elif kind == "non_finite":
        name = draw(st.sampled_from(["size", "stop_loss", "take_profit", "trailing_distance"]))
        base[name] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    elif kind == "not_positive":
        name = draw(st.sampled_from(["size", "stop_loss", "take_profit", "trailing_distance"]))
        base[name] = draw(st.floats(max_value=0.0, allow_nan=False) | st.integers(max_value=0))
    elif kind == "missing":
        del base[
            draw(
                st.sampled_from(
                    ["signal_id", "source", "account", "symbol", "side", "size", "stop_loss"]
                )
            )
        ]
    elif kind == "unknown_field":
        base[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in base))] = draw(
            _json_values
        )
    elif kind == "huge":
        base["signal_id"] = "h" * draw(st.integers(16_500, 200_000))
    elif kind == "not_object":
        return json.dumps(draw(st.lists(_json_values, max_size=3) | _json_scalars)).encode(), False
    elif kind == "bad_name":
        name = draw(st.sampled_from(["signal_id", "source", "side"]))
        bad_names = ["", " ", "x" * 65, "a\nb", "é"]
        if name == "side":
            bad_names.append("buy")  # a valid id or source, but not a side
        base[name] = draw(st.sampled_from(bad_names))
    else:
        base["account"] = draw(st.text(max_size=10).filter(lambda a: a != ACCOUNT))
    return json.dumps(base).encode(), False


def test_fuzzed_bad_frames_never_touch_a_position(
    client: SignalFeedClient, signal_server: SignalFeed, world: Local
) -> None:
    sent = [0]

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(bad_frames(), min_size=1, max_size=4))
    def throw(frames: list[tuple[bytes, bool]]) -> None:
        for payload, binary in frames:
            assert signal_server.send_raw(payload, binary=binary) == 1
            sent[0] += 1
        wait_frames(client, sent[0])
        stats = client.stats()
        assert stats.frames == sent[0]
        assert stats.accepted == 0, "a bad frame was accepted"
        assert stats.refused_total == sent[0]

    throw()
    assert sent[0] >= 200
    refused = client.stats().refused
    print(f"fuzz: {sent[0]} frames refused as {dict(sorted(refused.items()))}")
    assert len(refused) >= 10, "the fuzz exercises many refusal reasons"
    assert client.runner.connections == 1, "a bad frame cost the connection"
    assert world.store.positions() == [] and world.exchange.log == []
    assert world.sup.keys() == []
    signal_server.send_signal(good(signal_id="still-alive"))
    wait_frames(client, sent[0] + 1)
    assert client.stats().accepted == 1


# --- token, flood, reconnect, limits -----------------------------------------------------------


def test_token_is_required_and_never_logged(world: Local, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with SignalFeed("127.0.0.1", 0, token=TOKEN) as server:
        for token in (None, "wrong-token-123"):
            c = make_client(server, world, token=token)
            c.start()
            try:
                wait_until(lambda c=c: c.runner.stats().ends.get("unauthorized", 0) >= 2, 5.0)  # type: ignore[misc]
                assert c.runner.connections == 0 and server.client_count() == 0
            finally:
                stopped(c)
        assert "handshake refused with HTTP 401" in caplog.text
        c = make_client(server, world, token=TOKEN)
        c.start()
        try:
            assert c.runner.wait_connected(1, 5.0) and server.wait_for_clients(1, 5.0)
            server.send_signal(good(signal_id="authorized"))
            wait_frames(c, 1)
            assert c.stats().accepted == 1
            assert TOKEN not in repr(c)
        finally:
            stopped(c)
    assert TOKEN not in caplog.text


def test_a_flood_is_rate_limited_and_the_feed_survives(
    signal_server: SignalFeed, world: Local, caplog: pytest.LogCaptureFixture
) -> None:
    c = make_client(signal_server, world, rate_per_s=20.0, burst=5)
    c.start()
    try:
        assert c.runner.wait_connected(1, 5.0) and signal_server.wait_for_clients(1, 5.0)
        for i in range(300):
            signal_server.send_signal(good(signal_id=f"flood-{i}"))
        wait_frames(c, 300)
        stats = c.stats()
        assert stats.accepted + stats.refused_total == 300
        assert stats.refused.get("rate_limited", 0) >= 200
        assert 5 <= stats.accepted < 100
        lines = [
            r for r in caplog.records if "refused signal frame: rate_limited" in r.getMessage()
        ]
        assert len(lines) <= 10, "refusal log lines are throttled"
        assert len(world.store.open_positions()) <= 1
    finally:
        stopped(c)


def test_dropped_connection_reconnects_and_keeps_working(
    client: SignalFeedClient, signal_server: SignalFeed, world: Local
) -> None:
    assert signal_server.drop_connections() == 1
    assert client.runner.wait_connected(2, 5.0)
    assert signal_server.wait_for_clients(1, 5.0)
    signal_server.send_signal(good(signal_id="after-drop"))
    wait_frames(client, 1)
    assert client.stats().accepted == 1


def test_replayed_signal_is_delivered_and_recorded_as_duplicate_by_the_actor(
    client: SignalFeedClient, signal_server: SignalFeed, world: Local
) -> None:
    sig = good(signal_id="replayed-1")
    signal_server.send_signal(sig)
    signal_server.send_signal(sig)
    wait_frames(client, 2)
    assert client.stats().accepted == 2  # the feed does not deduplicate ...
    outcomes: Callable[[], Any] = world.metrics.outcomes
    wait_until(lambda: outcomes()["duplicate"] == 1, 5.0, "actor saw the replay")
    assert outcomes()["accepted"] == 1  # ... the actor records the replay once, as a duplicate
    assert len(world.store.positions(Key(ACCOUNT, SYMBOL))) == 1


def test_a_frame_over_the_hard_limit_costs_only_itself(
    signal_server: SignalFeed, world: Local
) -> None:
    c = make_client(signal_server, world, hard_max_frame_bytes=64 * 1024)
    c.start()
    try:
        assert c.runner.wait_connected(1, 5.0) and signal_server.wait_for_clients(1, 5.0)
        signal_server.send_raw(b"x" * 200_000)
        signal_server.send_signal(good(signal_id="after-big"))
        wait_frames(c, 1)
        assert c.stats().accepted == 1
        assert c.runner.stats().oversized == 1  # discarded unread, the connection kept
        assert c.runner.connections == 1 and c.runner.stats().ends == {}
    finally:
        stopped(c)


# --- acknowledgements ------------------------------------------------------------------------


def test_every_signal_is_answered_once_its_outcome_is_written(
    client: SignalFeedClient, signal_server: SignalFeed, world: Local
) -> None:
    signal_server.send_signal(good(signal_id="ack-1"))
    ack = signal_server.wait_for_ack("ack-1", 5.0)
    assert ack is not None
    assert (ack["outcome"], ack["reason"], ack["account"], ack["symbol"]) == (
        "accepted",
        "",
        ACCOUNT,
        SYMBOL,
    )
    # the answer comes after the write: the record and the position are there already
    assert [r.outcome.value for r in world.store.signals() if r.signal_id == "ack-1"] == [
        "accepted"
    ]
    assert world.store.positions(KEY)
    assert (ack["retry"], ack["replay"]) == (False, False)
    opened = ack["position_id"]
    assert opened == world.store.positions(KEY)[0].id
    # a replay is answered with the recorded decision: accepted, that position (I11)
    signal_server.received.clear()
    signal_server.send_signal(good(signal_id="ack-1"))
    wait_until(
        lambda: any(b'"replay":true' in _b(m) for m in signal_server.received), 5.0, "replay"
    )
    again = signal_server.acks["ack-1"]
    assert (again["outcome"], again["reason"], again["position_id"]) == ("accepted", "", opened)
    assert again["retry"] is False
    assert len(world.store.positions(KEY)) == 1
    assert client.awaiting() == 0


def _b(m: str | bytes) -> bytes:
    return m if isinstance(m, bytes) else m.encode()


def test_refusals_are_answered_with_their_reason_frames_without_an_id_are_not(
    client: SignalFeedClient, signal_server: SignalFeed, world: Local
) -> None:
    signal_server.send_signal(good(signal_id="old-1", created_at=time.time() - 300))
    signal_server.send_raw('{"signal_id": "broken-1", ')  # malformed: no id can be read
    signal_server.send_signal(good(signal_id="side-1", take_profit=57_000.0))
    for sid in ("old-1", "side-1"):  # decided before the account closes below
        assert signal_server.wait_for_ack(sid, 5.0) is not None
    world.sup.set_entries_open(ACCOUNT, False, "not_owner")
    signal_server.send_signal(good(signal_id="owner-1"))
    ack = signal_server.wait_for_ack("owner-1", 5.0)
    assert ack is not None and (ack["outcome"], ack["reason"]) == ("rejected", "not_owner")
    answers = {k: (v["outcome"], v["reason"]) for k, v in signal_server.acks.items()}
    assert answers == {
        "old-1": ("rejected", "too_old"),
        "side-1": ("rejected", "invalid:take_profit_side"),
        "owner-1": ("rejected", "not_owner"),
    }
    assert client.awaiting() == 0
    assert not world.store.positions(KEY)


def test_a_signal_lost_with_the_process_is_redelivered_and_recorded_once(
    world: Local,
) -> None:
    """The first client takes the signal and dies before anything is decided (its sink
    drops what it is told, as a killed process would). The server re-sends what nobody
    answered to the next client: the signal is recorded once and answered."""

    class Dead:
        def tell(self, msg: Message) -> bool:
            return True

        def tell_tick(self, tick: MarkPriceTick) -> bool:
            return True

    with SignalFeed(redeliver=True) as server:
        server.send_signal(good(signal_id="early-1"))  # nobody connected yet: kept pending
        first = SignalFeedClient(server.url, Dead(), RULES, backoff=FAST, poll_s=0.05)
        first.start()
        try:
            wait_until(lambda: first.stats().accepted == 1, 5.0, "first client took it")
        finally:
            stopped(first)
        assert server.pending() == ["early-1"]
        second = make_client(server, world)
        second.start()
        try:
            ack = server.wait_for_ack("early-1", 5.0)
            assert ack is not None and ack["outcome"] == "accepted"
            assert server.pending() == [] and server.redelivered == 2
            # delivered again once more (a third connection): answered, recorded once
            assert server.drop_connections() == 1
            assert second.runner.wait_connected(2, 5.0)
            server.send_signal(good(signal_id="later-1"))
            assert server.wait_for_ack("later-1", 5.0) is not None
        finally:
            stopped(second)
    records = [r for r in world.store.signals() if r.signal_id == "early-1"]
    assert [r.outcome.value for r in records] == ["accepted"]
    assert len(world.store.positions(KEY)) == 1


def test_with_acks_off_nothing_is_sent_back(signal_server: SignalFeed, world: Local) -> None:
    c = make_client(signal_server, world, acks=False)
    c.start()
    try:
        assert c.runner.wait_connected(1, 5.0) and signal_server.wait_for_clients(1, 5.0)
        signal_server.send_signal(good(signal_id="quiet-1"))
        signal_server.send_signal(good(signal_id="quiet-old", created_at=time.time() - 300))
        # both reach the actor (it checks the age): both are recorded
        wait_until(lambda: len(world.store.signals()) == 2, 5.0, "signals recorded")
        wait_frames(c, 2)
        assert c.awaiting() == 0 and c.acks_sent == 0
        assert c.runner.outbox_size() == 0
        assert signal_server.received == []
    finally:
        stopped(c)
