"""PostgresStore against a real PostgreSQL: round trips, versions, I1, load semantics."""

from __future__ import annotations

import math
from dataclasses import replace

import psycopg
import psycopg.errors
import pytest

from actors.messages import CallOp, CallResult, ExchangeOutcome, MarkPriceTick, SyncObservation
from actors.model import (
    CloseReason,
    ExchangeOrder,
    ExchangePosition,
    Key,
    OrderKind,
    OrderRecord,
    OrderState,
    Side,
    Status,
)
from actors.ports import SignalSeen, StaleVersion, Store, StoreError
from actors.state import Commit, JournalEvent, SignalOutcome, SignalRecord
from infra.store import PostgresStore, StoreRejected
from tests.store.builders import KEY, advance, entry_commit, new_position, refusal_commit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def test_is_a_store(store: PostgresStore) -> None:
    s: Store = store
    assert s is store


def test_round_trip_of_a_position_through_its_life(store: PostgresStore) -> None:
    (pid,) = store.allocate_ids(1)
    pos = new_position(pid)
    store.commit(entry_commit(pos))
    assert store.load(KEY).position == pos

    entry = replace(
        pos.orders[0],
        state=OrderState.FILLED,
        filled_qty=0.5,
        avg_price=61_999.123456789,
        exchange_id="8389765",
        event_time=1_700_000_001.5,
    )
    stop = OrderRecord(
        client_id=f"ps{pid}s1",
        kind=OrderKind.STOP_LOSS,
        side="sell",
        qty=0.5,
        state=OrderState.INTENDED,
        trigger_price=61_234.5,
        sent_at=1_700_000_001.75,
        attempts=1,
    )
    filled, c = advance(
        pos,
        status=Status.PENDING_SL,
        orders=(entry, stop),
        qty=0.5,
        entry_price=61_999.123456789,
        filled_at=1_700_000_001.5,
        stop_seq=1,
        best_price=62_000.0,
    )
    store.commit(c)
    assert store.load(KEY).position == filled

    active, c = advance(
        filled,
        status=Status.ACTIVE,
        orders=(entry, replace(stop, state=OrderState.ACCEPTED, exchange_id="algo-1")),
        protected_at=1_700_000_002.0,
    )
    store.commit(c)
    closed, c = advance(
        active,
        status=Status.CLOSED,
        close_reason=CloseReason.TAKE_PROFIT,
        closed_at=1_700_000_100.0,
        close_seq=2,
        sl_failures=1,
    )
    store.commit(c)
    snap = store.load(KEY)
    assert snap.position == closed
    assert snap.last_closed_at == 1_700_000_100.0
    assert snap.bought is True
    assert tuple(r.signal_id for r in snap.decided) == (pos.signal_id,)
    assert store.positions() == [closed]
    assert store.open_positions() == []


def test_journal_keeps_every_event_with_its_cause(store: PostgresStore) -> None:
    (pid,) = store.allocate_ids(1)
    pos = new_position(pid)
    first = entry_commit(pos)
    store.commit(first)
    obs = SyncObservation(
        KEY,
        ExchangePosition(Side.LONG, 0.5, 62_000.0),
        (ExchangeOrder("x1", "sell", 0.5, True, 61_000.0, True, "77"),),
        observed_at=1_700_000_003.0,
    )
    outcome = ExchangeOutcome(KEY, CallOp.PLACE, f"ps{pid}e1", OrderKind.ENTRY, CallResult.UNKNOWN)
    nxt, c1 = advance(pos, status=Status.ENTRY_PLACED, cause=outcome, kind="entry_accepted")
    store.commit(c1)
    e1 = JournalEvent(pid, "entry_fill", Status.ENTRY_PLACED, Status.PENDING_SL, 5.0, {"qty": 0.5})
    e2 = JournalEvent(pid, "stop_intent", Status.PENDING_SL, Status.PENDING_SL, 5.0, {"why": "x"})
    last = replace(nxt, status=Status.PENDING_SL, qty=0.5, version=nxt.version + 1)
    store.commit(Commit(KEY, obs, last, nxt.version, (e1, e2)))

    rows = store.journal(KEY.account, KEY.symbol)
    assert [r.event.kind for r in rows] == [
        "entry_intent",
        "entry_accepted",
        "entry_fill",
        "stop_intent",
    ]
    assert [r.cause for r in rows] == [first.cause, outcome, obs, obs]
    types = ["OpenSignal", "ExchangeOutcome", "SyncObservation", "SyncObservation"]
    assert [r.cause_type for r in rows] == types
    assert rows[2].event == e1
    assert rows[3].event == e2
    assert rows[1].event.detail == {"via": "test"}
    assert all(r.key == KEY for r in rows)
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert store.journal(KEY.account, KEY.symbol, position_id=pid) == rows
    assert store.journal(KEY.account, "ETHUSDT") == []


