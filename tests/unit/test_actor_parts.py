"""The pure parts the position actor's shell was split into, pinned on their own: the
unwritten-commit buffer's merge, the signal age check, and what an exchange call becomes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from actors import exchange_calls as calls
from actors.effects import CancelOrder, FetchMarket, LookupOrder, PlaceOrder
from actors.messages import CallResult, OpenSignal, Recover
from actors.model import ExchangeStatus, Key, OrderKind, OrderState, Side, Status
from actors.orders import client_order_id, intended_order, parse_client_id
from actors.ports import OrderReply, StoreUnavailable
from actors.signal_age import age_refusal
from actors.state import Commit, JournalEvent, Position, SignalOutcome, SignalRecord
from actors.unwritten import UnwrittenCommits, merge

KEY = Key("main", "BTCUSDT")


def _pos(pid: int, version: int) -> Position:
    return Position(pid, KEY, Side.LONG, Status.ACTIVE, "s", 1.0, 90.0, 0.0, 0.0, version=version)


def _commit(pid: int | None, version: int, kind: str) -> Commit:
    ev = JournalEvent(pid, kind, None, None, float(version))
    pos = None if pid is None else _pos(pid, version)
    return Commit(KEY, Recover(KEY), pos, version - 1, (ev,))


def test_consecutive_commits_of_one_position_are_one_write_from_the_first_version() -> None:
    a1, a2, b1, a3 = (
        _commit(1, 2, "a1"),
        _commit(1, 3, "a2"),
        _commit(2, 2, "b1"),
        _commit(1, 4, "a3"),
    )
    out = merge([a1, a2, b1, a3])
    assert [c.position.id for c in out if c.position] == [1, 2, 1]
    assert out[0].expected_version == 1 and out[0].position == a2.position
    assert [e.kind for e in out[0].events] == ["a1", "a2"]
    assert out[1] is b1 and out[2] is a3


class _Store:
    def __init__(self, fail_at: int) -> None:
        self.written: list[Commit] = []
        self.fail_at = fail_at

    def commit(self, c: Commit) -> None:
        if len(self.written) == self.fail_at:
            raise StoreUnavailable("down")
        self.written.append(c)


def test_a_flush_that_fails_keeps_exactly_what_is_not_written() -> None:
    buf = UnwrittenCommits()
    for c in (_commit(1, 2, "a1"), _commit(1, 3, "a2"), _commit(None, 1, "q"), _commit(2, 2, "b")):
        buf.append(c)
    store = _Store(fail_at=2)
    assert buf.flush(store) is False  # type: ignore[arg-type]
    assert len(store.written) == 2 and len(buf) == 1  # the merged a1+a2 and q went out
    store.fail_at = -1
    assert buf.flush(store) is True  # type: ignore[arg-type]
    assert len(buf) == 0 and [e.kind for c in store.written for e in c.events] == [
        "a1",
        "a2",
        "q",
        "b",
    ]


def _sig(expires: float | None = None, created: float | None = None) -> OpenSignal:
    return OpenSignal(KEY, "s1", "src", Side.LONG, 1.0, 90.0, None, None, expires, created)


@pytest.mark.parametrize(
    ("sig", "max_age", "reason"),
    [
        (_sig(), 5.0, None),
        (_sig(expires=99.0), None, "expired"),
        (_sig(expires=100.0), None, None),
        (_sig(created=94.0), 5.0, "too_old"),
        (_sig(created=95.0), 5.0, None),
        (_sig(created=0.0), None, None),
        (_sig(expires=99.0, created=0.0), 5.0, "expired"),
    ],
)
def test_age_refusal(sig: OpenSignal, max_age: float | None, reason: str | None) -> None:
    assert age_refusal(sig, 100.0, max_age) == reason


def test_a_refusal_record_holds_printable_text_only() -> None:
    sig = OpenSignal(KEY, "a\nb" + "x" * 80, "src", Side.LONG, 1.0, 90.0)
    rec = SignalRecord.refused(sig, "busy", 5.0)
    assert rec.signal_id == "a?b" + "x" * 61 and rec.outcome is SignalOutcome.REJECTED
    assert (rec.key, rec.source, rec.reason, rec.at, rec.position_id) == (
        KEY,
        "src",
        "busy",
        5.0,
        None,
    )


def _calls() -> Sequence[calls.ExchangeCall]:
    entry = intended_order(7, OrderKind.ENTRY, 1, "buy", 1.0, 0.0)
    stop = intended_order(7, OrderKind.STOP_LOSS, 2, "sell", 1.0, 0.0, 90.0)
    return (
        PlaceOrder(KEY, 7, entry),
        PlaceOrder(KEY, 7, stop, close_position=True),
        CancelOrder(KEY, "ps7e1", OrderKind.ENTRY),
        LookupOrder(KEY, "ps7e1", OrderKind.ENTRY),
        LookupOrder(KEY, "ps7s2", OrderKind.STOP_LOSS),
        FetchMarket(KEY),
    )


def test_protection_first_then_resolving_entries_then_entries() -> None:
    assert [calls.priority(c) for c in _calls()] == [
        calls.ENTRY,
        calls.PROTECT,
        calls.PROTECT,
        calls.RESOLVE_ENTRY,
        calls.PROTECT,
        calls.RESOLVE_ENTRY,
    ]
    assert [calls.is_stop(c) for c in _calls()] == [False, True, False, False, False, False]


def test_an_order_reply_becomes_the_outcome_of_its_call() -> None:
    place = _calls()[1]
    assert isinstance(place, PlaceOrder)
    assert place.order.state is OrderState.INTENDED and place.order.client_id == "ps7s2"
    req = calls.order_request(place)
    assert (req.client_id, req.kind, req.trigger_price, req.close_position) == (
        "ps7s2",
        OrderKind.STOP_LOSS,
        90.0,
        True,
    )
    out = calls.superseded(place)
    assert (out.op, out.client_id, out.kind, out.result, out.reason, out.update) == (
        "place",
        "ps7s2",
        OrderKind.STOP_LOSS,
        CallResult.REJECTED,
        "superseded",
        None,
    )
    reply = OrderReply(CallResult.FOUND, "", ExchangeStatus.FILLED, 1.0, 101.0, "x1", 5.0)
    out = calls.order_outcome(_calls()[3], reply)  # type: ignore[arg-type]
    assert out.op == "lookup" and out.update is not None
    assert (out.update.client_id, out.update.filled_qty, out.update.avg_price) == (
        "ps7e1",
        1.0,
        101.0,
    )
    gone = calls.shutting_down(FetchMarket(KEY))
    assert getattr(gone, "result", None) is CallResult.UNKNOWN


@pytest.mark.parametrize(
    ("client_id", "parsed"),
    [
        ("ps17e1", (17, OrderKind.ENTRY, 1)),
        ("ps17s2", (17, OrderKind.STOP_LOSS, 2)),
        ("ps17c3", (17, OrderKind.CLOSE, 3)),
        ("ps17t1", None),  # a take-profit id: no kind of ours, another tool's order
        ("ps17x1", None),
        ("ps17e", None),
        ("web_abc", None),
    ],
)
def test_only_our_client_ids_parse_and_others_never_raise(
    client_id: str, parsed: tuple[int, OrderKind, int] | None
) -> None:
    assert parse_client_id(client_id) == parsed
    assert all(parse_client_id(client_order_id(9, k, 4)) == (9, k, 4) for k in OrderKind)
