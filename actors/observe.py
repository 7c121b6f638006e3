"""What a position actor's decisions tell the operator: metrics and log lines.

Who calls: :class:`~actors.position_actor.PositionActor`, on its thread, once a decision is
final (a commit written or held, a signal or operator request decided). Pure reporting:
nothing here changes state; a failing metrics sink propagates (the actor treats it as a
crash, like any defect).
"""

from __future__ import annotations

from actors.host import actor_log as log
from actors.model import Key
from actors.ports import Metrics
from actors.state import Commit, ControlOutcome, JournalKind, SignalOutcome, SignalRecord

__all__ = [
    "ILLEGAL_TRANSITION",
    "PROTECTION_FAILURES",
    "observe_commit",
    "observe_control",
    "observe_signal",
]

#: Journal event kinds that mean protection is in trouble: logged at ERROR and counted.
PROTECTION_FAILURES = frozenset(
    {JournalKind.STOP_FAILED, JournalKind.CLOSE_FAILING, JournalKind.STOP_REJECTED_AT_TRIGGER}
)
#: The journal kind of a (status, trigger) or (order state, event) pair in no table of
#: :mod:`actors.lifecycle`: the transition left the state as it was. Logged at ERROR and
#: counted with the protection failures (``ps_protection_failures{kind="illegal_transition"}``).
ILLEGAL_TRANSITION = JournalKind.ILLEGAL_TRANSITION


def observe_commit(commit: Commit, key: Key, metrics: Metrics) -> None:
    """Count and log the journal events of a commit: status changes, protection failures,
    and the time a filled position went without its stop."""
    for ev in commit.events:
        if ev.kind in PROTECTION_FAILURES or ev.kind is ILLEGAL_TRANSITION:
            metrics.protection_failure(ev.kind)
            log.error(
                "position %s: %s (%s)",
                ev.position_id,
                ev.kind,
                ", ".join(f"{k}={v}" for k, v in ev.detail.items()),
                extra={"key": str(key), "position_id": ev.position_id},
            )
        if ev.status_before is not ev.status_after:
            metrics.transition(
                ev.status_before.value if ev.status_before else None,
                ev.status_after.value if ev.status_after else None,
            )
            if ev.status_after is not None:
                log.info(
                    "position %s %s -> %s (%s)",
                    ev.position_id,
                    ev.status_before.value if ev.status_before else "-",
                    ev.status_after.value,
                    ev.kind,
                    extra={"key": str(key), "position_id": ev.position_id},
                )
        if ev.kind is JournalKind.STOP_CONFIRMED and commit.position is not None:
            p = commit.position
            if p.filled_at is not None and p.protected_at == ev.at:
                metrics.unprotected(max(0.0, ev.at - p.filled_at))


def observe_signal(rec: SignalRecord, key: Key, metrics: Metrics) -> None:
    """Count a signal's decision (a replay as ``duplicate``/``signal_replayed``) and log it:
    one line per decision, at INFO: refusals are the product working."""
    reason = "signal_replayed" if rec.replay else rec.reason
    outcome = SignalOutcome.DUPLICATE.value if rec.replay else rec.outcome.value
    metrics.signal(rec.source, outcome, reason)
    log.info(
        "signal %s from %s %s%s%s",
        rec.signal_id,
        rec.source,
        "replayed, decided before: " if rec.replay else "",
        rec.outcome.value,
        f" ({rec.reason})" if rec.reason else "",
        extra={"key": str(key), "position_id": rec.position_id},
    )


def observe_control(outcome: ControlOutcome, key: Key) -> None:
    """Log an operator's request as decided."""
    log.info(
        "operator %s: %s%s",
        outcome.command,
        outcome.outcome,
        f" (position {outcome.position_id})" if outcome.position_id is not None else "",
        extra={"key": str(key), "position_id": outcome.position_id},
    )