def test_journal_payload_with_nan_and_nul_is_written(store: PostgresStore) -> None:
    tick = MarkPriceTick(KEY, math.nan, 1.0, low=-math.inf, high=math.inf)
    ev = JournalEvent(None, "odd", None, None, 1.0, {"price": math.nan, "text": "a\x00b"})
    store.commit(Commit(KEY, tick, None, 0, (ev,)))
    (row,) = store.journal(KEY.account, KEY.symbol)
    cause = row.cause
    assert isinstance(cause, MarkPriceTick)
    assert math.isnan(cause.price) and cause.low == -math.inf and cause.high == math.inf
    assert row.event.detail == {"price": "NaN", "text": "a\ufffdb"}


def test_commit_without_position_writes_only_events_and_signal(
    store: PostgresStore, pg_dsn: str
) -> None:
    store.commit(refusal_commit(KEY, "s1", 10.0))
    assert store.positions() == []
    assert [r.event.kind for r in store.journal(KEY.account, KEY.symbol)] == ["signal_refused"]
    assert store.signals() == [
        SignalRecord(KEY, "s1", "whale", SignalOutcome.COOLDOWN, "cooldown", 10.0)
    ]
    assert _count(pg_dsn, "orders") == 0


def test_a_replayed_signal_id_is_recorded_once_per_account(
    store: PostgresStore, pg_dsn: str
) -> None:
    """A final decision binds the id: a later final refusal of it (a replay older than the
    actor's memory, decided afresh) writes nothing and raises ``SignalSeen``, so the actor
    answers with the decision recorded first (I11), not with the new one."""
    store.commit(refusal_commit(KEY, "dup", 1.0, "first"))
    before = {t: _count(pg_dsn, t) for t in ("journal", "signals", "signal_ids")}
    for key, reason in ((KEY, "second"), (Key(KEY.account, "ETHUSDT"), "other symbol")):
        with pytest.raises(SignalSeen, match="dup"):
            store.commit(refusal_commit(key, "dup", 2.0, reason))
    assert {t: _count(pg_dsn, t) for t in before} == before
    store.commit(refusal_commit(Key("acc2", KEY.symbol), "dup", 4.0, "other account"))
    got = store.signals()
    assert [(r.key.account, r.reason) for r in got] == [
        ("acc1", "first"),
        ("acc2", "other account"),
    ]
    assert store.signals(account="acc1", symbol="ETHUSDT") == []
    assert len(store.journal(KEY.account, KEY.symbol)) == 1
    recorded = store.recorded_signal(KEY.account, "dup")
    assert recorded is not None and recorded.reason == "first"


def test_a_transient_refusal_binds_no_id(store: PostgresStore) -> None:
    """A refusal that allows a retry is recorded but decides nothing: the id may be refused
    again, or accepted later."""
    transient = refusal_commit(KEY, "later", 1.0, "busy")
    assert transient.signal is not None and transient.signal.retry
    store.commit(transient)
    store.commit(transient)
    store.commit(refusal_commit(KEY, "later", 3.0, "final"))
    assert [r.reason for r in store.signals()] == ["busy", "busy", "final"]


def test_accepting_a_signal_id_already_in_the_history_writes_nothing(
    store: PostgresStore, pg_dsn: str
) -> None:
    """An old replay (beyond the actor's memory of recent ids), or one id sent for two
    symbols: the second acceptance is refused whole, so no second position opens."""
    first = new_position(1)
    store.commit(entry_commit(first))
    with pytest.raises(SignalSeen):  # a final refusal of the accepted id writes nothing
        store.commit(refusal_commit(KEY, first.signal_id or "", 2.0, "signal_replayed"))
    before = {t: _count(pg_dsn, t) for t in ("positions", "orders", "journal", "signals")}
    again = replace(new_position(2, Key(KEY.account, "ETHUSDT")), signal_id=first.signal_id)
    with pytest.raises(SignalSeen, match=str(first.signal_id)):
        store.commit(entry_commit(again))
    assert {t: _count(pg_dsn, t) for t in before} == before
    assert [p.id for p in store.open_positions()] == [1]
    # another account may use the id
    store.commit(entry_commit(replace(again, key=Key("acc2", "ETHUSDT"))))
    assert sorted(p.id for p in store.open_positions()) == [1, 2]


