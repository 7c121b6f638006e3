"""The pure parse/validate functions, the backoff, the token bucket and the log throttle."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.messages import OpenSignal
from actors.model import ExchangeStatus, Key, Side
from actors.state import Policy
from infra.feeds import Refusal, SignalRules, TokenBucket, parse_signal
from infra.feeds.parsing import (
    AccountEvent,
    ListenKeyExpired,
    MarkPrice,
    OrderEvent,
    OtherEvent,
    parse_mark_prices,
    parse_user_event,
    preview,
)
from infra.logs import LogThrottle

pytestmark = pytest.mark.timeout(30)

NOW = 1_800_000_000.0
RULES = SignalRules(accounts={"main": frozenset({"BTCUSDT"})})


def mark(
    sym: str = "BTCUSDT", p: str = "60000.10000000", e: int = 1_800_000_000_123
) -> dict[str, Any]:
    return {"e": "markPriceUpdate", "E": e, "s": sym, "p": p, "i": p, "P": p, "r": "0", "T": 0}


# --- mark prices ----------------------------------------------------------------------------


def test_mark_price_raw_combined_and_array() -> None:
    one = MarkPrice("BTCUSDT", 60_000.1, 1_800_000_000.123)
    assert parse_mark_prices(json.dumps(mark()).encode()) == ([one], [])
    combined = {"stream": "btcusdt@markPrice@1s", "data": mark()}
    assert parse_mark_prices(json.dumps(combined)) == ([one], [])
    arr = [mark(), mark("ETHUSDT", "3000")]
    prices, bad = parse_mark_prices(json.dumps(arr).encode())
    assert [p.symbol for p in prices] == ["BTCUSDT", "ETHUSDT"] and bad == []


def test_mark_price_control_replies_and_bad_items() -> None:
    assert parse_mark_prices(b'{"result":null,"id":1}') == ([], [])
    assert parse_mark_prices(b'{"e":"aggTrade","E":1}') == ([], [])
    _, bad = parse_mark_prices(b'{"error":{"code":2,"msg":"Invalid request"}}')
    assert [r.reason for r in bad] == ["server_error"]
    arr = [mark(p="nan"), mark(p="-1"), mark(e=0), {"e": "markPriceUpdate", "E": 1}, 7, mark()]
    prices, bad = parse_mark_prices(json.dumps(arr))
    assert len(prices) == 1
    assert [r.reason for r in bad] == [
        "bad_price",
        "bad_price",
        "bad_event_time",
        "missing_symbol",
        "unexpected_shape",
    ]
    assert parse_mark_prices(b"[" * 100_000)[1][0].reason == "malformed_json"
    assert parse_mark_prices(b"\xff")[1][0].reason == "malformed_json"


# --- user events ----------------------------------------------------------------------------


def otu(**o: Any) -> bytes:
    body = {
        "s": "BTCUSDT",
        "c": "ps1e1",
        "X": "PARTIALLY_FILLED",
        "z": "0.005",
        "ap": "60000",
        "i": 8000000002,
    }
    body.update(o)
    return json.dumps(
        {"e": "ORDER_TRADE_UPDATE", "E": 1_800_000_000_500, "T": 1, "o": body}
    ).encode()


def test_order_trade_update() -> None:
    ev = parse_user_event(otu())
    assert ev == OrderEvent(
        "BTCUSDT",
        "ps1e1",
        ExchangeStatus.PARTIALLY_FILLED,
        0.005,
        60_000.0,
        1_800_000_000.5,
        "8000000002",
    )
    new = parse_user_event(otu(X="NEW", z="0", ap="0"))
    assert isinstance(new, OrderEvent) and new.avg_price is None and new.filled_qty == 0.0
    stp = parse_user_event(otu(X="EXPIRED_IN_MATCH"))
    assert isinstance(stp, OrderEvent) and stp.status == "expired"
    wrapped = json.dumps({"stream": "k", "data": json.loads(otu())})
    assert parse_user_event(wrapped) == ev


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"{", "malformed_json"),
        (b"[]", "unexpected_shape"),
        (b'{"x":1}', "unexpected_shape"),
        (b'{"e":"ORDER_TRADE_UPDATE"}', "bad_event_time"),
        (b'{"e":"ORDER_TRADE_UPDATE","E":1}', "unexpected_shape"),
        (otu(s=""), "missing_symbol"),
        (otu(c=None), "missing_client_id"),
        (otu(X=5), "missing_status"),
        (otu(z="-1"), "bad_quantity"),
        (otu(z="inf"), "bad_quantity"),
        (otu(ap="x"), "bad_price"),
    ],
)
def test_user_event_refusals(frame: bytes, reason: str) -> None:
    r = parse_user_event(frame)
    assert isinstance(r, Refusal) and r.reason == reason


def algo(**o: Any) -> bytes:
    body = {
        "caid": "ps1s1",
        "aid": 1000000002,
        "s": "BTCUSDT",
        "X": "TRIGGERED",
        "ai": "8000000005",
        "aq": "0",
        "ap": "0",
    }
    body.update(o)
    return json.dumps({"e": "ALGO_UPDATE", "E": 1_800_000_000_000, "o": body}).encode()


def test_algo_update() -> None:
    ev = parse_user_event(algo())
    assert ev == OrderEvent(
        "BTCUSDT",
        "ps1s1",
        ExchangeStatus.TRIGGERED,
        0.0,
        None,
        1_800_000_000.0,
        "1000000002",
        True,
        "8000000005",
    )
    done = parse_user_event(algo(X="FINISHED", aq="0.01", ap="57990"))
    assert isinstance(done, OrderEvent) and done.status == "finished"
    assert done.filled_qty == 0.01 and done.avg_price == 57_990.0
    empty = parse_user_event(algo(X="FINISHED", aq="0", ai=""))
    assert isinstance(empty, OrderEvent) and empty.status == "expired"
    assert empty.actual_order_id is None


def test_account_update_listen_key_expired_and_others() -> None:
    acc = {
        "e": "ACCOUNT_UPDATE",
        "E": 1000,
        "a": {"m": "ADL", "B": [], "P": [{"s": "BTCUSDT", "pa": "0"}]},
    }
    assert parse_user_event(json.dumps(acc)) == AccountEvent("ADL", ("BTCUSDT",), 1.0)
    exp = {"e": "listenKeyExpired", "E": 2000, "listenKey": "abc"}
    assert parse_user_event(json.dumps(exp)) == ListenKeyExpired(2.0)
    assert parse_user_event(b'{"e":"MARGIN_CALL","E":1}') == OtherEvent("MARGIN_CALL")
    assert parse_user_event(b'{"result":null,"id":3}') == OtherEvent("subscription_reply")


# --- signals --------------------------------------------------------------------------------


def sig(**changes: Any) -> bytes:
    d: dict[str, Any] = {
        "signal_id": "sniper-0a1b2c",
        "source": "sniper",
        "account": "main",
        "symbol": "BTCUSDT",
        "side": "short",
        "size": 2,
        "stop_loss": 61_000.5,
        "take_profit": 59_000,
        "trailing_distance": 300.0,
        "expires_at": NOW + 60,
        "created_at": NOW - 1,
    }
    d.update(changes)
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


def test_a_valid_signal() -> None:
    out = parse_signal(sig(), False, RULES, NOW)
    assert out == OpenSignal(
        Key("main", "BTCUSDT"),
        "sniper-0a1b2c",
        "sniper",
        Side.SHORT,
        2.0,
        61_000.5,
        take_profit=59_000.0,
        trailing_distance=300.0,
        expires_at=NOW + 60,
        created_at=NOW - 1,
    )
    assert isinstance(out.size, float)
    minimal = parse_signal(
        sig(take_profit=..., trailing_distance=..., expires_at=..., created_at=...),
        False,
        RULES,
        NOW,
    )
    assert isinstance(minimal, OpenSignal) and minimal.created_at is None
    nulls = parse_signal(sig(take_profit=None, expires_at=None), False, RULES, NOW)
    assert isinstance(nulls, OpenSignal) and nulls.take_profit is None


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (sig(take_profit=62_000), "invalid:take_profit_side"),  # short: tp must be below the stop
        (sig(created_at=NOW + 6), "created_in_future"),
        (sig(expires_at=-5), "invalid:expires_at"),
        (sig(trailing_distance=0), "invalid:trailing_distance"),
        (sig(symbol="btcusdt"), "symbol_not_allowed"),
        (sig(account="x" * 65), "invalid:account"),
        (sig(symbol=""), "invalid:symbol"),
        (b'{"size": NaN}', "missing:signal_id"),
    ],
)
def test_signal_refusals(frame: bytes, reason: str) -> None:
    r = parse_signal(frame, False, RULES, NOW)
    assert isinstance(r, Refusal) and r.reason == reason, r


def _with_repeat(key: str, value: Any, **changes: Any) -> bytes:
    """A valid signal frame with ``key`` written a second time (raw JSON: dicts cannot)."""
    body = sig(**changes)
    return body[:-1] + b", " + json.dumps(key).encode() + b": " + json.dumps(value).encode() + b"}"


def test_a_duplicate_field_is_refused_with_a_trustworthy_signal_id() -> None:
    nested = sig()[:-1] + b', "take_profit": {"a": 1, "a": 2}}'
    for frame, repeated in (
        (_with_repeat("size", 2), "size"),  # the same value twice
        (_with_repeat("size", 1000), "size"),  # a different value
        (_with_repeat("account", "other"), "account"),
        (_with_repeat("unknown", 1, unknown=1), "unknown"),  # an unknown key, repeated
        (_with_repeat("size", 1, stop_loss=...), "size"),  # repeated, and a field missing
        (nested, "a"),  # in a nested object (and take_profit itself repeated after it)
    ):
        r = parse_signal(frame, False, RULES, NOW)
        assert r == Refusal("duplicate_field", repr(repeated), "sniper-0a1b2c"), (frame, r)


@pytest.mark.parametrize(
    "frame",
    [
        _with_repeat("signal_id", "sniper-0a1b2c"),  # the id itself repeated, same value
        _with_repeat("signal_id", "other-id"),  # ... or a different one
        _with_repeat("signal_id", "sniper-0a1b2c", size=...),  # repeated, and more missing
        _with_repeat("size", 2, signal_id="bad id with spaces"),  # not well-formed
        b'[{"signal_id": "sniper-0a1b2c", "a": 1, "a": 2}]',  # not an object at the top
        b'{"x": {"signal_id": "sniper-0a1b2c", "a": 1, "a": 2}}',  # the id is not the top's
    ],
)
def test_a_duplicate_field_without_a_trustworthy_id_carries_none(frame: bytes) -> None:
    r = parse_signal(frame, False, RULES, NOW)
    assert isinstance(r, Refusal) and r.reason == "duplicate_field" and r.signal_id is None, r


def test_age_limit_off_and_max_notional_needs_a_price() -> None:
    rules = SignalRules(RULES.accounts, policy=Policy(max_notional=1.0))
    out = parse_signal(sig(created_at=NOW - 3600, expires_at=...), False, rules, NOW)
    assert isinstance(out, OpenSignal)  # no last price here: the actor checks the notional


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_parse_signal_never_raises(data: bytes, binary: bool) -> None:
    out = parse_signal(data, binary, RULES, NOW)
    assert isinstance(out, Refusal | OpenSignal)
    parse_mark_prices(data)
    parse_user_event(data)


def test_preview_is_short_escaped_and_marks_truncation() -> None:
    assert preview(b"abc") == "abc"
    assert preview(b"a\nb\x00") == "a\\nb\\x00"
    assert preview(b"\xff\xfe") == "\\xff\\xfe"
    assert preview("\u202eevil") == "\\u202eevil"
    long = preview(b"x" * 10_000)
    assert long.startswith("x" * 80) and long.endswith("…(10000 bytes)") and len(long) < 120


# --- token bucket, log throttle -------------------------------------------------------------


def test_token_bucket() -> None:
    tb = TokenBucket(rate_per_s=4.0, burst=3)
    assert [tb.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert tb.take(100.125) is False  # half a token
    assert tb.take(100.25) is True
    assert tb.take(1000.0) and tb.take(1000.0) and tb.take(1000.0) and not tb.take(1000.0)
    assert math.isclose(tb.burst, 3.0)
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1)


def test_log_throttle(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.feeds.throttle")
    now = [0.0]
    throttle = LogThrottle(logger, burst=3, interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="tests.feeds.throttle"):
        for i in range(100):
            throttle.warning("k", "line %d", i)
        throttle.warning("other", "other line")
        now[0] = 10.0  # a new window: the summary of the old one, then the line
        throttle.warning("k", "again")
    assert caplog.text.count("line ") == 3
    assert "other line" in caplog.text and "again" in caplog.text
    assert "97 more like 'k' suppressed in the last 10s" in caplog.text
