"""Running seeds of the deterministic simulation, shrinking a failure, replaying one.

Who calls: ``python -m testkit.dst`` (:mod:`testkit.dst.__main__`), ``make dst`` and the tests.
A *case* is ``(seed, limit, skip)``: the seed, the step after which the faults stop (then the
quiet tail), and the planned events left out. :func:`shrink` looks for a shorter failing case
of the same invariant: the shortest failing prefix of steps (a bisection, then a walk down),
then each planned event dropped in turn (kept dropped while the failure stays). The case it
prints replays exactly with :func:`replay`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from testkit.dst.invariants import Violation
from testkit.dst.world import Simulation

__all__ = ["Case", "Outcome", "replay", "run_case", "run_seeds", "shrink"]


@dataclass(frozen=True)
class Case:
    """One replayable run: ``seed``, ``limit`` (None: the whole faulty part), ``skip``."""

    seed: int
    limit: int | None = None
    skip: frozenset[int] = frozenset()

    def command(self) -> str:
        """The command line that replays this case."""
        text = f"python -m testkit.dst --seed {self.seed}"
        if self.limit is not None:
            text += f" --limit {self.limit}"
        if self.skip:
            text += " --skip " + ",".join(str(i) for i in sorted(self.skip))
        return text


@dataclass(frozen=True)
class Outcome:
    case: Case
    violation: Violation | None
    steps: int
    trace: tuple[str, ...]
    known: tuple[Violation, ...] = ()


def run_case(
    case: Case, *, trace: bool = True, make: Callable[..., Simulation] = Simulation
) -> Outcome:
    sim = make(case.seed, limit=case.limit, skip=case.skip, trace=trace)
    bad = sim.run()
    return Outcome(case, bad, sim.steps, tuple(sim.trace), tuple(sim.known_seen))


def replay(case: Case) -> Outcome:
    """Run ``case`` again: the same trace, byte for byte."""
    return run_case(case)


def _fails_alike(case: Case, name: str, make: Callable[..., Simulation]) -> Outcome | None:
    out = run_case(case, trace=False, make=make)
    if out.violation is not None and out.violation.name == name:
        return out
    return None


def shrink(
    failed: Outcome, *, budget: int = 60, make: Callable[..., Simulation] = Simulation
) -> Outcome:
    """A shorter failing case of the same invariant as ``failed`` (module docstring), at most
    ``budget`` runs. Returns the shortest found, with its trace."""
    assert failed.violation is not None
    name = failed.violation.name
    best = failed.case
    runs = 0
    # Shortest failing prefix: faults stop after ``limit`` steps.
    hi = failed.violation.step
    lo = 0
    while lo + 1 < hi and runs < budget // 2:
        mid = (lo + hi) // 2
        runs += 1
        if _fails_alike(Case(best.seed, mid, best.skip), name, make) is not None:
            hi = mid
        else:
            lo = mid
    if hi < failed.violation.step:
        best = Case(best.seed, hi, best.skip)
    # Drop planned events one by one.
    probe = Simulation(best.seed, trace=False)
    for i in range(len(probe.plan.events)):
        if runs >= budget:
            break
        if i in best.skip:
            continue
        runs += 1
        trial = Case(best.seed, best.limit, best.skip | {i})
        if _fails_alike(trial, name, make) is not None:
            best = trial
    return run_case(best, make=make)


@dataclass(frozen=True)
class Summary:
    seeds: int
    steps: int
    seconds: float
    failures: tuple[Outcome, ...]
    known: tuple[tuple[int, Violation], ...] = ()

    @property
    def rate(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def run_seeds(
    first: int,
    count: int,
    *,
    make: Callable[..., Simulation] = Simulation,
    stop_at_first: bool = True,
) -> Summary:
    """Run seeds ``first .. first+count-1``; the failures found (the first only, by default)."""
    t0 = time.perf_counter()
    steps = 0
    failures: list[Outcome] = []
    known: list[tuple[int, Violation]] = []
    for seed in range(first, first + count):
        out = run_case(Case(seed), trace=False, make=make)
        steps += out.steps
        known.extend((seed, v) for v in out.known)
        if out.violation is not None:
            failures.append(out)
            if stop_at_first:
                break
    return Summary(count, steps, time.perf_counter() - t0, tuple(failures), tuple(known))