def test_load_of_an_unknown_key_is_empty(store: PostgresStore) -> None:
    snap = store.load(Key("nobody", "XYZUSDT"))
    assert snap.position is None
    assert snap.last_closed_at is None
    assert snap.bought is False
    assert snap.decided == ()


def test_load_prefers_the_open_position_and_remembers_history(store: PostgresStore) -> None:
    a, b, c = store.allocate_ids(3)
    # a: bought and closed at t=100; b: failed later without a fill; c: open now.
    pa = new_position(a)
    store.commit(entry_commit(pa))
    pa2, commit = advance(pa, status=Status.ACTIVE, qty=0.5, filled_at=50.0)
    store.commit(commit)
    _, commit = advance(pa2, status=Status.CLOSED, closed_at=100.0)
    store.commit(commit)
    pb = new_position(b)
    store.commit(entry_commit(pb))
    pb2, commit = advance(pb, status=Status.FAILED, fail_reason="entry_rejected")
    store.commit(commit)
    snap = store.load(KEY)
    assert snap.position == pb2  # no open one: the most recent terminal one
    assert snap.last_closed_at == 100.0
    assert snap.bought is True

    pc = new_position(c)
    store.commit(entry_commit(pc))
    snap = store.load(KEY)
    assert snap.position == pc
    assert tuple(r.signal_id for r in snap.decided) == (f"sig-{a}", f"sig-{b}", f"sig-{c}")
    assert store.open_positions() == [pc]
    assert store.open_positions("acc1") == [pc]
    assert store.open_positions("other") == []
    assert [p.id for p in store.positions(include_terminal=True)] == [a, b, c]
    assert [p.id for p in store.positions("acc1", include_terminal=False)] == [c]


def test_failed_entries_do_not_count_as_bought(store: PostgresStore) -> None:
    (a,) = store.allocate_ids(1)
    pa = new_position(a)
    store.commit(entry_commit(pa))
    _, commit = advance(pa, status=Status.FAILED, fail_reason="rejected:insufficient margin")
    store.commit(commit)
    snap = store.load(KEY)
    assert snap.bought is False
    assert snap.last_closed_at is None


def test_recent_signals_are_the_last_256_oldest_first(pg_dsn: str) -> None:
    with PostgresStore(pg_dsn, migrate_schema=False, recent_signals=256) as store:
        for i in range(300):
            store.commit(refusal_commit(KEY, f"s{i:03d}", float(i)))
        store.commit(refusal_commit(Key(KEY.account, "ETHUSDT"), "elsewhere", 1.0))
        snap = store.load(KEY)
        assert tuple(r.signal_id for r in snap.decided) == tuple(
            f"s{i:03d}" for i in range(44, 300)
        )


def test_stale_version_fails_loudly_and_writes_nothing(store: PostgresStore, pg_dsn: str) -> None:
    (pid,) = store.allocate_ids(1)
    pos = new_position(pid)
    store.commit(entry_commit(pos))
    v2, c2 = advance(pos, status=Status.ENTRY_PLACED)
    store.commit(c2)
    journal_before = len(store.journal(KEY.account, KEY.symbol))
    # A second writer that still believes in version 1:
    other = replace(
        pos,
        status=Status.FAILED,
        orders=(*pos.orders, replace(pos.orders[0], client_id=f"ps{pid}e2")),
        version=2,
    )
    stale = Commit(
        KEY,
        c2.cause,
        other,
        1,
        (JournalEvent(pid, "failed", Status.PENDING_ENTRY, Status.FAILED, 9.0, {}),),
        SignalRecord(KEY, "late", "x", SignalOutcome.REJECTED, "r", 9.0),
    )
    with pytest.raises(StaleVersion, match=r"expected version 1, found version 2"):
        store.commit(stale)
    assert store.load(KEY).position == v2
    assert len(store.journal(KEY.account, KEY.symbol)) == journal_before
    assert _count(pg_dsn, "orders") == 1
    assert [s.signal_id for s in store.signals()] == [pos.signal_id]
    # Re-inserting an existing position is stale too.
    with pytest.raises(StaleVersion, match="already exists"):
        store.commit(entry_commit(pos))
    # And updating one that was never written.
    ghost = new_position(pid + 1000)
    _, c = advance(ghost)
    with pytest.raises(StaleVersion, match="not in the database"):
        store.commit(c)


