"""S7 end to end: the user-data stream of the sim, real websocket-client, real ccxt adapter,
real supervisor and actors (in-memory store).

The sim writes an order's user events to the sockets *before* its REST reply (the default), so
the stream is the first to report every fill. No periodic sync runs unless a test starts one:
a quantity that only the stream carried (partial fills) proves the stream path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from actors.messages import CallResult, OpenSignal
from actors.model import CloseReason, Key, OrderKind, OrderState, Side, Status
from actors.ports import OrderRequest, SystemClock
from actors.state import Policy, Position, Reentry
from infra.exchange import CcxtExchange
from infra.feeds import (
    Backoff,
    CountingFeedMetrics,
    ListenKeyError,
    ListenKeyMissing,
    ListenKeySource,
    UserDataStream,
)
from sim import SimExchange
from supervision.supervisor import Supervisor, SupervisorConfig
from supervision.sync import SyncService
from testkit.store import InMemoryStore
from tests.exchange.conftest import sim_config
from tests.feeds.conftest import (
    ACCOUNT,
    FAST,
    KEY,
    SYMBOL,
    SyncRecorder,
    stopped,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@dataclass
class Live:
    sim: SimExchange
    exchange: CcxtExchange
    store: InMemoryStore
    sup: Supervisor
    sync: SyncService
    syncs: SyncRecorder
    metrics: CountingFeedMetrics

    def position(self, key: Key = KEY) -> Position | None:
        return self.sup.state(key).position

    def wait_status(
        self, status: Status, qty: float | None = None, timeout: float = 10.0
    ) -> Position:
        def reached() -> Position | None:
            pos = self.position()
            if pos is None or pos.status is not status:
                return None
            if qty is not None and pos.qty != pytest.approx(qty):
                return None
            return pos

        return wait_until(reached, timeout, f"{KEY} reaches {status.value} qty {qty}")

    def stream(self, **kw: object) -> UserDataStream:
        options: dict[str, object] = {"backoff": FAST, "metrics": self.metrics, "poll_s": 0.05}
        options.update(kw)
        return UserDataStream(
            ACCOUNT,
            self.sim.ws_url,
            self.exchange.listen_keys,
            self.sup,
            request_sync=self.syncs,
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture
def live(sim: SimExchange) -> Iterator[Live]:
    exchange = CcxtExchange(ACCOUNT, sim_config(sim))
    exchange.load_markets()
    store = InMemoryStore()
    sup = Supervisor(
        store,
        {ACCOUNT: exchange},
        SystemClock(),
        config=SupervisorConfig(policy=Policy(reentry=Reentry.ALLOW), shutdown_grace_s=5.0),
    )
    sync = SyncService({ACCOUNT: exchange}, sup.tell, sup.keys, interval_s=3600.0, clock=time.time)
    syncs = SyncRecorder(forward=sync.request)
    sup.sync_listeners.append(syncs)
    sup.start()
    try:
        yield Live(sim, exchange, store, sup, sync, syncs, CountingFeedMetrics())
    finally:
        sync.stop()
        assert sup.stop(grace_s=5.0), "supervisor did not stop cleanly"
        exchange.close()


@pytest.fixture
def stream(live: Live) -> Iterator[UserDataStream]:
    s = live.stream()
    s.start()
    try:
        assert s.runner.wait_connected(1, 5.0)
        assert live.sim.wait_for_user_streams(1, 5.0)
        yield s
    finally:
        stopped(s)


def signal(signal_id: str = "sig-1", size: float = 0.01, stop: float = 58_000.0) -> OpenSignal:
    return OpenSignal(KEY, signal_id, "sniper", Side.LONG, size, stop)


def fills_via(live: Live) -> list[object]:
    return [ev.detail.get("via") for ev in live.store.journal(KEY) if ev.kind == "entry_fill"]


def test_s7_fill_on_the_stream_before_the_reply_is_applied(
    live: Live, stream: UserDataStream
) -> None:
    """The sim writes the fill to the stream before the reply, and holds the reply 0.5 s: the
    actor (created by the signal a moment before) applies the stream's report, then the late
    reply, without doubling anything."""
    assert live.sim.user_events_first
    live.sim.add_fault("timeout", hold_s=0.5, path="/fapi/v1/order", method="POST")
    live.sup.tell(signal())
    pos = live.wait_status(Status.ACTIVE, 0.01)
    assert fills_via(live)[0] == "stream", "the stream reported the fill first"
    assert live.sup.drain_calls(5.0), "the held reply arrived"
    pos = live.wait_status(Status.ACTIVE, 0.01)
    entry = pos.latest(OrderKind.ENTRY)
    assert entry is not None and entry.state is OrderState.FILLED
    assert entry.avg_price == pytest.approx(60_000.0)
    assert live.sim.orders_sent(entry.client_id) == 1
    stop = pos.latest(OrderKind.STOP_LOSS)
    assert stop is not None and stop.state is OrderState.ACCEPTED
    assert live.sim.positions()[SYMBOL].qty == pytest.approx(pos.qty)
    assert len(live.store.positions(KEY)) == 1
    assert live.syncs.reasons() == ["stream connected"]
    assert stream.updates >= 3 and not stream.refused and stream.undelivered == 0
    assert live.metrics.lags[f"{ACCOUNT}:user"]
    # The stop is reported by the stream and by the REST reply: one journal row all the same.
    confirmed = [ev for ev in live.store.journal(KEY) if ev.kind == "stop_confirmed"]
    assert len(confirmed) == 1, confirmed


def test_s7_partial_fills_arrive_only_on_the_stream_and_are_all_applied(
    live: Live, stream: UserDataStream
) -> None:
    live.sim.add_fault("partial_fill", parts=3, part_interval_s=0.05)
    live.sup.tell(signal(size=0.03))
    pos = live.wait_status(Status.ACTIVE, 0.03)
    entry = pos.latest(OrderKind.ENTRY)
    assert entry is not None and entry.state is OrderState.FILLED
    assert entry.filled_qty == pytest.approx(0.03)
    assert live.sim.positions()[SYMBOL].qty == pytest.approx(0.03)
    assert "stream reconnect" not in live.syncs.reasons()
    assert live.sync.rounds == 0, "no sync ran: the quantity came from the stream"


def test_a_triggered_stop_closes_the_position_from_the_stream(
    live: Live, stream: UserDataStream
) -> None:
    live.sup.tell(signal())
    live.wait_status(Status.ACTIVE, 0.01)
    live.sim.set_price(SYMBOL, 57_500.0)  # below the stop at 58,000: the exchange executes it
    pos = live.wait_status(Status.CLOSED)
    assert pos.close_reason is CloseReason.STOP_LOSS
    stop = pos.latest(OrderKind.STOP_LOSS)
    assert stop is not None and stop.state is OrderState.FILLED
    assert SYMBOL not in live.sim.positions()
    assert stream._algo_of_order, "the triggered market order was linked to its stop by ai"
    assert live.sync.rounds == 0


def test_duplicated_and_reordered_events_are_harmless(live: Live, stream: UserDataStream) -> None:
    live.sim.add_fault("ws_duplicate", count=None)
    live.sim.add_fault("ws_reorder", count=None)
    live.sup.tell(signal())
    pos = live.wait_status(Status.ACTIVE, 0.01)
    entry = pos.latest(OrderKind.ENTRY)
    assert entry is not None and entry.state is OrderState.FILLED
    assert entry.filled_qty == pytest.approx(0.01)
    assert len(live.store.positions(KEY)) == 1
    assert live.sim.orders_sent(entry.client_id) == 1


def test_dropped_user_stream_reconnects_syncs_and_loses_nothing(live: Live) -> None:
    """The stream drops right after the first part of a partially filled entry; the other
    parts fill while it is down (their events are lost). The reconnect asks for a sync, which
    restores the quantity; the new connection then carries the stop's execution."""
    s = live.stream(backoff=Backoff(min_s=0.6, max_s=1.0, jitter=0.1, stable_after_s=10.0))
    s.start()
    try:
        assert s.runner.wait_connected(1, 5.0) and live.sim.wait_for_user_streams(1, 5.0)
        live.sync.start()
        wait_until(lambda: live.sync.rounds >= 1, 5.0, "first periodic sync round")
        live.sim.add_fault("partial_fill", parts=5, part_interval_s=0.05)
        live.sup.tell(signal(size=0.05))
        live.wait_status(Status.ACTIVE, timeout=5.0)
        assert live.sim.drop_streams("user") == 1  # mid-stream: parts 2..5 still to come
        wait_until(lambda: live.sim.positions()[SYMBOL].qty == pytest.approx(0.05), 5.0)
        assert s.runner.wait_connected(2, 5.0)
        assert live.syncs.wait_for("stream reconnect")
        pos = live.wait_status(Status.ACTIVE, 0.05)
        assert pos.qty == pytest.approx(live.sim.positions()[SYMBOL].qty)
        kinds = [ev.kind for ev in live.store.journal(KEY)]
        assert "qty_from_sync" in kinds, "the parts missed while down came from the sync"
        assert s.runner.stats().ends == {"dropped": 1}
        assert live.metrics.reconnects[f"{ACCOUNT}:user"] == 1
        # The new connection delivers: the stop executes and the stream closes the position.
        live.sim.set_price(SYMBOL, 57_500.0)
        pos = live.wait_status(Status.CLOSED)
        assert pos.close_reason is CloseReason.STOP_LOSS
        assert SYMBOL not in live.sim.positions()
        assert len(live.store.positions(KEY)) == 1
    finally:
        stopped(s)


