"""One journal row per real change (issue "Weeks, not minutes", item 3): a refused signal
is in the signal history only, and a stop confirmed by both the stream and the REST reply is
journaled once."""

from __future__ import annotations

import pytest

from actors.model import Key, Status
from actors.state import SignalOutcome
from testkit.world import ACCOUNT, World, signal

pytestmark = pytest.mark.timeout(30)
KEY = Key(ACCOUNT, "BTCUSDT")


def test_refusals_write_signals_not_journal_rows() -> None:
    with World() as w:
        w.tell(signal(signal_id="a"))
        w.settle()
        assert w.positions()[0].status is Status.ACTIVE
        kinds = [e.kind for e in w.store.journal(KEY)]
        w.tell(signal(signal_id="b"))  # duplicate: position_open
        w.tell(signal(signal_id="c", stop=float("nan")))  # rejected: invalid
        w.tell(signal(signal_id="a"))  # a replay of a decided id
        w.settle()
        assert [e.kind for e in w.store.journal(KEY)] == kinds
        outcomes = {(s.signal_id, s.outcome) for s in w.store.signals()}
        assert ("b", SignalOutcome.DUPLICATE) in outcomes
        assert ("c", SignalOutcome.REJECTED) in outcomes


def test_a_stop_confirmed_by_stream_and_reply_is_journaled_once() -> None:
    with World() as w:
        assert w.exchange.stream  # the stream reports the stop as well as the reply
        w.tell(signal(signal_id="a"))
        w.settle()
        [pos] = w.positions()
        assert pos.status is Status.ACTIVE
        kinds = [e.kind for e in w.store.journal(KEY)]
        assert kinds.count("stop_confirmed") == 1, kinds
        assert len(kinds) == len(set(kinds)), kinds  # no change journaled twice
