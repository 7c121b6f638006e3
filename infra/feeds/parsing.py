"""Pure parse and validate functions for every frame the feeds receive.

Nothing here does I/O, keeps state or raises for bad input: each function returns a value or
a :class:`Refusal` whose ``reason`` is a short label from a closed set (safe as a metric
label) and whose ``detail`` says more for the log line (never a secret: frames carry none).

Exchange frames are decoded with ``orjson`` when it is installed (it comes with ccxt), else
with the standard library; signal frames always with the standard library (duplicate keys are
detected there).

* :func:`parse_mark_prices`: a ``markPriceUpdate`` frame (raw, combined ``{"stream","data"}``
  or ``!markPrice@arr`` array) into :class:`MarkPrice` values;
* :func:`parse_user_event`: one user-data-stream frame (``ORDER_TRADE_UPDATE``,
  ``ALGO_UPDATE``, ``ACCOUNT_UPDATE``, ``listenKeyExpired``) into a :class:`UserEvent`;
* :func:`parse_signal`: one signal-feed frame into an :class:`~actors.messages.OpenSignal`,
  validated against the schema (README "Signal feed"), the configuration and finally
  :func:`actors.transition.validate_signal`.

Refusal reasons of :func:`parse_signal` (``<field>`` is one of the schema's field names):
``binary_frame``, ``oversized``, ``invalid_utf8``, ``malformed_json``, ``not_an_object``,
``duplicate_field``, ``unknown_field``, ``missing:<field>``, ``type:<field>``,
``invalid:<field>``, ``unknown_account``, ``symbol_not_allowed``, ``created_in_future``, and
whatever ``validate_signal`` returns without a mark price (``invalid:take_profit_side`` …).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from actors.messages import OpenSignal
from actors.model import Key, Side
from actors.state import Policy
from actors.transition import validate_signal

__all__ = [
    "OPTIONAL_FIELDS",
    "REQUIRED_FIELDS",
    "AccountEvent",
    "ListenKeyExpired",
    "MarkPrice",
    "OrderEvent",
    "OtherEvent",
    "Refusal",
    "SignalRules",
    "UserEvent",
    "parse_mark_prices",
    "parse_signal",
    "parse_user_event",
    "preview",
]

REQUIRED_FIELDS = ("signal_id", "source", "account", "symbol", "side", "size", "stop_loss")
OPTIONAL_FIELDS = ("take_profit", "trailing_distance", "expires_at", "created_at")
_ALL_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
_STRINGS = ("signal_id", "source", "account", "symbol", "side")
_PRICES = ("size", "stop_loss", "take_profit", "trailing_distance")
_TIMES = ("expires_at", "created_at")

_SIGNAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,63}")
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NAME_MAX = 64
#: Epoch seconds beyond this are almost certainly milliseconds (year 5138).
_MAX_EPOCH_S = 1e11


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a frame (or an item of it) was refused. ``reason`` is a bounded label."""

    reason: str
    detail: str = ""
    signal_id: str | None = None
    """The refused signal's id, when the frame had a well-formed one (so it can be answered)."""


# --- mark prices ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """One mark price: exchange symbol id, price, event time in epoch seconds."""

    symbol: str
    price: float
    event_time: float