def test_merged_commits_jump_versions(store: PostgresStore) -> None:
    (pid,) = store.allocate_ids(1)
    pos = new_position(pid)
    store.commit(entry_commit(pos))
    v4, c = advance(pos, status=Status.ACTIVE, qty=0.5, steps=3)
    assert (c.expected_version, v4.version) == (1, 4)
    store.commit(c)
    assert store.load(KEY).position == v4
    v5, c = advance(v4, status=Status.CLOSING)
    store.commit(c)
    assert store.load(KEY).position == v5


def test_i1_partial_unique_index_refuses_a_second_open_row_in_sql(pg_dsn: str) -> None:
    insert = (
        "INSERT INTO positions (id, account, symbol, side, status, source, requested_qty, qty, "
        "stop_price, created_at, updated_at, stop_seq, close_seq, sl_failures, version) "
        "VALUES (%s, 'a', 'BTCUSDT', 'long', %s, 's', 1, 0, 1, 0, 0, 0, 0, 0, 1)"
    )
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(insert, (1, "closed"))
        conn.execute(insert, (2, "failed"))
        conn.execute(insert, (3, "active"))
        for i, status in enumerate(
            ["pending_entry", "entry_placed", "pending_sl", "active", "closing"], start=10
        ):
            with pytest.raises(psycopg.errors.UniqueViolation, match="positions_one_open"):
                conn.execute(insert, (i, status))
        conn.execute(insert, (20, "closed"))  # terminal rows are unlimited
        conn.execute("UPDATE positions SET status = 'closed', closed_at = 1 WHERE id = 3")
        conn.execute(insert, (21, "pending_entry"))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE positions SET status = 'active' WHERE id = 1")


def test_i1_second_open_position_via_commit_is_stale(store: PostgresStore) -> None:
    a, b = store.allocate_ids(2)
    pa = new_position(a)
    store.commit(entry_commit(pa))
    pb = new_position(b)
    with pytest.raises(StaleVersion, match=rf"already has an open position \(position {a}"):
        store.commit(entry_commit(pb))
    assert store.positions() == [pa]
    assert [s.signal_id for s in store.signals()] == [pa.signal_id]
    assert len(store.journal(KEY.account, KEY.symbol)) == 1
    # Once the first is terminal, the second may open.
    _, c = advance(pa, status=Status.FAILED, fail_reason="entry_not_found")
    store.commit(c)
    store.commit(entry_commit(pb))
    assert store.load(KEY).position == pb


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stop_price", math.nan),
        ("entry_price", math.inf),
        ("qty", -1.0),
        ("qty", math.nan),
        ("take_profit", -math.inf),
        ("created_at", math.nan),
        ("source", "x" * 1_000_000),
        ("signal_id", "a\x00b"),
        ("fail_reason", "\ud800"),
        ("stop_seq", 2**40),
    ],
)
def test_a_bad_value_is_refused_and_nothing_is_written(
    store: PostgresStore, pg_dsn: str, field: str, value: object
) -> None:
    (pid,) = store.allocate_ids(1)
    bad = replace(new_position(pid), **{field: value})  # type: ignore[arg-type]
    with pytest.raises(StoreRejected) as info:
        store.commit(entry_commit(bad))
    assert isinstance(info.value, StoreError)
    for table in ("positions", "orders", "journal", "signals"):
        assert _count(pg_dsn, table) == 0, table
    # The store is fine afterwards.
    good = new_position(pid)
    store.commit(entry_commit(good))
    assert store.load(KEY).position == good


