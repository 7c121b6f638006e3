"""The deterministic simulation itself: enough seeds to cover 100,000 steps pass every
invariant, a seed replays byte for byte, and a failure shrinks to a shorter case that fails
the same way and replays (README, "Deterministic simulation")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.dst.__main__ import main
from testkit.dst.runner import Case, replay, run_case, run_seeds, shrink
from tests.dst.defects import DEFECTS
from tests.dst.test_defect_seeds import SEEDS

#: The steps CI covers at least (issue 16: 100,000 steps in under two minutes).
CI_STEPS = 100_000


def test_seeds_covering_100k_steps_hold_every_invariant() -> None:
    t0 = time.perf_counter()
    steps = seeds = 0
    while steps < CI_STEPS:
        batch = run_seeds(seeds, 10)
        assert not batch.failures, (
            f"seed {batch.failures[0].case.seed}: {batch.failures[0].violation} "
            f"(replay: {batch.failures[0].case.command()})"
        )
        steps += batch.steps
        seeds += 10
    took = time.perf_counter() - t0
    print(f"dst: {steps} steps, {seeds} seeds in {took:.1f}s ({steps / took:.0f} steps/s)")
    assert took < 120.0


def test_a_seed_replays_byte_for_byte(capsys: pytest.CaptureFixture[str]) -> None:
    first = run_case(Case(7))
    again = replay(Case(7))
    assert first.steps > 500 and first.trace == again.trace
    assert main(["--seed", "7"]) == 0
    once = capsys.readouterr().out
    assert main(["--seed", "7"]) == 0
    assert capsys.readouterr().out == once
    assert once.splitlines()[:-1] == list(first.trace)


def test_a_replay_in_another_process_is_the_same_bytes() -> None:
    """Nothing depends on the process: not string hashing (``PYTHONHASHSEED``), not the wall
    clock, not object addresses."""
    root = Path(__file__).resolve().parents[2]
    outs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(root))
        done = subprocess.run(
            [sys.executable, "-m", "testkit.dst", "--seed", "11"],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        outs.append(done.stdout)
    assert outs[0] == outs[1] and len(outs[0]) > 10_000


def test_a_failure_prints_its_seed_and_shrinks_to_a_replayable_case(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A defect re-introduced (the restart's stash dispatched raw: a crash), found by its seed.
    DEFECTS["restart"].apply(monkeypatch)
    seed = SEEDS["restart"]
    failed = run_case(Case(seed))
    assert failed.violation is not None and failed.violation.name == "crash"
    short = shrink(failed, budget=30)
    assert short.violation is not None and short.violation.name == "crash"
    assert short.case.limit is not None and short.case.limit < failed.violation.step
    assert replay(short.case).trace == short.trace
    assert main(["--seeds", "1", "--first", str(seed)]) == 1
    out = capsys.readouterr().out
    assert f"seed {seed} FAILED: crash" in out
    assert f"shortest failing case found: python -m testkit.dst --seed {seed} --limit" in out