def _std_loads(data: bytes | str) -> Any:
    """``json.loads`` that turns every failure into ``ValueError``."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


try:  # orjson comes with ccxt (pinned); 4x faster on the mark-price hot path
    import orjson

    def _loads(data: bytes | str) -> Any:
        """``orjson.loads`` (strict: no NaN/Infinity literals, valid UTF-8 only)."""
        return orjson.loads(data)

except ImportError:  # pragma: no cover - the standard library does the same, slower
    _loads = _std_loads


def _num(value: object) -> float | None:
    """A finite float from a JSON number or a numeric string (Binance sends strings)."""
    if isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            x = float(value)
        except OverflowError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def _event_time(obj: Mapping[str, Any]) -> float | None:
    e = obj.get("E")
    if isinstance(e, int) and not isinstance(e, bool) and e > 0:
        return e / 1000.0
    return None


def _mark_item(item: object) -> MarkPrice | Refusal | None:
    if not isinstance(item, dict):
        return Refusal("unexpected_shape", "array item is not an object")
    if item.get("e") != "markPriceUpdate":
        return None
    sym = item.get("s")
    if not isinstance(sym, str) or not sym:
        return Refusal("missing_symbol")
    price = _num(item.get("p"))
    if price is None or price <= 0:
        return Refusal("bad_price", f"{sym}: {str(item.get('p'))[:40]!r}")
    t = _event_time(item)
    if t is None:
        return Refusal("bad_event_time", sym)
    return MarkPrice(sym, price, t)


def parse_mark_prices(data: bytes | str) -> tuple[list[MarkPrice], list[Refusal]]:
    """The mark prices in one frame, and a refusal per bad item (or for the whole frame).

    Subscription replies (``{"result": null, "id": 1}``) and other event types give two empty
    lists. Reasons: ``malformed_json``, ``unexpected_shape``, ``server_error``,
    ``missing_symbol``, ``bad_price``, ``bad_event_time``.
    """
    try:
        obj = _loads(data)
    except ValueError as exc:
        return [], [Refusal("malformed_json", str(exc)[:80])]
    if isinstance(obj, dict):
        if "data" in obj and "stream" in obj:
            obj = obj["data"]
        elif "result" in obj and "id" in obj:
            return [], []
        elif "error" in obj:
            return [], [Refusal("server_error", str(obj.get("error"))[:120])]
    items = obj if isinstance(obj, list) else [obj]
    prices: list[MarkPrice] = []
    bad: list[Refusal] = []
    for item in items:
        r = _mark_item(item)
        if isinstance(r, MarkPrice):
            prices.append(r)
        elif r is not None:
            bad.append(r)
    return prices, bad


# --- user data stream -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order report: ``ORDER_TRADE_UPDATE`` (``algo=False``) or ``ALGO_UPDATE``.

    ``status`` is lower case (``expired_in_match`` is reported as ``expired``; an algo order
    ``finished`` without an executed quantity as ``expired``); ``filled_qty`` is cumulative;
    ``avg_price`` is ``None`` while nothing filled. For an algo order ``order_id`` is the
    algo id and ``actual_order_id`` the id of the market order it became once triggered.
    """

    symbol: str
    client_id: str
    status: str
    filled_qty: float
    avg_price: float | None
    event_time: float
    order_id: str | None
    algo: bool = False
    actual_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """``ACCOUNT_UPDATE``: its reason (``a.m``) and the symbols whose position changed."""

    reason: str
    symbols: tuple[str, ...]
    event_time: float


