"""The mutation score of the last ``make mutate``: killed / total per mutated file, and overall.

Called by ``make mutate`` after ``mutmut run`` (``python -m tests.mutation_score``), on the
caller's thread, from the repository root. Reads mutmut's per-file results
(``mutants/<path>.meta``, JSON with ``exit_code_by_key``), prints one line per file and the
total, and appends the run to ``tests/MUTATION.md`` (the record the README's "Mutation
testing" section quotes), with the commit it ran on. Killed counts mutmut's "killed",
"timeout" and "caught by type check"; every other mutant (survived, no tests, suspicious,
skipped, not checked) counts against the score. Exits 1 when there are no results.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "MUTATION.md"
#: mutmut's exit codes of a detected mutant: killed (1, 3), timeout, caught by type check.
DETECTED = frozenset({1, 3, 24, -24, 36, 37, 152, 255})
SURVIVED = 0


@dataclass(frozen=True)
class FileScore:
    path: str
    killed: int
    survived: int
    total: int

    @property
    def pct(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0

    def line(self) -> str:
        other = self.total - self.killed - self.survived
        extra = f", {other} not run" if other else ""
        return (
            f"{self.path:<28} {self.killed:>5} / {self.total:<5} {self.pct:5.1f} %  "
            f"({self.survived} survived{extra})"
        )


def scores(mutants: Path = ROOT / "mutants") -> list[FileScore]:
    """One :class:`FileScore` per mutated file with results, sorted by path."""
    out = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
        if not codes:
            continue
        rel = str(meta.relative_to(mutants))[: -len(".meta")]
        killed = sum(1 for c in codes.values() if c in DETECTED)
        survived = sum(1 for c in codes.values() if c == SURVIVED)
        out.append(FileScore(rel, killed, survived, len(codes)))
    return out


def report(files: list[FileScore]) -> str:
    killed = sum(f.killed for f in files)
    total = sum(f.total for f in files)
    lines = [f.line() for f in files]
    lines.append(FileScore("total", killed, sum(f.survived for f in files), total).line())
    return "\n".join(lines)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> int:
    files = scores()
    if not files:
        print("no mutmut results under mutants/: run `make mutate`", file=sys.stderr)
        return 1
    text = report(files)
    print(text)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with RECORD.open("a", encoding="utf-8") as f:
        f.write(f"\n## {stamp}, commit {_commit()}\n\n```\n{text}\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
