"""I11 beyond the actor's memory: a re-sent signal whose id the actor no longer remembers
(``recent_signal_memory`` later decisions on its symbol) is answered with the decision the
store recorded first, also when deciding it afresh would refuse it (the position it opened
is still open: ``duplicate position_open``). The deterministic simulation found this with
``recent_signal_memory=1`` (seed 7): the store kept the first record silently and the sender
was told its signal had opened nothing. The production adapter (pykka actors) on the
in-memory store; the store's side is tests/store/test_store.py on PostgreSQL."""

from __future__ import annotations

from actors.state import Policy, Reentry, SignalOutcome, SignalRecord
from testkit.world import World, signal


def test_a_replay_older_than_the_memory_gets_its_recorded_outcome() -> None:
    answers: list[SignalRecord] = []
    policy = Policy(reentry=Reentry.ALLOW, recent_signal_memory=1)
    with World(policy=policy) as w:
        w.sup.signal_listeners.append(answers.append)
        first = signal(signal_id="first")
        w.tell(first)
        w.settle()
        w.tell(signal(signal_id="second"))  # refused: the first one's position is open
        w.settle()
        w.tell(first)  # the sender never heard of the first answer: sent again
        w.settle()
        opened = [p.id for p in w.open_positions()]
    assert [(a.signal_id, a.outcome, a.reason, a.replay) for a in answers] == [
        ("first", SignalOutcome.ACCEPTED, "", False),
        ("second", SignalOutcome.DUPLICATE, "position_open", False),
        ("first", SignalOutcome.ACCEPTED, "", True),
    ]
    assert answers[2].position_id == answers[0].position_id and opened == [answers[0].position_id]
