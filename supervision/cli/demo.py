"""``demo``: a pointer. The demo runs the simulated exchange, so it left the product for its
own package above it (``python -m demo``, ``make run``); the product never imports it. The
subcommand stays so that a user of the old command is told where it went (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from supervision.cli.common import EXIT_CONFIG

__all__ = ["add_parser", "cmd_demo"]


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: says where the demo went; exit 2 (a usage error)."""
    del args
    print("demo: the demo is its own package now: run `python -m demo`", file=sys.stderr)
    return EXIT_CONFIG


def add_parser(sub: Any) -> None:
    """The ``demo`` subcommand on ``sub`` (the parser's subparsers)."""
    demo = sub.add_parser(
        "demo",
        help="moved: run `python -m demo` (make run)",
        description="The demo is its own package outside the product: `python -m demo`.",
    )
    demo.add_argument(
        "--config", "-c", metavar="FILE", default=None, help="default: deploy/demo.toml"
    )
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    demo.add_argument("--no-ui", action="store_true", help="no live view: log lines only")
    demo.set_defaults(fn=cmd_demo)