@dataclass(frozen=True, slots=True)
class ListenKeyExpired:
    """``listenKeyExpired``: the stream ends; connect again with a new key."""

    event_time: float


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event type the supervisor does not use (``MARGIN_CALL``, ``TRADE_LITE`` …)."""

    event: str


UserEvent = OrderEvent | AccountEvent | ListenKeyExpired | OtherEvent


def _id(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


_ORDER_FIELDS = {"ORDER_TRADE_UPDATE": ("c", "z", "i"), "ALGO_UPDATE": ("caid", "aq", "aid")}
"""The field names of an order report, by event: client id, filled quantity, exchange id."""


def _order_update(ev: Mapping[str, Any], t: float, kind: str) -> OrderEvent | Refusal:
    """An order report of either kind (:data:`_ORDER_FIELDS`), checked alike. An algo update
    reads a null or empty quantity or price as 0, reports ``finished`` without an executed
    quantity as ``expired`` and carries the id of the order it became (``ai``); an order
    update reports ``expired_in_match`` as ``expired``."""
    algo = kind == "ALGO_UPDATE"
    cid_key, filled_key, id_key = _ORDER_FIELDS[kind]
    o = ev.get("o")
    if not isinstance(o, dict):
        return Refusal("unexpected_shape", f"{kind} without o")
    sym, cid, status = o.get("s"), o.get(cid_key), o.get("X")
    if not isinstance(sym, str) or not sym:
        return Refusal("missing_symbol")
    if not isinstance(cid, str) or not cid:
        return Refusal("missing_client_id", sym)
    if not isinstance(status, str) or not status:
        return Refusal("missing_status", sym)
    raw_filled, raw_avg = o.get(filled_key, "0"), o.get("ap", "0")
    if algo:
        raw_filled, raw_avg = raw_filled or "0", raw_avg or "0"
    filled = _num(raw_filled)
    if filled is None or filled < 0:
        return Refusal("bad_quantity", sym)
    avg = _num(raw_avg)
    if avg is None or avg < 0:
        return Refusal("bad_price", sym)
    st = status.lower()
    if algo:
        if st == "finished" and filled <= 0:
            st = "expired"  # triggered, but its market order executed nothing
    elif st == "expired_in_match":
        st = "expired"
    actual = _id(o.get("ai")) if algo else None
    return OrderEvent(sym, cid, st, filled, avg or None, t, _id(o.get(id_key)), algo, actual)


def _account_update(ev: Mapping[str, Any], t: float) -> AccountEvent | Refusal:
    a = ev.get("a")
    if not isinstance(a, dict):
        return Refusal("unexpected_shape", "ACCOUNT_UPDATE without a")
    reason = a.get("m")
    rows = a.get("P") or []
    if not isinstance(rows, list):
        return Refusal("unexpected_shape", "ACCOUNT_UPDATE P is not a list")
    symbols = tuple(
        r["s"] for r in rows if isinstance(r, dict) and isinstance(r.get("s"), str) and r["s"]
    )
    return AccountEvent(reason if isinstance(reason, str) else "", symbols, t)


def parse_user_event(data: bytes | str) -> UserEvent | Refusal:
    """One user-data-stream frame (raw or in a combined-stream envelope).

    Reasons: ``malformed_json``, ``unexpected_shape``, ``bad_event_time``, ``missing_symbol``,
    ``missing_client_id``, ``missing_status``, ``bad_quantity``, ``bad_price``.
    """
    try:
        ev = _loads(data)
    except ValueError as exc:
        return Refusal("malformed_json", str(exc)[:80])
    if isinstance(ev, dict) and "data" in ev and "stream" in ev:
        ev = ev["data"]
    if not isinstance(ev, dict):
        return Refusal("unexpected_shape", "not an object")
    kind = ev.get("e")
    if not isinstance(kind, str):
        if "result" in ev and "id" in ev:
            return OtherEvent("subscription_reply")
        return Refusal("unexpected_shape", "no event type")
    t = _event_time(ev)
    if t is None:
        return Refusal("bad_event_time", kind[:40])
    if kind in _ORDER_FIELDS:
        return _order_update(ev, t, kind)
    if kind == "ACCOUNT_UPDATE":
        return _account_update(ev, t)
    if kind == "listenKeyExpired":
        return ListenKeyExpired(t)
    return OtherEvent(kind[:40])


# --- signals --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalRules:
    """What a signal must satisfy besides its schema (from the configuration).

    ``accounts`` maps each configured account to its allowed symbols. ``max_future_s``: clock
    skew tolerated for a ``created_at`` ahead of ours. ``policy`` goes to ``validate_signal``.
    Expiry and age (``expires_at``, ``max_signal_age_s``) are checked by the position actor at
    decision time, after its replay check.
    """

    accounts: Mapping[str, frozenset[str]]
    max_frame_bytes: int = 16 * 1024
    max_future_s: float = 5.0
    policy: Policy = field(default_factory=Policy)


def preview(data: bytes | str, limit: int = 80) -> str:
    """A short, printable excerpt of a frame for a log line: invalid UTF-8 as ``\\xNN``,
    control and other non-printable characters escaped, cut at ``limit`` characters."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    head = raw[: limit * 4].decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in head[: limit + 1])
    if len(text) > limit or len(raw) > limit * 4:
        return f"{text[:limit]}…({len(raw)} bytes)"
    return text


