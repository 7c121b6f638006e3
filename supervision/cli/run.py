"""``run`` and ``check``: run the supervisor until SIGTERM/SIGINT (:class:`supervision.app.
App`), or only validate the configuration.

Main thread. ``run`` sets up the process's logging from the configuration and the command
line first; a log file that cannot be opened is a configuration error (exit 2, nothing
started).
"""

from __future__ import annotations

import argparse
from typing import Any

from infra.config import Config, ConfigError
from infra.logs import setup_logging
from supervision.cli.common import EXIT_OK, config_arg, load

__all__ = ["add_parsers", "cmd_check", "cmd_run", "setup_run_logging"]


def setup_run_logging(cfg: Config, args: argparse.Namespace) -> None:
    """The process's logging: ``--log-level`` and ``--json-logs`` over the configuration's
    ``[logging]``, every configured secret redacted. Raises :class:`ConfigError` when the log
    file cannot be opened."""
    level = getattr(args, "log_level", None) or cfg.logging.level
    json_lines = bool(getattr(args, "json_logs", False)) or cfg.logging.json
    lc = cfg.logging
    try:
        setup_logging(
            level,
            json_lines,
            cfg.secret_values(),
            file=lc.file,
            max_bytes=lc.max_bytes,
            backups=lc.backups,
        )
    except OSError as exc:  # the log file: exit 2 with one line, nothing started
        raise ConfigError("logging.file", f"cannot be opened: {exc.strerror or exc}") from None


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: the supervisor until a signal stops it (or ``--duration`` passes)."""
    from supervision.app import App  # noqa: PLC0415

    cfg = load(args)
    setup_run_logging(cfg, args)
    return App(cfg).run(duration=args.duration)


def cmd_check(args: argparse.Namespace) -> int:
    """``check``: load and validate the configuration, say what it configures."""
    cfg = load(args)
    print(f"{cfg.source}: ok ({len(cfg.accounts)} accounts: {', '.join(cfg.accounts)})")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """The ``run`` and ``check`` subcommands on ``sub`` (the parser's subparsers)."""
    run = sub.add_parser(
        "run",
        help="run the supervisor until SIGTERM/SIGINT",
        description="Run the supervisor. The first SIGTERM/SIGINT stops intake, lets in-flight "
        "exchange calls finish (bounded by supervisor.shutdown_grace_s) and exits 0; "
        "a second one forces exit 1.",
    )
    config_arg(run)
    run.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.add_argument("--json-logs", action="store_true", help="JSON lines on stderr")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    run.set_defaults(fn=cmd_run)

    check = sub.add_parser(
        "check", help="validate the configuration", description="Validate and exit (0 or 2)."
    )
    config_arg(check)
    check.set_defaults(fn=cmd_check)
