"""The simulation's slice for mutation testing (README, "Mutation testing"): a dozen seeds that
between them run nearly every line of the actor shell (``PositionShell``, ``RestartingShell``,
save-first, the tick band, deferred signals) and of ``transition``, each checked two ways.

* Every invariant holds, none excused (:func:`tests.dst.defects.strict`): a mutant that breaks
  what the simulation checks against the exchange's ledger fails here.
* The trace and the store are the ones recorded below (the step count and two SHA-256s): the
  whole observable behaviour of the core on the seed (every message an actor handles, every
  call and its answer, every timer, every answer to a signal) and everything it wrote (every
  journal event with its details, every position, signal record and control flag) are
  pinned, so a mutant that changes any of it fails too, also where no invariant is at stake
  (a restart delay, a lookup's timing, a reason, a journal detail).
  This is a characterization: a change to ``actors/`` or ``testkit/dst/`` that alters the
  behaviour on purpose re-records the table with ``python -m tests.dst.test_mutation_slice``
  (it prints the new rows), after ``make dst`` shows every invariant still holds.

The seeds were chosen greedily by the lines of ``actors/`` they add (coverage over seeds
0-149); seed 7 with a one-signal memory reaches the replay beyond the actor's memory. The whole
slice runs in about 1.5 s, so mutmut can run it for every mutant its unit tests leave alive.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from typing import Any

import pytest

from testkit.dst.invariants import Violation
from testkit.dst.world import Simulation, sim_policy
from tests.dst.defects import strict


def _short_memory(seed: int, **kw: Any) -> Simulation:
    return Simulation(seed, policy=replace(sim_policy(), recent_signal_memory=1), **kw)


#: (seed, one-signal memory) -> (steps, the SHA-256 of the trace and of the store, each its
#: first 16 hex digits).
TRACES: dict[tuple[int, bool], tuple[int, str, str]] = {
    (75, False): (1298, "43726b69a4a534f0", "693e5284f9fc6a9d"),
    (110, False): (1330, "ce49f1ff2bdb3a49", "1433e34637cffc8c"),
    (136, False): (1512, "07c9561903035960", "6a405247369b80a9"),
    (126, False): (1202, "f705a8bd7634c69f", "86864e2491130e91"),
    (15, False): (1032, "e5e4117cd8e89941", "bf71873a193b4e1f"),
    (96, False): (1371, "66a6ebd3f387438a", "59a55fe8e14e450d"),
    (135, False): (1407, "4c0f0c219e95610a", "c633bc7a6ddae8eb"),
    (105, False): (1277, "b5722c146d2a3925", "e437bb7e085923e6"),
    (109, False): (1091, "e62090da80c34e4a", "6c03dc42b683d328"),
    (43, False): (1554, "d554307fd2aa3d05", "bb2853f4344a74bf"),
    (111, False): (1410, "3e6593edb0887c0f", "196d0fc87b862940"),
    (7, True): (1291, "b719d973d1f649d9", "33984f5c7708717c"),
}


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _run(seed: int, short: bool) -> tuple[Violation | None, tuple[int, str, str]]:
    """The seed's violation (None: none) and its record: steps, the trace's digest, the
    store's digest (journal, positions, signal records, control flags, in write order)."""
    sim = strict(_short_memory if short else Simulation)(seed, trace=True)
    bad = sim.run()
    st = sim.store
    durable = [repr(e) for e in st.journal]
    durable += [repr(st.positions[i]) for i in sorted(st.positions)]
    durable += [repr(r) for r in st.signals]
    durable += [repr(f) for f in st.flags.items()]
    return bad, (sim.steps, _digest(sim.trace), _digest(durable))


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("seed", "short"), sorted(TRACES))
def test_the_seed_holds_every_invariant_and_replays_its_recorded_trace(
    seed: int, short: bool
) -> None:
    bad, record = _run(seed, short)
    assert bad is None, f"seed {seed}: {bad}"
    assert record == TRACES[(seed, short)], (
        "the trace or the store changed; if on purpose, re-record: "
        "python -m tests.dst.test_mutation_slice"
    )


def main() -> int:
    """Print the table of :data:`TRACES` as the code runs now."""
    for seed, short in TRACES:
        bad, (steps, trace, store) = _run(seed, short)
        if bad is not None:
            print(f"seed {seed}: {bad}", file=sys.stderr)
            return 1
        print(f'    ({seed}, {short}): ({steps}, "{trace}", "{store}"),')
    return 0


if __name__ == "__main__":
    sys.exit(main())
