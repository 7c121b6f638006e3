"""Defect seeds: each defect of "Money safety at the edges" (issue 10) that lives in the core
or its shell, and each defect the simulation found itself, re-introduced inside the test only
(the function that holds the fix monkeypatched with the old behaviour). A fixed seed of the
simulation finds it (an invariant violation naming it); the same seed passes on the real code.
The table of seeds is in the README ("Deterministic simulation")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from actors.position_actor import PositionShell
from actors.restarting import RestartingShell
from actors.state import SymbolState
from testkit.dst.runner import Case, run_case
from testkit.dst.world import Simulation


def _finds(seed: int, invariant: str, make: Callable[..., Simulation] = Simulation) -> str:
    out = run_case(Case(seed), trace=False, make=make)
    assert out.violation is not None, f"seed {seed} did not find the defect"
    assert out.violation.name == invariant, str(out.violation)
    return str(out.violation)


def _holds(seed: int) -> None:
    out = run_case(Case(seed), trace=False)
    assert out.violation is None, str(out.violation)


def test_c8_a_replayed_signal_is_answered_with_its_recorded_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """C8: the answer of an accepted signal is lost with the process; the sender sends it
    again. Before the fix the re-sent id was answered ``duplicate signal_replayed`` or
    ``too_old``: neither the actor's memory of decided ids nor the signal history was asked."""
    seed = 25
    _holds(seed)
    with monkeypatch.context() as m:
        m.setattr(PositionShell, "_answer_replay", lambda self, sig: False)
        m.setattr(SymbolState, "decision", lambda self, signal_id: None)
        found = _finds(seed, "answer_not_recorded")
    assert "recorded" in found


def test_b6_a_frozen_database_refuses_entries_instead_of_deciding_them_late() -> None:
    """B6: with the database frozen, a commit without a client-side deadline waited the whole
    freeze and the entry went out 18-20 s after its signal. The simulated store models the
    bound infra's store enforces (``StoreUnavailable`` past it): without it, late entries."""
    seed = 119
    _holds(seed)

    def unbounded(seed: int, **kw: Any) -> Simulation:
        return Simulation(seed, store_bound_s=None, **kw)

    assert "after the signal" in _finds(seed, "late_entry", unbounded)


def test_a_tick_stashed_during_a_restart_does_not_crash_the_actor_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the simulation (seed 0): the restart handed its stash straight to
    ``_dispatch``, so a ``TicksReady`` stashed while the actor restarted (a store outage at
    load) reached ``transition()``, which takes no wake-ups since the shell unwraps them,
    and crashed the actor again. The restart now hands the stash to ``_receive_live``."""
    seed = 0
    _holds(seed)
    real = RestartingShell._restart

    def dispatching(self: RestartingShell) -> None:
        self.__dict__["_receive_live"] = self._dispatch
        try:
            real(self)
        finally:
            self.__dict__.pop("_receive_live", None)

    monkeypatch.setattr(RestartingShell, "_restart", dispatching)
    assert "TicksReady" in _finds(seed, "crash")
