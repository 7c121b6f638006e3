"""What each benchmark run records about itself in ``bench/HISTORY.md``: the file, the commit,
the machine's load and the time stamp.

Used by ``python -m bench`` (:mod:`bench.__main__`, one line per figure) and ``python -m
bench.soak`` (one line per soak), on their main thread. Nothing here raises for a machine
without git or a load average: the figure says ``unknown`` / ``?`` instead.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

__all__ = ["HISTORY", "commit_id", "load_average", "utc_stamp"]

HERE = Path(__file__).resolve().parent
HISTORY = HERE / "HISTORY.md"


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10, check=False
    )


def commit_id() -> str:
    """The checkout's short commit id, ``+dirty`` when tracked files are modified; ``unknown``
    without git."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (``"0.52 0.61 0.70"``); ``?`` where unknown."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def utc_stamp() -> str:
    """Now, as the history's date column writes it (``2026-01-31 12:00 UTC``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
