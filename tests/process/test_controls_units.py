"""The pieces of the operator's controls on their own (fast, no process): the pure
transition's pause, resume, unquarantine and operator close; the live view's escaping; the
``[control]`` configuration; the shared HTTP server's body limits (real sockets).

The same behaviour through the real process is ``tests/process/test_controls.py``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from actors.effects import PlaceOrder
from actors.messages import (
    CloseRequest,
    MarkPriceTick,
    Message,
    OrderUpdate,
    PauseRequest,
    UnquarantineRequest,
)
from actors.model import CloseReason, ExchangeStatus, Key, OrderKind, Status
from actors.state import (
    ControlChange,
    Policy,
    Reentry,
    SignalOutcome,
    SignalRecord,
    SymbolState,
    Transition,
)
from actors.transition import Context, transition
from infra.config import ConfigError, parse_config
from infra.http_server import BoundedHttpServer, HttpRequest, HttpResponse
from supervision.live_view import ControlRow, JournalRow, LiveView, PositionRow, render_page
from testkit.world import priced, signal

pytestmark = pytest.mark.timeout(30)

KEY = Key("main", "BTCUSDT")
NOW = 1000.0
POLICY = Policy(reentry=Reentry.ALLOW)


def step(st: SymbolState, msg: Message) -> Transition:
    ids = iter(range(1, 100))
    return transition(st, msg, Context(NOW, POLICY, next(ids)))


def active() -> SymbolState:
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0)).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0)).state
    st = step(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0)).state
    assert st.position is not None and st.position.status is Status.ACTIVE
    return st


# --- the pure transition -----------------------------------------------------------------


def test_a_paused_symbol_refuses_signals_transiently_and_resume_takes_them_again() -> None:
    t = step(priced(KEY, at=NOW), PauseRequest(KEY, True, "r1", "operator", "maintenance"))
    assert t.state.paused and t.control is not None
    assert (t.control.command, t.control.outcome, t.control.ok) == ("pause", "paused", True)
    assert t.commit is not None and t.commit.position is None
    assert t.commit.control == ControlChange("paused", True, "maintenance")
    (ev,) = t.commit.events
    assert ev.kind == "paused" and ev.detail["by"] == "operator" and ev.detail["changed"]
    refused = step(t.state, signal(signal_id="while-paused"))
    assert refused.signal is not None
    assert (refused.signal.outcome, refused.signal.reason) == (SignalOutcome.REJECTED, "paused")
    assert refused.signal.retry and refused.state.decided == ()  # does not bind the id
    again = step(t.state, PauseRequest(KEY, True, "r2", "operator", "again"))
    assert again.control is not None and again.control.outcome == "already_paused"
    assert again.commit is not None and again.commit.control is None  # keeps time and note
    resumed = step(t.state, PauseRequest(KEY, False, "r3", "operator", "over"))
    assert not resumed.state.paused and resumed.control is not None
    assert resumed.control.outcome == "resumed"
    accepted = step(resumed.state, signal(signal_id="after")).signal
    assert accepted is not None and accepted.outcome is SignalOutcome.ACCEPTED


def test_protection_goes_on_while_paused() -> None:
    st = step(priced(KEY, at=NOW), signal(size=1.0, stop=90.0, trailing=5.0)).state
    st = step(st, OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, 100.0, 1.0)).state
    st = step(st, OrderUpdate(KEY, "ps1s1", ExchangeStatus.NEW, 0.0, None, 2.0)).state
    st = step(st, PauseRequest(KEY, True, "r", "operator", "x")).state
    # the trailing stop follows the price on the paused symbol: a new stop at 105
    t = step(st, MarkPriceTick(KEY, 110.0, 3.0))
    placed = [e.order for e in t.effects if isinstance(e, PlaceOrder)]
    assert [(o.kind, o.trigger_price) for o in placed] == [(OrderKind.STOP_LOSS, 105.0)]
    # and a close goes on
    t = step(t.state, CloseRequest(KEY, CloseReason.MANUAL, "c", "operator", "y"))
    assert t.state.position is not None and t.state.position.status is Status.CLOSING


def test_unquarantine_clears_the_flag_and_the_stored_one() -> None:
    st = SymbolState(KEY, quarantined=True)
    assert step(st, signal()).signal is not None
    assert step(st, signal(signal_id="q")).signal.reason == "quarantined"  # type: ignore[union-attr]
    t = step(st, UnquarantineRequest(KEY, "r", "operator", "fixed"))
    assert not t.state.quarantined and t.control is not None
    assert t.control.outcome == "unquarantined"
    assert t.commit is not None and t.commit.control == ControlChange("quarantined", False, "fixed")
    t = step(t.state, UnquarantineRequest(KEY, "r", "operator", "again"))
    assert t.control is not None and t.control.outcome == "not_quarantined"


def test_an_operator_close_is_journaled_with_who_and_why_even_when_nothing_is_open() -> None:
    t = step(active(), CloseRequest(KEY, CloseReason.MANUAL, "r1", "operator", "by hand"))
    assert t.control is not None and (t.control.outcome, t.control.position_id) == ("closing", 1)
    assert t.commit is not None and t.commit.position is not None
    (closing,) = [e for e in t.commit.events if e.kind == "closing"]
    assert closing.detail["by"] == "operator" and closing.detail["note"] == "by hand"
    again = step(t.state, CloseRequest(KEY, CloseReason.MANUAL, "r2", "operator", "twice"))
    assert again.control is not None and again.control.outcome == "already_closing"
    assert again.commit is not None and again.commit.position is None  # journaled, unchanged
    none = step(SymbolState(KEY), CloseRequest(KEY, CloseReason.MANUAL, "r3", "operator", "x"))
    assert none.control is not None and none.control.outcome == "no_position"
    assert none.commit is not None and none.commit.events[0].detail["result"] == "no_position"
    # a close asked by code (no ``by``) with nothing to close writes nothing, as before
    quiet = step(SymbolState(KEY), CloseRequest(KEY, CloseReason.MANUAL, "internal"))
    assert quiet.commit is None and quiet.control is None


# --- the live view: everything escaped ---------------------------------------------------

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"


def test_the_page_escapes_every_text_from_outside() -> None:
    key = Key("main", "BTCUSDT")
    view = LiveView(
        generated_at=NOW,
        refresh_s=2.0,
        accounts=(HOSTILE,),
        positions=(
            PositionRow(
                key, 1, "active", "long", 1.0, 100.0, 90.0, True, "ps1s1", 101.0, 1.0, 5.0, HOSTILE
            ),
        ),
        controls=(ControlRow(key, True, True, NOW, HOSTILE, NOW, HOSTILE),),
        signals=(SignalRecord(key, HOSTILE, HOSTILE, SignalOutcome.REJECTED, HOSTILE, NOW),),
        journal=(JournalRow(NOW, key, 1, HOSTILE, "a -> b", HOSTILE, HOSTILE),),
        health=((HOSTILE, HOSTILE), ("database", None)),
        signals_error=None,
        journal_error=HOSTILE,
    )
    page = render_page(view)
    tags = set(re.findall(r"<\s*([a-zA-Z]+)", page))
    assert "script" not in tags and "img" not in tags, tags
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8
    assert "\"'&" not in page  # quotes and ampersands escaped too (attributes are safe)
    assert '<meta http-equiv="refresh" content="2">' in page


# --- configuration -----------------------------------------------------------------------

_ACCOUNT = {
    "accounts": {
        "main": {
            "rest_url": "http://127.0.0.1:1",
            "ws_url": "ws://127.0.0.1:1",
            "symbols": ["BTCUSDT"],
            "credentials": "dummy",
        }
    }
}


def test_control_is_on_only_with_a_token_of_16_characters_or_more() -> None:
    off = parse_config(_ACCOUNT, {})
    assert not off.control.enabled and off.control.address == "127.0.0.1:9491"
    token = "k" * 32
    on = parse_config(
        {**_ACCOUNT, "control": {"address": "127.0.0.1:1234"}}, {"PS_CONTROL_TOKEN": token}
    )
    assert on.control.enabled and on.control.port == 1234 and token in on.secret_values()
    assert token not in repr(on.control)
    with pytest.raises(
        ConfigError, match=r"^control.token_env: PS_CONTROL_TOKEN must be at least 16"
    ):
        parse_config(_ACCOUNT, {"PS_CONTROL_TOKEN": "short"})
    with pytest.raises(ConfigError, match=r"^control.token: secrets come from the environment"):
        parse_config({**_ACCOUNT, "control": {"token": "x" * 20}}, {})
    renamed = parse_config(
        {**_ACCOUNT, "control": {"token_env": "OPS_TOKEN"}}, {"OPS_TOKEN": token}
    )
    assert renamed.control.token == token


# --- the shared HTTP server: bodies ------------------------------------------------------


class _Echo(BoundedHttpServer):
    def handle(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, f"{request.method} {len(request.body)}".encode())


@pytest.fixture
def echo() -> Iterator[_Echo]:
    s = _Echo("127.0.0.1", 0, max_body_bytes=1000, methods=("GET", "POST"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _ask(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(raw)
        data = b""
        while chunk := c.recv(4096):
            data += chunk
        return data


def test_bodies_are_read_by_length_and_bounded(echo: _Echo) -> None:
    body = b"x" * 999
    # the body may come in parts after the head: it is read to its Content-Length
    with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as c:
        c.sendall(b"POST / HTTP/1.1\r\nContent-Length: 999\r\n\r\n" + body[:400])
        c.sendall(body[400:])
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"POST 999")
    assert _ask(echo.port, b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n").startswith(
        b"HTTP/1.1 413 "
    )
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert _ask(echo.port, chunked).startswith(b"HTTP/1.1 411 ")
    assert _ask(echo.port, b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").startswith(
        b"HTTP/1.1 400 "
    )
    assert _ask(echo.port, b"PUT / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert _ask(echo.port, b"GET / HTTP/1.1\r\n\r\n").endswith(b"GET 0")
