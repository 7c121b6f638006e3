"""The JSON codec of messages: every message type round-trips, odd floats included."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.messages import Message, OpenSignal, Recover, SyncObservation, TicksReady
from actors.model import ExchangeOrder, ExchangePosition, Key, Side
from infra.store import codec

pytestmark = pytest.mark.timeout(60)

_floats = st.floats(allow_nan=True, allow_infinity=True)
_text = st.text(max_size=20)


def _for(tp: typing.Any) -> st.SearchStrategy[typing.Any]:
    """A strategy for a type as the messages annotate them (no global registration)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of([_for(a) for a in typing.get_args(tp)])
    if origin is tuple:
        return st.lists(_for(typing.get_args(tp)[0]), max_size=3).map(tuple)
    if tp is type(None):
        return st.none()
    if tp is float:
        return _floats
    if tp is str:
        return _text
    if tp is int:
        return st.integers(-(2**40), 2**40)
    if tp is bool:
        return st.booleans()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    assert isinstance(tp, type) and dataclasses.is_dataclass(tp), tp
    hints = typing.get_type_hints(tp)
    fields = {f.name: _for(hints[f.name]) for f in dataclasses.fields(tp)}
    return st.builds(tp, **fields)


# TicksReady carries a live object (the tick slot): it is a wake-up, not a journal cause.
_DATA_MESSAGES = [t for t in typing.get_args(Message) if t is not TicksReady]
_messages = st.one_of([_for(t) for t in _DATA_MESSAGES])


@settings(max_examples=300, deadline=None)
@given(_messages)
def test_every_message_round_trips(msg: Message) -> None:
    name, data = codec.encode_message(msg)
    text = codec.dumps(data)  # valid JSON without NaN, as jsonb needs
    back = codec.decode_message(name, json.loads(text))
    assert type(back) is type(msg)
    assert codec.encode_message(back) == (name, data)
    lossy = "\ufffd" in text or '"NaN"' in text  # NUL replaced; NaN != NaN
    if not lossy:
        assert back == msg


def test_nested_values_round_trip_exactly() -> None:
    obs = SyncObservation(
        Key("a", "BTCUSDT"),
        ExchangePosition(Side.SHORT, 1.5, 0.1 + 0.2),
        (ExchangeOrder("c1", "buy", 1.5, True, 123.456, True, None),),
        observed_at=1_700_000_000.123456,
    )
    assert codec.decode_message(*codec.encode_message(obs)) == obs
    rec = Recover(Key("a", "B"), "load failed")
    assert codec.decode_message(*codec.encode_message(rec)) == rec


def test_non_finite_floats_become_strings_and_come_back() -> None:
    sig = OpenSignal(Key("a", "B"), "s", "src", Side.LONG, math.inf, -math.inf, math.nan)
    name, data = codec.encode_message(sig)
    assert (data["size"], data["stop_loss"], data["take_profit"]) == (
        "Infinity",
        "-Infinity",
        "NaN",
    )
    back = codec.decode_message(name, data)
    assert isinstance(back, OpenSignal)
    assert back.size == math.inf and back.stop_loss == -math.inf
    assert back.take_profit is not None and math.isnan(back.take_profit)


def test_bad_payloads_raise_codec_error() -> None:
    with pytest.raises(codec.CodecError, match="unknown message type"):
        codec.decode_message("Nope", {})
    with pytest.raises(codec.CodecError, match="account: expected a string"):
        codec.decode_message("Recover", {"key": {"account": 1, "symbol": "x"}})
    with pytest.raises(codec.CodecError):
        codec.decode_message("OpenSignal", {"key": {"account": "a", "symbol": "b"}, "side": "up"})


def test_detail_is_made_json_safe() -> None:
    detail = {"q": math.nan, "t": ("a", 1), "s": Side.LONG, "o": object.__new__(object)}
    out = codec.encode_detail(detail)
    assert out["q"] == "NaN" and out["t"] == ["a", 1] and out["s"] == "long"
    assert isinstance(out["o"], str)
    codec.dumps(out)


def test_a_message_with_a_live_object_still_encodes() -> None:
    class Slot:
        def take(self) -> None:
            return None

        def take_parked(self) -> None:
            return None

        def set_band(self, band: tuple[float, float] | None) -> bool:
            return False

    name, data = codec.encode_message(TicksReady(Key("a", "B"), Slot()))
    assert name == "TicksReady" and isinstance(data["slot"], str)
    codec.dumps(data)
    with pytest.raises(codec.CodecError):
        codec.decode_message(name, data)
