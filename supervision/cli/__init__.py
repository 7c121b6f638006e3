"""The command line: ``position-supervisor`` / ``python -m supervision``.

Commands::

    run --config FILE        run the supervisor until SIGTERM/SIGINT
    check --config FILE      validate the configuration only
    status --config FILE     who owns each account, open positions, recent closed ones
                             (--all: every closed one; --json; --verify: ask the exchange
                             whether each stop rests there)
    history SYMBOL --config FILE
                             the event journal and signal history of one symbol
                             (--limit, --since, --position)
    close SYMBOL... | --all  close positions at market (--all: every open one: flatten)
    pause [SYMBOL...]        no new entries (none named: every symbol of the account(s))
    resume [SYMBOL...]       entries again
    unquarantine SYMBOL...   lift a quarantine after repeated crashes
                             (each with --reason TEXT [--account A] [--timeout S] [--json];
                             they call the running process's control endpoint)
    confirm-installation --account A --config FILE
                             an operator confirms the orders of another installation seen
                             on the account (I7): its entries resume
    demo                     moved: the demo is ``python -m demo`` (``make run``)

``--config`` defaults to ``$PS_CONFIG``. Exit codes: 0 ok, 2 invalid configuration or usage
(nothing has connected yet; one line on stderr, ``configuration error: <key path>: <problem>``,
or ``<command>: <problem>; <hint>`` for an unknown account or symbol), 1 runtime failure (its
message redacted of every configured secret; for a control command also: the endpoint cannot
be reached, refused the request, or a symbol's request failed), 3 ``status --verify`` found a
stop that does not rest on the exchange, 4 a control command's timeout passed with a symbol
still pending (each pending one is named). Output cut short by its reader
(``history … | head``) ends the command quietly (exit 0, no traceback).

``status`` and ``history`` only read the database: they load the configuration without
requiring the trading keys (``require_credentials=False``); ``status --verify`` reads the
exchange too and needs them. The control commands need neither: only the control token
(``PS_CONTROL_TOKEN``) and ``control.address``.

This package holds :func:`main` and the parser; each command family is its own module, which
adds its subcommands to the parser and runs them: :mod:`~supervision.cli.run` (run, check),
:mod:`~supervision.cli.status`, :mod:`~supervision.cli.history`,
:mod:`~supervision.cli.archive`, :mod:`~supervision.cli.installation`
(confirm-installation), :mod:`~supervision.cli.controls` (close, pause, resume,
unquarantine), :mod:`~supervision.cli.demo`; :mod:`~supervision.cli.common` what they share
and :mod:`~supervision.cli.render` the tables they print. Main thread throughout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from infra.config import ConfigError
from supervision.cli import archive, controls, demo, history, installation, run, status
from supervision.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    one_line,
    redactor,
)
from supervision.cli.controls import render_control
from supervision.cli.history import parse_since
from supervision.cli.render import (
    render_closed,
    render_controls,
    render_history,
    render_owners,
    render_status,
)

__all__ = [
    "UsageError",
    "build_parser",
    "main",
    "parse_since",
    "render_closed",
    "render_control",
    "render_controls",
    "render_history",
    "render_owners",
    "render_status",
]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each parsed command carries its function as ``fn``."""
    p = argparse.ArgumentParser(
        prog="position-supervisor",
        description="One actor per (account, symbol): the position supervisor.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or usage.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_parsers(sub)
    status.add_parser(sub)
    history.add_parser(sub)
    archive.add_parser(sub)
    controls.add_parsers(sub)
    installation.add_parser(sub)
    demo.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.fn(args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return code
    except BrokenPipeError:
        # The reader went away (``history … | head``): what it wanted, it has. Point stdout
        # at /dev/null so that the interpreter's last flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    except ConfigError as exc:
        print(f"configuration error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"{args.command}: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        logging.getLogger("supervision").error("%s failed: %r", args.command, exc, exc_info=True)
        print(f"error: {one_line(redactor.redact(str(exc)))}", file=sys.stderr)
        return EXIT_FAILURE
