"""The seeds on which the simulation found a replay decided afresh (I11 beyond the actor's
memory; ``recent_signal_memory=1`` reaches it in a short run): each now ends with every
invariant holding, ``answer_not_recorded`` included. Before the fix (8df8d4d) each of them
failed on ``answer_not_recorded``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from testkit.dst.runner import Case, run_case
from testkit.dst.world import Simulation, sim_policy


def _short_memory(seed: int, **kw: Any) -> Simulation:
    return Simulation(seed, policy=replace(sim_policy(), recent_signal_memory=1), **kw)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [7, 8, 12, 31, 38])
def test_a_replay_beyond_the_memory_is_answered_as_recorded(seed: int) -> None:
    out = run_case(Case(seed), trace=False, make=_short_memory)
    assert out.violation is None, out.violation
    assert out.steps > 0
