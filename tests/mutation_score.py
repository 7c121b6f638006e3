"""The mutation score of the last ``make mutate``: killed / total per mutated file, and overall.

Called by ``make mutate`` after ``mutmut run`` (``python -m tests.mutation_score``), on the
caller's thread, from the repository root. Reads mutmut's per-file results
(``mutants/<path>.meta``, JSON with ``exit_code_by_key``), prints one line per file and the
total, and appends the run to ``tests/MUTATION.md`` (the record the README's "Mutation
testing" section quotes), with the commit it ran on. Killed counts mutmut's "killed",
"timeout" and "caught by type check"; every other mutant (survived, no tests, suspicious,
skipped, not checked) counts against the score. A survivor named in
``tests/MUTATION_EQUIVALENTS.md`` (an equivalent mutant: no test can tell it from the code,
the file says why) is counted apart: each line shows them, and the score with them left out
of the total. Exits 1 when there are no results.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "MUTATION.md"
EQUIVALENTS = ROOT / "tests" / "MUTATION_EQUIVALENTS.md"
_NAME = re.compile(r"`(actors\.[^`\s]+__mutmut_\d+)`")
#: mutmut's exit codes of a detected mutant: killed (1, 3), timeout, caught by type check.
DETECTED = frozenset({1, 3, 24, -24, 36, 37, 152, 255})
SURVIVED = 0


@dataclass(frozen=True)
class FileScore:
    path: str
    killed: int
    survived: int
    total: int
    equivalent: int = 0

    @property
    def pct(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0

    @property
    def pct_without_equivalents(self) -> float:
        total = self.total - self.equivalent
        return 100.0 * self.killed / total if total else 100.0

    def line(self) -> str:
        other = self.total - self.killed - self.survived
        extra = f", {other} not run" if other else ""
        if self.equivalent:
            extra += (
                f"; {self.equivalent} of them equivalent: "
                f"{self.pct_without_equivalents:.1f} % of the rest"
            )
        return (
            f"{self.path:<28} {self.killed:>5} / {self.total:<5} {self.pct:5.1f} %  "
            f"({self.survived} survived{extra})"
        )


def equivalents(path: Path = EQUIVALENTS) -> frozenset[str]:
    """The mutant names listed as equivalent (each in backquotes)."""
    if not path.exists():
        return frozenset()
    return frozenset(_NAME.findall(path.read_text(encoding="utf-8")))


def scores(mutants: Path = ROOT / "mutants") -> list[FileScore]:
    """One :class:`FileScore` per mutated file with results, sorted by path."""
    listed = equivalents()
    out = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
        if not codes:
            continue
        rel = str(meta.relative_to(mutants))[: -len(".meta")]
        killed = sum(1 for c in codes.values() if c in DETECTED)
        survived = sum(1 for c in codes.values() if c == SURVIVED)
        equivalent = sum(1 for k, c in codes.items() if c == SURVIVED and k in listed)
        out.append(FileScore(rel, killed, survived, len(codes), equivalent))
    return out


def report(files: list[FileScore]) -> str:
    lines = [f.line() for f in files]
    shell = [f for f in files if f.path != "actors/transition.py"]
    if shell and len(shell) < len(files):
        lines.append(_sum("all but transition.py", shell).line())
    lines.append(_sum("total", files).line())
    return "\n".join(lines)


def _sum(name: str, files: list[FileScore]) -> FileScore:
    return FileScore(
        name,
        sum(f.killed for f in files),
        sum(f.survived for f in files),
        sum(f.total for f in files),
        sum(f.equivalent for f in files),
    )


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
