"""``python -m demo`` (``make run``): parse the command line and run :func:`demo.run_demo`.

Options: ``--config/-c FILE`` (default ``deploy/demo.toml``), ``--duration SECONDS`` (stop
after SECONDS; default: until Ctrl-C / SIGTERM), ``--no-ui`` (log lines only, no live view).
Exit codes as the product's CLI: 0 stopped cleanly, 1 the demo failed, 2 an invalid
configuration (one line on stderr, ``configuration error: <key path>: <problem>``) or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from demo.run import run_demo
from infra.config import ConfigError

__all__ = ["build_parser", "main"]

EXIT_FAILURE = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The demo's options (the ones ``position-supervisor demo`` had)."""
    p = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run the supervisor against the local sim/ exchange and signal feed with an "
        "embedded PostgreSQL, with a live status view. Ctrl-C stops it.",
    )
    p.add_argument("--config", "-c", metavar="FILE", default=None, help="default: deploy/demo.toml")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("--no-ui", action="store_true", help="no live view: log lines only")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point on the main thread; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return run_demo(args.config, duration=args.duration, ui=not args.no_ui)
    except ConfigError as exc:
        print("configuration error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # before the demo's own SIGINT handler is installed
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
