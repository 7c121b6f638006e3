"""``demo``: the supervisor against the local simulated exchange and signal feed, with an
embedded PostgreSQL and a live view. The whole of the command line's knowledge of the demo
is here: its options and the one call that runs it.

Main thread; runs until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "cmd_demo"]


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: run the demo; its exit code."""
    from supervision.demo import run_demo  # noqa: PLC0415

    return run_demo(args.config, duration=args.duration, ui=not args.no_ui)


def add_parser(sub: Any) -> None:
    """The ``demo`` subcommand on ``sub`` (the parser's subparsers)."""
    demo = sub.add_parser(
        "demo",
        help="the demo: embedded PostgreSQL, sim/ exchange, four signal sources",
        description="Run the supervisor against the local sim/ exchange and signal feed with an "
        "embedded PostgreSQL, with a live status view. Ctrl-C stops it.",
    )
    demo.add_argument(
        "--config", "-c", metavar="FILE", default=None, help="default: deploy/demo.toml"
    )
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    demo.add_argument("--no-ui", action="store_true", help="no live view: log lines only")
    demo.set_defaults(fn=cmd_demo)