def test_a_bad_order_value_on_update_keeps_the_previous_version(store: PostgresStore) -> None:
    (pid,) = store.allocate_ids(1)
    pos = new_position(pid)
    store.commit(entry_commit(pos))
    broken = replace(pos.orders[0], avg_price=math.nan, filled_qty=0.5)
    _, c = advance(pos, status=Status.PENDING_SL, qty=0.5, orders=(broken,))
    with pytest.raises(StoreRejected, match="avg_price"):
        store.commit(c)
    assert store.load(KEY).position == pos
    assert len(store.journal(KEY.account, KEY.symbol)) == 1


def test_commit_refuses_a_position_of_another_key_or_a_version_that_does_not_grow(
    store: PostgresStore,
) -> None:
    (pid,) = store.allocate_ids(1)
    pos = new_position(pid)
    c = entry_commit(pos)
    with pytest.raises(StoreRejected, match="carries position"):
        store.commit(replace(c, key=Key("acc1", "ETHUSDT")))
    with pytest.raises(StoreRejected, match="does not follow"):
        store.commit(replace(c, position=replace(pos, version=0)))
    assert store.positions() == []


def test_an_order_id_of_another_position_is_refused(store: PostgresStore) -> None:
    a, b = store.allocate_ids(2)
    pa = new_position(a)
    store.commit(entry_commit(pa))
    pb = replace(new_position(b, Key("acc1", "ETHUSDT")), orders=pa.orders)
    with pytest.raises(StoreRejected, match="belongs to another position"):
        store.commit(entry_commit(pb))
    assert store.positions() == [pa]


def test_allocate_ids_are_unique_ascending_and_survive_stores(pg_dsn: str) -> None:
    with PostgresStore(pg_dsn, migrate_schema=False) as s1:
        first = list(s1.allocate_ids(8))
        assert first == sorted(first) and len(set(first)) == 8
        assert s1.allocate_ids(0) == []
    with PostgresStore(pg_dsn, migrate_schema=False) as s2:
        second = list(s2.allocate_ids(8))
    assert min(second) > max(first)


def test_store_methods_after_close_are_unavailable(pg_dsn: str) -> None:
    from actors.ports import StoreUnavailable

    s = PostgresStore(pg_dsn, migrate_schema=False)
    s.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        s.load(KEY)
    s.close()  # idempotent


def test_journal_and_signals_are_append_only(store: PostgresStore, pg_dsn: str) -> None:
    store.commit(refusal_commit(KEY, "s1", 1.0))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for stmt in (
            "UPDATE journal SET kind = 'x'",
            "DELETE FROM journal",
            "TRUNCATE journal",
            "UPDATE signals SET reason = 'x'",
            "DELETE FROM signals",
            "TRUNCATE signals",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(stmt)
    assert len(store.journal(KEY.account, KEY.symbol)) == 1


def test_two_stores_taking_turns_on_one_position_write_every_order_change(pg_dsn: str) -> None:
    """A store writes only orders changed since its own last write at the expected version;
    a turn taken by another store in between must not make it skip a change."""
    with (
        PostgresStore(pg_dsn, migrate_schema=False) as a,
        PostgresStore(pg_dsn, migrate_schema=False) as b,
    ):
        (pid,) = a.allocate_ids(1)
        pos = new_position(pid)
        a.commit(entry_commit(pos))
        entry = pos.orders[0]
        # b (no memory of the position) changes the entry order.
        p2, c = advance(pos, status=Status.ENTRY_PLACED, orders=(replace(entry, attempts=2),))
        b.commit(c)
        # a's memory is at version 1, the expected version is 2: a writes every order, even
        # one equal to what a itself wrote at version 1 (b changed it since).
        p3, c = advance(p2, orders=(entry,))
        a.commit(c)
        assert a.load(KEY).position == p3
        # a remembers version 3 now; b changes the order again at version 3 -> 4.
        p4, c = advance(p3, orders=(replace(entry, attempts=4, exchange_id="e"),))
        b.commit(c)
        # a writes 4 -> 5 adding a stop; the entry order must still be b's version.
        stop = replace(entry, client_id=f"ps{pid}s1", kind=OrderKind.STOP_LOSS, side="sell")
        p5, c = advance(p4, orders=(*p4.orders, stop))
        a.commit(c)
        assert b.load(KEY).position == p5
        # An unchanged order is not rewritten, a changed one is, by the same store.
        p6, c = advance(p5, orders=(p5.orders[0], replace(stop, state=OrderState.ACCEPTED)))
        a.commit(c)
        assert b.load(KEY).position == p6
