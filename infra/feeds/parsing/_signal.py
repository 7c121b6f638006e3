"""Signal-feed frames: one JSON signal, validated, into an :class:`~actors.messages.OpenSignal`.

:func:`parse_signal` checks the frame (size, UTF-8, JSON with no repeated key), the schema
(README "Signal feed"), the types and values, the configuration (:class:`SignalRules`) and
finally :func:`actors.transition.validate_signal`. Signal frames are decoded with the standard
library (duplicate keys are detected there). Pure (no I/O, no state, never raises); used by
:class:`infra.feeds.signals.SignalFeedClient` on its runner thread.

Refusal reasons (``<field>`` is one of the schema's field names): ``binary_frame``,
``oversized``, ``invalid_utf8``, ``malformed_json``, ``not_an_object``, ``duplicate_field``,
``unknown_field``, ``missing:<field>``, ``type:<field>``, ``invalid:<field>``,
``unknown_account``, ``symbol_not_allowed``, ``created_in_future``, and whatever
``validate_signal`` returns without a mark price (``invalid:take_profit_side`` …).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from actors.messages import OpenSignal
from actors.model import Key, Side
from actors.state import Policy
from actors.transition import validate_signal
from infra.feeds.parsing._common import Refusal, finite_number

__all__ = ["OPTIONAL_FIELDS", "REQUIRED_FIELDS", "SignalRules", "parse_signal"]

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
        x = finite_number(value)
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