def _decode_signal(text: str) -> tuple[Any, str | None, frozenset[str]]:
    """Decode a signal frame's JSON (``ValueError``/``RecursionError`` when it is not JSON).

    Returns the decoded value (for an object repeating a key, the first value is kept), the
    first key found twice in any object (``None``: no duplicate), and the keys repeated in the
    top-level object. The decoder completes inner objects before the object holding them, so
    the last object it completes is the top-level one.
    """
    first: list[str] = []
    last: list[frozenset[str]] = [frozenset()]

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        repeated: set[str] = set()
        for k, v in pairs:
            if k in out:
                repeated.add(k)
                if not first:
                    first.append(k)
            else:
                out[k] = v
        last[0] = frozenset(repeated)
        return out

    obj = json.loads(text, object_pairs_hook=pairs_hook)
    return obj, (first[0] if first else None), last[0]


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def parse_signal(data: bytes, binary: bool, rules: SignalRules, now: float) -> OpenSignal | Refusal:
    """Validate one signal-feed frame; ``now`` is the local wall clock (epoch seconds).

    A refusal of a JSON object carries its ``signal_id`` when the object has exactly one
    ``signal_id`` key and its value is well-formed (so the refusal can be answered), also for
    ``duplicate_field`` when another key is the repeated one. A repeated ``signal_id`` gives no
    trustworthy id: that refusal carries none.
    """
    if binary:
        return Refusal("binary_frame", f"{len(data)} bytes")
    if len(data) > rules.max_frame_bytes:
        return Refusal("oversized", f"{len(data)} bytes > {rules.max_frame_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal("invalid_utf8", f"at byte {exc.start}")
    try:
        obj, duplicate, top_repeated = _decode_signal(text)
    except (ValueError, RecursionError) as exc:
        return Refusal("malformed_json", str(exc)[:80])
    if not isinstance(obj, dict):
        if duplicate is not None:
            return Refusal("duplicate_field", repr(duplicate)[:40])
        return Refusal("not_an_object", _type_name(obj))
    if duplicate is not None:
        result: OpenSignal | Refusal = Refusal("duplicate_field", repr(duplicate)[:40])
    else:
        result = _signal_of(obj, rules, now)
    if isinstance(result, Refusal) and "signal_id" not in top_repeated:
        sid = obj.get("signal_id")
        if isinstance(sid, str) and _SIGNAL_ID.fullmatch(sid):
            return replace(result, signal_id=sid)
    return result


def _signal_of(obj: dict[str, Any], rules: SignalRules, now: float) -> OpenSignal | Refusal:
    unknown = [k for k in obj if k not in _ALL_FIELDS]
    if unknown:
        return Refusal("unknown_field", repr(unknown[0])[:40])
    for name in REQUIRED_FIELDS:
        if obj.get(name) is None:
            return Refusal(f"missing:{name}")
    for name in _STRINGS:
        if not isinstance(obj[name], str):
            return Refusal(f"type:{name}", f"expected a string, got {_type_name(obj[name])}")
    nums: dict[str, float | None] = {}
    for name in _PRICES + _TIMES:
        value = obj.get(name)
        if value is None:
            nums[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Refusal(f"type:{name}", f"expected a number, got {_type_name(value)}")
        x = _num(value)
        if x is None:
            return Refusal(f"invalid:{name}", "not a finite number")
        if name in _TIMES and not 0 < x < _MAX_EPOCH_S:
            return Refusal(f"invalid:{name}", "expected epoch seconds")
        if name in _PRICES and x <= 0:
            return Refusal(f"invalid:{name}", "must be > 0")
        nums[name] = x
    signal_id, source = obj["signal_id"], obj["source"]
    account, symbol, side = obj["account"], obj["symbol"], obj["side"]
    if not _SIGNAL_ID.fullmatch(signal_id):
        return Refusal("invalid:signal_id", "1-64 of [A-Za-z0-9._:/@+-], starting alphanumeric")
    if not _SOURCE.fullmatch(source):
        return Refusal("invalid:source", "1-64 of [A-Za-z0-9._-], starting alphanumeric")
    if side not in ("long", "short"):
        return Refusal("invalid:side", repr(side[:16]))
    if not account or len(account) > _NAME_MAX:
        return Refusal("invalid:account", f"{len(account)} characters")
    if not symbol or len(symbol) > _NAME_MAX:
        return Refusal("invalid:symbol", f"{len(symbol)} characters")
    allowed = rules.accounts.get(account)
    if allowed is None:
        return Refusal("unknown_account", repr(account[:32]))
    if symbol not in allowed:
        return Refusal("symbol_not_allowed", f"{symbol[:32]!r} for {account[:32]!r}")
    expires_at, created_at = nums["expires_at"], nums["created_at"]
    # Expiry and age are the actor's to check (``expired``, ``too_old``): a signal sent again
    # after it was decided is answered with that decision whatever its age (I11).
    if created_at is not None and created_at > now + rules.max_future_s:
        return Refusal("created_in_future", f"{created_at - now:.3f}s ahead")
    size, stop_loss = nums["size"], nums["stop_loss"]
    assert size is not None and stop_loss is not None  # required, checked above
    sig = OpenSignal(
        Key(account, symbol),
        signal_id,
        source,
        Side(side),
        size,
        stop_loss,
        take_profit=nums["take_profit"],
        trailing_distance=nums["trailing_distance"],
        expires_at=expires_at,
        created_at=created_at,
    )
    invalid = validate_signal(sig, None, rules.policy)
    if invalid is not None:
        return Refusal(invalid)
    return sig
