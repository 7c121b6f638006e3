"""Defect seeds: each defect of "Money safety at the edges" (issue 10) that lives in the core
or its shell, and the defect the simulation found in the shell, re-introduced inside the test
only (:mod:`tests.dst.defects`: the function that holds the fix monkeypatched with the old
behaviour). A fixed seed of the simulation finds it, the violation naming it, and the same
seed passes on the real code, every invariant enforced. The table of seeds is in the README
("Deterministic simulation"); ``python -m tests.dst.defects NAME`` finds others."""

from __future__ import annotations

import pytest

from tests.dst.defects import DEFECTS, finds, holds

#: Defect -> the seed that finds it (README, "Deterministic simulation").
SEEDS = {
    "A1": 6,
    "A2": 9,
    "A3": 19,
    "A4": 8,
    "A5": 0,
    "B6": 119,
    "C8": 39,
    "restart": 1,
}


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_the_seed_finds_the_defect_and_passes_without_it(name: str) -> None:
    defect = DEFECTS[name]
    seed = SEEDS[name]
    assert holds(seed) is None, f"seed {seed} fails on the real code: {holds(seed)}"
    found = finds(defect, seed)
    assert found is not None, f"seed {seed} no longer finds {name} ({defect.what})"
    assert found.startswith(defect.invariant)


def test_every_defect_has_its_seed() -> None:
    assert set(SEEDS) == set(DEFECTS)
