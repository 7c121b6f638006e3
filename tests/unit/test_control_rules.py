"""The control endpoint's rules as pure functions (supervision.control): who
may call it and what a command's body must hold. The HTTP tests (tests/process/test_controls.py)
go through the server; these pin each refusal's reason."""

from __future__ import annotations

import base64
import json

import pytest

from supervision.control import BadRequest, CommandRequest, authorize, parse_command

TOKEN = b"t" * 32


def _basic(password: bytes) -> str:
    return "Basic " + base64.b64encode(b"operator:" + password).decode()


@pytest.mark.parametrize(
    ("header", "host", "page", "loopback", "why"),
    [
        ("Bearer " + TOKEN.decode(), None, False, False, None),
        ("Bearer wrong", None, False, False, "wrong token"),
        (None, "127.0.0.1:9491", True, True, None),
        (None, "[::1]:9491", True, True, None),
        (None, "evil.example:9491", True, True, "does not name a loopback address"),
        (None, "127.0.0.1:9491", False, True, "no token"),
        (None, "127.0.0.1:9491", True, False, "no token"),
        (_basic(TOKEN), None, True, False, None),
        (_basic(TOKEN), None, False, False, "unsupported Authorization scheme"),
        ("Basic %%%", None, True, False, "malformed Basic credentials"),
        ("Digest x", None, True, False, "unsupported Authorization scheme"),
    ],
)
def test_who_may_call(
    header: str | None, host: str | None, page: bool, loopback: bool, why: str | None
) -> None:
    got = authorize(header, host, TOKEN, page=page, loopback=loopback)
    if why is None:
        assert got is None
    else:
        assert got is not None and why in got and TOKEN.decode() not in got


def _body(**doc: object) -> bytes:
    return json.dumps({"reason": "maintenance", **doc}).encode()


def test_a_good_body() -> None:
    req = parse_command("pause", "application/json; charset=utf-8", _body(symbols=["BTCUSDT"]))
    assert req == CommandRequest(None, ("BTCUSDT",), False, "maintenance", 10.0)


@pytest.mark.parametrize(
    ("command", "ctype", "body", "status", "reason"),
    [
        ("pause", "text/plain", _body(), 415, "application/json"),
        ("pause", "application/json", b"{", 400, "not JSON"),
        ("pause", "application/json", b"[]", 400, "JSON object"),
        ("pause", "application/json", _body(extra=1), 400, "unknown field"),
        ("pause", "application/json", _body(account=1), 400, "account"),
        ("pause", "application/json", _body(symbols=["btc usdt"]), 400, "not an exchange"),
        ("pause", "application/json", _body(all="yes"), 400, "all: true or false"),
        ("pause", "application/json", _body(reason="two\nlines"), 400, "printable"),
        ("pause", "application/json", _body(timeout_s=61), 400, "timeout_s"),
        ("pause", "application/json", _body(timeout_s=True), 400, "timeout_s"),
        ("close", "application/json", _body(symbols=["BTCUSDT"], all=True), 400, "not both"),
        ("close", "application/json", _body(), 400, "name the symbols, or all"),
    ],
)
def test_a_bad_body_is_refused_with_its_reason(
    command: str, ctype: str, body: bytes, status: int, reason: str
) -> None:
    with pytest.raises(BadRequest) as info:
        parse_command(command, ctype, body)
    assert info.value.status == status and reason in info.value.reason