def test_expired_listen_key_reconnects_with_a_new_key(
    live: Live, stream: UserDataStream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (old,) = live.sim.listen_keys()
    assert live.sim.delete_listen_key(old)  # expired: the exchange drops its streams
    assert stream.runner.wait_connected(2, 5.0)
    (new,) = live.sim.listen_keys()
    assert new != old
    assert live.syncs.wait_for("stream reconnect")
    live.sup.tell(signal())
    live.wait_status(Status.ACTIVE, 0.01)
    ours = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("infra.feeds", "websocket"))
    )
    assert new[:6] in ours  # the prefix is logged ...
    assert old not in ours and new not in ours  # ... the key never


def test_listen_key_expired_event_makes_the_stream_reconnect(
    live: Live, stream: UserDataStream
) -> None:
    (key,) = live.sim.listen_keys()
    event = {"e": "listenKeyExpired", "E": int(time.time() * 1000), "listenKey": key}
    live.sim.hub.publish(key, json.dumps(event))
    assert stream.runner.wait_connected(2, 5.0)
    assert stream.runner.stats().ends == {"listen_key_expired": 1}


class _ExpiringKeys:
    """The adapter's listen keys on the sim, except that the next keep-alive answers -1125."""

    expire_next = True

    def __init__(self, keys: ListenKeySource) -> None:
        self.keys = keys

    def create(self) -> str:
        return self.keys.create()

    def keepalive(self) -> None:
        if self.expire_next:
            self.expire_next = False
            raise ListenKeyMissing("PUT listenKey: HTTP 400 -1125", 400, -1125)
        self.keys.keepalive()


