"""What every command of the command line shares: exit codes, the usage error, loading the
configuration, opening the database, choosing the accounts.

Called on the main thread by the command functions of :mod:`supervision.cli`'s modules.
:func:`load` and :func:`load_for_reading` raise :class:`~infra.config.ConfigError` (exit 2),
:func:`select_accounts` raises :class:`UsageError` (exit 2); :func:`supervision.cli.main`
turns both into one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
from collections.abc import Callable
from typing import Any

from infra.config import Config, ConfigError, load_config
from infra.logs import SecretRedactor, setup_logging

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_PENDING",
    "EXIT_STOP_MISSING",
    "UsageError",
    "config_arg",
    "load",
    "load_for_reading",
    "one_line",
    "redactor",
    "select_accounts",
    "with_store",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_STOP_MISSING = 3
EXIT_PENDING = 4


class UsageError(Exception):
    """A command line that names something the configuration or the database does not
    know (exit 2). The message says what, and how to find the right name."""


# The redactor of the last configuration loaded by this process's command, for the error line
# :func:`supervision.cli.main` prints itself (that line does not go through the logging
# handler).
redactor = SecretRedactor()


def one_line(text: str) -> str:
    """``text`` with its line breaks made spaces (an error line is one line)."""
    return " ".join(text.splitlines())


def config_arg(sp: argparse.ArgumentParser) -> None:
    """The ``--config FILE`` option every command but ``demo`` takes."""
    sp.add_argument(
        "--config", "-c", metavar="FILE", help="TOML configuration (default: $PS_CONFIG)"
    )


def load(args: argparse.Namespace, *, require_credentials: bool = True) -> Config:
    """The configuration named by ``--config`` or ``$PS_CONFIG``; its secrets are added to
    :data:`redactor`. Raises :class:`ConfigError`."""
    path = args.config or os.environ.get("PS_CONFIG")
    if not path:
        raise ConfigError("--config", "required (or set PS_CONFIG)")
    cfg = load_config(path, require_credentials=require_credentials)
    redactor.add(cfg.secret_values())
    return cfg


def load_for_reading(args: argparse.Namespace, *, require_credentials: bool = False) -> Config:
    """:func:`load` for a command that reports (or writes one row) and exits: without the
    trading keys unless asked, and only warnings logged (redacted), so that its own output
    is all the operator reads."""
    cfg = load(args, require_credentials=require_credentials)
    setup_logging("WARNING", False, cfg.secret_values())
    return cfg


def with_store(cfg: Config, fn: Callable[[Any, str], int]) -> int:
    """Run ``fn(store, dsn)`` against the configured database, closing it afterwards."""
    from supervision.wiring import open_store  # noqa: PLC0415

    with contextlib.ExitStack() as resources:
        store, dsn = open_store(cfg, resources)
        return fn(store, dsn)


def select_accounts(cfg: Config, account: str | None) -> list[str]:
    """The accounts a command covers: ``--account`` (which must be configured) or all."""
    if account is None:
        return list(cfg.accounts)
    if account not in cfg.accounts:
        close = difflib.get_close_matches(account, list(cfg.accounts), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"unknown account {account!r}: {cfg.source} configures "
            f"{', '.join(sorted(cfg.accounts))}{hint}"
        )
    return [account]
