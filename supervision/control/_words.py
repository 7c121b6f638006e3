"""What the control endpoint answers for each symbol: whether the actor's outcome is the
asked-for end state (:func:`done`), and the outcome in words (:func:`outcome_words`,
:func:`closed_words`).

Pure; called on the control server's worker threads.
"""

from __future__ import annotations

from actors.model import Status
from actors.state import Position
from supervision.presentation import exit_price, realised_pnl

__all__ = ["closed_words", "done", "outcome_words"]

#: What the actor's outcome means for the command: the asked-for end state holds.
_DONE = {
    "pause": {"paused", "already_paused"},
    "resume": {"resumed", "not_paused"},
    "unquarantine": {"unquarantined", "not_quarantined"},
    "close": {"no_position", "closed", "failed"},
}
_WORDS = {
    "paused": "paused: new signals are refused `paused`",
    "already_paused": "paused already",
    "resumed": "resumed: new signals are decided again",
    "not_paused": "not paused",
    "unquarantined": "quarantine lifted: new signals are decided again",
    "not_quarantined": "not quarantined",
    "no_position": "no open position: nothing to close",
    "store_unavailable": "not done: the database did not answer (nothing changed)",
}


def done(command: str, outcome: str) -> bool:
    """Whether ``outcome`` of an actor means ``command``'s end state holds."""
    return outcome in _DONE[command]


def outcome_words(outcome: str) -> str:
    """The outcome in words (the outcome itself when it has none)."""
    return _WORDS.get(outcome, outcome)


def closed_words(pos: Position) -> str:
    """A closed (or never filled) position in words: why, at what price, its realised PnL."""
    if pos.status is Status.FAILED:
        return f"position {pos.id} never filled: entry cancelled ({pos.fail_reason or '-'})"
    price, pnl = exit_price(pos), realised_pnl(pos)
    reason = pos.close_reason.value if pos.close_reason else "-"
    text = f"position {pos.id} closed ({reason})"
    if price is not None:
        text += f" at {price:.8g}"
    if pnl is not None:
        text += f", realised PnL {pnl:+.2f}"
    return text
