"""A control command's request body, read and checked (:func:`parse_command`): which
accounts and symbols, why, and how long to wait.

Pure; called on the control server's worker threads. A body that breaks a rule raises
:class:`BadRequest` with the HTTP status and a reason that never quotes more than 40
characters of what was sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = [
    "COMMANDS",
    "DEFAULT_TIMEOUT_S",
    "JSON",
    "MAX_REASON",
    "MAX_TIMEOUT_S",
    "BadRequest",
    "CommandRequest",
    "parse_command",
]

COMMANDS = ("close", "pause", "resume", "unquarantine")
MAX_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 10.0
MAX_REASON = 200
JSON = "application/json"
_SYMBOL = re.compile(r"^[A-Z0-9]{2,32}$")
_FIELDS = {"account", "symbols", "all", "reason", "timeout_s"}


class BadRequest(Exception):
    """A request the endpoint refuses: ``status`` (400, 409, 415) and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command's body once checked: ``account`` (``None``: every account managed here),
    ``symbols`` (exchange ids; empty: see ``every`` and the command), ``every`` (``all``),
    ``reason`` (stripped) and ``timeout_s``."""

    account: str | None
    symbols: tuple[str, ...]
    every: bool
    reason: str
    timeout_s: float


def _printable(text: str) -> bool:
    return text.isprintable() and not any(c in text for c in "\r\n\t")


def parse_command(command: str, content_type: str, body: bytes) -> CommandRequest:
    """The request of ``command`` (one of :data:`COMMANDS`) from its ``Content-Type`` header
    and body. Raises :class:`BadRequest`."""
    ctype = content_type.split(";", maxsplit=1)[0].strip().lower()
    if ctype != JSON:
        raise BadRequest(415, "send the body as application/json")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "the body must be a JSON object")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise BadRequest(400, f"unknown field {str(unknown[0])[:40]!r}")
    account = doc.get("account")
    if account is not None and not isinstance(account, str):
        raise BadRequest(400, "account: a string or null")
    symbols = doc.get("symbols", [])
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise BadRequest(400, "symbols: a list of strings")
    if len(symbols) > 1000:
        raise BadRequest(400, "symbols: at most 1000")
    for s in symbols:
        if not _SYMBOL.fullmatch(s):
            raise BadRequest(400, f"symbols: {s[:40]!r} is not an exchange symbol id")
    every = doc.get("all", False)
    if not isinstance(every, bool):
        raise BadRequest(400, "all: true or false")
    reason = doc.get("reason")
    if (
        not isinstance(reason, str)
        or not reason.strip()
        or len(reason) > MAX_REASON
        or not _printable(reason)
    ):
        raise BadRequest(400, f"reason: required, 1-{MAX_REASON} printable characters on one line")
    timeout = doc.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_S
    ):
        raise BadRequest(400, f"timeout_s: a number above 0, at most {MAX_TIMEOUT_S:g}")
    if every and symbols:
        raise BadRequest(400, "give symbols or all, not both")
    if command in ("close", "unquarantine") and not symbols and not every:
        raise BadRequest(400, f"{command}: name the symbols, or all")
    return CommandRequest(account, tuple(symbols), every, reason.strip(), float(timeout))
