"""JSON (journal payloads and the JSON arrays of the commit statement).

:func:`encode_message` turns any message (a frozen dataclass) into ``(type name, JSON
object)`` and :func:`decode_message` turns it back, guided by the dataclass's type hints.
``jsonb`` cannot hold NaN/Infinity nor the NUL character: non-finite floats are written as
the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (and decoded back where the field is a
float); NUL characters in strings are replaced by U+FFFD (the journal is an audit log: a
lossy character beats a refused transition). :func:`row_json` is the stricter form for a
column value of a JSON row.

Pure functions, no I/O, safe from any thread. Encoders raise :class:`ValueError` /
:class:`TypeError` for values they cannot represent; :func:`decode_message` raises
:class:`CodecError`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeAlias

from actors.messages import Message, TimerId

__all__ = [
    "JSON",
    "MESSAGE_TYPES",
    "CodecError",
    "decode_message",
    "dumps",
    "encode_detail",
    "encode_message",
    "row_json",
    "to_json",
]

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None


class CodecError(ValueError):
    """A stored payload does not decode into the type it names."""


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _float_json(x: float) -> JSON:
    if math.isfinite(x):
        return x
    if math.isnan(x):
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def to_json(value: object) -> JSON:
    """A JSON-safe form of ``value``: dataclasses become objects, enums their value, tuples
    lists, non-finite floats strings, NUL characters U+FFFD. Anything else becomes ``str``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _float_json(value)
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, TimerId):
        return str(value)  # stored as the text it was before it had a type (lookup:ps7e1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    return to_json(str(value))


def row_json(value: object) -> JSON:
    """A column value for a JSON row expanded by ``jsonb_to_recordset``: enums become their
    value and non-finite floats the strings PostgreSQL reads back as ``double precision``
    NaN/Infinity (for the CHECK constraints to refuse by name); strings are left as they are
    (a NUL character is then refused by the server, not silently replaced)."""
    if isinstance(value, enum.Enum):
        return row_json(value.value)
    if isinstance(value, float):
        return _float_json(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a column")


def encode_detail(detail: Mapping[str, object]) -> dict[str, JSON]:
    """The ``detail`` of a journal event as a JSON object."""
    return {str(k): to_json(v) for k, v in detail.items()}


def encode_message(msg: object) -> tuple[str, dict[str, JSON]]:
    """``(type name, fields as JSON)`` of a message (any dataclass instance)."""
    if not dataclasses.is_dataclass(msg) or isinstance(msg, type):
        raise TypeError(f"not a message dataclass: {type(msg).__name__}")
    data = to_json(msg)
    assert isinstance(data, dict)
    return type(msg).__name__, data


def dumps(obj: object) -> str:
    """Compact JSON text; refuses NaN (``jsonb`` would too, with a worse message)."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def _message_types() -> dict[str, type[Any]]:
    out: dict[str, type[Any]] = {}
    for arg in typing.get_args(Message):
        out[arg.__name__] = arg
    return out


MESSAGE_TYPES: Mapping[str, type[Any]] = types.MappingProxyType(_message_types())
"""Every message class a journal row may name, by class name."""


def decode_message(type_name: str, data: Mapping[str, object]) -> Message:
    """The message that :func:`encode_message` encoded. Raises :class:`CodecError`."""
    cls = MESSAGE_TYPES.get(type_name)
    if cls is None:
        raise CodecError(f"unknown message type {type_name!r}")
    msg = _decode(cls, data, type_name)
    assert isinstance(msg, cls)
    return typing.cast(Message, msg)


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: object, where: str) -> object:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, value, where)
            except CodecError as exc:
                errors.append(str(exc))
        raise CodecError(f"{where}: {value!r} matches none of {tp}: {'; '.join(errors)}")
    if origin is tuple:
        if not isinstance(value, list):
            raise CodecError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{where}[]") for v in value)
        if len(args) != len(value):
            raise CodecError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_decode(a, v, f"{where}[]") for a, v in zip(args, value, strict=True))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, dict):
            raise CodecError(f"{where}: expected an object, got {type(value).__name__}")
        return dict(value)
    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is not None:
            raise CodecError(f"{where}: expected null")
        return None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError as exc:
            raise CodecError(f"{where}: {exc}") from exc
    if tp is bool:
        if not isinstance(value, bool):
            raise CodecError(f"{where}: expected a boolean")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CodecError(f"{where}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise CodecError(f"{where}: expected a number")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and value in _NON_FINITE:
            return _NON_FINITE[value]
        raise CodecError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected a string")
        return value
    if tp is TimerId:
        timer = TimerId.parse(value) if isinstance(value, str) else None
        if timer is None:
            raise CodecError(f"{where}: not a timer: {value!r}")
        return timer
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise CodecError(f"{where}: expected an object for {tp.__name__}")
        hints = _hints(tp)
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _decode(hints[f.name], value[f.name], f"{where}.{f.name}")
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise CodecError(f"{where}: {exc}") from exc
    raise CodecError(f"{where}: cannot decode type {tp!r}")
