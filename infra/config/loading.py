"""Loading: a TOML file to a :class:`~infra.config.Config`, its text never let out.

:func:`load_config` reads at most 1 MiB, decodes UTF-8 (a byte order mark is dropped), parses
TOML, then validates (:func:`~infra.config.parse_config`). An unreadable, oversized,
non-UTF-8, non-TOML or too deeply nested file is a :class:`ConfigError` naming the file and at
most the position (line, column, byte) of the problem: the file may hold a secret written by
mistake. Called by the CLI (and the demo, the benchmarks) before anything starts; any thread.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from infra.config.schema import Config
from infra.config.table import ConfigError
from infra.config.validation import parse_config

__all__ = ["load_config"]

_MAX_FILE_BYTES = 1 << 20
_MAX_NESTING = 64


def load_config(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    require_credentials: bool = True,
) -> Config:
    """Read and validate a TOML file; secrets from ``environ`` (default ``os.environ``).

    Called by the CLI before anything starts (any thread). Raises :class:`ConfigError` for an
    unreadable file, a directory, a file over 1 MiB, invalid UTF-8, bad or too deeply nested
    TOML, or any invalid key; the message names the file and at most the position of the
    problem, never the file's text (which may hold a secret written by mistake). Does no I/O
    beyond reading the file: nothing connects. ``require_credentials``: see
    :func:`parse_config`.
    """
    p = Path(path)
    where = str(p)
    try:
        with p.open("rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(where, f"cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(where, f"too large (over {_MAX_FILE_BYTES} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(where, f"not valid UTF-8 {_byte_position(raw, exc.start)}") from None
    text = text.removeprefix("\ufeff")  # a byte order mark some editors write
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, f"not valid TOML {_toml_problem(str(exc))}") from None
    except RecursionError:
        at = _nesting_position(text, _MAX_NESTING)
        raise ConfigError(where, f"not valid TOML: nested too deeply{at}") from None
    except ValueError:  # e.g. an integer over Python's 4300 digits
        raise ConfigError(where, "not valid TOML: a value out of range") from None
    return parse_config(
        data,
        os.environ if environ is None else environ,
        source=where,
        require_credentials=require_credentials,
    )


def _byte_position(raw: bytes, offset: int) -> str:
    """``at line L, column C (byte B)`` for a byte offset (column counted in bytes, from 1)."""
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return f"at line {line}, column {column} (byte {offset})"


def _toml_problem(message: str) -> str:
    """``tomllib``'s message without any text of the file: its constant head and position.

    ``tomllib`` quotes keys and characters of the document in some messages (``Cannot declare
    ('x',) twice``, ``Illegal character '\\x01'``); only the words before the first quoted or
    formatted part are kept, then ``(at line L, column C)`` (or ``at end of document``)."""
    m = re.search(r"\(at (line \d+, column \d+|end of document)\)\s*$", message)
    at = f"at {m.group(1)}" if m else "(position unknown)"
    body = message[: m.start()] if m else message
    head = re.match(r"[A-Za-z ]*", body)
    words = head.group(0).strip() if head else ""
    if words and len(words) < len(body.strip()):
        words += " …"
    return f"{at}: {words}" if words else at


def _nesting_position(text: str, limit: int) -> str:
    """``" at line L, column C"`` where arrays and inline tables first nest deeper than
    ``limit`` (outside strings and comments), or ``""`` if a scan finds no such place."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "\"'":
            triple = text.startswith(c * 3, i)
            close = c * 3 if triple else c
            i += len(close)
            while i < n and not text.startswith(close, i):
                if c == '"' and text[i] == "\\":
                    i += 1
                elif text[i] == "\n" and not triple:
                    break
                i += 1
            i += len(close)
            continue
        if c in "[{":
            depth += 1
            if depth > limit:
                line = text.count("\n", 0, i) + 1
                column = i - (text.rfind("\n", 0, i) + 1) + 1
                return f" at line {line}, column {column}"
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return ""
