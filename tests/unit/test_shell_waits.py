"""The actor shell's waits are bounded: a signal waits for a reference price at most
``mark_wait_s``, is never decided late after a database outage or a crash, and a late write
refused by another writer restarts the actor instead of killing it."""

from __future__ import annotations

import pytest

from actors.messages import CloseRequest, TimerFired, TimerId, TimerKind
from actors.model import CloseReason, Key, OrderKind, Status
from actors.ports import StaleVersion
from actors.state import Commit, Policy, Reentry, SignalRecord
from testkit.world import ACCOUNT, World, signal

pytestmark = pytest.mark.timeout(30)
KEY = Key(ACCOUNT, "BTCUSDT")


def _answers(w: World) -> list[SignalRecord]:
    got: list[SignalRecord] = []
    w.sup.signal_listeners.append(got.append)
    return got


def test_a_signal_waits_for_a_mark_price_no_longer_than_the_bound() -> None:
    policy = Policy(reentry=Reentry.ALLOW, mark_wait_s=3.0)
    with World(policy=policy) as w:
        answers = _answers(w)
        w.exchange.market_unknown = 10**6  # the exchange cannot tell the mark price
        w.tell(signal(signal_id="blind"))
        w.settle()
        assert answers == [] and w.exchange.market_calls == 1
        w.advance(1.0)
        w.advance(1.0)  # asked again meanwhile, at a pace, not in a loop
        assert 2 <= w.exchange.market_calls <= 5
        assert answers == []
        w.advance(1.5)
        [rec] = answers
        assert (rec.outcome.value, rec.reason, rec.retry) == ("rejected", "no_mark_price", True)
        assert w.exchange.log == [] and w.store.positions() == []


def test_a_signal_for_an_actor_waiting_for_the_database_is_refused_at_once() -> None:
    with World() as w:
        answers = _answers(w)
        w.store.down = True
        w.tell(signal(signal_id="during"))
        w.settle()
        [rec] = answers
        assert (rec.reason, rec.retry) == ("store_unavailable", True)
        w.store.down = False
        w.advance(1.5)  # the actor loads now; the refused signal is not decided late
        assert w.exchange.log == [] and w.store.positions() == []


def test_a_late_write_refused_by_another_writer_restarts_the_actor() -> None:
    """An unwritten protective commit retried by the persist timer meets StaleVersion (the
    row changed meanwhile): the actor reloads from the store, it does not die."""
    with World() as w:
        w.tell(signal())
        w.settle()
        assert w.state().position.status is Status.ACTIVE  # type: ignore[union-attr]
        w.store.down = True
        w.exchange.set_price("BTCUSDT", 80.0)  # the stop fills: written later
        w.settle()
        w.store.down = False
        real_commit = w.store.commit

        def stale(c: Commit) -> None:
            raise StaleVersion("another writer")

        w.store.commit = stale  # type: ignore[method-assign,assignment]
        w.tell(TimerFired(KEY, TimerId(TimerKind.SHELL_PERSIST)))
        w.settle()
        w.store.commit = real_commit  # type: ignore[method-assign]
        assert w.sup.stats().restarts >= 1
        state = w.state()  # alive and answering, state reloaded
        assert state.position is not None
        assert w.exchange.count(kind=OrderKind.ENTRY) == 1


def test_a_close_the_exchange_keeps_refusing_shows_in_readiness_until_it_goes_through() -> None:
    policy = Policy(reentry=Reentry.ALLOW, close_max_attempts=2, close_retry_delay_s=1.0)
    with World(policy=policy) as w:
        w.tell(signal())
        w.settle()
        w.exchange.reject[OrderKind.CLOSE] = ["refused"] * 4
        w.tell(CloseRequest(KEY, CloseReason.MANUAL, "operator"))
        w.settle()
        assert w.sup.failing_closes() == []  # one refusal: retried, not yet failing
        w.advance(1.0)  # second close refused: failing from here on
        assert w.sup.failing_closes() == [KEY]
        w.advance(2.0)
        w.advance(4.0)  # the fourth close is refused too; never given up
        assert w.sup.failing_closes() == [KEY]
        w.advance(8.0)  # the fifth goes through
        assert w.sup.failing_closes() == []
        assert w.state().position.status is Status.CLOSED  # type: ignore[union-attr]
        assert w.exchange.count(kind=OrderKind.CLOSE) == 5


def test_a_defect_outside_the_transition_is_a_counted_crash_and_a_successor_takes_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception escaping the shell's own code (here: publishing the tick band) stops the
    pykka actor; it used to do so without the restart policy hearing of it (no count, no
    quarantine). Now it is counted, and a successor loads the position and goes on."""
    from actors.position_actor import PositionActor

    with World() as w:
        w.tell(signal())
        w.settle()
        real = PositionActor._publish_band
        calls = {"n": 0}

        def once(self: PositionActor) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("injected defect")
            real(self)

        monkeypatch.setattr(PositionActor, "_publish_band", once)
        w.tell(TimerFired(KEY, TimerId(TimerKind.LOOKUP, "no-such-timer")))
        w.settle()
        assert w.sup.stats().restarts == 1
        assert w.state().position.status is Status.ACTIVE  # type: ignore[union-attr]