def test_keepalive_refused_with_1125_reconnects(live: Live) -> None:
    s = UserDataStream(
        ACCOUNT,
        live.sim.ws_url,
        _ExpiringKeys(live.exchange.listen_keys),
        live.sup,
        request_sync=live.syncs,
        keepalive_interval_s=0.05,
        backoff=FAST,
        poll_s=0.05,
    )
    s.start()
    try:
        assert s.runner.wait_connected(2, 5.0)
        assert s.runner.stats().ends.get("listen_key_expired") == 1
        wait_until(lambda: s.keepalives >= 1, 5.0, "a later keep-alive succeeds")
    finally:
        stopped(s)


def test_listen_keys_of_the_adapter_against_the_sim(live: Live) -> None:
    sim, client = live.sim, live.exchange.listen_keys
    key = client.create()
    assert client.create() == key  # POST with an active key returns it
    client.keepalive()
    sim.delete_listen_key(key)
    with pytest.raises(ListenKeyMissing) as exc:
        client.keepalive()
    assert exc.value.code == -1125 and key not in str(exc.value)
    sim.add_fault("http_503", path="/fapi/v1/listenKey", method="POST")
    with pytest.raises(ListenKeyError) as err:
        client.create()
    assert not isinstance(err.value, ListenKeyMissing) and err.value.status == 503
    assert "sim-api-key" not in repr(client)


def test_unusable_frames_are_refused_and_the_stream_goes_on(
    live: Live, stream: UserDataStream
) -> None:
    (key,) = live.sim.listen_keys()
    for text in (
        "{",
        "[]",
        '{"e":"ORDER_TRADE_UPDATE","E":1,"o":{"s":"BTCUSDT","X":"NEW"}}',
        '{"e":"ORDER_TRADE_UPDATE","E":1,"o":{"s":"BTCUSDT","c":"x","X":"NEW","z":"nan"}}',
        '{"e":"MARGIN_CALL","E":1}',
    ):
        live.sim.hub.publish(key, text)
    live.sup.tell(signal())
    live.wait_status(Status.ACTIVE, 0.01)
    assert dict(stream.refused) == {
        "malformed_json": 1,
        "unexpected_shape": 1,
        "missing_client_id": 1,
        "bad_quantity": 1,
    }
    assert stream.ignored == 1


def test_an_order_update_for_a_symbol_without_an_actor_starts_one(
    live: Live, stream: UserDataStream
) -> None:
    """An order placed on the exchange by hand (not by an actor): its stream events start the
    symbol's actor at once, before any sync; the sync later adopts the position."""
    eth = Key(ACCOUNT, "ETHUSDT")
    assert eth not in live.sup.keys()
    reply = live.exchange.place_order(OrderRequest(eth, "manual-1", OrderKind.ENTRY, "buy", 0.1))
    assert reply.result is CallResult.ACCEPTED
    wait_until(lambda: eth in live.sup.keys(), 5.0, "actor started by the order update")
    assert live.sync.rounds == 0
    assert live.sup.state(eth).position is None  # not ours: the actor ignores the client id
