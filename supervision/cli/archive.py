"""``archive --before DATE``: export, then drop, the months of the journal and signal
history before DATE (:func:`infra.store.retention.archive`); ``--dry-run`` says what would go.

Main thread; the database only (no trading keys). A bad date or a refused month is a usage
error (exit 2); the export is written and fsync'd before anything is dropped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from supervision.cli.common import EXIT_OK, UsageError, config_arg, load_for_reading, with_store

__all__ = ["add_parser", "cmd_archive"]


def cmd_archive(args: argparse.Namespace) -> int:
    """Export, then drop, the months of the history before ``--before``
    (:func:`infra.store.retention.archive`)."""
    from infra.store.retention import archive, parse_before  # noqa: PLC0415

    cfg = load_for_reading(args)  # the database only
    try:
        before = parse_before(args.before)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out: Path | None = Path(args.out) if args.out else None
    if out is None and not args.dry_run:
        out = Path(f"ps-history-before-{before:%Y-%m-%d}.jsonl.gz")

    def run(store: Any, dsn: str) -> int:
        try:
            report = archive(dsn, before, out, dry_run=args.dry_run)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        verb = "would drop" if report.dry_run else "dropped"
        if report.dropped:
            months = ", ".join(m.replace("_", "-") for m in report.dropped)
            rows = ", ".join(f"{t} {n}" for t, n in report.rows.items())
            print(f"{verb} months {months} ({rows} rows)")
            if report.path is not None:
                print(f"exported to {report.path}; signal ids forgotten: {report.forgotten_ids}")
        else:
            print(f"nothing to archive before {before:%Y-%m-%d}")
        for month, ids in report.kept_open.items():
            later = ", ".join(m.replace("_", "-") for m in report.kept_after)
            print(
                f"kept {month.replace('_', '-')}{' and ' + later if later else ''}: "
                f"rows of open positions {', '.join(map(str, ids))}"
            )
        return EXIT_OK

    return with_store(cfg, run)


def add_parser(sub: Any) -> None:
    """The ``archive`` subcommand on ``sub`` (the parser's subparsers)."""
    arch = sub.add_parser(
        "archive",
        help="export, then drop, months of the journal and signal history",
        description="Export every journal and signal row of the months (UTC) that end on or "
        "before --before, with the positions and orders they speak of, to one gzip'd JSON-lines "
        "file (written and fsync'd first), then drop those months' partitions and forget the "
        "signal ids decided in them (a replay of one is then judged anew: give signals a "
        "created_at, refused after signal_policy.max_signal_age_s). A month holding a row of a "
        "position still open is kept, with every later month. The current month never goes. "
        "Safe while the supervisor runs (commits wait a moment for each dropped month).",
    )
    config_arg(arch)
    arch.add_argument(
        "--before", required=True, metavar="DATE", help="YYYY-MM-DD or YYYY-MM (UTC), exclusive"
    )
    arch.add_argument(
        "--out",
        metavar="FILE",
        help="the export (default ps-history-before-DATE.jsonl.gz here; never overwritten)",
    )
    arch.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    arch.set_defaults(fn=cmd_archive)
