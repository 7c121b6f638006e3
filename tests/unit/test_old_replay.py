"""A replay older than the actor's memory of recent signal ids opens nothing.

Each actor remembers its symbol's last ``recent_signal_memory`` ids; the signal history in the
store remembers every id. An accepted signal whose id the history holds already (an old
replay, or one id sent for two symbols) is refused by the store as a whole (``SignalSeen``):
the actor writes no position and answers with the decision recorded for that id (I11).
"""

from __future__ import annotations

from dataclasses import replace

from actors.messages import CloseRequest
from actors.model import CloseReason, Key, OrderKind, Status
from actors.state import Policy, Reentry, SignalOutcome, SignalRecord
from testkit.world import ACCOUNT, World, signal


def _open_and_close(w: World, signal_id: str, symbol: str = "BTCUSDT") -> None:
    w.tell(signal(symbol, signal_id=signal_id, stop=90.0))
    w.settle()
    pos = w.state(symbol).position
    assert pos is not None and pos.status is Status.ACTIVE, pos
    w.tell(CloseRequest(Key(ACCOUNT, symbol), CloseReason.MANUAL, f"close-{signal_id}"))
    w.settle()
    pos = w.state(symbol).position
    assert pos is not None and pos.status is Status.CLOSED, pos


def test_an_old_replay_is_a_duplicate_and_opens_no_position() -> None:
    policy = Policy(reentry=Reentry.ALLOW, cooldown_s=0.0, recent_signal_memory=2)
    with World(policy=policy, prices={"BTCUSDT": 100.0, "ETHUSDT": 100.0}) as w:
        decided: list[SignalRecord] = []
        w.sup.signal_listeners.append(decided.append)
        for sid in ("old-1", "a-1", "b-1"):
            _open_and_close(w, sid)
        entries = w.exchange.count(kind=OrderKind.ENTRY)
        positions = len(w.positions())
        w.tell(signal("BTCUSDT", signal_id="old-1", stop=90.0))  # beyond the memory of 2
        w.tell(signal("ETHUSDT", signal_id="b-1", stop=90.0))  # the id of another symbol
        w.settle()
        assert w.exchange.count(kind=OrderKind.ENTRY) == entries
        assert len(w.positions()) == positions
        btc = w.state("BTCUSDT").position
        assert btc is not None and btc.status is Status.CLOSED
        assert w.state("ETHUSDT").position is None
        # Each is answered with its recorded decision (I11): accepted, on the symbol it
        # opened, with that position's id, marked as a replay.
        first = {r.signal_id: r for r in decided if not r.replay}
        tail = [(r.signal_id, r.key.symbol, r.outcome, r.position_id) for r in decided[-2:]]
        assert all(r.replay for r in decided[-2:])
        assert sorted(tail) == [
            ("b-1", "BTCUSDT", SignalOutcome.ACCEPTED, first["b-1"].position_id),
            ("old-1", "BTCUSDT", SignalOutcome.ACCEPTED, first["old-1"].position_id),
        ]
        assert w.metrics.outcomes()["duplicate"] == 2
        assert not w.metrics.dead
        # the symbol goes on: a new id opens as before
        w.tell(signal("BTCUSDT", signal_id="new-1", stop=90.0))
        w.settle()
        pos = w.state("BTCUSDT").position
        assert pos is not None and pos.status is Status.ACTIVE and pos.signal_id == "new-1"


def test_an_old_replay_past_the_age_limit_is_answered_with_its_recorded_decision() -> None:
    """A signal accepted by a process that died before answering, re-sent after
    ``max_signal_age_s`` and beyond the actor's memory: the server learns it was accepted,
    and which position it opened, not ``too_old`` (I11)."""
    policy = Policy(
        reentry=Reentry.ALLOW, cooldown_s=0.0, recent_signal_memory=1, max_signal_age_s=30.0
    )
    with World(policy=policy) as w:
        decided: list[SignalRecord] = []
        w.sup.signal_listeners.append(decided.append)
        w.tell(replace(signal(signal_id="first", stop=90.0), created_at=w.clock.now()))
        w.settle()
        opened = w.state().position
        assert opened is not None
        _open_and_close_current(w)
        w.tell(signal(signal_id="second", stop=90.0))  # pushes "first" out of the memory
        w.settle()
        w.advance(60.0)
        old = replace(signal(signal_id="first", stop=90.0), created_at=w.clock.now() - 60.0)
        w.tell(old)
        w.settle()
        last = decided[-1]
        assert (last.signal_id, last.outcome, last.replay, last.position_id) == (
            "first",
            SignalOutcome.ACCEPTED,
            True,
            opened.id,
        )
        assert w.exchange.count(kind=OrderKind.ENTRY) == 2  # nothing opened for the replay


def _open_and_close_current(w: World) -> None:
    w.tell(CloseRequest(Key(ACCOUNT, "BTCUSDT"), CloseReason.MANUAL, "close"))
    w.settle()
    pos = w.state().position
    assert pos is not None and pos.status is Status.CLOSED, pos
