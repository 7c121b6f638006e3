"""``python -m testkit.dst``: run seeds of the deterministic simulation, or replay one.

``--seeds N [--first F]``: run seeds F .. F+N-1; on a failure print the seed, shrink it and
print the shortest failing case found (its replay command and trace; the trace also goes to
``--trace-file``), exit 1; ``--all`` runs every seed and lists every failure first.
``--seed S [--limit L] [--skip i,j]``: replay one case and print its trace (the same bytes
every time), exit 1 when it fails. Prints the steps simulated and the rate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testkit.dst.runner import Case, replay, run_seeds, shrink

TAIL = 60


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testkit.dst")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--skip", default="")
    ap.add_argument("--trace-file", default="")
    ap.add_argument("--full", action="store_true", help="print the whole trace, not its tail")
    ap.add_argument("--all", action="store_true", help="run every seed, list every failure")
    args = ap.parse_args(argv)
    if args.seed is not None:
        skip = frozenset(int(i) for i in args.skip.split(",") if i)
        out = replay(Case(args.seed, args.limit, skip))
        for line in out.trace:
            print(line)
        for v in out.known:
            print(f"known defect seen (does not fail the run): {v}")
        print(f"seed {args.seed}: {out.steps} steps, {out.violation or 'all invariants held'}")
        return 0 if out.violation is None else 1
    count = args.seeds if args.seeds is not None else 100
    summary = run_seeds(args.first, count, stop_at_first=not args.all)
    print(
        f"dst: {summary.steps} steps in {summary.seconds:.1f}s "
        f"({summary.rate:.0f} steps/s), seeds {args.first}..{args.first + count - 1}"
    )
    if summary.known:
        seeds = sorted({seed for seed, _ in summary.known})
        first_seed, first = summary.known[0]
        print(
            f"dst: known defects seen (they do not fail the run) in {len(seeds)} seeds, "
            f"first seed {first_seed}: {first}"
        )
    if not summary.failures:
        print("dst: all invariants held")
        return 0
    for out in summary.failures:
        print(f"dst: seed {out.case.seed}: {out.violation}")
    failed = summary.failures[0]
    print(f"dst: seed {failed.case.seed} FAILED: {failed.violation}")
    short = shrink(failed)
    print(f"dst: shortest failing case found: {short.case.command()}")
    print(f"dst: {short.violation}")
    lines = short.trace if args.full else short.trace[-TAIL:]
    if len(short.trace) > len(lines):
        print(f"... ({len(short.trace) - len(lines)} earlier steps; --full or replay for all)")
    for line in lines:
        print(line)
    if args.trace_file:
        Path(args.trace_file).write_text("\n".join(short.trace) + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
